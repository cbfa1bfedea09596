"""Export: SavedModel / ONNX parity with the Keras model, atomic versions, validator errors, docs.

One small two-step run is trained once per module (last-action and agent-id
inputs on, so every part of the agent's input is exercised) and exported once.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kqmix.export import (  # noqa: E402
    CorruptArtifactError,
    MissingArtifactError,
    MissingOutputError,
    NoAvailableActionError,
    RuntimeInputError,
    ShapeMismatchError,
    ToleranceError,
    ValidationError,
)
from kqmix.export import exporter  # noqa: E402
from kqmix.files import sha256_file  # noqa: E402
from kqmix.export.validate import (  # noqa: E402
    ATOL,
    GRAD_ATOL,
    GRAD_RTOL,
    RTOL,
    OnnxReferenceRunner,
    OnnxRunner,
    SavedModelRunner,
    compare,
    row_magnitude,
)
from kqmix_runtime import DecentralisedAgents, Mixer, SingleAgent, spec  # noqa: E402
from kqmix_runtime.actions import masked_greedy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "two_step" / "1"


def assert_close(got, ref, atol=ATOL, rtol=RTOL, msg=""):
    """The validator's float32 rule: |got - ref| <= atol + rtol * |ref|, |ref| row-wise."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{msg}: shape {got.shape} vs {ref.shape}"
    excess = np.abs(got - ref) / (atol + rtol * row_magnitude(ref))
    assert (excess <= 1.0).all(), f"{msg}: differs by {np.max(excess):.3g} times the allowance"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from kqmix.config import make_config
    from kqmix.training import train

    runs = tmp_path_factory.mktemp("runs")
    config = make_config(
        "two_step",
        ["t_max=2000", "rnn_hidden_dim=16", "obs_last_action=True", f"runs_dir={runs}"],
    )
    result = train(config, preset="two_step", quiet=True)
    return result.run_dir


@pytest.fixture(scope="module")
def loaded(run_dir):
    from kqmix.rundir import load_run

    return load_run(run_dir)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("saved_models")


@pytest.fixture(scope="module")
def version_dir(run_dir, out_dir):
    return exporter.export_run(run_dir, name="two_step", out=out_dir)


@pytest.fixture(scope="module")
def saved_model(version_dir):
    runner = SavedModelRunner(version_dir)
    yield runner
    runner.close()


# --------------------------------------------------------------------------- layout


def test_version_layout_and_metadata(version_dir, loaded, run_dir):
    import onnx

    assert version_dir.name == "1" and version_dir.parent.name == "two_step"
    for name in ("saved_model.pb", "variables/variables.index", "agent.onnx", "mixer.onnx",
                 "mixer_grad.onnx", "metadata.json", "config.json"):
        assert (version_dir / name).is_file(), name
    meta = json.loads((version_dir / "metadata.json").read_text())
    assert meta["format_version"] == spec.FORMAT_VERSION
    import kqmix

    assert meta["kqmix_version"] == kqmix.__version__
    assert meta["sizes"] == {"n_agents": 2, "n_actions": 2, "obs_dim": 3, "state_dim": 3,
                             "hidden_dim": 16, "episode_limit": 2}
    assert [part["name"] for part in meta["agent"]["input_layout"]] == [
        "obs", "last_action_one_hot", "agent_id_one_hot"]
    assert meta["environment"]["env"] == "two_step"
    assert meta["training"]["train_steps"] == loaded.run["train_steps"] > 0
    assert meta["evaluation"]["test_return_mean"] == loaded.run["test_return_mean"]
    assert meta["signatures"]["act"]["outputs"]["action"] == {"dtype": "int32", "shape": ["B"], "dims": [None]}
    assert json.loads((version_dir / "config.json").read_text()) == json.loads(
        (Path(run_dir) / "config.json").read_text())
    for filename in spec.ONNX_FILES:
        model = onnx.load(str(version_dir / filename))
        opsets = {o.domain: o.version for o in model.opset_import}
        assert opsets[""] == meta["onnx"]["opset"] == spec.ONNX_OPSET
    assert not [p for p in version_dir.parent.iterdir() if p.name.startswith(".")]


