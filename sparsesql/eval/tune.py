"""`sparsesql tune`: choose a search's settings against relevance judgments, honestly.

A grid of settings (each a value for every `{name}` placeholder of a SEARCH template) is run over
every judged query of one or several BEIR folders. The setting reported is the grid's argmax of
nDCG@10 (the mean over collections of each collection's mean, so that a large query set does not
outvote a small one); the estimate printed beside it is k-fold cross-validated over queries:
each fold's queries are scored with the setting chosen on the other folds, which is what the
choice would be worth on queries it was not chosen on. The per-fold scores of every setting give
its error bars.

With `apply`, the winner's explicit HYBRID and PRF arguments become a collection's defaults
(catalog `extra`, see `sparsesql.lang.check.DEFAULTS_KEY`): a bare HYBRID(...) or WITH PRF on it
then uses them, and EXPLAIN says where each value came from.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sparsesql.errors import CheckError, Error
from sparsesql.eval.beir import test_queries
from sparsesql.lang import ast
from sparsesql.lang.check_core import DEFAULTS_KEY
from sparsesql.lang.parse import parse_statement

DEFAULT_TEMPLATE = "HYBRID(SPARSE(:q), DENSE(:q), fusion => {fusion}, candidates => {candidates})"
DEFAULT_GRID: dict[str, list[str]] = {
    "fusion": [
        "linear(alpha => auto)",
        *(f"linear(alpha => {a})" for a in (0.3, 0.4, 0.5, 0.6, 0.7)),
        "linear(alpha => 0.5, norm => zscore)",
        "rrf(k => 20)",
        "rrf(k => 60)",
    ],
    "candidates": ["100", "200"],
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Setting:
    """One point of the grid and what it scored."""

    values: dict[str, str]
    search: str
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)  # collection -> query -> nDCG@10
    mean: float = 0.0
    per_collection: dict[str, float] = field(default_factory=dict)
    folds: list[float] = field(default_factory=list)

    def fold_sd(self) -> float:
        """The spread of its per-fold scores (population standard deviation)."""
        return statistics.pstdev(self.folds) if len(self.folds) > 1 else 0.0


@dataclass
class TuneResult:
    """The grid's scores, the chosen setting and its cross-validated estimate."""

    collections: list[str]
    settings: list[Setting]
    chosen: Setting
    cv_estimate: float
    cv_choices: list[str]
    folds: int
    applied_to: str | None = None
    loco: list[LocoFold] = field(default_factory=list)

    def table(self) -> str:
        """Markdown: one row per setting, best first."""
        names = self.collections
        lines = [
            "| setting | nDCG@10 | " + " | ".join(names) + f" | fold sd ({self.folds} folds) |",
            "|---|---|" + "---|" * len(names) + "---|",
        ]
        for s in sorted(self.settings, key=lambda s: -s.mean):
            mark = " **(chosen)**" if s is self.chosen else ""
            cells = " | ".join(f"{s.per_collection[n]:.4f}" for n in names)
            lines.append(f"| `{describe(s.values)}`{mark} | {s.mean:.4f} | {cells} | {s.fold_sd():.4f} |")
        return "\n".join(lines)

    def summary(self) -> str:
        chosen = describe(self.chosen.values)
        return (
            f"chosen: {chosen}  (nDCG@10 {self.chosen.mean:.4f} on all queries)\n"
            f"cross-validated nDCG@10 ({self.folds} folds over queries): {self.cv_estimate:.4f}\n"
            f"search: {self.chosen.search}"
            + (f"\napplied as the defaults of collection {self.applied_to!r}" if self.applied_to else "")
            + (f"\nleave-one-collection-out: held-out nDCG@10 {statistics.fmean(f.score for f in self.loco):.4f} on average, "
               f"worst regret against the best setting there {min(f.regret for f in self.loco):+.4f}" if self.loco else "")
        )

    def loco_table(self) -> str:
        """Markdown: for each collection held out, the setting chosen on the others and its score there."""
        lines = ["| held out | chosen on the others | its nDCG@10 there | best setting there | regret |", "|---|---|---|---|---|"]
        for f in self.loco:
            lines.append(f"| {f.held_out} | `{f.chosen}` | {f.score:.4f} | {f.best:.4f} | {f.regret:+.4f} |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "collections": self.collections,
            "folds": self.folds,
            "chosen": self.chosen.values,
            "chosen_search": self.chosen.search,
            "cv_estimate": self.cv_estimate,
            "cv_choices": self.cv_choices,
            "applied_to": self.applied_to,
            "loco": [{"held_out": f.held_out, "chosen": f.chosen, "ndcg@10": f.score, "best": f.best} for f in self.loco],
            "settings": [
                {"values": s.values, "search": s.search, "ndcg@10": s.mean, "per_collection": s.per_collection, "folds": s.folds}
                for s in self.settings
            ],
        }


