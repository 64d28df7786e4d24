"""RERANK's quality and cost beside its first stage, measured in one run.

    .venv/bin/python benchmarks/rerank.py --model PATH/TO/CROSS-ENCODER [--candidates 100] [DIR ...]

For each BEIR folder (by default the five development sets in ../shared/data/beir): nDCG@10,
Recall@100 and the p50 latency of HYBRID (the default fusion) and of the same search with
RERANK(model => ..., candidates => n) over it, side by side, on the embedded server in
benchmarks/.cache (as benchmarks/quality.py). The model is any sentence-transformers
CrossEncoder saved in a folder (for example cross-encoder/ms-marco-MiniLM-L6-v2, downloaded
where downloading is allowed and saved with `CrossEncoder(...).save_pretrained(folder)`); this
script lets RERANK load it by naming its parent folder in SPARSESQL_RERANKERS. No model ships
with sparsesql, so the script runs only where one is given. Writes <out>.md and <out>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anchors import CACHE_DIR  # noqa: E402
from quality import DEV_SET_NAMES, DEV_SETS  # noqa: E402

import sparsesql  # noqa: E402
from sparsesql.db import embedded  # noqa: E402
from sparsesql.eval.run import evaluate, load_beir  # noqa: E402

FIRST_STAGE = "HYBRID(SPARSE(:q), DENSE(:q))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[str(DEV_SETS / n) for n in DEV_SET_NAMES])
    parser.add_argument("--model", required=True, help="a CrossEncoder's folder")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "rerank"))
    args = parser.parse_args()
    model = Path(args.model).expanduser().resolve()
    if not (model / "config.json").is_file():
        sys.exit(f"{model} holds no config.json: give the folder a CrossEncoder was saved to")
    os.environ["SPARSESQL_RERANKERS"] = str(model.parent)
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    second = f"{FIRST_STAGE} RERANK(model => '{model.name}', candidates => {args.candidates})"
    started = not (CACHE_DIR / "pgdata" / "postmaster.pid").exists()
    dsn = embedded.start(CACHE_DIR)
    results = {}
    try:
        with sparsesql.connect(dsn) as db:
            for folder in args.folders:
                name = load_beir(db, folder, progress=True)
                first = evaluate(db, folder, FIRST_STAGE, limit=args.candidates, collection=name)
                reranked = evaluate(db, folder, second, limit=args.candidates, collection=name, progress=True)
                results[Path(folder).name] = {
                    "first": {"ndcg@10": first.ndcg10, "recall@100": first.recall100, "p50_ms": first.p50_ms},
                    "reranked": {"ndcg@10": reranked.ndcg10, "recall@100": reranked.recall100, "p50_ms": reranked.p50_ms},
                }
    finally:
        if started:
            embedded.stop(CACHE_DIR)
    lines = [f"## RERANK beside its first stage, {date}", "",
             f"`{command}` on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; model {model.name}, "
             f"{args.candidates} candidates; first stage `{FIRST_STAGE}`.", "",
             "| set | nDCG@10 first stage | nDCG@10 reranked | Δ | Recall@100 first / reranked | p50 ms first / reranked |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        f, s = r["first"], r["reranked"]
        lines.append(f"| {name} | {f['ndcg@10']:.4f} | {s['ndcg@10']:.4f} | {s['ndcg@10'] - f['ndcg@10']:+.4f} | "
                     f"{f['recall@100']:.3f} / {s['recall@100']:.3f} | {f['p50_ms']:.1f} / {s['p50_ms']:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text(table)
    Path(f"{out}.json").write_text(json.dumps({"command": command, "date": date, "model": str(model), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
