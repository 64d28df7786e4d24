"""Phrases and the search syntax inside SPARSE (issue 35): every document a brute-force
positional matcher written here finds and no other, on generated texts and on CISI, from SQL and
from the memory tier; the syntax's table of docs/dialect.md, each row a test; its errors; and
collections made before positions were stored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import psycopg
import pytest

import sparsesql
from sparsesql.analysis import STOPWORDS_EN, TOKEN, stems
from sparsesql.errors import CheckError
from sparsesql.lang.search_syntax import SyntaxProblem, parse

WORDS = "war of the worlds alpha beta gamma delta query expansion search engine".split()
DIM = 4
CISI = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "cisi"


def tokens(text: str) -> list[str | None]:
    """A text's tokens in order: a term (stemmed), or None for a stopword: the positions, from the
    definition (every run of two or more word characters, lowercased, is one place)."""
    words = TOKEN.findall(text.lower())
    kept = stems([w for w in words if w not in STOPWORDS_EN])
    it = iter(kept)
    return [None if w in STOPWORDS_EN else next(it) for w in words]


def phrase_places(phrase: str) -> list[tuple[str, int]]:
    places = [(t, i) for i, t in enumerate(tokens(phrase)) if t is not None]
    return [(t, i - places[0][1]) for t, i in places] if places else []


def holds(fields: list[str], phrase: str, slop: int = 0) -> bool:
    """Brute force: some field holds the phrase's terms in order, each gap at least the
    phrase's, all gaps together at most `slop` longer, tried over every choice of places."""
    places = phrase_places(phrase)
    if len(places) == 1:
        return any(places[0][0] in tokens(f) for f in fields)
    for text in fields:
        seq = tokens(text)

        def chain(j: int, previous: int, start: int) -> bool:
            if j == len(places):
                return previous - start - places[-1][1] <= slop
            gap = places[j][1] - places[j - 1][1]
            return any(seq[p] == places[j][0] and chain(j + 1, p, start) for p in range(previous + gap, len(seq)))

        if any(seq[p] == places[0][0] and chain(1, p, p) for p in range(len(seq))):
            return True
    return False


@pytest.fixture(scope="module")
def generated(dsn):
    rng = np.random.default_rng(35)
    docs = [{"id": f"g{i:03d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))),
             "body": " ".join(rng.choice(WORDS, size=int(rng.integers(4, 18)))), "vector": rng.standard_normal(DIM).tolist()}
            for i in range(300)]
    docs[0]["title"], docs[0]["body"] = "war of the", "worlds beta"  # a phrase across the two fields: no match
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("phrase_docs", if_exists=True)
        db.create_collection("phrase_docs", {"title": "text", "body": "text"}, dense="none", dim=DIM).add(docs)
        yield docs
        db.drop_collection("phrase_docs", if_exists=True)


