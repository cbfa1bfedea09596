"""The deployment contract in one place: file names, signature names, tensor names.

Imported by the exporter, the validator and the TensorFlow-free runtime, so it
uses nothing but the standard library.

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width.
"""

from __future__ import annotations

FORMAT_NAME = "kqmix-export"
#: Bumped whenever a file name, tensor name or metadata key changes meaning.
FORMAT_VERSION = 1
#: ONNX opset used for every exported graph (recorded in metadata.json).
ONNX_OPSET = 17

SAVED_MODEL_FILE = "saved_model.pb"
AGENT_ONNX = "agent.onnx"
MIXER_ONNX = "mixer.onnx"
MIXER_GRAD_ONNX = "mixer_grad.onnx"
AGENT_TFLITE = "agent.tflite"
MIXER_TFLITE = "mixer.tflite"
MIXER_GRAD_TFLITE = "mixer_grad.tflite"
#: The agent with int8 weights and activations inside (float32 / int32 I/O, the same
#: signature); written by `kqmix export --quantize int8`.
AGENT_INT8_TFLITE = "agent_int8.tflite"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"

ACT = "act"
MIX = "mix"
MIX_GRAD = "mix_grad"
SERVING_DEFAULT = "serving_default"

#: name -> (dtype, shape with "B" for the free batch axis and size names for the rest)
ACT_INPUTS = {
    "obs": ("float32", ("B", "O")),
    "agent_id": ("int32", ("B",)),
    "last_action": ("int32", ("B",)),
    "avail_actions": ("float32", ("B", "A")),
    "hidden": ("float32", ("B", "H")),
}
ACT_OUTPUTS = {
    "q_values": ("float32", ("B", "A")),
    "action": ("int32", ("B",)),
    "next_hidden": ("float32", ("B", "H")),
}
MIX_INPUTS = {
    "agent_qs": ("float32", ("B", "N")),
    "state": ("float32", ("B", "S")),
}
MIX_OUTPUTS = {"q_tot": ("float32", ("B",))}
MIX_GRAD_OUTPUTS = {
    "q_tot": ("float32", ("B",)),
    "dq_tot_dq": ("float32", ("B", "N")),
}

SIGNATURES = {
    ACT: (ACT_INPUTS, ACT_OUTPUTS),
    MIX: (MIX_INPUTS, MIX_OUTPUTS),
    MIX_GRAD: (MIX_INPUTS, MIX_GRAD_OUTPUTS),
}
#: ONNX file -> signature it implements.
ONNX_FILES = {AGENT_ONNX: ACT, MIXER_ONNX: MIX, MIXER_GRAD_ONNX: MIX_GRAD}

#: Weighted QMIX's unrestricted critic Q̂*, one step of a whole team (B teams): the
#: central agent network (GRU width C, its own recurrent state) over every agent's
#: observation and last action, then the feed-forward mixer over the central Qs of
#: `actions` and the state. Agents are in index order on the N axis.
CRITIC = "critic"
CRITIC_ONNX = "critic.onnx"
CRITIC_INPUTS = {
    "obs": ("float32", ("B", "N", "O")),
    "last_action": ("int32", ("B", "N")),
    "actions": ("int32", ("B", "N")),
    "state": ("float32", ("B", "S")),
    "hidden": ("float32", ("B", "N", "C")),
}
CRITIC_OUTPUTS = {
    "q_star": ("float32", ("B",)),
    "next_hidden": ("float32", ("B", "N", "C")),
}
#: Signatures a mixer exports beside the three every version has (metadata["mixer"]["signatures"]
#: names those a version has), and their ONNX files. The runtime refuses a version that names a
#: mixer signature missing here (`errors.UnknownMixerError`): it was written by a newer kqmix.
MIXER_SIGNATURES = {CRITIC: (CRITIC_INPUTS, CRITIC_OUTPUTS)}
MIXER_ONNX_FILES = {CRITIC_ONNX: CRITIC}
#: Every signature a version may have.
ALL_SIGNATURES = {**SIGNATURES, **MIXER_SIGNATURES}
#: LiteRT (TFLite) file -> signature it implements; each file holds that one
#: signature under its name, with the SavedModel's tensor names.
TFLITE_FILES = {AGENT_TFLITE: ACT, MIXER_TFLITE: MIX, MIXER_GRAD_TFLITE: MIX_GRAD}

#: Runtime backend -> (agent file, mixer file, mixer_grad file or None). "litert-int8"
#: runs the int8 agent; its mixer is the float LiteRT one (only the agent is quantised).
ONNX_BACKEND, LITERT_BACKEND, LITERT_INT8_BACKEND = "onnx", "litert", "litert-int8"
BACKEND_FILES = {
    ONNX_BACKEND: (AGENT_ONNX, MIXER_ONNX, MIXER_GRAD_ONNX),
    LITERT_BACKEND: (AGENT_TFLITE, MIXER_TFLITE, MIXER_GRAD_TFLITE),
    LITERT_INT8_BACKEND: (AGENT_INT8_TFLITE, MIXER_TFLITE, MIXER_GRAD_TFLITE),
}
#: The pip command that brings the LiteRT interpreter to a machine with the runtime.
LITERT_INSTALL = "pip install 'kqmix-runtime[litert]'  (or 'kqmix[litert]')"

#: The `act` output `action` for a row of `avail_actions` with nothing
#: available: an action no environment accepts, rather than a silently
#: illegal 0. `kqmix_runtime.actions.masked_greedy` defines the choice.
NO_ACTION = -1

#: The `act` input `last_action` of an agent that has not acted yet (the first
#: step of an episode): its last-action one-hot is all zeros. Not `NO_ACTION`,
#: which is an output; both happen to be -1.
NO_LAST_ACTION = -1

#: Size symbol -> metadata["sizes"] key.
SIZE_KEYS = {
    "N": "n_agents",
    "A": "n_actions",
    "O": "obs_dim",
    "S": "state_dim",
    "H": "hidden_dim",
    "C": "central_hidden_dim",  # Weighted QMIX's central agent network (the critic)
}


def concrete_shape(symbolic, sizes: dict, batch=None) -> tuple:
    """Replaces the size symbols of `symbolic` by numbers from `sizes` (metadata["sizes"])."""
    return tuple(batch if dim == "B" else int(sizes[SIZE_KEYS[dim]]) for dim in symbolic)