def describe(values: dict[str, str]) -> str:
    """A setting as `name => value, ...`, as tables and messages show it."""
    return ", ".join(f"{k} => {v}" for k, v in values.items()) or "(no placeholders)"


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """`name=value;value;...` per spec (`;` separates values, which may hold commas)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"\w+", name):
            raise CheckError(f"--grid {spec!r}: expected name=value;value;... (e.g. candidates=100;200)")
        items = [v.strip() for v in values.split(";") if v.strip()]
        if not items:
            raise CheckError(f"--grid {spec!r}: no values after '='")
        if name in grid:
            raise CheckError(f"--grid gives {name!r} twice")
        grid[name] = items
    return grid


def expand(template: str, grid: dict[str, list[str]]) -> list[Setting]:
    """Every combination of the grid's values, substituted into the template and parsed, so that
    a mistake in the template or a value is reported before anything runs."""
    names = list(dict.fromkeys(_PLACEHOLDER.findall(template)))
    missing = [n for n in names if n not in grid]
    unused = [n for n in grid if n not in names]
    if missing:
        raise CheckError(f"the search template's {{{missing[0]}}} has no values: add --grid {missing[0]}=...;...")
    if unused:
        raise CheckError(f"--grid {unused[0]}=... has no {{{unused[0]}}} in the search template: {template}")
    settings = []
    for combo in itertools.product(*(grid[n] for n in names)):
        values = dict(zip(names, combo))
        search = _PLACEHOLDER.sub(lambda m, values=values: values[m.group(1)], template)
        try:
            parse_statement(f"SELECT id FROM tune SEARCH {search} LIMIT 10")
        except Error as exc:
            raise CheckError(f"the grid's setting {describe(values)} makes a search that does not parse: {search}\n{exc}") from None
        settings.append(Setting(values, search))
    return settings


def _folds(queries: dict[str, list[str]], k: int, seed: int) -> list[dict[str, set[str]]]:
    """k folds, each a part of every collection's queries (seeded shuffle, round-robin)."""
    out: list[dict[str, set[str]]] = [{c: set() for c in queries} for _ in range(k)]
    for c, qids in queries.items():
        order = sorted(qids)
        random.Random(f"{seed}:{c}").shuffle(order)
        for i, qid in enumerate(order):
            out[i % k][c].add(qid)
    return out


def _score(s: Setting, part: dict[str, set[str]] | None) -> float:
    """Mean over collections of the mean nDCG@10 of the queries in `part` (all when None)."""
    means = []
    for c, per in s.per_query.items():
        values = [v for q, v in per.items() if part is None or q in part[c]]
        if values:
            means.append(statistics.fmean(values))
    return statistics.fmean(means) if means else 0.0


