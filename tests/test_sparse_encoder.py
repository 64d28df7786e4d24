"""The SPLADE-style encoder (issue 9) against a hand-written reference on a tiny, randomly
initialised BERT masked LM built here: no weights are downloaded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsesql.encoders.sparse import load_sparse_encoder
from sparsesql.errors import ConfigError

TEXTS = [
    "sparse retrieval",
    "dense vector search with hybrid fusion over a postgres index",
    "query expansion",
    "term weight model rank rank rank",
]


@pytest.fixture
def model_dir(tiny_splade):
    return tiny_splade


def reference(folder, text: str) -> dict[str, float]:
    """Loop by loop: one text alone (no padding), max over positions of log(1 + max(0, logit))."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(logits[0]))))
    out = {}
    for j, token in enumerate(tokens):
        w = max(math.log(1 + max(0.0, row[j])) for row in logits)
        if w > 0 and token is not None:
            out[token] = w
    return out


def test_weights_equal_the_reference_with_padding_masked(model_dir):
    encoder = load_sparse_encoder(model_dir)
    got = encoder.encode(TEXTS, batch_size=4)  # one padded batch: short texts carry padding
    for text, weights in zip(TEXTS, got):
        expected = reference(model_dir, text)
        assert set(weights) == set(expected)
        assert max(abs(weights[t] - expected[t]) for t in expected) < 1e-5
        assert 0 < len(weights) < encoder.vocab_size  # relu leaves it sparse
        assert None not in weights  # ids past the tokenizer's vocabulary carry no token


def test_long_texts_are_cut_at_the_models_positions(model_dir):
    """The tiny tokenizer has no length limit; the model reads 64 positions: a longer text is
    encoded as its first 64 tokens (special tokens included), not refused by torch."""
    encoder = load_sparse_encoder(model_dir)
    assert encoder.max_length == 64
    long = "sparse " * 200 + "rank"
    head = " ".join(["sparse"] * 62)
    assert encoder.encode([long]) == encoder.encode([head])
    assert encoder.encode([]) == [] and encoder.weights([]).shape == (0, encoder.vocab_size)
    assert encoder.encode([""])[0]  # the tiny model weighs [CLS] [SEP] alone: an empty text still encodes


def test_batching_does_not_change_the_weights(model_dir):
    encoder = load_sparse_encoder(model_dir)
    one_by_one = np.stack([encoder.weights([t])[0] for t in TEXTS])
    assert np.abs(encoder.weights(TEXTS, batch_size=3) - one_by_one).max() < 1e-5


def test_pruning_keeps_exactly_the_top_k(model_dir):
    encoder = load_sparse_encoder(model_dir)
    full = encoder.encode(TEXTS)
    for k in (1, 3, 10):
        for whole, pruned in zip(full, encoder.encode(TEXTS, top_k=k)):
            ranked = sorted(whole.items(), key=lambda kv: -kv[1])
            assert len(pruned) == min(k, len(whole))
            assert sorted(pruned.values(), reverse=True) == [w for _, w in ranked[: len(pruned)]]
            assert all(whole[t] == w for t, w in pruned.items())
    with pytest.raises(ConfigError, match="top_k must be at least 1"):
        encoder.encode(TEXTS, top_k=0)


def test_inference_free_queries_are_the_tokenizers_tokens(model_dir):
    assert load_sparse_encoder(model_dir).tokens("Sparse retrieval zq") == ["sparse", "retrieval", "z", "##q"]


def test_missing_or_incomplete_model_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist .*nothing is downloaded"):
        load_sparse_encoder(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="has no config.json"):
        load_sparse_encoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match="does not hold a masked language model"):
        load_sparse_encoder(tmp_path)