def test_saved_model_cli_lists_signatures(version_dir):
    result = subprocess.run(
        # The module, from the running interpreter: the console script may not be on PATH.
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
         "--dir", str(version_dir)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    blocks = {}
    for block in re.split(r"\nsignature_def\['", result.stdout)[1:]:
        name, body = block.split("']", 1)
        blocks[name] = body
    assert {"act", "serving_default", "mix", "mix_grad"} <= set(blocks)

    def tensors(body, kind):
        section = body.split(f"following {kind}(s):")[1]
        if kind == "input":
            section = section.split("following output(s):")[0]
        return dict(re.findall(rf"{kind}s\['(\w+)'\] tensor_info:\s+dtype: (DT_\w+)", section))

    dt = {"float32": "DT_FLOAT", "int32": "DT_INT32"}
    for name, (inputs, outputs) in [("act", spec.SIGNATURES["act"]), ("serving_default", spec.SIGNATURES["act"]),
                                    ("mix", spec.SIGNATURES["mix"])]:
        assert tensors(blocks[name], "input") == {k: dt[v[0]] for k, v in inputs.items()}, name
        assert tensors(blocks[name], "output") == {k: dt[v[0]] for k, v in outputs.items()}, name
    assert "shape: (-1, 3)" in blocks["act"]  # obs: batch free, O fixed


# --------------------------------------------------------------------------- parity


def _keras_step(agent):
    step = tf.function(agent.step, reduce_retracing=True)

    def run(feed):
        q, h = step(feed["obs"], feed["agent_id"], feed["last_action"], feed["hidden"])
        q = np.asarray(q)
        return {"q_values": q, "action": masked_greedy(q, feed["avail_actions"]), "next_hidden": np.asarray(h)}

    return run


@pytest.mark.parametrize("batch", [1, 7])
def test_act_parity_over_recurrent_rollouts(batch, loaded, version_dir, saved_model):
    """Keras, SavedModel (TF1 loader, signature_def) and onnxruntime over 24 steps."""
    rng = np.random.default_rng(batch)
    keras_step = _keras_step(loaded.agent)
    onnx_agent = OnnxRunner(version_dir / "agent.onnx", "act")
    impls = {
        "saved_model": lambda f: saved_model.run("act", f),
        "serving_default": lambda f: saved_model.run("serving_default", f),
        "onnx": onnx_agent.run,
        # The ONNX standard's reference evaluator: an executor independent of onnxruntime.
        "onnx.reference": OnnxReferenceRunner(version_dir / "agent.onnx", "act").run,
    }
    hidden = {k: np.zeros((batch, 16), np.float32) for k in ["keras", *impls]}
    agent_id = rng.integers(0, 2, batch).astype(np.int32)
    last_action = np.full(batch, -1, np.int32)
    resets = empties = 0
    for t in range(24):
        avail = (rng.random((batch, 2)) < 0.7).astype(np.float32)
        avail[np.arange(batch), rng.integers(0, 2, batch)] = 1.0
        if t % 6 == 5:
            avail[0] = 0.0  # a row with nothing available must give -1 everywhere
            empties += 1
        feed = {"obs": rng.normal(size=(batch, 3)).astype(np.float32), "agent_id": agent_id,
                "last_action": last_action, "avail_actions": avail}
        ref = keras_step({**feed, "hidden": hidden["keras"]})
        for name, run in impls.items():
            got = run({**feed, "hidden": hidden[name]})
            assert got["q_values"].shape == (batch, 2) and got["action"].dtype == np.int32
            assert_close(got["q_values"], ref["q_values"], msg=f"{name} t={t}")
            np.testing.assert_array_equal(got["action"], ref["action"], err_msg=f"{name} t={t}")
            assert_close(got["next_hidden"], ref["next_hidden"], msg=f"{name} t={t}")
            hidden[name] = got["next_hidden"]  # each implementation carries its own state
        hidden["keras"] = ref["next_hidden"]
        assert ref["action"][0] == (-1 if t % 6 == 5 else ref["action"][0])
        last_action = np.where(ref["action"] >= 0, ref["action"], 0).astype(np.int32)
        reset = rng.random(batch) < 0.2
        resets += int(reset.sum())
        for name in hidden:
            hidden[name] = np.where(reset[:, None], 0.0, hidden[name]).astype(np.float32)
        last_action[reset] = -1
        agent_id = np.where(reset, rng.integers(0, 2, batch), agent_id).astype(np.int32)
    assert empties == 4 and (batch == 1 or resets > 0)


def test_runtime_matches_keras_over_episodes(loaded, version_dir):
    """DecentralisedAgents / SingleAgent keep hidden state and last action like the Keras step."""
    rng = np.random.default_rng(3)
    keras_step = _keras_step(loaded.agent)
    team = DecentralisedAgents(version_dir)
    singles = [SingleAgent(version_dir, i) for i in range(2)]
    for episode in range(3):
        team.reset()
        for s in singles:
            s.reset()
        hidden = np.zeros((2, 16), np.float32)
        last = np.full(2, -1, np.int32)
        for t in range(8):
            obs = rng.normal(size=(2, 3)).astype(np.float32)
            avail = np.ones((2, 2), np.float32)
            avail[rng.integers(0, 2), rng.integers(0, 2)] = 0.0
            ref = keras_step({"obs": obs, "agent_id": np.arange(2, dtype=np.int32), "last_action": last,
                              "avail_actions": avail, "hidden": hidden})
            actions, q = team.act(obs, avail, return_q=True)
            np.testing.assert_array_equal(actions, ref["action"])
            assert_close(q, ref["q_values"])
            assert_close(team.hidden, ref["next_hidden"])
            for i, single in enumerate(singles):
                assert single.act(obs[i], avail[i]) == ref["action"][i]
                assert_close(single.hidden, ref["next_hidden"][i])
            hidden, last = ref["next_hidden"], ref["action"]
            np.testing.assert_array_equal(team.last_action, last)


@pytest.mark.parametrize("batch", [1, 7])
def test_mix_parity_and_weights(batch, loaded, version_dir, saved_model):
    rng = np.random.default_rng(10 + batch)
    mixer = loaded.mixer
    qs = (rng.normal(size=(batch, 2)) * 5).astype(np.float32)
    state = rng.normal(size=(batch, 3)).astype(np.float32)
    ref = np.asarray(mixer([qs, state]))
    qs_var = tf.constant(qs)
    with tf.GradientTape() as tape:
        tape.watch(qs_var)
        q_tot = mixer([qs_var, tf.constant(state)])
    ref_grad = np.asarray(tape.gradient(q_tot, qs_var))

    feed = {"agent_qs": qs, "state": state}
    results = {
        "saved_model": saved_model.run("mix", feed)["q_tot"],
        "onnx": OnnxRunner(version_dir / "mixer.onnx", "mix").run(feed)["q_tot"],
        "onnx.reference": OnnxReferenceRunner(version_dir / "mixer.onnx", "mix").run(feed)["q_tot"],
        "runtime": Mixer(version_dir).q_tot(qs, state),
    }
    for name, value in results.items():
        assert value.shape == (batch,), name
        assert_close(value, ref, msg=name)
    sm_grad = saved_model.run("mix_grad", feed)
    q_tot_rt, grad_rt = Mixer(version_dir).weights(qs, state)
    for name, grad in [("saved_model", sm_grad["dq_tot_dq"]), ("runtime", grad_rt)]:
        assert_close(grad, ref_grad, GRAD_ATOL, GRAD_RTOL, msg=name)
        assert (grad >= 0).all(), "QMIX weights must be non-negative"
    assert_close(q_tot_rt, ref)
    single_q, single_w = Mixer(version_dir).weights(qs[0], state[0])
    assert isinstance(single_q, float) and single_w.shape == (2,)


def test_validator_passes_within_tolerance(version_dir, run_dir):
    from kqmix.export import validate_export

    report = validate_export(version_dir, run_dir=run_dir)
    assert report.reference.startswith("Keras")
    assert report.max_ratio and all(r <= 1.0 for r in report.max_ratio.values())
    assert {"agent.onnx:act:q_values", "saved_model:act:next_hidden", "onnx:mix:q_tot",
            "onnx.reference/agent.onnx:act:q_values", "onnx.reference:mix:q_tot"} <= set(report.max_abs_diff)


# --------------------------------------------------------------------------- versions


def test_interrupted_export_leaves_nothing_then_next_version(run_dir, out_dir, version_dir, monkeypatch):
    model_dir = out_dir / "two_step"
    calls = []
    real_write_onnx = exporter.write_onnx

    def failing_write_onnx(fn, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the SavedModel and agent.onnx are already on disk
            raise RuntimeError("injected failure while writing mixer.onnx")
        return real_write_onnx(fn, path, *args, **kwargs)

    monkeypatch.setattr(exporter, "write_onnx", failing_write_onnx)
    with pytest.raises(RuntimeError, match="injected"):
        exporter.export_run(run_dir, name="two_step", out=out_dir)
    assert len(calls) == 2
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # no partial "2", no temp dir

    monkeypatch.setattr(exporter, "write_onnx", real_write_onnx)
    second = exporter.export_run(run_dir, name="two_step", out=out_dir)
    assert second == model_dir / "2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]
    assert json.loads((version_dir / "metadata.json").read_text())["name"] == "two_step"  # v1 untouched


def test_publish_skips_taken_versions(tmp_path):
    model_dir = tmp_path / "m"
    (model_dir / "3").mkdir(parents=True)
    (model_dir / "3" / "x").write_text("keep")
    tmp = model_dir / ".tmp-export-a"
    tmp.mkdir()
    assert exporter._publish(tmp, model_dir) == model_dir / "4"
    assert (model_dir / "3" / "x").read_text() == "keep"


# --------------------------------------------------------------------------- validator errors


@pytest.fixture
def version_copy(version_dir, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(version_dir, copy)
    return copy


def _rewrite_checksum(version: Path, rel: str):
    meta = json.loads((version / "metadata.json").read_text())
    meta["files"][rel] = sha256_file(version / rel)
    (version / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("rel", ["agent.onnx", "mixer_grad.onnx", "variables/variables.index", "metadata.json"])
def test_validator_missing_artifact_names_file(version_copy, run_dir, rel):
    from kqmix.export import validate_export

    (version_copy / rel).unlink()
    with pytest.raises(MissingArtifactError, match=re.escape(rel)):
        validate_export(version_copy, run_dir=run_dir)


@pytest.mark.parametrize("rel", ["mixer.onnx", "variables/variables.data-00000-of-00001", "saved_model.pb"])
def test_validator_corrupt_artifact_names_file(version_copy, run_dir, rel):
    from kqmix.export import validate_export

    path = version_copy / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=re.escape(rel)) as info:
        validate_export(version_copy, run_dir=run_dir)
    assert "sha256" in str(info.value)
    # With a matching checksum the loader itself must reject the damaged ONNX file.
    if rel.endswith(".onnx"):
        path.write_bytes(b"not an onnx model")
        _rewrite_checksum(version_copy, rel)
        with pytest.raises(CorruptArtifactError, match=re.escape(rel)):
            validate_export(version_copy, run_dir=run_dir)


def test_validator_tolerance_and_missing_output(version_copy, run_dir):
    import onnx
    from onnx import numpy_helper

    from kqmix.export import validate_export

    path = version_copy / "agent.onnx"
    original = path.read_bytes()
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # a weight matrix
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] += 1e-2
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(path))
    _rewrite_checksum(version_copy, "agent.onnx")
    with pytest.raises(ToleranceError, match=r"agent\.onnx.*(q_values|next_hidden)"):
        validate_export(version_copy, run_dir=run_dir)

    path.write_bytes(original)
    model = onnx.load(str(path))
    kept = [o for o in model.graph.output if o.name != "action"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(path))
    _rewrite_checksum(version_copy, "agent.onnx")
    with pytest.raises(MissingOutputError, match=r"agent\.onnx: missing output 'action'"):
        validate_export(version_copy, run_dir=run_dir)


def _scaled_run(run_dir, tmp_path, factor):
    """A copy of `run_dir` whose Qs and Q_tot are `factor` times larger (output layers scaled)."""
    from kqmix.rundir import load_run

    copy = tmp_path / "scaled_run"
    shutil.copytree(run_dir, copy)
    loaded = load_run(copy)
    layers = [loaded.agent.fc2, loaded.mixer.hyper_w_final.out, loaded.mixer.hyper_v.out]
    for layer in layers:
        for weight in layer.weights:
            weight.assign(weight.numpy() * factor)
    loaded.model.save(copy / "model.keras")
    return copy


def test_validator_accepts_large_values(run_dir, tmp_path):
    """|Q| near 1e3: float32 rounding grows with the values, and so does the allowance."""
    from kqmix.export import validate_export

    scaled = _scaled_run(run_dir, tmp_path, 1500.0)
    version = exporter.export_run(scaled, name="scaled", out=tmp_path / "sm")
    q = DecentralisedAgents(version).act(np.eye(3, dtype=np.float32)[[0, 0]], np.ones((2, 2)), return_q=True)[1]
    assert 3e2 < np.abs(q).max() < 3e3, q
    report = validate_export(version, run_dir=scaled)
    assert report.max_abs_diff["agent.onnx:act:q_values"] > ATOL  # an absolute 1e-5 alone would refuse it
    assert all(r <= 1.0 for r in report.max_ratio.values())


def test_validator_rejects_one_weight_changed_by_1e_3(version_copy, run_dir):
    """One weight of agent.onnx's output layer scaled by (1 + 1e-3): a ToleranceError naming the element."""
    import onnx
    from onnx import numpy_helper

    from kqmix.export import validate_export

    path = version_copy / "agent.onnx"
    model = onnx.load(str(path))
    sizes = json.loads((version_copy / "metadata.json").read_text())["sizes"]
    (init,) = [i for i in model.graph.initializer
               if tuple(i.dims) == (sizes["hidden_dim"], sizes["n_actions"])]  # the (H, A) output kernel
    weights = numpy_helper.to_array(init).copy()
    weights.flat[np.argmax(np.abs(weights))] *= 1.0 + 1e-3
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(path))
    _rewrite_checksum(version_copy, "agent.onnx")
    with pytest.raises(ToleranceError, match=r"agent\.onnx \[act\]: output 'q_values' differs .* at index \[") as info:
        validate_export(version_copy, run_dir=run_dir)
    error = info.value
    assert error.abs_diff > error.allowed == pytest.approx(error.atol + error.rtol * error.magnitude)


