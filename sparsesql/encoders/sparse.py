"""Learned sparse encoders (SPLADE-style), loaded only from a local Hugging Face masked-LM folder.

A masked language model scores every vocabulary entry at every position of the input; SPLADE
(Formal et al.) turns those logits into one weight per vocabulary entry:

    w_j = max over non-padding positions i of  log(1 + relu(logit_ij))

so a document is weighted on terms it does not contain (expansion) and the vector stays sparse
(relu zeroes most entries). The vocabulary of such a field is the model's: weights are keyed by
the tokenizer's token strings, which is what ingest's `sparse` mapping and `SPARSE(:q)` with a
`{term: weight}` query take. `top_k` keeps only a document's k largest weights (ties to the lower
token id), the usual way to bound posting-list growth.

Nothing is downloaded: the folder must hold the model and its tokenizer (`save_pretrained`), and
a missing or incomplete folder is refused with the path in the message. torch and transformers
are imported inside the loader, as for dense encoders.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sparsesql.encoders.loading import quiet_loading
from sparsesql.errors import ConfigError

_cache: dict[str, "SparseEncoder"] = {}
_cache_lock = threading.Lock()


class SparseEncoder:
    """A masked LM and its tokenizer, turning texts into {token: weight} by the SPLADE rule."""

    def __init__(self, path: str, model: Any, tokenizer: Any) -> None:
        self.path = path
        self._model = model
        self._tokenizer = tokenizer
        self.vocab_size: int = int(model.config.vocab_size)
        # Some models pad their output layer past the tokenizer's vocabulary; those ids have no
        # token, can never be queried, and are dropped.
        self._tokens = tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        self._has_token = np.array([t is not None for t in self._tokens])
        # Texts are cut at what the model can read: a tokenizer saved without a length limit
        # would otherwise hand it more positions than it has embeddings for.
        self.max_length = min(int(tokenizer.model_max_length), int(getattr(model.config, "max_position_embeddings", 512)))

    def _batches(self, texts: list[str], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions in `texts`, their (len, vocab_size) float32 SPLADE weights) batch by batch.

        Texts are batched by length (little padding) in small batches: the (batch, positions,
        vocabulary) logits dominate the cost, and small ones stay in cache. Measured on the first
        160 CISI documents with benchmarks/sparse_modes.py's MiniLM-sized model, 2 cores, in
        documents/s: by length 21.1 in batches of 8, 19.7 of 16, 16.4 of 32; in input order
        10.6 in batches of 8, 6.9 of 32.
        """
        import torch

        if not texts:
            return
        encoded = self._tokenizer(list(texts), truncation=True, max_length=self.max_length)
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = self._tokenizer.pad({key: [encoded[key][i] for i in rows] for key in encoded.keys()}, return_tensors="pt")
            with torch.inference_mode():
                logits = self._model(**batch).logits  # (batch, positions, vocab)
                logits.relu_().log1p_().mul_(batch["attention_mask"].unsqueeze(-1).to(logits.dtype))
                yield rows, torch.amax(logits, dim=1).float().numpy()

    def weights(self, texts: list[str], batch_size: int = 8) -> np.ndarray:
        """An (n, vocab_size) float32 array of SPLADE weights, one row per text."""
        out = np.zeros((len(texts), self.vocab_size), dtype=np.float32)
        for rows, block in self._batches(texts, batch_size):
            out[rows] = block
        return out

    def encode(self, texts: list[str], *, top_k: int | None = None, batch_size: int = 8) -> list[dict[str, float]]:
        """Each text's nonzero weights as {token: weight}; with top_k, only its k largest. Made
        batch by batch: no (texts x vocabulary) array for a large ingest batch."""
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        out: list[dict[str, float]] = [{} for _ in texts]
        for rows, block in self._batches(texts, batch_size):
            for position, row in zip(rows.tolist(), block):
                ids = np.flatnonzero((row > 0) & self._has_token)
                if top_k is not None and len(ids) > top_k:
                    order = np.lexsort((ids, -row[ids]))  # by weight descending, then token id
                    ids = np.sort(ids[order[:top_k]])
                out[position] = {self._tokens[i]: float(row[i]) for i in ids}
        return out

    def tokens(self, text: str) -> list[str]:
        """The text's own tokens (no special tokens): an inference-free query's terms."""
        return self._tokenizer.tokenize(text)

    def __repr__(self) -> str:
        return f"SparseEncoder(path={self.path!r}, vocab_size={self.vocab_size})"


def load_sparse_encoder(path: str | os.PathLike) -> SparseEncoder:
    """The encoder in a local masked-LM folder, loaded once per process."""
    folder = Path(path).expanduser()
    key = str(folder.resolve()) if folder.exists() else str(folder)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        if not folder.is_dir():
            raise ConfigError(f"sparse model folder {str(folder)!r} does not exist (models load from local folders only; nothing is downloaded)")
        if not (folder / "config.json").exists():
            raise ConfigError(f"sparse model folder {str(folder)!r} has no config.json: save the model there with save_pretrained")
        with quiet_loading():
            from transformers import AutoModelForMaskedLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"sparse model folder {str(folder)!r} does not hold a masked language model and its tokenizer: {exc}") from None
        model.eval()
        encoder = SparseEncoder(key, model, tokenizer)
        _cache[key] = encoder
        return encoder
