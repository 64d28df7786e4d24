"""Imports run only downward: each module of sparsesql belongs to a layer (its folder, or itself
at the top), the layers are written once below from the top down, and a module imports only its
own layer or the ones beneath it; no circle anywhere (a circle means two modules own one
concern). Imports inside functions and under TYPE_CHECKING count: they are edges a reader must
untangle all the same. docs/architecture.md says what each layer owns."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

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
                # `from package import module` imports the module; the package only for a name it defines
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


# From the top down; a layer holds packages (folders) or top-level modules of sparsesql.
LAYERS = [
    {"cli"},
    {"migrations"},
    {"server"},
    {"orm"},
    {"sparsesql", "database", "cluster"},  # the package's face, the Database every door adapts
    {"eval"},
    {"exec"},
    {"plan"},
    {"graph"},
    {"tier"},
    {"retrieval"},
    {"lang"},
    {"db"},
    {"encoders"},
    {"analysis", "batch_analysis"},
    {"extension"},
    {"sizes", "resources", "errors"},
]


def layer(module: str) -> int:
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "sparsesql"
    return next(i for i, names in enumerate(LAYERS) if part in names)


def upward(graph: nx.DiGraph) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in graph.edges if layer(b) < layer(a))


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if not any(m.split(".")[1:2] in ([n] for n in names) or m == "sparsesql" for names in LAYERS)] == []


def test_imports_run_only_downward():
    assert upward(import_graph()) == []


def test_no_import_circles():
    graph = import_graph()
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert circles == []


def test_a_planted_upward_import_or_circle_is_caught():
    graph = import_graph()
    graph.add_edge("sparsesql.tier.cache", "sparsesql.exec.run")  # the tier asking the executor
    assert upward(graph) == [("sparsesql.tier.cache", "sparsesql.exec.run")]
    graph.add_edge("sparsesql.exec.run", "sparsesql.tier.cache")
    assert any(len(c) > 1 for c in nx.strongly_connected_components(graph))


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert graph.has_edge("sparsesql.server.serve", "sparsesql.server.http_api")  # imported inside a method
    assert graph.has_edge("sparsesql.server.session", "sparsesql.server.host")  # under TYPE_CHECKING
