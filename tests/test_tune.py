"""`sparsesql tune` and `db.tune`: the grid's argmax is chosen, the cross-validated estimate is
the held-out score of the per-fold choices, and --apply makes the choice a collection's default
(a bare HYBRID then runs it, EXPLAIN says where it came from)."""

from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner

import sparsesql
from sparsesql.cli.main import cli
from sparsesql.errors import CheckError
from sparsesql.eval import tune as tuning
from sparsesql.eval.run import evaluate, load_beir

CODES = ["xq7k", "bz4w", "mv9t", "pl2r", "hy6d", "cn3s", "ju8f", "tw5g", "ro1m", "ev0z", "ka4p", "gi7u"]


def _beir(folder):
    """Documents known by a made-up code; each query names one code and words shared by all
    documents: exact term matching finds the answer, a language model has little to go on."""
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"record {c}", "text": f"a general report on the archive, entry {c}"} for i, c in enumerate(CODES)]
    queries = [{"_id": f"q{i}", "text": f"report archive {c}"} for i, c in enumerate(CODES)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(CODES))))
    return folder


@pytest.fixture
def tiny(tmp_path, session_db):
    folder = _beir(tmp_path / "tune-tiny")
    session_db.drop_collection("tune_tiny", if_exists=True)
    yield folder
    session_db.drop_collection("tune_tiny", if_exists=True)


TEMPLATE = "HYBRID(SPARSE(:q), DENSE(:q), fusion => {fusion})"
GRID = {"fusion": ["linear(alpha => 0.0)", "rrf(k => 60)", "linear(alpha => 1.0)"]}


def _rows(db, search: str, q: str) -> list[tuple[str, float]]:
    return [(r["id"], round(r["score"], 9)) for r in db.query(f"SELECT id, score FROM tune_tiny SEARCH {search} LIMIT 5", q=q)]


def test_tune_picks_the_grids_argmax_and_apply_changes_a_bare_hybrid(session_db, tiny):
    db = session_db
    result = db.tune([tiny], search=TEMPLATE, grid=GRID, folds=3)
    expected = {v: evaluate(db, tiny, TEMPLATE.format(fusion=v)).ndcg10 for v in GRID["fusion"]}
    best = max(GRID["fusion"], key=lambda v: expected[v])  # first of equals, as tune breaks ties
    assert result.chosen.values == {"fusion": best}
    assert {s.values["fusion"]: s.mean for s in result.settings} == pytest.approx(expected)
    assert len(result.cv_choices) == 3 and all(len(s.folds) == 3 for s in result.settings)
    assert result.cv_estimate <= max(expected.values()) + 1e-9

    bare = "HYBRID(SPARSE(:q), DENSE(:q))"
    query = "report archive mv9t"
    before = _rows(db, bare, query)
    assert before == _rows(db, "HYBRID(SPARSE(:q), DENSE(:q), fusion => linear(alpha => auto))", query)
    assert "HYBRID fusion => linear(weights => auto, norm => minmax)  (built-in default)" in db.explain(f"SELECT id FROM tune_tiny SEARCH {bare}", q=query)

    tuning.apply_defaults(db, "tune_tiny", result.chosen.search, "test")
    after = _rows(db, bare, query)
    assert after == _rows(db, result.chosen.search, query) and after != before
    plan = db.explain(f"SELECT id FROM tune_tiny SEARCH {bare}", q=query)
    assert f"HYBRID fusion => {best}  (collection default (test))" in plan
    assert "HYBRID candidates => 200  (built-in default)" in plan
    # An explicit argument still wins over the stored default.
    assert _rows(db, "HYBRID(SPARSE(:q), DENSE(:q), fusion => linear(alpha => auto))", query) == before

    tuning.clear_defaults(db, "tune_tiny")
    assert _rows(db, bare, query) == before


