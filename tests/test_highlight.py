"""HIGHLIGHT(field, ...): snippets of why a row matched (issue 34)."""

from __future__ import annotations

import html
import re

import numpy as np
import psycopg
import pytest

import sparsesql
from sparsesql.analysis import STOPWORDS_EN, analyze
from sparsesql.eval.beir import load_queries
from sparsesql.eval.run import load_beir
from sparsesql.retrieval.highlight import JOIN, SnippetStyle, lexical, passages

from .conftest import beir_dir

MARK = re.compile(r"<mark>(.*?)</mark>")


def test_marks_are_the_query_terms_as_the_analyzer_stems_them():
    text = "Retrieving documents is retrieval; the retriever retrieves. Nothing else here, nor retro."
    got = lexical(text, frozenset(analyze("retrieval")), SnippetStyle(fragments=1, size=200))
    assert MARK.findall(got) == ["Retrieving", "retrieval", "retriever", "retrieves"]  # all stem to "retriev"
    assert all(set(analyze(w)) <= set(analyze("retrieval")) for w in MARK.findall(got))


def test_passages_are_the_best_windows_in_text_order_and_a_text_without_match_shows_its_start():
    text = " ".join(["filler"] * 40 + ["sparse", "retrieval"] + ["filler"] * 40 + ["dense", "retrieval", "sparse"] + ["filler"] * 40)
    style = SnippetStyle(fragments=2, size=40)
    got = lexical(text, frozenset(analyze("sparse dense retrieval")), style)
    first, second = got.split(JOIN)
    assert text.index(first.replace("<mark>", "").replace("</mark>", "")) < text.index(second.replace("<mark>", "").replace("</mark>", ""))
    assert "<mark>dense</mark>" in second and len(second.replace("<mark>", "").replace("</mark>", "")) <= 40
    assert lexical("nothing to see " * 30, frozenset({"zebra"}), SnippetStyle(size=30)) == "nothing to see nothing to see"


def test_tags_and_html_escaping_are_applied_exactly():
    text = 'Fish & <chips> are "sparse" retrieval\'s friends'
    terms = frozenset(analyze("sparse chips"))
    raw = lexical(text, terms, SnippetStyle(tags=("[", "]")))
    assert raw == 'Fish & <[chips]> are "[sparse]" retrieval\'s friends'  # nothing escaped by default
    escaped = lexical(text, terms, SnippetStyle(tags=("<b>", "</b>"), escape="html"))
    assert escaped == "Fish &amp; &lt;<b>chips</b>&gt; are &quot;<b>sparse</b>&quot; retrieval&#x27;s friends"
    assert html.unescape(escaped.replace("<b>", "").replace("</b>", "")) == text


def test_passages_cut_at_sentences_and_words():
    text = "One short sentence. " + "word " * 50 + "end. Last one."
    parts = passages(text, 60)
    assert all(len(p) <= 60 for p in parts) and parts[0].startswith("One short sentence.")
    assert " ".join(parts).split() == text.split()


@pytest.fixture(scope="module")
def cisi_db(session_db):
    return session_db, load_beir(session_db, beir_dir("cisi"))


def test_the_marked_words_agree_with_postgres_ts_headline_on_cisi(cisi_db, dsn):
    """20 CISI queries, the top 3 documents of each: every word HIGHLIGHT marks has a query term
    as its stem, and is a lexeme of PostgreSQL's own query (plainto_tsquery('english')) unless
    PostgreSQL's longer English stopword list drops it; every word ts_headline marks in the same
    text is one HIGHLIGHT marks. The one difference is the stopword lists: PostgreSQL's has 127
    words, BM25's (bm25s, Lucene's) 33, so HIGHLIGHT also marks words that BM25 scores and
    PostgreSQL ignores: on these 20 queries (2026-12-05) been, can, do, from, have, how, other,
    what."""
    db, name = cisi_db
    queries = list(load_queries(beir_dir("cisi")).values())[:20]
    extra = set()
    with psycopg.connect(dsn) as conn:
        for q in queries:
            terms = set(analyze(q))
            rows = db.query(f"SELECT id, text, HIGHLIGHT(text, fragments => 20, size => 2000) FROM {name} SEARCH SPARSE(:q) LIMIT 3", q=q)
            for r in rows:
                ours = {w.lower() for w in MARK.findall(r.highlight_text)}
                assert ours and all(set(analyze(w)) <= terms for w in ours)
                theirs = conn.execute(
                    "SELECT ts_headline('english', %s, plainto_tsquery('english', %s), 'HighlightAll=true, StartSel=<mark>, StopSel=</mark>')",
                    (r.text, q),
                ).fetchone()[0]
                marked = {w.lower() for w in MARK.findall(theirs)}
                assert marked <= ours, (q, marked - ours)
                lexemes = {row[0] for row in conn.execute("SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))", (q,))}
                for w in ours - marked:
                    pg = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", (w,)).fetchone()[0]
                    assert pg == [] or not set(pg) <= lexemes, (q, w)  # dropped as a stopword by PostgreSQL
                    extra.add(w)
    assert extra and not extra & STOPWORDS_EN, extra


