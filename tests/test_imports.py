"""The import graph runs one way: no module imports from a higher layer, and no two modules import
each other (directly or around a cycle). Read with `ast` from the sources; nothing is imported.

Imports under `if TYPE_CHECKING:` are left out: they name types for annotations and never run."""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import from its own layer and the layers below, never from above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),                       # errors, config, checkpoints, devices: no project imports above
    ("modules",),                     # network building blocks
    ("dataset",),                     # the dataset registry, frames, feeders, the synthetic generator
    ("evaluation",),                  # STM/CTM files and the WER scorer
    ("decoding",),                    # CTC decoding, the gloss LM, saved logits
    ("preprocess",),                  # raw downloads -> info files, gloss dict, STMs, resized frames
    ("slr_network", "vac_network", "corrnet_network"),  # the models
    ("model_building",),              # config -> model and weights, for training and inference alike
    ("inference",),                   # loading checkpoints, one video, Grad-CAM, ONNX, the web page
    ("training",),                    # building a run: devices, start-up checks, data, checkpoints
    ("seq_scripts",),                 # the training and evaluation loops
    ("main", "test_one_video", "generate_cam", "export", "app", "tune_lm"),  # the commands
)
# Folders that are not runtime code: they may import anything and nothing imports them.
OUTSIDE = ("tests", "bench", "software", "config", "docs")


def layer_of(module: str) -> int:
    """Index in LAYERS of the package or top-level module that `module` belongs to."""
    top = module.split(".")[0]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: its package {top!r} has no layer; add it to LAYERS")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every runtime .py file of the project."""
    modules = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in OUTSIDE or any(part.startswith(".") for part in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return skipped


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `path` imports anywhere in it (lazy imports inside functions too)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pkg import mod` imports the module pkg.mod when there is one
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a package: its deepest module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    modules = project_modules()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_every_runtime_module_has_a_layer():
    for name in project_modules():
        layer_of(name)


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f"{source} imports {target}" for source, targets in import_graph().items()
                    for target in targets if layer_of(target) > layer_of(source))
    assert upward == [], "\n".join(upward)


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_find_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("utils.errors") < layer_of("dataset.feeder") < layer_of("inference.loading") < layer_of("main")
    modules = project_modules()
    assert {"utils.errors", "training.run"} <= imported_modules(modules["main"], modules)
    assert "training.run" not in imported_modules(modules["seq_scripts"], modules)  # TYPE_CHECKING only
