"""LiteRT export: builtin-only files, float parity with the Keras model, the int8 agent, the runtime backend.

Uses the real converter and ai-edge-litert's interpreter (a test dependency:
a missing package fails here, it does not skip). One small two-step run is
trained once per module and exported once with `quantize="int8"`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from kqmix.export import (  # noqa: E402
    AgreementError,
    BackendNotExportedError,
    BackendUnavailableError,
    CorruptArtifactError,
    MissingOutputError,
    NoAvailableActionError,
    RuntimeInputError,
    exporter,
)
from kqmix.export import litert as litert_export  # noqa: E402
from kqmix.files import sha256_file  # noqa: E402
from kqmix_runtime import DecentralisedAgents, LiteRTModel, Mixer, SingleAgent, spec  # noqa: E402
from test_export import _keras_step, _rewrite_checksum, assert_close, loaded, run_dir  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "two_step" / "1"
TFLITE = [spec.AGENT_TFLITE, spec.MIXER_TFLITE, spec.MIXER_GRAD_TFLITE, spec.AGENT_INT8_TFLITE]


@pytest.fixture(scope="module")
def version_dir(run_dir, tmp_path_factory):  # noqa: F811
    return exporter.export_run(run_dir, name="two_step", out=tmp_path_factory.mktemp("sm"), quantize="int8")


@pytest.fixture
def version_copy(version_dir, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(version_dir, copy)
    return copy


def test_files_have_builtin_operators_only(version_dir):
    meta = json.loads((version_dir / "metadata.json").read_text())
    assert meta["litert"]["files"] == {spec.AGENT_TFLITE: "act", spec.MIXER_TFLITE: "mix",
                                       spec.MIXER_GRAD_TFLITE: "mix_grad"}
    for filename in TFLITE:
        assert meta["files"][filename] == sha256_file(version_dir / filename)
        interpreter = Interpreter(model_path=str(version_dir / filename))
        ops = [op["op_name"] for op in interpreter._get_ops_details()]
        assert ops and all(re.fullmatch(r"[A-Z][A-Z0-9_]*", op) for op in ops), ops  # builtins are UPPER_CASE
        assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE", "WHILE")], ops
        assert sorted(set(ops)) == meta["litert"]["operators"][filename]
    mixer_ops = {op["op_name"] for op in Interpreter(model_path=str(version_dir / spec.MIXER_TFLITE))._get_ops_details()}
    assert "BATCH_MATMUL" in mixer_ops  # the hypernetwork's (B, 1, N) x (B, N, E)
    int8 = Interpreter(model_path=str(version_dir / spec.AGENT_INT8_TFLITE))
    fc = [op for op in int8._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert fc and all(int8._get_tensor_details(op["inputs"][1], 0)["dtype"] == np.int8 for op in fc)


def test_signatures_keep_the_contract_names(version_dir):
    for filename, signature in {**spec.TFLITE_FILES, spec.AGENT_INT8_TFLITE: spec.ACT}.items():
        interpreter = Interpreter(model_path=str(version_dir / filename))
        inputs, outputs = spec.SIGNATURES[signature]
        assert interpreter.get_signature_list() == {
            signature: {"inputs": sorted(inputs), "outputs": sorted(outputs)}}
        runner = interpreter.get_signature_runner(signature)
        for details, documented in ((runner.get_input_details(), inputs), (runner.get_output_details(), outputs)):
            for name, (dtype, shape) in documented.items():
                assert np.dtype(details[name]["dtype"]).name == dtype, (filename, name)
                assert details[name]["shape_signature"][0] == -1 and len(details[name]["shape_signature"]) == len(shape)


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_float_act_parity_over_recurrent_rollouts(batch, loaded, version_dir):  # noqa: F811
    """agent.tflite against the Keras step over 24 steps with masks, empty rows and resets."""
    rng = np.random.default_rng(100 + batch)
    keras_step = _keras_step(loaded.agent)
    model = LiteRTModel(version_dir / spec.AGENT_TFLITE, spec.ACT)
    hidden = {k: np.zeros((batch, 16), np.float32) for k in ("keras", "litert")}
    agent_id = rng.integers(0, 2, batch).astype(np.int32)
    last_action = np.full(batch, -1, np.int32)
    for t in range(24):
        avail = (rng.random((batch, 2)) < 0.7).astype(np.float32)
        avail[np.arange(batch), rng.integers(0, 2, batch)] = 1.0
        if t % 6 == 5:
            avail[0] = 0.0
        feed = {"obs": rng.normal(size=(batch, 3)).astype(np.float32), "agent_id": agent_id,
                "last_action": last_action, "avail_actions": avail}
        ref = keras_step({**feed, "hidden": hidden["keras"]})
        got = model.run({**feed, "hidden": hidden["litert"]})
        assert got["action"].dtype == np.int32 and got["q_values"].shape == (batch, 2)
        assert_close(got["q_values"], ref["q_values"], msg=f"t={t}")
        assert_close(got["next_hidden"], ref["next_hidden"], msg=f"t={t}")
        np.testing.assert_array_equal(got["action"], ref["action"], err_msg=f"t={t}")
        assert got["action"][0] == (-1 if t % 6 == 5 else ref["action"][0])
        hidden = {"keras": ref["next_hidden"], "litert": got["next_hidden"]}
        last_action = np.where(ref["action"] >= 0, ref["action"], 0).astype(np.int32)
        reset = rng.random(batch) < 0.2
        for name in hidden:
            hidden[name] = np.where(reset[:, None], 0.0, hidden[name]).astype(np.float32)
        last_action[reset] = -1
        agent_id = np.where(reset, rng.integers(0, 2, batch), agent_id).astype(np.int32)


@pytest.mark.parametrize("batch", [1, 7])
def test_float_mix_parity(batch, loaded, version_dir):  # noqa: F811
    from kqmix.export.validate import GRAD_ATOL, GRAD_RTOL

    rng = np.random.default_rng(batch)
    qs = (rng.normal(size=(batch, 2)) * 5).astype(np.float32)
    state = rng.normal(size=(batch, 3)).astype(np.float32)
    ref = np.asarray(loaded.mixer([qs, state]))
    got = LiteRTModel(version_dir / spec.MIXER_TFLITE, spec.MIX).run({"agent_qs": qs, "state": state})
    assert_close(got["q_tot"], ref)
    q_tot, weights = Mixer(version_dir, backend="litert").weights(qs, state)
    _, onnx_weights = Mixer(version_dir).weights(qs, state)
    assert_close(q_tot, ref)
    assert_close(weights, onnx_weights, GRAD_ATOL, GRAD_RTOL)
    assert (weights >= 0).all()


def test_int8_agent_report_and_validation(version_dir, run_dir):  # noqa: F811
    from kqmix.export import validate_export

    meta = json.loads((version_dir / "metadata.json").read_text())
    report = meta["litert"]["int8"]["report"]
    source = meta["litert"]["int8"]["calibration"]["source"]
    assert re.fullmatch(r"\d+ greedy episodes of the float32 agent in two_step .*", source), source
    assert report["agent_steps"] > 0 and report["unavailable_actions"] == 0
    assert report["action_agreement"] >= litert_export.INT8_MIN_AGREEMENT, report
    assert report["int8_bytes"] == (version_dir / spec.AGENT_INT8_TFLITE).stat().st_size
    assert report["int8_bytes"] < report["float_bytes"]
    assert report["int8_return_mean"] == report["float_return_mean"] == 8.0  # the int8 agent plays the game
    assert 0.0 <= report["regret_mean"] <= report["regret_max"]
    result = validate_export(version_dir, run_dir=run_dir, batch_sizes=(1, 2), steps=8)
    assert result.litert_interpreter == "ai-edge-litert"
    assert result.int8["action_agreement"] >= litert_export.INT8_MIN_AGREEMENT
    assert {"agent.tflite:act:q_values", "agent.tflite:act:next_hidden", "litert:mix:q_tot",
            "litert:mix_grad:dq_tot_dq"} <= set(result.max_abs_diff)
    assert all(r <= 1.0 for r in result.max_ratio.values())
    assert "agent_int8.tflite" in result.summary()
    with pytest.raises(AgreementError, match=r"agent_int8\.tflite: greedy actions agree .* at least 101\.00% required"):
        validate_export(version_dir, run_dir=run_dir, batch_sizes=(1,), steps=2, int8_min_agreement=1.01)


@pytest.mark.parametrize("last_action_input", [False, True])
def test_both_one_step_graphs_are_the_agents_step(last_action_input):
    """`fused_agent_step` (float files) and `quantizable_agent_step` (full int8) compute `agent.step`."""
    from kqmix.layers import RNNAgent
    from kqmix.export.graphs import fused_agent_step, quantizable_agent_step

    n, o, a, h = 3, 7, 5, 16
    agent = RNNAgent(n_agents=n, n_actions=a, hidden_dim=h, use_agent_id=True, use_last_action=last_action_input)
    agent.build([(None, None, n, o), (None, None, n)])  # obs, last action
    rng = np.random.default_rng(0)
    for w in agent.weights:  # not the initial biases of zero: every weight matters
        w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    obs = tf.constant(rng.normal(size=(6, o)), tf.float32)
    ids = tf.constant(np.arange(6) % n, tf.int32)
    last = tf.constant(rng.integers(spec.NO_LAST_ACTION, a, 6), tf.int32)
    hidden = tf.constant(np.tanh(rng.normal(size=(6, h))), tf.float32)
    q_ref, h_ref = agent.step(obs, ids, last, hidden)
    for step in (fused_agent_step, quantizable_agent_step):
        q, next_hidden = step(agent, obs, ids, last, hidden)
        np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-5)  # float32 sums in another order
        np.testing.assert_allclose(next_hidden, h_ref, rtol=1e-5, atol=1e-5)


def test_int8_agent_keeps_input_and_state_products_apart(version_dir):
    """Full int8 quantises `quantizable_agent_step`: no `[x, h]` concatenation, so x and h get a scale each."""
    ops = litert_export.operators_of((version_dir / spec.AGENT_INT8_TFLITE).read_bytes())
    assert "CONCATENATION" not in ops
    assert "CONCATENATION" in litert_export.operators_of((version_dir / spec.AGENT_TFLITE).read_bytes())


def test_int8_weights_mode(tmp_path):
    """`quantize="int8-weights"`: int8 weights, float activations, the same file name, signature and report."""
    from kqmix.config import make_config
    from kqmix.training import train

    # GRU 32: its kernels (32 x 96) pass the converter's 1024-element floor for int8 weights.
    config = make_config("two_step", ["t_max=2000", "rnn_hidden_dim=32", "obs_last_action=True",
                                      f"runs_dir={tmp_path / 'runs'}"])
    version = exporter.export_run(train(config, preset="two_step", quiet=True).run_dir, name="w8", out=tmp_path,
                                  quantize="int8-weights")
    int8 = json.loads((version / "metadata.json").read_text())["litert"]["int8"]
    assert int8["mode"] == "int8-weights" and int8["report"]["action_agreement"] >= litert_export.INT8_MIN_AGREEMENT
    interpreter = Interpreter(model_path=str(version / spec.AGENT_INT8_TFLITE))
    fc = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    weights = [interpreter._get_tensor_details(op["inputs"][1], 0) for op in fc]
    # The converter leaves weight tensors under 1024 elements in float32 (here fc1 and fc2).
    assert {w["dtype"] for w in weights if np.prod(w["shape"]) >= 1024} == {np.int8}
    assert {w["dtype"] for w in weights if np.prod(w["shape"]) < 1024} <= {np.float32}
    assert all(interpreter._get_tensor_details(op["outputs"][0], 0)["dtype"] == np.float32 for op in fc)
    assert int8["report"]["int8_return_mean"] == 8.0
    DecentralisedAgents(version, backend="litert-int8").reset()


def test_runtime_backends_agree_over_episodes(version_dir, loaded):  # noqa: F811
    """DecentralisedAgents / SingleAgent on LiteRT float match ONNX; int8 stays available and close."""
    rng = np.random.default_rng(7)
    teams = {b: DecentralisedAgents(version_dir, backend=b) for b in ("onnx", "litert", "litert-int8")}
    singles = [SingleAgent(version_dir, i, backend="litert") for i in range(2)]
    for episode in range(3):
        for agents in (*teams.values(), *singles):
            agents.reset()
        for t in range(6):
            obs = rng.normal(size=(2, 3)).astype(np.float32)
            avail = np.ones((2, 2), np.float32)
            avail[rng.integers(0, 2), rng.integers(0, 2)] = 0.0
            out = {b: team.act(obs, avail, return_q=True) for b, team in teams.items()}
            np.testing.assert_array_equal(out["litert"][0], out["onnx"][0])
            assert_close(out["litert"][1], out["onnx"][1])
            assert_close(teams["litert"].hidden, teams["onnx"].hidden)
            for i, single in enumerate(singles):
                assert single.act(obs[i], avail[i]) == out["onnx"][0][i]
                assert_close(single.hidden, teams["onnx"].hidden[i])
            assert (avail[np.arange(2), out["litert-int8"][0]] > 0).all()
            # Re-align the int8 team on the float state so its error does not compound here.
            teams["litert-int8"].set_state(teams["onnx"].hidden, teams["onnx"].last_action)
    assert teams["litert"].backend == "litert"
    empty_row = np.array([[1, 0], [0, 0]], np.float32)
    for backend in ("litert", "litert-int8"):
        with pytest.raises(NoAvailableActionError, match="agent 1 has no available action"):
            DecentralisedAgents(version_dir, backend=backend).act(np.zeros((2, 3)), empty_row)
        unchecked = DecentralisedAgents(version_dir, backend=backend, check=False)
        assert unchecked.act(np.zeros((2, 3), np.float32), empty_row).tolist() == [0, -1]
    with pytest.raises(RuntimeInputError, match="`backend` must be one of"):
        DecentralisedAgents(version_dir, backend="tflite")


def test_damaged_tflite_is_a_named_error(version_copy, run_dir):  # noqa: F811
    from kqmix.export import validate_export

    path = version_copy / spec.AGENT_TFLITE
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"agent\.tflite.*sha256"):
        validate_export(version_copy, run_dir=run_dir)
    for damage in (b"not a tflite model", path.read_bytes()[: len(data) // 3]):
        path.write_bytes(damage)
        _rewrite_checksum(version_copy, spec.AGENT_TFLITE)
        with pytest.raises(CorruptArtifactError, match=r"agent\.tflite: the LiteRT interpreter cannot load it"):
            validate_export(version_copy, run_dir=run_dir)
        with pytest.raises(CorruptArtifactError, match=r"agent\.tflite"):
            DecentralisedAgents(version_copy, backend="litert")
    shutil.copyfile(version_copy / spec.MIXER_TFLITE, path)  # a valid file with the wrong signature
    with pytest.raises(MissingOutputError, match=r"agent\.tflite: missing signature 'act'"):
        DecentralisedAgents(version_copy, backend="litert")


def test_version_without_litert_files(run_dir, version_dir, tmp_path, monkeypatch):  # noqa: F811
    from kqmix.export import validate_export

    version = exporter.export_run(run_dir, name="old", out=tmp_path, litert=False)
    assert not list(version.glob("*.tflite")) and "litert" not in json.loads((version / "metadata.json").read_text())
    DecentralisedAgents(version).reset()  # ONNX, the default, as before
    with pytest.raises(BackendNotExportedError, match=r"agent\.tflite.*no litert files.*kqmix export RUN"):
        DecentralisedAgents(version, backend="litert")
    with pytest.raises(BackendNotExportedError, match=r"agent_int8\.tflite.*--quantize int8"):
        SingleAgent(version, 0, backend="litert-int8")
    assert "no LiteRT files" in validate_export(version, run_dir=run_dir, batch_sizes=(1,), steps=2).summary()
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # as if not installed
    with pytest.raises(BackendUnavailableError, match=re.escape("pip install 'kqmix-runtime[litert]'")):
        DecentralisedAgents(version_dir, backend="litert")


def test_failed_litert_conversion_publishes_nothing(run_dir, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    real_convert = litert_export.convert

    def failing_convert(saved_model_dir, signature):
        calls.append(signature)
        if signature == spec.MIX:  # agent.tflite is already written
            raise RuntimeError("injected failure while converting mixer.tflite")
        return real_convert(saved_model_dir, signature)

    monkeypatch.setattr(litert_export, "convert", failing_convert)
    with pytest.raises(RuntimeError, match="injected"):
        exporter.export_run(run_dir, name="atomic", out=tmp_path / "sm")
    assert calls == [spec.ACT, spec.MIX]
    assert not (tmp_path / "sm").exists()  # no version, no staging directory, no model folder


def test_shipped_example_earns_eight_through_litert():
    from kqmix.envs import make_env

    meta = json.loads((SHIPPED / "metadata.json").read_text())
    assert set(meta["litert"]["files"]) == {spec.AGENT_TFLITE, spec.MIXER_TFLITE, spec.MIXER_GRAD_TFLITE}
    env = make_env("two_step")
    for backend in ("litert",):
        team = DecentralisedAgents(SHIPPED, backend=backend)
        for seed in range(3):
            obs, state, avail = env.reset(seed=seed)
            team.reset()
            total, done = 0.0, False
            while not done:
                obs, state, avail, reward, terminated, truncated, _ = env.step(team.act(obs, avail))
                total += reward
                done = terminated or truncated
            assert total == 8.0, backend


BLOCK_IMPORTS = textwrap.dedent(
    """
    import sys

    class _Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"tensorflow", "keras", "onnxruntime", "onnx", "tf2onnx"}:
                raise ImportError(f"{name} is not installed here")

    sys.meta_path.insert(0, _Blocked())
    """
)


@pytest.mark.parametrize("marker", ["litert-runtime-example", "litert-interpreter-example"])
def test_documented_litert_examples_run_without_tensorflow_or_onnxruntime(marker, tmp_path):
    """The LiteRT examples of docs/deployment.md, run with TensorFlow and onnxruntime made unimportable."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"no python block after <!-- {marker} --> in docs/deployment.md"
    script = tmp_path / "example.py"
    script.write_text(BLOCK_IMPORTS + match.group(1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "8.0"
