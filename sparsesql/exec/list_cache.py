"""A connection's candidate lists, kept between its searches: the statements of one results page
(its rows, then its facets) run the search once."""

from __future__ import annotations

from collections import OrderedDict

from sparsesql.plan import stages as st


class ListCache:
    """A connection's candidate lists of its last searches, so that the statements of one results
    page (its rows, then its facets) run the search once. A list is kept under the collection's
    count of committed writes as the search read it, with the stage and its exact parameters: a
    write, another query or another filter is another key. Lists made inside a caller's own
    transaction are neither kept nor used: its writes could still roll back."""

    SIZE = 16

    def __init__(self) -> None:
        self.lists: OrderedDict[tuple, list[tuple[int, float]]] = OrderedDict()

    def get(self, key: tuple) -> list[tuple[int, float]] | None:
        found = self.lists.get(key)
        if found is not None:
            self.lists.move_to_end(key)
        return found

    def put(self, key: tuple, ranked: list[tuple[int, float]]) -> None:
        self.lists[key] = ranked
        self.lists.move_to_end(key)
        while len(self.lists) > self.SIZE:
            self.lists.popitem(last=False)


_CACHED = (st.Candidates, st.TierCandidates, st.TierDense)


def list_key(slots: dict, plan: st.Plan, stage: st.Stage) -> tuple | None:
    """The cache key of a stage that makes a candidate list (the search, the collection's version
    and the list's depth: its statement and parameters follow from them), or of a fusion (by the
    keys of the lists it fuses); None for any other stage, or a fusion of a list not kept."""
    if not plan.search_key:
        return None
    if isinstance(stage, st.Fuse):
        inputs = tuple(slots.get(f"key:{label}") for label in stage.labels)
        return None if None in inputs else ("Fuse", stage.out, repr(stage.fusion), inputs)
    if not isinstance(stage, _CACHED) or (isinstance(stage, st.TierDense) and stage.columns is not None):
        return None
    key = (plan.collection, plan.version, plan.search_key, type(stage).__name__, stage.label, stage.k, getattr(stage, "after", None))
    slots[f"key:{stage.label}"] = key
    return key
