"""SHOW GRAPH: what a built graph looks like. networkx does the analysis; the graph is read once,
so this is for inspection, not for the query path."""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo


def describe(conn: psycopg.Connection, info: CollectionInfo) -> list[tuple[str, object]]:
    """(property, value) pairs: build parameters, size, in-degree spread, components, similarity."""
    import networkx as nx  # deferred: 0.2 s of import time that only SHOW GRAPH needs

    params = info.extra.get("graph", {})
    g = nx.DiGraph()
    g.add_nodes_from(r[0] for r in conn.execute(sql.SQL("SELECT doc_id FROM {}").format(info.table("dense"))))
    edges = conn.execute(sql.SQL("SELECT src, dst, similarity FROM {}").format(info.table("graph"))).fetchall()
    g.add_weighted_edges_from(edges, weight="similarity")
    indegree = np.array([d for _, d in g.in_degree()]) if len(g) else np.zeros(1)
    sims = np.array([e[2] for e in edges]) if edges else np.zeros(1)
    components = sorted((len(c) for c in nx.weakly_connected_components(g)), reverse=True)
    return [
        ("k", params.get("k")),
        ("built_at", params.get("built_at")),
        ("method", params.get("method", "exact")),
        ("documents", g.number_of_nodes()),
        ("edges", g.number_of_edges()),
        ("in_degree_min", int(indegree.min())),
        ("in_degree_median", float(np.median(indegree))),
        ("in_degree_max", int(indegree.max())),
        ("never_a_neighbour", int((indegree == 0).sum())),
        ("components", len(components)),
        ("largest_component", components[0] if components else 0),
        ("similarity_median", round(float(np.median(sims)), 4)),
    ]
