"""Command-line hooks: `kqmix export` (SavedModel, ONNX, LiteRT) and `kqmix validate`.

The main CLI calls `add_commands(subparsers)` and then `args.func(args)`.
TensorFlow is imported inside the handlers only, so `kqmix --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from kqmix_runtime import spec
from kqmix_runtime.errors import ExportError, ValidationError

from . import validate as validate_defaults  # numpy only at import; TensorFlow loads when it runs


def add_commands(subparsers) -> None:
    """Adds the `export` and `validate` subcommands to an argparse subparsers object."""
    export = subparsers.add_parser(
        "export",
        help="export a finished run to SavedModel + ONNX + LiteRT (TF Serving layout)",
        description=(
            "Writes OUT/NAME/VERSION/ with a SavedModel (signatures act = serving_default, "
            "mix, mix_grad), agent.onnx, mixer.onnx, mixer_grad.onnx, the same three as "
            ".tflite (LiteRT, builtin ops only), metadata.json and config.json. VERSION is "
            "the next free integer; nothing is overwritten."
        ),
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `kqmix train`")
    export.add_argument("--name", default=None, help="model name (default: from the environment)")
    export.add_argument("--out", default="saved_models", help="model base directory (default: saved_models)")
    export.add_argument("--opset", type=int, default=spec.ONNX_OPSET,
                        help=f"ONNX opset (default: {spec.ONNX_OPSET})")
    export.add_argument("--check", action="store_true",
                        help="validate every artifact against the Keras model before publishing")
    export.add_argument("--no-litert", dest="litert", action="store_false",
                        help="skip the LiteRT (.tflite) files")
    export.add_argument("--quantize", choices=["int8", "int8-weights"], default=None,
                        help="also write agent_int8.tflite: int8 = int8 weights and activations calibrated "
                             "on greedy episodes of the run's environment; int8-weights = int8 weights, "
                             "float activations. Its Q error and action agreement go into metadata.json")
    export.add_argument("--int8-min-agreement", type=float, default=None,
                        help="with --check: share of agent-steps on which agent_int8.tflite must choose the "
                             "float32 agent's action (default: 0.99)")
    export.set_defaults(func=run_export)

    validate = subparsers.add_parser(
        "validate",
        help="check an exported version against its Keras model",
        description=(
            "Loads every artifact of DIR (SavedModel via the TF1 loader as TF Serving does, "
            "the ONNX files via onnxruntime) and compares them with the Keras model over "
            "recurrent rollouts with random masks."
        ),
    )
    validate.add_argument("dir", metavar="DIR", help="exported version directory, e.g. saved_models/two_step/1")
    validate.add_argument("--run", dest="run_dir", default=None,
                          help="run directory to compare with (default: the one recorded in metadata.json)")
    validate.add_argument("--atol", type=float, default=validate_defaults.ATOL,
                          help="absolute tolerance for Qs, hidden states, Q_tot "
                               f"(default: {validate_defaults.ATOL:g})")
    validate.add_argument("--rtol", type=float, default=validate_defaults.RTOL,
                          help="relative tolerance: |artifact - reference| <= atol + rtol * |reference| "
                               f"(default: {validate_defaults.RTOL:g})")
    validate.add_argument("--int8-min-agreement", type=float, default=None,
                          help="share of agent-steps on which agent_int8.tflite must choose the float32 "
                               "agent's action (default: 0.99)")
    validate.set_defaults(func=run_validate)


def run_export(args: argparse.Namespace) -> int:
    """Exit 0 when published; 2 for bad input (not a finished run, a bad name); 1 when --check fails."""
    from kqmix.rundir import RunError

    from .exporter import export_run

    try:
        path = export_run(args.run_dir, name=args.name, out=args.out, check=args.check, opset=args.opset,
                          litert=args.litert, quantize=args.quantize,
                          int8_min_agreement=args.int8_min_agreement)
    except (RunError, ExportError) as exc:
        print(f"kqmix export: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"kqmix export: not published, the check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"exported {path}" + (" (validated)" if args.check else ""))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Exit 0 when the version is valid; 1 when it is not; 2 when DIR or --run is not what it should be."""
    from pathlib import Path

    from kqmix import rundir

    from .validate import validate_export

    for name in ("atol", "rtol"):
        if not getattr(args, name) >= 0:
            print(f"kqmix validate: --{name} must be >= 0. Received: {getattr(args, name)}", file=sys.stderr)
            return 2
    if not (Path(args.dir) / spec.METADATA_FILE).is_file():
        print(f"kqmix validate: {args.dir} is not an exported version directory (no {spec.METADATA_FILE}).",
              file=sys.stderr)
        return 2
    try:
        if args.run_dir is not None:
            rundir.require_run(args.run_dir)
        report = validate_export(args.dir, run_dir=args.run_dir, atol=args.atol, rtol=args.rtol,
                                 int8_min_agreement=args.int8_min_agreement)
    except rundir.RunError as exc:
        print(f"kqmix validate: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"kqmix validate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point (`python -m kqmix.export.cli ...`)."""
    parser = argparse.ArgumentParser(prog="kqmix")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
