"""Inference latency of exported agents and mixers: onnxruntime, LiteRT, SavedModel, Keras.

    python benchmarks/inference.py                      # shipped two-step example + an SMAC-3m-sized net
    python benchmarks/inference.py --version saved_models/two_step/1 --repeats 5
    python benchmarks/inference.py --lbf-run runs/<an LBF run>   # + that run exported with int8

For each model: one agent step at batch 1 (one robot) and at batch N (a whole
team), and one `mix` call at batch 1, through

* onnxruntime: a plain `session.run`, I/O binding on preallocated arrays,
  and the `kqmix_runtime` classes (what a deployment calls);
* LiteRT (ai-edge-litert's interpreter): the `kqmix_runtime` classes with
  `backend="litert"` (agent.tflite) and `"litert-int8"` (agent_int8.tflite),
  and the bare interpreter's `invoke()` on a resized, filled model;
* the SavedModel, loaded with `tf.saved_model.load` and called through its
  `act` / `mix` signature;
* the Keras layers, eagerly and inside a `tf.function`.

Latency is per call, p50 and p99 in microseconds, median over `--repeats`
rounds (these machines are noisy). The 3m-sized network is untrained: speed
does not depend on the weights (its int8 file is calibrated on random
observations, so only its speed and size mean anything). A last table puts
the deployed agent step of every format side by side with the file sizes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(fn, seconds: float, max_calls: int) -> np.ndarray:
    """Per-call latencies in microseconds of `fn()`, after a short warm-up."""
    for _ in range(min(50, max_calls)):
        fn()
    times = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while len(times) < max_calls and clock() < deadline:
        start = clock()
        fn()
        times.append(clock() - start)
    return np.asarray(times, np.float64) / 1e3


def synthetic_run(tmp: Path, n_agents=3, n_actions=9, obs_dim=30, state_dim=48, hidden=64) -> Path:
    """A run directory with an untrained QMIX model of the SMAC 3m shape (as in DESIGN.md)."""
    import dataclasses

    from kqmix.config import make_config
    from kqmix.envs import EnvInfo
    from kqmix.networks import agent_from_config, build_qmix_model, mixer_from_config
    from kqmix import rundir

    config = make_config("two_step", {"rnn_hidden_dim": hidden, "obs_last_action": True,
                                      "hypernet_layers": 2})
    info = EnvInfo(n_agents, n_actions, obs_dim, state_dim, 60)
    agent = agent_from_config(info, config)
    mixer = mixer_from_config(info, config)
    env = {"env": "synthetic", "env_key": "smac-3m-shape", **dataclasses.asdict(info),
           "action_meanings": None, "notes": ["untrained network of the SMAC 3m shape, for timing"]}
    run = rundir.create(tmp / "run_3m", config, env, preset="synthetic")
    rundir.write_summary(run, {"t_env": 0, "episodes": 0, "train_steps": 0, "test_return_mean": None,
                               "kqmix_version": "benchmark", "preset": "synthetic"})
    rundir.save_model(run, build_qmix_model(agent, mixer, state_dim))
    return run


def bench_version(version_dir: Path, run_dir, seconds: float, repeats: int) -> list[dict]:
    from kqmix_runtime import DecentralisedAgents, Mixer, SingleAgent, make_session, spec

    meta = json.loads((version_dir / "metadata.json").read_text())
    sizes = meta["sizes"]
    n, a, o, s, h = (sizes[k] for k in ("n_agents", "n_actions", "obs_dim", "state_dim", "hidden_dim"))
    rng = np.random.default_rng(0)
    label = f"{meta['environment']['env']}{'-' + meta['environment']['env_key'] if meta['environment']['env_key'] else ''}"
    label += f" (N={n} A={a} O={o} S={s} H={h})"

    def act_feed(b):
        return {
            "obs": rng.normal(size=(b, o)).astype(np.float32),
            "agent_id": (np.arange(b) % n).astype(np.int32),
            "last_action": np.full(b, spec.NO_LAST_ACTION, np.int32),
            "avail_actions": np.ones((b, a), np.float32),
            "hidden": np.zeros((b, h), np.float32),
        }

    mix_feed = {"agent_qs": rng.normal(size=(1, n)).astype(np.float32),
                "state": rng.normal(size=(1, s)).astype(np.float32)}

    cases = []  # (group, implementation, batch, fn, max_calls)
    agent_sess = make_session(version_dir / "agent.onnx")
    mixer_sess = make_session(version_dir / "mixer.onnx")
    act_outputs = ["q_values", "action", "next_hidden"]
    for b in (1, n):
        feed = act_feed(b)
        cases.append(("agent step", "onnxruntime session.run", b,
                      lambda feed=feed: agent_sess.run(act_outputs, feed), 200_000))
        binding = agent_sess.io_binding()
        for k, v in feed.items():
            binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))
        outs = {"q_values": np.zeros((b, a), np.float32), "action": np.zeros(b, np.int32),
                "next_hidden": np.zeros((b, h), np.float32)}
        for k, v in outs.items():
            binding.bind_ortvalue_output(k, ort.OrtValue.ortvalue_from_numpy(v))
        cases.append(("agent step", "onnxruntime io_binding", b,
                      lambda binding=binding: agent_sess.run_with_iobinding(binding), 200_000))
    obs1, avail1 = act_feed(1)["obs"][0], np.ones(a, np.float32)
    obs_n, avail_n = act_feed(n)["obs"], np.ones((n, a), np.float32)
    for backend, agent_file in backends(version_dir).items():
        suffix = "" if backend == "onnx" else f" [{backend}]"
        single = SingleAgent(version_dir, 0, backend=backend)
        cases.append(("agent step", f"runtime SingleAgent.act{suffix}", 1,
                      lambda single=single: single.act(obs1, avail1), 200_000))
        team = DecentralisedAgents(version_dir, backend=backend)
        cases.append(("agent step", f"runtime DecentralisedAgents.act{suffix}", n,
                      lambda team=team: team.act(obs_n, avail_n), 200_000))
        if backend != "onnx":
            from kqmix_runtime.litert import LiteRTModel

            for b in (1, n):
                model = LiteRTModel(version_dir / agent_file, "act")
                index, _ = model.bind(b)
                for name, value in act_feed(b).items():
                    model.interpreter.set_tensor(index[name], value)
                cases.append(("agent step", f"LiteRT interpreter.invoke [{backend}]", b,
                              model.interpreter.invoke, 200_000))

    loaded_sm = tf.saved_model.load(str(version_dir))
    act_sig, mix_sig = loaded_sm.signatures["act"], loaded_sm.signatures["mix"]
    for b in (1, n):
        tensors = {k: tf.constant(v) for k, v in act_feed(b).items()}
        cases.append(("agent step", "SavedModel signature", b, lambda t=tensors: act_sig(**t), 20_000))

    if run_dir is not None:
        from kqmix.rundir import load_run

        loaded = load_run(run_dir)
        agent, mixer = loaded.agent, loaded.mixer
        step_fn = tf.function(agent.step, reduce_retracing=True)
        mix_fn = tf.function(lambda q, st: mixer([q, st]))
        for b in (1, n):
            f = {k: tf.constant(v) for k, v in act_feed(b).items()}
            args = (f["obs"], f["agent_id"], f["last_action"], f["hidden"])
            cases.append(("agent step", "Keras eager agent.step", b, lambda args=args: agent.step(*args), 2_000))
            cases.append(("agent step", "Keras tf.function agent.step", b,
                          lambda args=args: step_fn(*args), 20_000))

    mixer_rt = Mixer(version_dir)
    q1, s1 = mix_feed["agent_qs"][0], mix_feed["state"][0]
    cases.append(("mix", "onnxruntime session.run", 1, lambda: mixer_sess.run(["q_tot"], mix_feed), 200_000))
    cases.append(("mix", "runtime Mixer.q_tot", 1, lambda: mixer_rt.q_tot(q1, s1), 200_000))
    cases.append(("mix", "runtime Mixer.weights (+dQ_tot/dQ_a)", 1, lambda: mixer_rt.weights(q1, s1), 200_000))
    mix_tensors = {k: tf.constant(v) for k, v in mix_feed.items()}
    cases.append(("mix", "SavedModel signature", 1, lambda: mix_sig(**mix_tensors), 20_000))
    if run_dir is not None:
        mq, ms = mix_tensors["agent_qs"], mix_tensors["state"]
        cases.append(("mix", "Keras eager mixer", 1, lambda: mixer([mq, ms]), 2_000))
        cases.append(("mix", "Keras tf.function mixer", 1, lambda: mix_fn(mq, ms), 20_000))

    rows = []
    for group, impl, b, fn, max_calls in cases:
        p50s, p99s, calls = [], [], 0
        for _ in range(repeats):
            t = measure(fn, seconds, max_calls)
            p50s.append(np.percentile(t, 50))
            p99s.append(np.percentile(t, 99))
            calls += len(t)
        rows.append({"model": label, "what": group, "implementation": impl, "batch": b,
                     "p50_us": float(np.median(p50s)), "p99_us": float(np.median(p99s)), "calls": calls})
    return rows


def backends(version_dir: Path) -> dict:
    """Runtime backend -> agent file, for the backends whose files this version has."""
    from kqmix_runtime import spec

    return {backend: files[0] for backend, files in spec.BACKEND_FILES.items() if (version_dir / files[0]).is_file()}


#: Side-by-side rows: format -> (implementation label at batch 1, at batch N).
DEPLOYED = {
    "SavedModel": ("SavedModel signature", "SavedModel signature"),
    "ONNX": ("runtime SingleAgent.act", "runtime DecentralisedAgents.act"),
    "LiteRT float32": ("runtime SingleAgent.act [litert]", "runtime DecentralisedAgents.act [litert]"),
    "LiteRT int8": ("runtime SingleAgent.act [litert-int8]", "runtime DecentralisedAgents.act [litert-int8]"),
}
FORMAT_FILES = {"SavedModel": None, "ONNX": "agent.onnx", "LiteRT float32": "agent.tflite",
                "LiteRT int8": "agent_int8.tflite"}


def sizes_of(version_dir: Path) -> dict:
    """Format -> bytes of the agent (the SavedModel: saved_model.pb + variables/, agent and mixer together)."""
    out = {}
    for fmt, filename in FORMAT_FILES.items():
        if filename is None:
            out[fmt] = sum(p.stat().st_size for p in [version_dir / "saved_model.pb",
                                                       *(version_dir / "variables").iterdir()])
        elif (version_dir / filename).is_file():
            out[fmt] = (version_dir / filename).stat().st_size
    return out


def side_by_side(rows: list[dict], sizes: dict) -> list[dict]:
    """One row per model and format: the deployed agent step at batch 1 and N, and the file size."""
    table = []
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [r for r in rows if r["model"] == model and r["what"] == "agent step"]
        n = max(r["batch"] for r in mine)
        for fmt, (impl_1, impl_n) in DEPLOYED.items():
            one = [r for r in mine if r["implementation"] == impl_1 and r["batch"] == 1]
            team = [r for r in mine if r["implementation"] == impl_n and r["batch"] == n]
            if not one or not team:
                continue
            table.append({"model": model, "format": fmt, "batch_n": n,
                          "p50_1": one[0]["p50_us"], "p99_1": one[0]["p99_us"],
                          "p50_n": team[0]["p50_us"], "p99_n": team[0]["p99_us"],
                          "bytes": sizes.get(model, {}).get(fmt)})
    return table


def print_side_by_side(table: list[dict]) -> None:
    print("\nDeployed agent step (runtime classes; SavedModel: its act signature), p50 / p99 us, and agent file size")
    model = None
    for row in table:
        if row["model"] != model:
            model = row["model"]
            print(f"\n{model}")
            print(f"  {'format':<15} {'B=1 p50':>9} {'B=1 p99':>9} {'B=N p50':>9} {'B=N p99':>9} {'bytes':>9}")
        size = f"{row['bytes']:>9}" if row["bytes"] is not None else f"{'-':>9}"
        print(f"  {row['format']:<15} {row['p50_1']:>9.1f} {row['p99_1']:>9.1f} {row['p50_n']:>9.1f} "
              f"{row['p99_n']:>9.1f} {size}")
    print("  (SavedModel bytes: saved_model.pb + variables/, which hold the mixer too)")


def print_table(rows: list[dict]) -> None:
    model = None
    for row in rows:
        if row["model"] != model:
            model = row["model"]
            print(f"\n{model}")
            print(f"  {'what':<11} {'implementation':<46} {'batch':>5} {'p50 us':>10} {'p99 us':>10} {'calls':>8}")
        print(f"  {row['what']:<11} {row['implementation']:<46} {row['batch']:>5} "
              f"{row['p50_us']:>10.1f} {row['p99_us']:>10.1f} {row['calls']:>8}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=Path, default=ROOT / "saved_models" / "two_step" / "1",
                        help="exported version to time (default: the shipped two-step example)")
    parser.add_argument("--run", type=Path, default=None,
                        help="run directory of --version, for the Keras rows (default: from metadata.json if present)")
    parser.add_argument("--no-3m", action="store_true", help="skip the SMAC-3m-sized synthetic network")
    parser.add_argument("--lbf-run", type=Path, default=None,
                        help="an LBF run directory: exported with --quantize int8 (calibrated on its own "
                             "greedy episodes) and timed too")
    parser.add_argument("--quantize", choices=["int8", "int8-weights"], default="int8",
                        help="quantisation of the int8 agent files (default: int8, weights and activations)")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per case and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per case; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    import kqmix
    from kqmix.export import export_run

    from importlib.metadata import PackageNotFoundError, version

    try:
        litert_version = version("ai-edge-litert")
    except PackageNotFoundError:
        litert_version = "not installed"
    print(f"kqmix {kqmix.__version__} | python {platform.python_version()} | tensorflow {tf.__version__} "
          f"| onnxruntime {ort.__version__} | ai-edge-litert {litert_version} | numpy {np.__version__} "
          f"| {os.cpu_count()} CPUs")
    print("LiteRT: num_threads=1, default CPU kernels (XNNPACK delegate for float models); "
          f"int8 rows: --quantize {args.quantize}")
    print("onnxruntime: intra_op_num_threads=1, inter_op_num_threads=1, ORT_SEQUENTIAL, "
          "ORT_ENABLE_ALL, no spinning")
    print(f"tensorflow: intra_op={tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
          f"inter_op={tf.config.threading.get_inter_op_parallelism_threads() or 'default'}")
    print(f"p50/p99 per call in microseconds, median of {args.repeats} rounds of <= {args.seconds}s")

    rows, sizes = [], {}

    def bench(version, run):
        new = bench_version(version, run, args.seconds, args.repeats)
        sizes[new[0]["model"]] = sizes_of(version)
        return new

    run_dir = args.run
    if run_dir is None:
        recorded = json.loads((args.version / "metadata.json").read_text()).get("source", {}).get("run_dir")
        if recorded and (Path(recorded) / "model.keras").is_file():
            run_dir = Path(recorded)
    rows += bench(args.version, run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_3m:
            run = synthetic_run(Path(tmp))
            rng = np.random.default_rng(0)
            calibration = [{"obs": rng.normal(size=(3, 30)).astype(np.float32),
                            "agent_id": np.arange(3, dtype=np.int32),
                            "last_action": rng.integers(-1, 9, 3).astype(np.int32),
                            "avail_actions": np.ones((3, 9), np.float32),
                            "hidden": rng.uniform(-1, 1, (3, 64)).astype(np.float32)} for _ in range(200)]
            version = export_run(run, name="bench3m", out=Path(tmp) / "out", quantize=args.quantize,
                                 calibration=calibration)
            rows += bench(version, run)
        if args.lbf_run is not None:
            version = export_run(args.lbf_run, name="benchlbf", out=Path(tmp) / "out", quantize=args.quantize)
            report = json.loads((version / "metadata.json").read_text())["litert"]["int8"]["report"]
            print(f"LBF {args.quantize} agent against float32 on recorded greedy episodes: {json.dumps(report)}")
            rows += bench(version, args.lbf_run)
    print_table(rows)
    table = side_by_side(rows, sizes)
    print_side_by_side(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "side_by_side": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
