"""The import graph: data flows one way, and reading a run never pulls in the training loop.

Every `import` in every module (at the top or inside a function) is read
with `ast`; relative imports are resolved against the module's package.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"kqmix": ROOT / "kqmix", "kqmix.export": ROOT / "export",
            "kqmix_runtime": ROOT / "runtime" / "kqmix_runtime"}
TRAINING_LOOP = "kqmix.training"


def modules() -> dict:
    """Module name -> source path for every module of the three packages."""
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set) -> set:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # The deepest known module the import names (`a.b.c` -> `a.b` if `c` is a name).
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def graph() -> dict:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_there_is_no_import_cycle():
    edges = graph()
    # A package's __init__ being imported by its own submodules is not a cycle of interest
    # (Python imports the package first anyway); every other edge counts.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_reading_a_run_does_not_import_the_training_loop():
    edges = graph()
    readers = [m for m in edges if m.startswith("kqmix.export") or m in (
        "kqmix.evaluation", "kqmix.plotting", "kqmix.rundir", "kqmix.checkpoint", "kqmix.files")]
    assert "kqmix.export.exporter" in readers and "kqmix.evaluation" in readers
    offenders = sorted(m for m in readers if TRAINING_LOOP in edges[m])
    assert not offenders, f"{offenders} import {TRAINING_LOOP}"


def test_the_runtime_depends_on_nothing_of_kqmix():
    edges = graph()
    for name, targets in edges.items():
        if name.startswith("kqmix_runtime"):
            assert all(t.startswith("kqmix_runtime") for t in targets), (name, targets)
    source = "\n".join(p.read_text() for p in PACKAGES["kqmix_runtime"].rglob("*.py"))
    assert "tensorflow" not in source.replace("TensorFlow", "") and "keras" not in source