def connect(dsn: str, tier: bool, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    return sparsesql.connect(dsn, sparse_tier=tier, dense_tier=tier)


def found(db, collection: str, text: str, limit: int = 10_000) -> dict[str, float]:
    rows = db.query(f"SELECT id, score FROM {collection} SEARCH SPARSE(:q, syntax => 'web') LIMIT {limit}", q=text)
    return {r.id: r.score for r in rows}


PHRASES = ['"war of the worlds"', '"query expansion"', '"alpha beta gamma"', '"search engine"~2', '"beta alpha"~3',
           '"worlds war"', '"delta delta"', '"expansion query search"~4', '"war worlds"~1']


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
def test_phrases_find_what_the_brute_force_matcher_finds_with_the_bag_of_words_scores(dsn, generated, tmp_path, monkeypatch, tier):
    with connect(dsn, tier, tmp_path, monkeypatch) as db:
        for written in PHRASES:
            m = re.fullmatch(r'"([^"]*)"(?:~(\d+))?', written)
            phrase, slop = m.group(1), int(m.group(2) or 0)
            expected = {d["id"] for d in generated if holds([d["title"], d["body"]], phrase, slop)}
            got = found(db, "phrase_docs", written)
            assert set(got) == expected, written
            bag = found(db, "phrase_docs", phrase)
            assert got == pytest.approx({i: bag[i] for i in got}, rel=1e-12), written
        assert "g000" not in found(db, "phrase_docs", '"war of the worlds"')  # the fields' break stops it


@pytest.mark.parametrize("tier", [False, True], ids=["sql", "memory tier"])
def test_exclusions_and_or_groups(dsn, generated, tmp_path, monkeypatch, tier):
    def terms(d):
        return set(tokens(d["title"] + " " + d["body"]))

    with connect(dsn, tier, tmp_path, monkeypatch) as db:
        got = found(db, "phrase_docs", "alpha -beta")
        assert set(got) == {d["id"] for d in generated if "alpha" in terms(d) and "beta" not in terms(d)}
        got = found(db, "phrase_docs", 'gamma -"search engine"')
        assert set(got) == {d["id"] for d in generated if "gamma" in terms(d) and not holds([d["title"], d["body"]], "search engine")}
        got = found(db, "phrase_docs", '"query expansion" OR "search engine" delta')
        assert set(got) == {d["id"] for d in generated if holds([d["title"], d["body"]], "query expansion")
                            or holds([d["title"], d["body"]], "search engine")}
        bag = found(db, "phrase_docs", "query expansion search engine delta")
        assert got == pytest.approx({i: bag[i] for i in got}, rel=1e-12)


def test_memory_tier_equals_sql_with_a_filter_and_pages(dsn, generated, tmp_path, monkeypatch):
    statement = "SELECT id, score FROM phrase_docs SEARCH SPARSE(:q, syntax => 'web') WHERE id > 'g100' LIMIT 7 OFFSET 3"
    for text in ['"alpha beta" -"query expansion"', '-"delta war" war', '"search engine"~1 OR worlds query', 'war alpha -delta -gamma']:
        with connect(dsn, False, tmp_path, monkeypatch) as db:
            sql_rows = db.query(statement, q=text)
        with connect(dsn, True, tmp_path, monkeypatch) as db:
            tier_rows = db.query(statement, q=text)
            plan = db.explain(statement, analyze=True, q=text)
        assert [r.id for r in tier_rows] == [r.id for r in sql_rows] and len(sql_rows) > 0, text
        assert "syntax: [sparse]" in plan and "memory tier not used" not in plan, plan
        assert ("from the postings in memory" in plan) == (text == 'war alpha -delta -gamma'), plan


@pytest.mark.skipif(not (CISI / "corpus.jsonl").exists(), reason="CISI is in ../shared/data/beir/cisi (the shared folder beside the clone)")
def test_phrases_on_cisi_equal_the_brute_force_matcher(dsn, tmp_path, monkeypatch):
    docs = [json.loads(line) for line in (CISI / "corpus.jsonl").open()]
    rows = [{"id": d["_id"], "title": d.get("title", ""), "text": d["text"], "vector": [1.0, 0.0]} for d in docs]
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("phrase_cisi", if_exists=True)
        db.create_collection("phrase_cisi", {"title": "text", "text": "text"}, dense="none", dim=2).add(rows)
    try:
        for tier in (False, True):
            with connect(dsn, tier, tmp_path, monkeypatch) as db:
                for written, phrase, slop in [('"information retrieval"', "information retrieval", 0),
                                              ('"retrieval of information"', "retrieval of information", 0),
                                              ('"library science"~2', "library science", 2),
                                              ('"the use of computers"', "the use of computers", 0),
                                              ('"indexing language"~5', "indexing language", 5)]:
                    expected = {d["id"] for d in rows if holds([d["title"], d["text"]], phrase, slop)}
                    assert set(found(db, "phrase_cisi", written)) == expected and expected, written
    finally:
        with sparsesql.connect(dsn, sparse_tier=False) as db:
            db.drop_collection("phrase_cisi", if_exists=True)


# The table of docs/dialect.md's "Search syntax": input -> (scored words, required groups, excluded).
SYNTAX = [
    ("query expansion", ("query expansion", (), ())),
    ('"query expansion"', ("query expansion", (('"query expansion"',),), ())),
    ('"query expansion" medical', ("query expansion medical", (('"query expansion"',),), ())),
    ('"query expansion"~3', ("query expansion", (('"query expansion"~3',),), ())),
    ("feedback -medical", ("feedback", (), ("medical",))),
    ('feedback -"query expansion"', ("feedback", (), ('"query expansion"',))),
    ('"query expansion" OR "relevance feedback"', ("query expansion relevance feedback",
                                                   (('"query expansion"', '"relevance feedback"'),), ())),
    ('"query expansion" OR feedback', ("query expansion feedback", (('"query expansion"', "feedback"),), ())),
    ("sparse OR dense", ("sparse OR dense", (), ())),
    ("covid-19 treatment", ("covid-19 treatment", (), ())),
    ("OR sparse", ("OR sparse", (), ())),
    ('say "hi" - there', ("say hi - there", (('"hi"',),), ())),
]


@pytest.mark.parametrize("text,meaning", SYNTAX, ids=[t for t, _ in SYNTAX])
def test_the_syntax_table(text, meaning):
    read = parse(text)

    def written(u):
        return f'"{u.text}"' + (f"~{u.slop}" if u.slop else "") if u.phrase else u.text

    got = (read.scored, tuple(tuple(written(u) for u in g) for g in read.required), tuple(written(u) for u in read.excluded))
    assert got == meaning


@pytest.mark.parametrize("text,offset,message", [
    ('"query expansion', 0, "never closed"),
    ('feedback "query', 9, "never closed"),
    ('"a b"~', 5, "takes a number"),
    ('"a b"~101', 6, "at most 100"),
    ("-medical OR feedback", 1, "cannot be one of them"),
])
def test_syntax_errors_say_where(text, offset, message):
    with pytest.raises(SyntaxProblem, match=message) as caught:
        parse(text)
    assert caught.value.offset == offset


def test_errors_point_inside_the_string_and_leave_the_rest_alone(dsn, generated):
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        with pytest.raises(CheckError) as caught:
            db.query("SELECT id FROM phrase_docs SEARCH SPARSE('alpha ''x'' \"beta', syntax => 'web') LIMIT 3")
        assert caught.value.column == len("SELECT id FROM phrase_docs SEARCH SPARSE('alpha ''x'' ") + 1
        assert "never closed" in str(caught.value) and "character 11 of the search text" in str(caught.value)
        with pytest.raises(CheckError, match="character 7") as caught:
            db.query("SELECT id FROM phrase_docs SEARCH SPARSE(:q, syntax => :s) LIMIT 3", q='alpha "beta', s="web")
        with pytest.raises(CheckError, match="syntax => expects one of web, plain"):
            db.query("SELECT id FROM phrase_docs SEARCH SPARSE('alpha', syntax => 'lucene') LIMIT 3")
        plain = found(db, "phrase_docs", "alpha beta")
        for written in ("syntax => 'plain'", ""):  # plain words are the default: quotes in prose are quotations
            rows = db.query(f"SELECT id, score FROM phrase_docs SEARCH SPARSE('\"alpha -beta'{', ' if written else ''}{written}) LIMIT 10000")
            assert {r.id: r.score for r in rows} == plain


def test_a_collection_made_before_positions_refuses_phrases_and_says_how(dsn):
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("phrase_old", if_exists=True)
        db.create_collection("phrase_old", {"title": "text"}, dense="none", dim=2).add(
            [{"id": "a", "title": "query expansion works", "vector": [1, 0]}, {"id": "b", "title": "expansion of the query", "vector": [0, 1]}])
    with psycopg.connect(dsn, autocommit=True) as conn:  # as the catalog of an older version holds it
        conn.execute("UPDATE sparsesql.collections SET settings = settings - 'positions' WHERE name = 'phrase_old'")
        conn.execute("ALTER TABLE sparsesql.phrase_old__docs DROP COLUMN positions")
    try:
        with sparsesql.connect(dsn, sparse_tier=False) as db:
            with pytest.raises(CheckError, match="re-create it") as caught:
                db.query("SELECT id FROM phrase_old SEARCH SPARSE('works \"query expansion\"', syntax => 'web') LIMIT 3")
            assert caught.value.column == len("SELECT id FROM phrase_old SEARCH SPARSE('works ") + 1
            assert [r.id for r in db.query("SELECT id FROM phrase_old SEARCH SPARSE('query -works', syntax => 'web') LIMIT 3")] == ["b"]
            assert len(db.query("SELECT id FROM phrase_old SEARCH SPARSE('\"query expansion\"') LIMIT 3")) == 2
            db.collection("phrase_old").add([{"id": "c", "title": "more query expansion", "vector": [1, 1]}])
    finally:
        with sparsesql.connect(dsn, sparse_tier=False) as db:
            db.drop_collection("phrase_old", if_exists=True)


def test_long_sloppy_phrases_over_repetitive_text_match_as_the_brute_force_does(dsn):
    """A phrase's work grows with its length, not with the product of its terms' places: 200
    alternating words against a 200-word document of the same two words, slop 100."""
    text = "alpha beta " * 100
    with sparsesql.connect(dsn, sparse_tier=False) as db:
        db.drop_collection("phrase_long", if_exists=True)
        db.create_collection("phrase_long", {"title": "text"}, dense="none", dim=2).add([{"id": "a", "title": text, "vector": [1, 0]}])
        try:
            # (phrase, slop, whether it matches): the text itself; sixty alphas, every other word, need 59 words between them
            for phrase, slop, match in [(text, 100, True), (text, 0, True), ("alpha " * 60, 100, True), ("alpha " * 60, 58, False),
                                        ("alpha " * 60, 59, True), ("beta alpha alpha", 1, True), ("beta alpha alpha", 0, False)]:
                got = db.query("SELECT id FROM phrase_long SEARCH SPARSE(:q, syntax => 'web') LIMIT 3", q=f'"{phrase}"~{slop}')
                assert [r.id for r in got] == (["a"] if match else []), (phrase[:20], slop)
            assert holds([text], "beta alpha alpha", 1) and not holds([text], "beta alpha alpha", 0)  # the matcher agrees where it is quick
        finally:
            db.drop_collection("phrase_long", if_exists=True)
