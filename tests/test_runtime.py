"""The TensorFlow-free runtime (`kqmix_runtime`), as a robot installs it.

The runtime distribution's wheel is built from `runtime/` and installed into a
fresh virtual environment that has no TensorFlow; there it plays the QMIX
paper's two-step game from the shipped example to the optimal return 8.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "two_step" / "1"

PLAY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    try:
        import tensorflow  # noqa: F401
    except ImportError:
        tensorflow_missing = True
    else:
        tensorflow_missing = False

    import kqmix_runtime
    from kqmix_runtime import DecentralisedAgents, Mixer, SingleAgent
    from kqmix.envs import make_env  # numpy only: the game, from the source tree

    version = sys.argv[1]
    team, mixer = DecentralisedAgents(version), Mixer(version)
    singles = [SingleAgent(version, i) for i in range(team.n_agents)]
    env = make_env("two_step")
    returns, weights, agree = [], [], True
    for seed in range(3):
        obs, state, avail = env.reset(seed=seed)
        team.reset()
        for s in singles:
            s.reset()
        total, done = 0.0, False
        while not done:
            actions, q = team.act(obs, avail, return_q=True)
            agree &= [s.act(obs[i], avail[i]) for i, s in enumerate(singles)] == actions.tolist()
            weights.extend(mixer.weights(q[range(len(actions)), actions], state)[1].tolist())
            obs, state, avail, reward, terminated, truncated, _ = env.step(actions)
            total += reward
            done = terminated or truncated
        returns.append(total)
    print(json.dumps({
        "tensorflow_missing": tensorflow_missing,
        "tensorflow_loaded": "tensorflow" in sys.modules,
        "runtime_file": kqmix_runtime.__file__,
        "prefix": sys.prefix,
        "returns": returns,
        "singles_agree": bool(agree),
        "min_weight": min(weights),
    }))
    """
)


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp: Path, name: str, project: Path, parts: list[str]) -> Path:
    """The wheel of the distribution in `project`, built from a copy of its `parts` (setuptools
    writes build/ and *.egg-info/ next to the sources)."""
    src = tmp / f"src_{name}"
    src.mkdir()
    for part in parts:
        if (project / part).is_dir():
            shutil.copytree(project / part, src / part,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        else:
            shutil.copy(project / part, src / part)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist"), str(src)])
    (wheel,) = (tmp / "dist").glob(f"{name}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def runtime_wheel(tmp_path_factory):
    return _build_wheel(tmp_path_factory.mktemp("runtime_wheel"), "kqmix_runtime", ROOT / "runtime",
                        ["pyproject.toml", "README.md", "kqmix_runtime"])


def test_kqmix_depends_on_the_runtime_at_its_version_and_ships_none_of_its_files(runtime_wheel, tmp_path):
    kqmix_wheel = _build_wheel(tmp_path, "kqmix", ROOT, ["pyproject.toml", "README.md", "kqmix", "export"])
    files = {w: {n for n in zipfile.ZipFile(w).namelist() if ".dist-info/" not in n}
             for w in (kqmix_wheel, runtime_wheel)}
    assert files[runtime_wheel] and files[kqmix_wheel]
    assert not files[kqmix_wheel] & files[runtime_wheel]  # pip never installs one file from both
    version = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["project"]["version"]
    with zipfile.ZipFile(kqmix_wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    assert f"Requires-Dist: kqmix-runtime=={version}" in requires


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory, runtime_wheel):
    """A virtual environment with only the kqmix-runtime wheel (and its numpy, onnxruntime)."""
    tmp = tmp_path_factory.mktemp("runtime")
    _run([sys.executable, "-m", "venv", str(tmp / "venv")])
    python = tmp / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(runtime_wheel)])
    return python


def test_wheel_holds_only_the_runtime(runtime_venv):
    result = _run([str(runtime_venv), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    installed = {p["name"].lower() for p in json.loads(result.stdout)}
    assert {"kqmix-runtime", "numpy", "onnxruntime"} <= installed
    assert not {"tensorflow", "keras", "kqmix", "tf2onnx"} & installed
    requires = _run([str(runtime_venv), "-c", "from importlib.metadata import requires; "
                     "print(requires('kqmix-runtime'))"]).stdout
    assert "ai-edge-litert>=2.0; extra == \"litert\"" in requires  # pip install 'kqmix-runtime[litert]'


def test_runtime_plays_two_step_without_tensorflow(runtime_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    no_tf = subprocess.run([str(runtime_venv), "-c", "import tensorflow"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
    assert no_tf.returncode != 0 and "No module named 'tensorflow'" in no_tf.stderr

    script = tmp_path / "play.py"
    script.write_text(PLAY)
    result = _run([str(runtime_venv), str(script), str(SHIPPED)], env={**env, "PYTHONPATH": str(ROOT)},
                  cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tensorflow_missing"] and not report["tensorflow_loaded"]
    assert Path(report["runtime_file"]).is_relative_to(report["prefix"])  # the wheel's copy, not the tree's
    assert report["returns"] == [8.0, 8.0, 8.0]
    assert report["singles_agree"]
    assert report["min_weight"] >= 0.0  # QMIX's mixing weights are non-negative


def test_kqmix_imports_do_not_load_tensorflow(tmp_path):
    """`import kqmix`, `kqmix.export` and resolving `export_run` stay TensorFlow-free (lazy modules)."""
    code = ("import sys, kqmix, kqmix.export, kqmix_runtime; "
            "assert callable(kqmix.export.export_run); "
            "print('tensorflow' in sys.modules, 'onnxruntime' in sys.modules)")
    result = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.stdout.split() == ["False", "False"]