def test_cli_tune_prints_the_estimate_writes_the_report_and_applies(dsn, session_db, tiny, tmp_path):
    out = tmp_path / "report"
    args = ["--dsn", dsn, "tune", str(tiny), "--search", TEMPLATE, "--grid", "fusion=" + ";".join(GRID["fusion"]),
            "--folds", "3", "--apply", "tune_tiny", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "cross-validated nDCG@10 (3 folds over queries):" in result.output
    assert "applied as the defaults of collection 'tune_tiny'" in result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["chosen"]["fusion"] in GRID["fusion"] and len(report["settings"]) == 3
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(chosen)" in out.with_suffix(".md").read_text()
    info = next(c for c in session_db.collections() if c.name == "tune_tiny")
    assert info.extra["defaults"]["HYBRID"]["args"] == {"fusion": report["chosen"]["fusion"]}
    assert "sparsesql tune on tune_tiny" in info.extra["defaults"]["HYBRID"]["source"]


def test_prf_settings_are_stored_and_used_by_a_bare_with_prf(session_db, tiny):
    db = session_db
    load_beir(db, tiny)
    tuning.apply_defaults(db, "tune_tiny", "SPARSE(:q) WITH PRF(depth => 3, sparse => rm3(terms => 4, weight => 0.4))", "test")
    query = "report archive bz4w"
    assert _rows(db, "SPARSE(:q) WITH PRF", query) == _rows(db, "SPARSE(:q) WITH PRF(depth => 3, sparse => rm3(terms => 4, weight => 0.4))", query)
    plan = db.explain("SELECT id FROM tune_tiny SEARCH SPARSE(:q) WITH PRF", q=query)
    assert "PRF depth => 3  (collection default (test))" in plan
    assert "PRF sparse => rm3(terms => 4, weight => 0.4)  (collection default (test))" in plan


@pytest.mark.parametrize(
    "template, grid, message",
    [
        (TEMPLATE, {}, "the search template's {fusion} has no values"),
        (TEMPLATE, {"fusion": ["rrf()"], "depth": ["3"]}, "--grid depth=... has no {depth} in the search template"),
        (TEMPLATE, {"fusion": ["rrf("]}, "the grid's setting fusion => rrf( makes a search that does not parse"),
    ],
)
def test_a_wrong_grid_is_refused_before_anything_runs(template, grid, message):
    with pytest.raises(sparsesql.Error, match=message.replace("{", r"\{").replace("(", r"\(")):
        tuning.expand(template, grid)


@pytest.mark.parametrize("spec", ["fusion", "=1;2", "fusion="])
def test_a_malformed_grid_spec_is_refused(spec):
    with pytest.raises(sparsesql.Error, match="--grid"):
        tuning.parse_grid([spec])


def test_unknown_collections_are_refused(session_db, tiny):
    with pytest.raises(sparsesql.Error, match="nosuch"):
        tuning.clear_defaults(session_db, "nosuch")
    with pytest.raises(sparsesql.Error, match="nosuch"):
        tuning.apply_defaults(session_db, "nosuch", "HYBRID(SPARSE(:q), DENSE(:q), candidates => 100)", "test")


def test_a_parameter_cannot_become_a_default(session_db, tiny):
    load_beir(session_db, tiny)
    with pytest.raises(sparsesql.Error, match="cannot be a parameter"):
        tuning.apply_defaults(session_db, "tune_tiny", "HYBRID(SPARSE(:q), DENSE(:q), candidates => :n)", "test")


def _setting(name: str, scores: list[float]) -> tuning.Setting:
    s = tuning.Setting({"x": name}, name, per_query={"c": {f"q{i}": v for i, v in enumerate(scores)}})
    s.mean = statistics.fmean(scores)
    return s


def test_cross_validation_scores_each_fold_with_the_choice_made_without_it():
    """A setting best on every query is chosen in every fold, and the estimate is its score; a
    setting that is best overall only thanks to one query is not what the held-out folds see."""
    strong, weak = _setting("strong", [0.8] * 10), _setting("weak", [0.5] * 10)
    estimate, choices = tuning.cross_validate([weak, strong], folds=5)
    assert estimate == pytest.approx(0.8) and choices == ["x => strong"] * 5
    lucky = _setting("lucky", [0.0] * 9 + [9.0])  # mean 0.9, but 0 on 9 of 10 queries
    steady = _setting("steady", [0.6] * 10)
    estimate, _ = tuning.cross_validate([lucky, steady], folds=10)
    assert estimate < max(lucky.mean, steady.mean)


def test_leave_one_collection_out_scores_each_choice_where_it_was_not_made():
    table = {"fits two": {"a": 0.9, "b": 0.9, "c": 0.1}, "steady": {"a": 0.6, "b": 0.6, "c": 0.6}}
    assert tuning.by_mean(table) == "fits two"  # in-sample, the fitted one wins on average
    folds = tuning.leave_one_collection_out(table, tuning.by_mean)
    assert [(f.held_out, f.chosen, f.score, f.best) for f in folds] == [
        ("a", "steady", 0.6, 0.9), ("b", "steady", 0.6, 0.9), ("c", "fits two", 0.1, 0.6)]
    assert min(f.regret for f in folds) == pytest.approx(-0.5)
    with pytest.raises(CheckError, match="at least two collections"):
        tuning.leave_one_collection_out({"x": {"a": 1.0}}, tuning.by_mean)


def test_tune_over_two_collections_reports_each_left_out(session_db, tiny, tmp_path):
    other = _beir(tmp_path / "tune-tiny-b")
    session_db.drop_collection("tune_tiny_b", if_exists=True)
    try:
        result = session_db.tune([tiny, other], search=TEMPLATE, grid=GRID, folds=3)
        per = {tuning.describe(s.values): s.per_collection for s in result.settings}
        assert [f.held_out for f in result.loco] == ["tune_tiny", "tune_tiny_b"]
        for fold, (held, kept) in zip(result.loco, (("tune_tiny", "tune_tiny_b"), ("tune_tiny_b", "tune_tiny"))):
            assert fold.chosen == max(per, key=lambda name: per[name][kept])  # chosen without the held-out set
            assert fold.score == per[fold.chosen][held] and fold.best == max(p[held] for p in per.values())
        assert "leave-one-collection-out" in result.summary() and "| tune_tiny |" in result.loco_table()
    finally:
        session_db.drop_collection("tune_tiny_b", if_exists=True)
