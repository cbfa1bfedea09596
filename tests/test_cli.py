"""The `kqmix` command line: a small run end to end, and every kind of bad input refused.

Bad input exits with code 2 and one line on stderr naming the problem, and
leaves nothing on disk: each case runs in an empty working directory (runs
go to ./runs by default) and the directories it names are compared before
and after.
"""

import json

import pytest

from kqmix.config import Config


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_kqmix_train_cli(tmp_path, kqmix):
    run_dir = tmp_path / "run"
    out = kqmix("train", "--preset", "two_step", "--set", "t_max=80", "--set", "batch_size=8",
                "--set", "test_interval=40", "--quiet", "--run-dir", run_dir)
    assert out.returncode == 0, out.stderr
    assert "Run directory" in out.stdout
    config = Config.load(run_dir / "config.json")
    assert (config.t_max, config.batch_size) == (80, 8)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["t_env"] == 80 and "loss" in rows[-1]
    assert (run_dir / "model.keras").is_file()


@pytest.fixture(scope="module")
def damaged_export(tmp_path_factory):
    """An export version directory whose metadata.json is not JSON."""
    version = tmp_path_factory.mktemp("damaged") / "m" / "1"
    version.mkdir(parents=True)
    (version / "metadata.json").write_text("{not json")
    return version


def bad_inputs(run_dir, empty, damaged):
    """(arguments, text the one-line message must contain) for every command."""
    return [
        (["train", "--preset", "two_stepp"], "Did you mean 'two_step'"),
        (["train", "--set", "bach_size=4"], "Did you mean 'batch_size'"),
        (["train", "--set", "lr=fast"], "`lr`: 'fast'"),
        (["train", "--set", "batch_size=0"], "`batch_size`"),
        (["train", "--preset", "two_step", "--set", "env_key=bogus"], "env_key='bogus'"),
        (["train", "--preset", "lbf", "--set", "env_key=Foraging-99x99-bogus-v3"], "Foraging-99x99-bogus-v3"),
        (["train", "--preset", "two_step", "--set", "env=nowhere"], "Unknown environment 'nowhere'"),
        (["train", "--resume", empty], "is not a kqmix run directory"),
        (["train", "--resume", run_dir, "--set", "lr=0.1"], "incompatible config; these keys differ: lr"),
        (["train", "--resume", run_dir, "--preset", "two_step"], "cannot be combined with --resume"),
        (["train", "--preset", "two_step", "--run-dir", run_dir], "already holds a run"),
        (["evaluate", empty], "neither a run directory"),
        (["evaluate", run_dir, "--episodes", "0"], "--episodes must be at least 1"),
        (["evaluate", damaged], "cannot parse JSON"),
        (["export", empty], "is not a kqmix run directory"),
        (["export", run_dir, "--name", "../escape"], "Invalid model name '../escape'"),
        (["validate", empty], "is not an exported version directory"),
        (["validate", damaged.parent], "is not an exported version directory"),
        (["validate", damaged, "--atol", "-1"], "--atol must be >= 0"),
        (["plot", empty], "is not a kqmix run directory"),
        (["plot", run_dir, "--out", "curves.pdf"], "must name a .png file"),
        # Sweeps: refused before Ray starts or any trial runs.
        (["sweep", "--preset", "two_step", "--grid", "lrr=1e-3,5e-4"], "Did you mean 'lr'"),
        (["sweep", "--preset", "two_step", "--grid", "lr=1e-3,fast"], "`lr`: 'fast'"),
        (["sweep", "--preset", "two_step", "--grid", "seed=1,2"], "--seeds"),
        (["sweep", "--preset", "two_step", "--seeds", "0,0"], "--seeds must list distinct integers"),
        (["sweep", "--preset", "two_stepp"], "Did you mean 'two_step'"),
        (["sweep", "--preset", "rware_tiny", "--set", "switch_env_key=rware-tiny-4ag-v2", "--set", "switch_env_at=100"],
         "Invalid value for `switch_env_key`: 'rware-tiny-4ag-v2'"),
        (["sweep", "--resume", empty], "is not a kqmix sweep directory"),
        (["sweep", "--preset", "two_step", "--address", "127.0.0.1:9"], "'127.0.0.1:9'"),
    ]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(reference_runs, damaged_export, tmp_path,
                                                            monkeypatch, capsys):
    """Every case through `kqmix.cli.main` in this process (TensorFlow is loaded once)."""
    from kqmix.cli import main

    run_dir = reference_runs["a"]
    empty = tmp_path / "empty"
    empty.mkdir()
    watched = (run_dir, empty, damaged_export.parent.parent)
    for args, message in bad_inputs(run_dir, empty, damaged_export):
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        before = [tree(p) for p in watched], (run_dir / "metrics.jsonl").read_text()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        assert code == 2, (args, captured.out, captured.err)
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, captured.err)
        assert tree(cwd) == [], (args, tree(cwd))
        assert ([tree(p) for p in watched], (run_dir / "metrics.jsonl").read_text()) == before, args
        monkeypatch.chdir(tmp_path)
        cwd.rmdir()


@pytest.mark.parametrize("case", [4, 13], ids=["train-bad-env-key", "evaluate-damaged-export"])
def test_bad_input_as_a_user_sees_it(case, reference_runs, damaged_export, tmp_path, kqmix):
    """The same, through a fresh `python -m kqmix`: no traceback, no TensorFlow chatter, one line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    args, message = bad_inputs(reference_runs["a"], empty, damaged_export)[case]
    out = kqmix(*args, cwd=empty)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    assert message in out.stderr and tree(empty) == []


def test_sweep_with_an_unreachable_address_fails_within_30_s(tmp_path, kqmix):
    """A Ray address that accepts connections but never answers (a silent socket on loopback) is
    named, with exit 2, within 30 s."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nothing ever replies
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.perf_counter()
        out = kqmix("sweep", "--preset", "two_step", "--address", address, "--out", tmp_path / "s",
                    cwd=tmp_path, timeout=60)
        assert time.perf_counter() - start < 30
    assert out.returncode == 2 and f"'{address}'" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and tree(tmp_path) == []


def test_sweep_without_ray_names_the_extra(monkeypatch, capsys, tmp_path):
    import sys

    from kqmix.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("ray", "ray.tune"):
        monkeypatch.setitem(sys.modules, name, None)  # as if `kqmix[ray]` were not installed
    assert main(["sweep", "--preset", "two_step"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'kqmix[ray]'" in err and len(err.strip().splitlines()) == 1
    assert tree(tmp_path) == []