def cross_validate(settings: list[Setting], folds: int, seed: int = 0) -> tuple[float, list[str]]:
    """The k-fold estimate of choosing by argmax, and the setting each fold's training chose."""
    queries = {c: list(per) for c, per in settings[0].per_query.items()}
    parts = _folds(queries, folds, seed)
    estimate, choices = [], []
    for i, test in enumerate(parts):
        train = {c: set().union(*(p[c] for j, p in enumerate(parts) if j != i)) for c in queries}
        best = max(settings, key=lambda s: _score(s, train))  # first of equals: grid order
        estimate.append(_score(best, test))
        choices.append(describe(best.values))
    for s in settings:
        s.folds = [_score(s, p) for p in parts]
    return statistics.fmean(estimate), choices


@dataclass
class LocoFold:
    """One collection held out: the setting chosen on the others, and how it does there."""

    held_out: str
    chosen: str
    score: float  # the chosen setting's figure on the held-out collection
    best: float  # the best figure any setting of the grid reaches there

    @property
    def regret(self) -> float:
        return self.score - self.best


def leave_one_collection_out(table: dict[str, dict[str, float]], choose: Callable[[dict[str, dict[str, float]]], str]) -> list[LocoFold]:
    """What a selection rule would have chosen without each collection, scored on it.

    `table` is setting -> collection -> figure (nDCG@10, or a gain over that collection's best
    anchor); `choose` picks one setting from such a table. A rule's folds estimate what it does on
    a collection nobody tuned on, where its in-sample figures only say how well it fits these."""
    collections = list(dict.fromkeys(c for row in table.values() for c in row))
    if len(collections) < 2:
        raise CheckError("leave-one-collection-out needs at least two collections")
    folds = []
    for held in collections:
        rest = {name: {c: v for c, v in row.items() if c != held} for name, row in table.items()}
        pick = choose(rest)
        folds.append(LocoFold(held, pick, table[pick][held], max(row[held] for row in table.values())))
    return folds


def by_mean(table: dict[str, dict[str, float]]) -> str:
    """The setting with the highest mean over the collections (the first of equals)."""
    return max(table, key=lambda name: statistics.fmean(table[name].values()))


