"""The house reads top-down: front ends (CLI, API) -> reports and the tune session -> run plan and
session -> methods, benchmarks and the search -> harness -> core. No module imports one of a higher
layer, and no group of modules imports itself around a cycle (checked on the source, every import
counted, also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "editbench"
# a module's layer: its own name first, then its package's
LAYERS = {
    "editbench.core": 0,
    "editbench.harness": 1, "editbench.testing": 1,
    "editbench.methods": 2, "editbench.benchmarks": 2, "editbench.tuning": 2,
    "editbench.plan": 3, "editbench.session": 3,
    "editbench.reports": 4, "editbench.tuning_session": 4, "editbench.tracing_session": 4,
    "editbench.api": 5, "editbench.cli": 5, "editbench.__main__": 5, "editbench": 5,
}


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "editbench":  # from editbench import tuning
            found |= {f"editbench.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("editbench"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("editbench")}
    return found


def _graph() -> dict[str, set[str]]:
    return {_name(path): _imports(path) for path in ROOT.rglob("*.py")}


def test_no_import_runs_up_a_layer():
    upward = sorted(f"{module} ({_layer(module)}) imports {dep} ({_layer(dep)})"
                    for module, deps in _graph().items() if module != "editbench"  # __init__: lazy re-exports
                    for dep in deps if _layer(dep) > _layer(module))
    assert upward == []


def test_no_import_cycle():
    graph = {m: {d for d in deps if d in _graph_names()} - {m} for m, deps in _graph().items() if m != "editbench"}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return path + [module, dep]
            if dep not in state and (cycle := visit(dep, path + [module])):
                return cycle
        state[module] = 2
        return None

    cycles = [cycle for m in sorted(graph) if m not in state and (cycle := visit(m, []))]
    assert cycles == []


def _graph_names() -> set[str]:
    return {_name(path) for path in ROOT.rglob("*.py")}


def test_every_module_has_a_layer():
    assert all(_layer(m) >= 0 for m in _graph_names())