def test_the_dialect_highlights_every_kind_of_search(cisi_db):
    db, name = cisi_db
    q = "computerized retrieval of library catalogs"
    terms = set(analyze(q))
    for search in ("SPARSE(:q)", "HYBRID(SPARSE(:q), DENSE(:q))", "HYBRID(SPARSE(:q), DENSE(:q)) WITH PRF", "SPARSE(:q) DIVERSIFY BY MMR"):
        rows = db.query(f"SELECT id, HIGHLIGHT(text, fragments => 2, size => 100, tags => ['<em>', '</em>']), score FROM {name} SEARCH {search} LIMIT 5", q=q)
        assert list(rows[0]) == ["id", "highlight_text", "score"], search
        for r in rows:
            marked = re.findall(r"<em>(.*?)</em>", r.highlight_text)
            assert all(set(analyze(w)) <= terms for w in marked), search
            assert len(r.highlight_text.split(JOIN)) <= 2
    # a DENSE-only search has no terms: the passage nearest the query vector, unmarked
    dense = db.query(f"SELECT id, text, HIGHLIGHT(text, fragments => 1, size => 120) FROM {name} SEARCH DENSE(:q) LIMIT 3", q=q)
    for r in dense:
        assert "<mark>" not in r.highlight_text and r.highlight_text in r.text and len(r.highlight_text) <= 120


def test_prf_expansion_terms_are_marked_apart(cisi_db, dsn):
    """After WITH PRF, the words of RM3's expansion terms get prf_tags: each is a term the
    feedback statement added (read with the same parameters), none is a query term."""
    db, name = cisi_db
    q = "computerized information retrieval"
    terms = set(analyze(q))
    rows = db.query(f"SELECT id, HIGHLIGHT(text, fragments => 3, size => 200, prf_tags => ['«', '»']) FROM {name} "
                    "SEARCH SPARSE(:q) WITH PRF(sparse => rm3(terms => 20, max_df => 0.5, min_docs => 1)) LIMIT 5", q=q)
    expanded = {w.lower() for r in rows for w in re.findall("«(.*?)»", r.highlight_text)}
    marked = {w.lower() for r in rows for w in MARK.findall(r.highlight_text)}
    assert expanded and marked and not {s for w in expanded for s in analyze(w)} & terms
    assert all(set(analyze(w)) <= terms for w in marked)
    plain = db.query(f"SELECT id, HIGHLIGHT(text, fragments => 3, size => 200, prf_tags => ['«', '»']) FROM {name} SEARCH SPARSE(:q) LIMIT 5", q=q)
    assert not any("«" in r.highlight_text for r in plain)  # without PRF nothing is an expansion term


def test_highlight_errors_say_what_and_where(db, name):
    db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=2)
    db.collection(name).add([{"id": "a", "title": "sparse retrieval", "year": 2020, "vector": [1.0, 0.0]}])
    cases = [
        (f"SELECT HIGHLIGHT(title) FROM {name}", "HIGHLIGHT needs a SEARCH clause", "HIGHLIGHT"),
        (f"SELECT HIGHLIGHT(year) FROM {name} SEARCH SPARSE('x')", "HIGHLIGHT takes a text field; 'year' is int", "HIGHLIGHT"),
        (f"SELECT HIGHLIGHT(body) FROM {name} SEARCH SPARSE('x')", "HIGHLIGHT takes a declared text field", "HIGHLIGHT"),
        (f"SELECT HIGHLIGHT(title, fragments => 0) FROM {name} SEARCH SPARSE('x')", "fragments => 0 is out of range", "0)"),
        (f"SELECT HIGHLIGHT(title, tags => '<b>') FROM {name} SEARCH SPARSE('x')", "tags => expects two texts", "'<b>'"),
        (f"SELECT HIGHLIGHT(title, escape => xml) FROM {name} SEARCH SPARSE('x')", "escape => 'xml' is not one of none, html", "xml"),
        (f"SELECT HIGHLIGHT(title, colour => 1) FROM {name} SEARCH SPARSE('x')", "unknown argument 'colour' for HIGHLIGHT", "colour"),
        (f"SELECT snippet(title) FROM {name} SEARCH SPARSE('x')", "snippet(...) is not a function of the select list", "snippet"),
    ]
    for text, message, where in cases:
        with pytest.raises(sparsesql.Error, match=re.escape(message)) as info:
            db.query(text)
        assert info.value.column == text.index(where) + 1, text
    # a field named like the function is still a field, and the text is fetched only for the snippet
    row = db.query(f"SELECT id, HIGHLIGHT(title) FROM {name} SEARCH SPARSE('retrieval')")[0]
    assert dict(row) == {"id": "a", "highlight_title": "sparse <mark>retrieval</mark>"}
    assert np.isfinite(db.query(f"SELECT score FROM {name} SEARCH SPARSE('retrieval')")[0].score)
