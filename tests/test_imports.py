"""The folders whose modules must import only downward: no circle among server/'s or tier/'s
modules (a circle means two modules own one concern). Imports inside functions and under
TYPE_CHECKING count: they are circles a reader must untangle all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparsesql"


def import_graph() -> nx.DiGraph:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


@pytest.mark.parametrize("folder", ["server", "tier"])
def test_no_import_circles(folder):
    graph = import_graph()
    inside = graph.subgraph(n for n in graph if n.startswith(f"sparsesql.{folder}."))
    circles = [sorted(c) for c in nx.strongly_connected_components(inside) if len(c) > 1]
    assert circles == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert graph.has_edge("sparsesql.server.serve", "sparsesql.server.http_api")  # imported inside a method
    assert graph.has_edge("sparsesql.server.session", "sparsesql.server.host")  # under TYPE_CHECKING
