"""Wall-clock to solve LBF, side by side: `kqmix train` (default preset) and EPyMARL's QMIX, started together.

    python benchmarks/lbf_time_to_solve.py OUT_DIR [--seeds 0,1,2] [--epymarl-set KEY=VALUE ...]

Needs the side-by-side kit's reference side (`../shared/bench/setup.sh PYMARL_GIT EPYMARL_GIT`): a
PyTorch venv and EPyMARL's sources in `$KQ_BENCH_DIR` (default `~/.cache/kqmix-bench`), run unmodified.

For each seed both trainings start at the same moment on `Foraging-8x8-2p-2f-coop-v3` (50-step
episodes), each testing 32 greedy episodes every 10k env steps; the figure is the wall-clock from
the start to the end of the first greedy test whose mean team return is at least 0.9 (the return
is the sum of the two agents' rewards, at most 1, on both sides). Every output line and every
kqmix metrics row is timestamped as it arrives; EPyMARL's test returns are read from its sacred
`info.json` and placed in time by its console's `t_env: T / ...` line (the test runs right after it,
so the next line marks its end). A side that solves is stopped, so the other runs alone from then on
(which only helps the slower side). A side still unsolved at `--max-minutes` is stopped and
reported as "> that time"; with `--stop-at-ratio R`, EPyMARL is also stopped once it has run R
times as long as kqmix took to solve (enough to show that kqmix's time is at most 1/R of its own),
and reported as "> that time". Writes OUT_DIR/time_to_solve.json and prints one line per seed.

EPyMARL's settings: its `qmix.yaml` with the GRU agent, plus `--epymarl-set` overrides (the
hyperparameters its paper tuned for QMIX on LBF; see docs/results.md for the ones used).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kqmix.provenance import source_revision

TASK = "Foraging-8x8-2p-2f-coop-v3"
SOLVED = 0.9
TEST_INTERVAL, TEST_EPISODES = 10_000, 32


class Side:
    """One training process whose output lines are kept with their arrival times."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict, log: Path):
        self.name, self.lines, self.solved_at, self.log = name, [], None, log.open("w")
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self.log.write(line)
            self.log.flush()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.reader.join(10)


def kqmix_side(run_dir: Path, seed: int, log: Path) -> Side:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return Side("kqmix", ["kqmix", "train", "--set", f"seed={seed}", "--set", f"test_interval={TEST_INTERVAL}",
                          "--set", f"test_nepisode={TEST_EPISODES}", "--quiet", "--run-dir", str(run_dir)],
                Path.cwd(), env, log)


def epymarl_side(bench: Path, seed: int, overrides: list[str], log: Path) -> Side:
    env = {**os.environ, "PYTHONPATH": str(bench / "stubs"), "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    args = [str(bench / "venv" / "bin" / "python"), "src/main.py", "--config=qmix", "--env-config=gymma", "with",
            "env_args.time_limit=50", f"env_args.key=lbforaging:{TASK}", "use_rnn=True", "use_cuda=False",
            f"seed={seed}", f"test_interval={TEST_INTERVAL}", f"test_nepisode={TEST_EPISODES}",
            f"log_interval={TEST_INTERVAL}", "runner_log_interval=10000", "learner_log_interval=10000",
            "t_max=4050000", *overrides]
    return Side("epymarl", args, bench / "src_epymarl", env, log)


def kqmix_solved(arrivals: dict) -> float | None:
    """Arrival time of kqmix's first greedy test ≥ SOLVED (rows timestamped by `poll_metrics`)."""
    for t_env, (arrived, value) in sorted(arrivals.items()):
        if value is not None and value >= SOLVED:
            return arrived
    return None


def poll_metrics(run_dir: Path, arrivals: dict) -> None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    now = time.monotonic()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("test_return_mean") is not None and row["test_t_env"] not in arrivals:
            arrivals[row["test_t_env"]] = (now, row["test_return_mean"])


def epymarl_info(bench: Path, side: Side) -> dict | None:
    ids = [m.group(1) for _, line in side.lines for m in [re.search(r'Started run with ID "(\d+)"', line)] if m]
    if not ids:
        return None
    path = bench / "src_epymarl" / "results" / "sacred" / "qmix" / f"lbforaging:{TASK}" / ids[0] / "info.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being written
        return None


