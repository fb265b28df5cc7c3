"""The package's layers, read from its source: each module's imports (function-level ones too)
form no circle, planners know only world models, and no module outside grasp.models asks which
kind of observation a model reads."""

from __future__ import annotations

import ast
import re

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "grasp"


def module_name(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the grasp modules it imports anywhere in its source."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_circle():
    graph, state, cycles = imports(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, f"import circles: {cycles}"


def test_planners_import_only_world_models():
    # config: the factory (names, errors); precision: the autocast dtypes (a leaf, below)
    allowed = ("grasp.planners", "grasp.models", "grasp.errors", "grasp.config", "grasp.precision")
    for module, used in imports().items():
        if module.startswith("grasp.planners"):
            outside = sorted(m for m in used if m != "grasp" and not m.startswith(allowed))
            assert not outside, f"{module} imports {outside}"


def test_leaf_modules_import_nothing_of_grasp():
    graph = imports()
    for leaf in ("grasp.errors", "grasp.precision", "grasp.utils"):
        assert not {m for m in graph[leaf] if m != "grasp"}, f"{leaf} imports {sorted(graph[leaf])}"


def test_only_world_models_know_what_kind_of_observation_they_read():
    """The model's observer and contract say what it reads; nothing else branches on a kind."""
    pattern = re.compile(r"observes_pixels|observation\s*==|==\s*[\"']pixels[\"']|PixelWorldModel\)")
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "models":
            assert not pattern.search(path.read_text()), f"{path.relative_to(REPO_ROOT)} asks a model's observation kind"