def test_failed_export_leaves_no_model_folder(run_dir, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("injected failure in the converter")

    monkeypatch.setattr(exporter, "write_onnx", fail)
    out = tmp_path / "new" / "models"
    with pytest.raises(RuntimeError, match="injected"):
        exporter.export_run(run_dir, name="fresh", out=out)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    with pytest.raises(RuntimeError, match="injected"):
        exporter.export_run(run_dir, name="fresh", out=existing)
    assert existing.is_dir() and not any(existing.iterdir())


def test_compare_reports_shape_mismatch():
    from kqmix.export.validate import ValidationReport

    report = ValidationReport(Path("v"), "ref")
    with pytest.raises(ShapeMismatchError, match=r"agent\.onnx \[act\]: output 'q_values' has shape \(3, 2\)"):
        compare(report, "agent.onnx", "act", {"q_values": np.zeros((3, 2))},
                {"q_values": np.zeros((2, 2), np.float32)}, ATOL, RTOL, "")
    assert issubclass(ShapeMismatchError, ValidationError)


# --------------------------------------------------------------------------- runtime behaviour


def test_greedy_runtime_earns_eight_on_two_step(version_dir, loaded):
    from kqmix.envs import make_env

    assert loaded.run["test_return_mean"] == 8.0
    env = make_env("two_step")
    team = DecentralisedAgents(version_dir)
    for seed in range(3):
        obs, state, avail = env.reset(seed=seed)
        team.reset()
        total, done = 0.0, False
        while not done:
            obs, state, avail, reward, terminated, truncated, _ = env.step(team.act(obs, avail))
            total += reward
            done = terminated or truncated
        assert total == 8.0


def test_runtime_input_errors(version_dir):
    team = DecentralisedAgents(version_dir)
    obs, avail = np.zeros((2, 3), np.float32), np.ones((2, 2), np.float32)
    with pytest.raises(RuntimeInputError, match=r"`obs` must have shape \(2, 3\); got \(3,\)"):
        team.act(obs[0], avail)
    with pytest.raises(RuntimeInputError, match="avail_actions"):
        team.act(obs, np.ones((2, 3)))
    with pytest.raises(RuntimeInputError, match="dtype"):
        team.act(obs.astype(str), avail)
    team.act(obs, avail)
    before_h, before_last = team.hidden, team.last_action
    with pytest.raises(NoAvailableActionError, match="agent 1 has no available action"):
        team.act(obs, np.array([[1, 0], [0, 0]], np.float32))
    np.testing.assert_array_equal(team.hidden, before_h)  # a refused step changes nothing
    np.testing.assert_array_equal(team.last_action, before_last)
    unchecked = DecentralisedAgents(version_dir, check=False)
    assert unchecked.act(obs, np.array([[1, 0], [0, 0]], np.float32)).tolist()[1] == -1
    with pytest.raises(RuntimeInputError, match="out of range"):
        SingleAgent(version_dir, 2)
    single = SingleAgent(version_dir, 0)
    with pytest.raises(NoAvailableActionError, match="agent 0"):
        single.act(obs[0], np.zeros(2))
    assert single.act([0.0, 1.0, 0.0]) in (0, 1)  # lists and a missing mask are accepted
    with pytest.raises(RuntimeInputError, match="agent_qs"):
        Mixer(version_dir).q_tot(np.zeros(3), np.zeros(3))
    with pytest.raises(MissingArtifactError, match="metadata.json"):
        DecentralisedAgents(version_dir.parent)


# --------------------------------------------------------------------------- CLI and docs


def test_cli_export_and_validate(run_dir, tmp_path, version_dir, capsys):
    from kqmix.export.cli import add_commands

    parser = argparse.ArgumentParser(prog="kqmix")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["validate", str(version_dir), "--run", str(run_dir)])
    assert args.func(args) == 0
    assert "OK" in capsys.readouterr().out

    broken = tmp_path / "broken" / "1"
    shutil.copytree(version_dir, broken)
    (broken / "mixer.onnx").unlink()
    args = parser.parse_args(["validate", str(broken), "--run", str(run_dir)])
    assert args.func(args) == 1
    assert "MissingArtifactError" in capsys.readouterr().err

    args = parser.parse_args(["export", str(run_dir), "--name", "cli", "--out", str(tmp_path / "sm"), "--check"])
    assert args.func(args) == 0
    assert (tmp_path / "sm" / "cli" / "1" / "agent.onnx").is_file()
    assert "validated" in capsys.readouterr().out