def epymarl_solved(bench: Path, side: Side) -> float | None:
    """End of EPyMARL's first greedy test ≥ SOLVED: the line after the one announcing the test's t_env."""
    info = epymarl_info(bench, side)
    if not info or "test_return_mean" not in info:
        return None
    hits = [t for t, v in zip(info["test_return_mean_T"], info["test_return_mean"])
            if (v["value"] if isinstance(v, dict) else v) >= SOLVED]
    if not hits:
        return None
    lines = list(side.lines)
    for i, (_, line) in enumerate(lines):
        if re.search(rf"t_env: {hits[0]} / ", line):
            after = [a for a, text in lines[i + 1:] if "Estimated time left" not in text]
            return after[0] if after else None
    return None


def one_seed(out: Path, bench: Path, seed: int, overrides: list[str], max_minutes: float,
             stop_at_ratio: float | None) -> dict:
    run_dir = out / f"kqmix_{seed}"
    revision = source_revision()  # this seed's: the checkout may have moved since the previous seed
    start = time.monotonic()
    sides = {"kqmix": kqmix_side(run_dir, seed, out / f"kqmix_{seed}.log"),
             "epymarl": epymarl_side(bench, seed, overrides, out / f"epymarl_{seed}.log")}
    arrivals, solved = {}, {}
    deadline = max_minutes * 60

    try:
        while len(solved) < 2 and time.monotonic() - start < deadline:
            time.sleep(0.5)
            poll_metrics(run_dir, arrivals)
            for name, side in sides.items():
                if name in solved:
                    continue
                at = kqmix_solved(arrivals) if name == "kqmix" else epymarl_solved(bench, side)
                if at is not None:
                    solved[name] = at - start
                    side.stop()
                    if name == "kqmix" and stop_at_ratio:
                        deadline = min(deadline, stop_at_ratio * solved[name])
                elif side.process.poll() is not None:
                    raise SystemExit(f"{name} (seed {seed}) ended before solving; see {side.log.name}")
    finally:
        for side in sides.values():
            side.stop()
    # When a side did not solve: the moment the race was stopped (the lower bound of its time).
    result = {"seed": seed, "kqmix_revision": revision, "stopped_at_s": deadline if len(solved) < 2 else None}
    for name in sides:
        result[f"{name}_s"] = solved.get(name)
    info = epymarl_info(bench, sides["epymarl"]) or {}
    tests = [v["value"] if isinstance(v, dict) else v for v in info.get("test_return_mean", [])]
    if tests:  # how far EPyMARL had come: its greedy tests, by env step
        result["epymarl_tests"] = {"t_env": info["test_return_mean_T"], "test_return_mean": tests}
    if result["kqmix_s"] and result["epymarl_s"]:
        result["ratio"] = result["kqmix_s"] / result["epymarl_s"]
    elif result["kqmix_s"]:
        result["ratio_below"] = result["kqmix_s"] / deadline
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epymarl-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-minutes", type=float, default=90.0)
    parser.add_argument("--stop-at-ratio", type=float, default=None, metavar="R",
                        help="stop EPyMARL, unsolved, once it has run R times kqmix's time to solve")
    args = parser.parse_args()
    bench = Path(os.environ.get("KQ_BENCH_DIR", Path.home() / ".cache" / "kqmix-bench"))
    if not (bench / "src_epymarl").is_dir():
        raise SystemExit(f"no EPyMARL sources in {bench}: run ../shared/bench/setup.sh PYMARL_GIT EPYMARL_GIT first")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in map(int, args.seeds.split(",")):
        result = one_seed(out, bench, seed, args.epymarl_set, args.max_minutes, args.stop_at_ratio)
        results.append(result)
        fmt = lambda s: f"{s / 60:.1f} min" if s else f"> {result['stopped_at_s'] / 60:.1f} min"  # noqa: E731
        ratio = (f"{result['ratio']:.2f}" if "ratio" in result
                 else f"< {result['ratio_below']:.2f}" if "ratio_below" in result else "n/a")
        print(f"seed {seed}: kqmix {fmt(result['kqmix_s'])}, EPyMARL {fmt(result['epymarl_s'])}, ratio {ratio}",
              flush=True)
        (out / "time_to_solve.json").write_text(json.dumps(
            {"task": TASK, "threshold": SOLVED, "test_interval": TEST_INTERVAL, "test_episodes": TEST_EPISODES,
             "epymarl_overrides": args.epymarl_set, "runs": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
