"""A sentence-transformers model run by OpenVINO on the CPU.

On a CPU, encoding is nearly all of a text load's time, and OpenVINO runs MiniLM 2.2x faster
than torch in float32 and about 1.5x faster than torch's bfloat16 autocast (benchmarks/ingest.py
measures the defaults against torch; the vectors are the model's to a cosine of 0.9999+). The
model is converted on this machine, offline, from the loaded torch module (tokenizer, pooling and
all: the whole sentence-transformers pipeline up to its embedding), once; the converted model is
kept under SPARSESQL_HOME/models (SPARSESQL_MODEL_CACHE chooses another folder), keyed by the
model's files and the library versions, so later processes skip the conversion.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def _cache_key(folder: Path) -> str:
    """Names the converted model: the model's files (path, size, mtime) and the versions of the
    libraries that wrote it, so a changed model or an upgrade converts again."""
    import openvino
    import sentence_transformers
    import torch

    digest = hashlib.sha256(f"{openvino.__version__} {sentence_transformers.__version__} {torch.__version__}".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _tokenizer(model: SentenceTransformer) -> Callable:
    """The model's own text-to-tensors step (truncation at its max_seq_length included):
    sentence-transformers 5 renamed `tokenize` to `preprocess`."""
    return getattr(model, "preprocess", None) or model.tokenize


def _probe(model: SentenceTransformer) -> tuple[list[str], dict, dict]:
    """The tokenizer's tensor outputs' names, in order (the converted model's inputs), the rest
    (sentence-transformers 5 adds a 'modality' string, which the conversion fixes as a constant),
    and the features of two probe texts (the tracer's example input)."""
    import torch

    features = _tokenizer(model)(["a probe", "a longer probe text"])
    names = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    return names, {k: v for k, v in features.items() if k not in names}, features


def _convert(model: SentenceTransformer, target: Path) -> None:
    """Trace the whole pipeline (transformer, pooling, any dense layers) into OpenVINO's format,
    written beside `target` and renamed into place, so a crash never leaves half a model."""
    import openvino
    import torch

    names, constants, features = _probe(model)

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors)) | constants)["sentence_embedding"]

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing's notes on the model's Python branches, all shape-independent here
        converted = openvino.convert_model(Pipeline().eval(), example_input=tuple(features[n] for n in names))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.xml")
    openvino.save_model(converted, partial)
    partial.with_suffix(".bin").replace(target.with_suffix(".bin"))
    partial.replace(target)


class OpenVinoPipeline:
    """Encodes texts with a converted model; thread-safe (one inference request per thread)."""

    def __init__(self, model: SentenceTransformer, folder: Path, cache: Path, precision: str, threads: int, dim: int) -> None:
        import openvino

        self._tokenize = _tokenizer(model)
        self._names = _probe(model)[0]
        target = cache / f"{folder.name}-{_cache_key(folder)}" / "model.xml"
        if not target.exists():
            _convert(model, target)
        core = openvino.Core()
        self._compiled = core.compile_model(core.read_model(target), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        })
        self._dim = dim
        self._local = threading.local()

    def encode(self, texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
        """Unit-length float32 rows in input order; batches of similar length, longest first, as
        sentence-transformers batches them, so that little of a batch is padding."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            rows = order[start:start + batch_size]
            features = self._tokenize([texts[i] for i in rows])
            result = request.infer([features[n].numpy() for n in self._names])
            out[rows] = result[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
