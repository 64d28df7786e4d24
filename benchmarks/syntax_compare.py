"""sparsesql's search syntax beside PostgreSQL's websearch_to_tsquery, on thirty texts people type.

    .venv/bin/python benchmarks/syntax_compare.py [--dsn DSN]

Both read the same box syntax (quotes, a leading minus, OR) but mean different things by plain
words: websearch_to_tsquery requires every word, SPARSE scores them. The table shows, for each
text, what SPARSE makes of it (sparsesql.lang.search_syntax), what websearch_to_tsquery('english',
text) makes of it on the server, and in one sentence where the two differ in meaning.

Those sentences were written by reading both outputs, so each case keeps the two outputs it was
written against: when a parser changes (sparsesql's, or PostgreSQL's in another version), the row
is marked stale and the script exits 1, so that no sentence outlives what it describes. Without
--dsn it uses the embedded server in .sparsesql/. Writes benchmarks/results/syntax_compare.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsesql.analysis import analyze  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.lang.search_syntax import SyntaxProblem, Terms, analysed, parse, shown, unit_terms  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "syntax_compare.md"


@dataclass(frozen=True)
class Case:
    text: str
    sparsesql: str  # the reading the difference was written against
    postgres: str  # websearch_to_tsquery's text, likewise
    difference: str


CASES = [
    Case("query expansion", "scores `queri expans`", "'queri' & 'expans'",
         "PostgreSQL requires both words; sparsesql lists a document holding either and ranks by both."),
    Case('"query expansion"', 'scores `queri expans`; requires `"query expansion"` [queri expans]', "'queri' <-> 'expans'",
         "None: both require the two words next to each other, in this order."),
    Case('"query expansion" medical', 'scores `queri expans medic`; requires `"query expansion"` [queri expans]',
         "'queri' <-> 'expans' & 'medic'",
         "PostgreSQL also requires medical; sparsesql only scores it."),
    Case('"query expansion"~3', 'scores `queri expans`; requires `"query expansion"~3` [queri expans]',
         "'queri' <-> 'expans' & '~3'",
         "PostgreSQL keeps the phrase exact and requires a term `~3` besides; sparsesql lets up to 3 other words stand between."),
    Case('"war of the worlds"', 'scores `war world`; requires `"war of the worlds"` [war _ _ world]', "'war' <3> 'world'",
         "None: both want world three positions after war, the stopwords keeping their gap."),
    Case("feedback -medical", "scores `feedback`; excludes `medical` [medic]", "'feedback' & !'medic'",
         "None: sparsesql lists only documents holding its one scored word, which PostgreSQL requires; both drop medical."),
    Case("-medical", "scores nothing; excludes `medical` [medic]", "!'medic'",
         "PostgreSQL matches every document without medical; sparsesql has no word to score and lists nothing."),
    Case('feedback -"query expansion"', 'scores `feedback`; excludes `"query expansion"` [queri expans]',
         "'feedback' & !( 'queri' <-> 'expans' )",
         "None: both want feedback and drop documents holding the phrase."),
    Case("sparse OR dense", "scores `spars dens`", "'spars' | 'dens'",
         "None in which documents match (either word); sparsesql's OR changes nothing, as its words are not required anyway."),
    Case('"query expansion" OR "relevance feedback"',
         'scores `queri expans relev feedback`; requires `"query expansion"` [queri expans] OR `"relevance feedback"` [relev feedback]',
         "'queri' <-> 'expans' | 'relev' <-> 'feedback'",
         "None: both require one phrase or the other."),
    Case('"query expansion" or "relevance feedback"',
         'scores `queri expans relev feedback`; requires `"query expansion"` [queri expans]; requires `"relevance feedback"` [relev feedback]',
         "'queri' <-> 'expans' | 'relev' <-> 'feedback'",
         "PostgreSQL reads a lowercase or as OR; sparsesql reads it as the stopword or, so it requires both phrases."),
    Case('"query expansion" OR feedback',
         'scores `queri expans feedback`; requires `"query expansion"` [queri expans] OR `feedback` [feedback]',
         "'queri' <-> 'expans' | 'feedback'",
         "None: both require the phrase or the word feedback."),
    Case("covid-19 treatment", "scores `covid 19 treatment`", "'covid' <-> '-19' & 'treatment'",
         "PostgreSQL requires covid-19 as a phrase and treatment; sparsesql scores covid, 19 and treatment, none required."),
    Case("-covid-19 vaccine", "scores `vaccin`; excludes `covid-19` [covid 19]", "!( 'covid' <-> '-19' ) & 'vaccin'",
         "Both want vaccine without covid-19, but PostgreSQL's term is the number -19, so it keeps a document with 'covid 19' "
         "(a space), which sparsesql drops."),
    Case('"long covid" OR covid-19', 'scores `long covid covid 19`; requires `"long covid"` [long covid] OR `covid-19` [covid 19]',
         "'long' <-> 'covid' | 'covid' <-> '-19'",
         "Both require one of the two phrases; as above, PostgreSQL's -19 misses 'covid 19' written with a space."),
    Case("spam -e-mail", "scores `spam`; excludes `e-mail` [mail]", "'spam' & !( 'e-mail' <-> 'e' <-> 'mail' )",
         "sparsesql drops the one-letter e, so it excludes every document with mail (voice mail too); PostgreSQL excludes only e-mail."),
    Case('"query expansion', 'error at character 1: this quote is never closed: a phrase is written "like this"', "'queri' <-> 'expans'",
         "PostgreSQL closes the quote at the end and requires the phrase; sparsesql reports an error at character 1."),
    Case('neural -"ranking', 'error at character 9: this quote is never closed: a phrase is written "like this"', "'neural' & !'rank'",
         "PostgreSQL closes the quote at the end, requires neural and excludes ranking; sparsesql reports an error at character 9."),
    Case("retrieval -", "scores `retriev`", "'retriev'",
         "None: both ignore the lone minus."),
    Case('say "hi" - there', 'scores `say hi`; requires `"hi"` [hi]', "'say' & 'hi'",
         "PostgreSQL requires say as well; sparsesql requires hi and only scores say (both ignore the lone minus and the stopword there)."),
    Case("OR sparse", "scores `spars`", "'spars'",
         "None: both ignore an OR with nothing before it."),
    Case("sparse OR", "scores `spars`", "'spars'",
         "None: both ignore an OR with nothing after it."),
    Case('"to be or not to be"', 'scores nothing; ignores `"to be or not to be"` (no term)', "",
         "None: both are left with no term and match nothing (PostgreSQL with a notice)."),
    Case('"retrieval"', 'scores `retriev`; requires `"retrieval"` [retriev]', "'retriev'",
         "None: both require the word."),
    Case("C++ programming", "scores `program`", "'c' & 'program'",
         "PostgreSQL also requires the one-letter word c, which sparsesql's analyzer drops; both need the term program."),
    Case("what is BM25?", "scores `what bm25`", "'bm25'",
         "PostgreSQL's stopword list drops what and requires bm25; sparsesql's 33 stopwords keep what, and it scores both words."),
    Case("sparse (dense OR learned)", "scores `spars dens learn`", "'spars' & 'dens' | 'learn'",
         "PostgreSQL ignores the parentheses and reads (sparse and dense) or learned; sparsesql scores the three words, none required."),
    Case('"naïve bayes" -Müller', 'scores `naïv bay`; requires `"naïve bayes"` [naïv bay]; excludes `Müller` [müller]',
         "'naïv' <-> 'bay' & !'müller'",
         "None: both require the phrase and exclude müller, accents kept."),
    Case('"search engine"~', 'error at character 16: ~ after a phrase takes a number of words, as in "search engine"~3',
         "'search' <-> 'engin'",
         "PostgreSQL ignores the bare ~ and requires the phrase; sparsesql reports an error at character 16."),
    Case("-medical OR feedback",
         "error at character 2: OR joins words and phrases a document may hold; the excluded -medical cannot be one of them",
         "!'medic' | 'feedback'",
         "PostgreSQL matches any document without medical or with feedback; sparsesql refuses an OR beside an exclusion, at character 2."),
]


def _unit(found: Terms) -> str:
    """A unit as written, then its terms, `_` where a stopword keeps a position: what a phrase asks."""
    slots = ["_"] * (found.offsets[-1] + 1)
    for term, offset in zip(found.terms, found.offsets):
        slots[offset] = term
    return f"`{shown(found.unit)}` [{' '.join(slots)}]"


def reading(text: str) -> str:
    """What SPARSE makes of the text, as the search runs it (units with no term are left out)."""
    try:
        read = parse(text)
    except SyntaxProblem as problem:
        return f"error at character {problem.offset + 1}: {problem.message}"
    scored = " ".join(analyze(read.scored))
    parts = [f"scores `{scored}`" if scored else "scores nothing"]
    found = analysed(read)
    if found is not None:
        parts += ["requires " + " OR ".join(map(_unit, group)) for group in found.required]
        parts += [f"excludes {_unit(t)}" for t in found.excluded]
    units = [u for group in read.required for u in group] + list(read.excluded)
    parts += [f"ignores `{shown(u)}` (no term)" for u in units if unit_terms(u) is None]
    return "; ".join(parts)


def cell(text: str) -> str:
    """A pipe ends a table cell even inside a code span, so it is escaped."""
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn")
    args = parser.parse_args()
    dsn = args.dsn or embedded.start(ROOT / ".sparsesql")
    stale = []
    rows = ["| input | sparsesql | PostgreSQL `websearch_to_tsquery('english', input)` | difference in meaning |", "|---|---|---|---|"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        for case in CASES:
            ours = reading(case.text)
            theirs = conn.execute("SELECT websearch_to_tsquery('english', %s)::text", (case.text,)).fetchone()[0]
            difference = case.difference
            if (ours, theirs) != (case.sparsesql, case.postgres):
                stale.append(case.text)
                difference = f"**stale**: written for sparsesql {case.sparsesql!r} and PostgreSQL {case.postgres!r}; reread both outputs"
            shown_theirs = f"`{theirs}`" if theirs else "(empty)"
            rows.append(f"| `{cell(case.text)}` | {cell(ours)} | {cell(shown_theirs)} | {cell(difference)} |")
    lines = [
        "# The search syntax: sparsesql's SPARSE beside PostgreSQL's websearch_to_tsquery",
        "",
        f"`.venv/bin/python benchmarks/syntax_compare.py` on PostgreSQL {version}. sparsesql's column, for `SPARSE(text, syntax => 'web')` (the default, 'plain', reads every input as words): the terms it "
        "*scores* (a bag of words, BM25: a document is listed when it holds one of them), the groups it *requires* "
        "(one member of each), the units it *excludes*, with each unit's analysed terms in brackets (`_`: a stopword's "
        "place, kept in a phrase), and units it *ignores* because they have no term. PostgreSQL's column is the "
        "tsquery, which a document must match. The differences were written by reading both columns.",
        "",
        *rows,
        "",
    ]
    RESULT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {RESULT.relative_to(ROOT)}: {len(CASES)} inputs")
    if stale:
        sys.exit(f"{len(stale)} rows are stale (outputs changed since their difference was written): {stale}")


if __name__ == "__main__":
    main()