def _doc_json(marker: str):
    text = (ROOT / "docs" / "deployment.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```json\n(.*?)```", text, re.S)
    assert match, f"no JSON block after <!-- {marker} --> in docs/deployment.md"
    return json.loads(match.group(1))


def test_documented_rest_examples_match_saved_model():
    """The TF Serving request/response JSON in docs/deployment.md, run through the shipped SavedModel."""
    runner = SavedModelRunner(SHIPPED)
    try:
        for name in ("act", "mix"):
            request, response = _doc_json(f"{name}-request"), _doc_json(f"{name}-response")
            assert request["signature_name"] == name
            inputs, outputs = spec.SIGNATURES[name]
            assert set(request["inputs"]) == set(inputs)
            feed = {k: np.asarray(v, dtype=inputs[k][0]) for k, v in request["inputs"].items()}
            got = runner.run(name, feed)
            expected = response["outputs"]
            if len(outputs) == 1:  # TF Serving answers a single output with the bare list
                expected = {next(iter(outputs)): expected}
            assert set(expected) == set(outputs)
            for key, value in expected.items():
                assert_close(got[key], np.asarray(value), msg=key)
    finally:
        runner.close()


def test_shipped_example_is_valid():
    from kqmix.export import validate_export

    meta = json.loads((SHIPPED / "metadata.json").read_text())
    assert meta["evaluation"]["test_return_mean"] == 8.0
    report = validate_export(SHIPPED, batch_sizes=(1, 3), steps=5)
    assert report.max_abs_diff