def tune(
    db,
    folders: list[str | Path],
    *,
    search: str = DEFAULT_TEMPLATE,
    grid: dict[str, list[str]] | None = None,
    folds: int = 5,
    apply: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TuneResult:
    """Run the grid over the folders' judged queries; with `apply`, store the winner as that
    collection's defaults."""
    from sparsesql.eval.run import evaluate, load_beir

    if folds < 2:
        raise CheckError(f"folds must be at least 2, got {folds}")
    settings = expand(search, DEFAULT_GRID if grid is None else grid)
    smallest = min(len(test_queries(f)) for f in folders)
    if smallest < folds:
        raise CheckError(f"{folds} folds need at least {folds} judged queries per collection; one has {smallest}")
    names = [load_beir(db, f, progress=progress) for f in folders]
    if len(set(names)) != len(names):
        raise CheckError(f"the same collection is given twice: {', '.join(names)}")
    for i, s in enumerate(settings, start=1):
        for name, folder in zip(names, folders):
            result = evaluate(db, folder, s.search, collection=name)
            s.per_query[name] = {q: m["ndcg_cut_10"] for q, m in result.per_query.items()}
            s.per_collection[name] = result.ndcg10
        s.mean = _score(s, None)
        if progress:
            print(f"[{i}/{len(settings)}] {s.mean:.4f}  {describe(s.values)}", flush=True)
    chosen = max(settings, key=lambda s: s.mean)
    estimate, choices = cross_validate(settings, folds, seed)
    result = TuneResult(names, settings, chosen, estimate, choices, folds)
    if len(names) > 1:
        result.loco = leave_one_collection_out({describe(s.values): s.per_collection for s in settings}, by_mean)
    if apply is not None:
        source = f"sparsesql tune on {', '.join(names)}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, cross-validated nDCG@10 {estimate:.4f}"
        apply_defaults(db, apply, chosen.search, source)
        result.applied_to = apply.lower()
    return result


def search_defaults(search: str) -> dict[str, dict]:
    """The explicit HYBRID and PRF arguments of a SEARCH clause, as stored defaults."""
    statement = parse_statement(f"SELECT id FROM tune SEARCH {search} LIMIT 10")
    out: dict[str, dict] = {}
    node = statement.search
    given = [*(node.args if isinstance(node, ast.Hybrid) else ()), *(statement.prf.args if statement.prf else ())]
    if any(_has_param(a.value) for a in given):
        raise CheckError("a default cannot be a parameter: write its value in the search")
    if isinstance(node, ast.Hybrid) and node.args:
        kinds = ["sparse" if isinstance(i, ast.Sparse) else "dense" for i in node.inputs]
        out["HYBRID"] = {"args": {a.name.lower(): ast.render(a.value) for a in node.args}, "inputs": kinds}
    if statement.prf is not None and statement.prf.args:
        out["PRF"] = {"args": {a.name.lower(): ast.render(a.value) for a in statement.prf.args}}
    return out


def _has_param(value: ast.ArgValue) -> bool:
    if isinstance(value, ast.Param):
        return True
    if isinstance(value, ast.ListValue):
        return any(_has_param(v) for v in value.items)
    if isinstance(value, ast.Call):
        return any(_has_param(a.value) for a in value.args)
    return False


def apply_defaults(db, collection: str, search: str, source: str) -> dict[str, dict]:
    """Store a search's HYBRID and PRF arguments as a collection's defaults, after checking that
    the search runs on it as written; returns what was stored."""
    from sparsesql.db.catalog import set_extra

    name = collection.lower()
    defaults = search_defaults(search)
    if not defaults:
        raise CheckError(f"the search names no HYBRID or PRF argument to store as a default: {search}")
    db.explain(f"SELECT id FROM {name} SEARCH {search} LIMIT 10", q="tune")
    for clause in defaults.values():
        clause["source"] = source
    set_extra(db.conn, name, DEFAULTS_KEY, defaults)
    return defaults


def clear_defaults(db, collection: str) -> None:
    """Drop a collection's tuned defaults: bare searches use the built-in ones again."""
    from sparsesql.db.catalog import set_extra

    db.collection(collection)  # an unknown collection is an error, not a silent no-op
    set_extra(db.conn, collection.lower(), DEFAULTS_KEY, {})


def write_report(result: TuneResult, out: Path, command: str) -> list[Path]:
    """<out>.md (the table), <out>.json and <out>.png (nDCG@10 per setting, folds as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    md, js, png = out.with_suffix(".md"), out.with_suffix(".json"), out.with_suffix(".png")
    loco = f"\n### Leave one collection out\n\n{result.loco_table()}\n" if result.loco else ""
    md.write_text(f"## sparsesql tune\n\n`{command}`\n\n{result.summary()}\n\n{result.table()}\n{loco}")
    js.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    ordered = sorted(result.settings, key=lambda s: -s.mean)
    errors = [s.fold_sd() / max(len(s.folds), 1) ** 0.5 for s in ordered]
    fig, axis = plt.subplots(figsize=(12, 0.32 * len(ordered) + 1.6))
    axis.errorbar(
        [s.mean for s in ordered], range(len(ordered)), xerr=errors, fmt="none", ecolor="black", capsize=3, zorder=3
    )
    axis.scatter(
        [s.mean for s in ordered], range(len(ordered)), color=["tab:orange" if s is result.chosen else "tab:blue" for s in ordered], zorder=4
    )
    axis.set_yticks(range(len(ordered)), [describe(s.values) for s in ordered], fontsize=7)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    axis.set_xlabel(f"nDCG@10 (bars: standard error over {result.folds} folds of queries)")
    axis.set_title(f"sparsesql tune: {', '.join(result.collections)}; chosen in orange; cross-validated estimate {result.cv_estimate:.4f}", fontsize=9)
    fig.tight_layout()
    fig.subplots_adjust(left=0.34)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [md, js, png]
