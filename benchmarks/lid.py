"""Local intrinsic dimensionality of embeddings: real MiniLM vectors of the shared sets beside the
synthetic models', so the benchmark's vectors can be judged against real ones.

    .venv/bin/python benchmarks/lid.py [--docs 11000 100000] [--points 1000]

Levina and Bickel's maximum-likelihood estimate (NIPS 2004) with k = 20 neighbours, the median
over `--points` sampled points, neighbours exact (cosine distance of unit vectors) against every
vector. MiniLM vectors come from benchmarks/.cache (encoded there once by benchmarks/quality.py or
here). Writes benchmarks/results/lid.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import synthetic  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "beir"
K = 20


def lid_mle(vectors: np.ndarray, k: int = K, points: int = 1000, seed: int = 0) -> float:
    """Median over sampled points of [(1/(k-1)) sum_j log(T_k / T_j)]^-1, T_j the distance to the
    j-th nearest other vector."""
    x = vectors.astype(np.float32) / np.linalg.norm(vectors, axis=1, keepdims=True)
    sample = np.random.default_rng(seed).choice(len(x), min(points, len(x)), replace=False)
    estimates = []
    for lo in range(0, len(sample), 200):
        d2 = np.maximum(2 - 2 * (x[sample[lo:lo + 200]] @ x.T), 0)
        near = np.sort(np.partition(d2, k + 1, axis=1)[:, : k + 1], axis=1)[:, 1:]  # the point itself is first
        t = np.sqrt(np.maximum(near, 1e-24))
        estimates.append((k - 1) / np.log(t[:, -1:] / t[:, :-1]).sum(axis=1))
    return float(np.median(np.concatenate(estimates)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[11_000, 100_000])
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.anchors import corpus_vectors
    from sparsesql.encoders.dense import load_dense_encoder

    rows = []
    encoder = load_dense_encoder("minilm-l6")
    for folder in sorted(p for p in SHARED.iterdir() if (p / "corpus.jsonl").exists()):
        vectors = corpus_vectors(folder, encoder)
        if len(vectors) > K + 1:
            rows.append((f"MiniLM, {folder.name}", len(vectors), lid_mle(vectors, points=args.points)))
    for model in synthetic.VECTOR_MODELS:
        for n in args.docs:
            vectors = np.concatenate([b.vectors for b in synthetic.batches(n, batch=20_000, model=model)])
            rows.append((f"synthetic, {model}", n, lid_mle(vectors, points=args.points)))
    command = "benchmarks/lid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"## Local intrinsic dimensionality, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`{command}`: Levina-Bickel MLE, k = {K}, median over {args.points} points.",
        "",
        "| vectors | documents | LID |",
        "|---|---|---|",
        *[f"| {name} | {n:,} | {value:.1f} |" for name, n, value in rows],
    ]
    text = "\n".join(lines)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "lid.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
