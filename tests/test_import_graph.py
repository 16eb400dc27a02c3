"""No import circle inside radbench/backbones/ (issue 36: hf_family <-> text), counting imports inside functions
too: a family module depends on the shared pieces (base, text, adapters, ...), never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "radbench" / "backbones"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("radbench.backbones."):
            names.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "radbench.backbones":
            names.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file())
    return names - {path.stem}


def test_backbones_has_no_import_circle():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    graph = {module: {m for m in targets if m in graph} for module, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, " -> ".join([*trail, module, target])
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
