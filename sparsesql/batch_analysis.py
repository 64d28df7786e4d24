"""BM25 analysis of many texts at once, for ingest: the terms `sparsesql.analysis.analyze` finds,
counted per text, with numpy instead of a Python object per token.

Ingest analyses thousands of texts at a time, and the per-token Python work of the regex path
(a str for each token, then dict probes to stem and number it) was most of a bulk load's analysis
time. Here the batch is lowercased and joined, read as an array of code points, and split into
maximal runs of word characters of two or more (exactly what ``\\b\\w\\w+\\b`` matches, `\\w`
read off the regex itself, code point by code point). Each token is hashed (64-bit Horner over
its code points), and the process keeps every word it has analysed in an open-addressing table
keyed by that hash, with the word's code points and its term's number: a known word costs a few
array gathers, and only a word not seen before becomes a str, is checked against the stopwords
and stemmed. Every token is compared code point by code point with the word its hash found, so a
hash collision is never a wrong term: a batch that holds one is analysed token by token instead.

Each text's tokens are also kept in order (stopwords as STOPWORD, a NUL between two of a
document's text fields as FIELD_BREAK): the stream a document's positions are stored from.

Term numbers are this process's own (`Counted.space` names the numbering); a writer that keeps
its own map from them to the database's term ids can look a batch's terms up with one gather.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from dataclasses import dataclass

import numpy as np

from sparsesql.analysis import STOPWORDS_EN, TOKEN, stem_words


@dataclass
class Counted:
    """The analysis of many texts, flat: the distinct terms they use, and each text's (term,
    frequency) pairs one text after another, the terms as positions in `terms`."""

    terms: list[str]  # distinct, each used by at least one text
    keys: np.ndarray  # int64, each term's number in `space`
    space: str  # the numbering `keys` belong to: this process's table, until it is reset
    index: np.ndarray  # int32, each pair's term, as a position in `terms`, ascending within a text
    tf: np.ndarray  # int64, each pair's frequency
    per_text: np.ndarray  # int64, each text's number of pairs
    lengths: np.ndarray  # int64, each text's length: its tokens after stopwords, as BM25 counts them
    stream: np.ndarray  # int32, each text's tokens in order, one text after another: a term as its position in `terms`,
    #                     STOPWORD for a stopword, FIELD_BREAK where a NUL parts two fields (the document's positions)
    stream_lengths: np.ndarray  # int64, each text's share of `stream`
    field_tf: np.ndarray  # int32, (pairs, fields): each pair's frequency in each NUL-parted field of its text
    field_lengths: np.ndarray  # int64, (texts, fields): each field's length, as `lengths` counts


STOPWORD, FIELD_BREAK = -1, -2
_WORD_LIMIT = 2_000_000  # words kept before the table starts over (about 60 bytes each)
_HORNER_MAX = 64  # longer tokens (rare) are hashed as Python strs
_P = np.uint64(0x100000001B3)  # FNV's 64-bit prime: odd, so the Horner steps never lose bits wholesale
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a table slot from a hash's top bits
# code point -> whether `\\w` matches it, as the regex engine says: filled for the ASCII range
# now and for other code points as batches bring them (classifying all 1.1M took half a second)
_word_chars = np.zeros(0x110000, dtype=bool)
_classified = np.zeros(0x110000, dtype=bool)


def _classify(points: np.ndarray) -> None:
    """Ask the regex engine which of these code points `\\w` matches."""
    chars = "".join(map(chr, points.tolist()))
    _word_chars[points[[m.start() for m in re.finditer(r"\w", chars)]]] = True
    _classified[points] = True


_classify(np.arange(128))


def _word_points(points: np.ndarray) -> np.ndarray:
    """Whether each code point is a word character."""
    if points.dtype != np.uint8:
        wide = np.unique(points[points > 127])
        if not _classified[wide].all():
            _classify(wide[~_classified[wide]])
    return _word_chars[points]


class _Column:
    """A numpy array appended to in amortised O(1)."""

    def __init__(self, dtype: type) -> None:
        self.data = np.empty(1024, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size:end] = values
        self.size = end

    @property
    def values(self) -> np.ndarray:
        return self.data[: self.size]


class _Words:
    """Every word this process has analysed: an open-addressing table from its hash to its
    entry, and per entry its hash, code points (where they start in `store`, how many) and term
    number (-1 for a stopword); per term number its stem."""

    def __init__(self) -> None:
        self.space = f"{os.getpid()}:{uuid.uuid4().hex}"
        self.bits = 16
        self.slot_hash = np.zeros(1 << self.bits, dtype=np.uint64)
        self.slot_entry = np.full(1 << self.bits, -1, dtype=np.int64)
        self.hash, self.start, self.length, self.term = _Column(np.uint64), _Column(np.int64), _Column(np.int64), _Column(np.int64)
        self.store = _Column(np.uint32)
        self.terms: list[str] = []
        self.term_number: dict[str, int] = {}

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        """The slot holding each hash, or the empty slot where its probe ends."""
        mask = (1 << self.bits) - 1
        with np.errstate(over="ignore"):
            slot = ((hashes * _SPREAD) >> np.uint64(64 - self.bits)).astype(np.int64)
        pending = np.arange(len(hashes))
        while len(pending):
            at = slot[pending]
            settled = (self.slot_entry[at] < 0) | (self.slot_hash[at] == hashes[pending])
            pending = pending[~settled]
            slot[pending] = (slot[pending] + 1) & mask
        return slot

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Each hash's entry, -1 where the table has none."""
        return self.slot_entry[self._slots(hashes)]

    def _place(self, hashes: np.ndarray, entries: np.ndarray) -> None:
        """Put distinct hashes, none in the table yet, into it (two that probe to one empty slot
        take turns: the first takes it, the other probes on past it next round)."""
        while len(hashes):
            slot = self._slots(hashes)
            taken, first = np.unique(slot, return_index=True)
            self.slot_hash[taken], self.slot_entry[taken] = hashes[first], entries[first]
            rest = np.ones(len(hashes), dtype=bool)
            rest[first] = False
            hashes, entries = hashes[rest], entries[rest]

    def add(self, words: list[str], hashes: np.ndarray, points: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """New words (distinct, absent) with their hashes and concatenated code points; their entries."""
        first = self.hash.size
        entries = np.arange(first, first + len(words), dtype=np.int64)
        stop = np.fromiter((w in STOPWORDS_EN for w in words), dtype=bool, count=len(words))
        content = [w for w, s in zip(words, stop) if not s]
        numbers = np.full(len(words), -1, dtype=np.int64)
        if content:
            numbers[~stop] = self.number(stem_words(content))
        self.start.extend(self.store.size + np.cumsum(lengths) - lengths)
        self.store.extend(points)
        self.hash.extend(hashes)
        self.length.extend(lengths)
        self.term.extend(numbers)
        if 2 * self.hash.size > (1 << self.bits):
            self.bits = max(self.bits + 1, int(2 * self.hash.size).bit_length())
            self.slot_hash = np.zeros(1 << self.bits, dtype=np.uint64)
            self.slot_entry = np.full(1 << self.bits, -1, dtype=np.int64)
            self._place(self.hash.values, np.arange(self.hash.size, dtype=np.int64))
        else:
            self._place(hashes, entries)
        return entries

    def number(self, stems: list[str]) -> np.ndarray:
        """Term numbers of stems, numbering the ones not seen before."""
        for stem in stems:
            if stem not in self.term_number:
                self.term_number[stem] = len(self.terms)
                self.terms.append(stem)
        return np.fromiter(map(self.term_number.__getitem__, stems), dtype=np.int64, count=len(stems))


_words: _Words | None = None
_lock = threading.Lock()  # count_terms may run in several threads (two loads in one server)


def _hashes(points: np.ndarray, starts: np.ndarray, lengths: np.ndarray, joined: str) -> np.ndarray:
    """A 64-bit hash of each token: Horner's rule over its code points, the tokens taken longest
    first so that step k works on a prefix of them; tokens past _HORNER_MAX as Python strs."""
    order = np.argsort(-np.minimum(lengths, _HORNER_MAX + 1).astype(np.int16), kind="stable")
    ordered_starts, ordered_lengths = starts[order], lengths[order]
    longer = np.searchsorted(-ordered_lengths, -np.arange(_HORNER_MAX + 1), side="left")  # tokens longer than k
    h = lengths[order].astype(np.uint64)
    with np.errstate(over="ignore"):
        for k in range(min(int(lengths.max(initial=0)), _HORNER_MAX)):
            m = longer[k]
            h[:m] = h[:m] * _P + points[ordered_starts[:m] + k]
    out = np.empty_like(h)
    out[order] = h
    for i in np.flatnonzero(lengths > _HORNER_MAX).tolist():
        out[i] = hash(joined[starts[i]:starts[i] + lengths[i]]) & 0xFFFFFFFFFFFFFFFF
    return out


def _spans(points: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The code points of the spans, concatenated."""
    return points[np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)]


def _same_spans(a: np.ndarray, a_starts: np.ndarray, b: np.ndarray, b_starts: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether each span of `a` holds the code points of the span of `b` beside it."""
    offsets = np.cumsum(lengths) - lengths
    position = np.arange(int(lengths.sum()))
    return np.array_equal(a[position + np.repeat(a_starts - offsets, lengths)], b[position + np.repeat(b_starts - offsets, lengths)])


def count_terms(texts: list[str]) -> Counted:
    """The terms of each text with their frequencies (what `Counter(analyze(text))` holds) and
    its length. Terms within a text come in the order of their numbers."""
    global _words
    lowered = [text.lower() for text in texts]
    joined = "\n".join(lowered)  # a newline is no word character: no token spans two texts
    points = (np.frombuffer(joined.encode("ascii"), dtype=np.uint8) if joined.isascii()
              else np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32))
    edges = np.flatnonzero(np.diff(_word_points(points).view(np.int8), prepend=np.int8(0), append=np.int8(0)))
    starts, lengths = edges[0::2], edges[1::2] - edges[0::2]
    starts, lengths = starts[lengths > 1], lengths[lengths > 1]
    boundary = np.zeros(len(points) + 1, dtype=np.int64)  # + 1: the last texts may be empty
    boundary[np.cumsum([len(t) + 1 for t in lowered[:-1]], dtype=np.int64)] = 1
    text = np.cumsum(boundary)[starts]  # each token's text
    hashes = _hashes(points, starts, lengths, joined)
    with _lock:
        if _words is None or _words.hash.size > _WORD_LIMIT:
            _words = _Words()
        words = _words
        entry = words.find(hashes)
        new = np.flatnonzero(entry < 0)
        if len(new):
            distinct, first, inverse = np.unique(hashes[new], return_index=True, return_inverse=True)
            at, span = starts[new[first]], lengths[new[first]]
            found = words.add([joined[s:s + n] for s, n in zip(at.tolist(), span.tolist())], distinct, _spans(points, at, span), span)
            entry[new] = found[inverse]
        exact = np.array_equal(words.length.values[entry], lengths) and _same_spans(
            words.store.values, words.start.values[entry], points, starts, lengths)
        if exact:
            term = words.term.values[entry]
            field = np.cumsum(np.r_[0, points == 0])  # NULs before each code point: a token's field within its text
            field = field[starts] - field[np.r_[0, np.cumsum([len(t) + 1 for t in lowered[:-1]], dtype=np.int64)][text]]
        else:  # two words with one hash: this batch token by token
            term, text, field = _tokens(lowered, words)
        counted = term >= 0
        present = np.zeros(len(words.terms), dtype=bool)
        present[term[counted]] = True
        used = np.flatnonzero(present)
        terms = list(map(words.terms.__getitem__, used.tolist()))
        space = words.space
    position = np.cumsum(present) - 1  # a term number's position in `used`
    stream, stream_lengths = _stream(np.where(counted, position[term], STOPWORD), text, field, len(texts))
    term, text, field = term[counted], text[counted], field[counted]
    fields = int(field.max(initial=0)) + 1
    if fields == 1:  # one field: its counts are the pairs' (np.unique without the inverse sorts instead of argsorting)
        pairs, tf = np.unique((text.astype(np.int64) << 32) | position[term], return_counts=True)
        field_tf = tf.astype(np.int32).reshape(-1, 1)
    else:
        pairs, pair, tf = np.unique((text.astype(np.int64) << 32) | position[term], return_inverse=True, return_counts=True)
        field_tf = np.bincount(pair.reshape(-1) * fields + field, minlength=len(pairs) * fields).astype(np.int32).reshape(len(pairs), fields)
    field_lengths = np.bincount(text * fields + field, minlength=len(texts) * fields).reshape(len(texts), fields)
    return Counted(terms, used, space, (pairs & 0xFFFFFFFF).astype(np.int32), tf,
                   np.bincount(pairs >> 32, minlength=len(texts)), np.bincount(text, minlength=len(texts)), stream, stream_lengths,
                   field_tf, field_lengths)


def _tokens(lowered: list[str], words: _Words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each token's term number (STOPWORD for a stopword), text and field, by the regex."""
    found = [(w, i, t.count("\x00", 0, m.start())) for i, t in enumerate(lowered) for m in TOKEN.finditer(t) for w in (m.group(),)]
    content = [w for w, _, _ in found if w not in STOPWORDS_EN]
    numbers = iter(words.number(stem_words(content)).tolist() if content else [])
    term = np.fromiter((STOPWORD if w in STOPWORDS_EN else next(numbers) for w, _, _ in found), dtype=np.int64, count=len(found))
    return term, np.array([i for _, i, _ in found], dtype=np.int64), np.array([f for _, _, f in found], dtype=np.int64)


def _stream(values: np.ndarray, text: np.ndarray, field: np.ndarray, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """The texts' token streams, flat: a token's place is its rank in its text plus its field's
    number, so one FIELD_BREAK stands between two fields' tokens (more where a field has none)."""
    rank = np.arange(len(text)) - np.searchsorted(text, np.arange(n_texts))[text]
    place = rank + field
    lengths = np.zeros(n_texts, dtype=np.int64)
    np.maximum.at(lengths, text, place + 1)
    stream = np.full(int(lengths.sum()), FIELD_BREAK, dtype=np.int32)
    stream[(np.cumsum(lengths) - lengths)[text] + place] = values
    return stream, lengths
