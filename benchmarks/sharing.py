"""The memory tier across processes: four processes searching one collection at once, and a new
process's first query, against an existing speed collection (benchmarks/speed.py builds them).

    .venv/bin/python benchmarks/sharing.py --docs 1000000 [--vectors hard] [--searches 50]

Each process loads the sparse tier from its snapshot (memory-mapped: tier/cache.py's
read_snapshot) and runs --searches SPARSE queries; then each reports its proportional share (Pss)
of the mapped snapshot files and its own anonymous memory's growth over the searches. Their sum
is set beside one process's tier size (postings and vocabulary, `memory_bytes`), the anchor.
Also: a fresh interpreter's time from start to its first SPARSE result. Writes
benchmarks/results/sharing_<docs>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import synthetic  # noqa: E402
from benchmarks.speed import add_collection_arguments, collection_name, first_query_in_new_process, shared_processes, speed_dsn  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_arguments(parser, "hard")
    parser.add_argument("--searches", type=int, default=50)
    args = parser.parse_args(argv)
    name = collection_name(args.docs, args.vectors)
    dsn = speed_dsn()
    texts = [q["text"] for q in synthetic.queries(args.docs, args.searches)]
    sharing = shared_processes(dsn, name, texts)
    first = first_query_in_new_process(dsn, name, texts[0])
    command = "benchmarks/sharing.py " + " ".join(sys.argv[1:] if argv is None else argv)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join([
        f"## The memory tier across processes, {name}, {date}",
        "",
        f"`{command}`",
        "",
        "| | MB |",
        "|---|---|",
        f"| one process's tier (postings + vocabulary, memory_bytes): the anchor | {sharing['tier_mb']:.1f} |",
        *(f"| process {i + 1}: Pss of the mapped snapshot + own anonymous growth | {d['snapshot_pss_mb']:.1f} + {d['anon_growth_mb']:.1f} |"
          for i, d in enumerate(sharing["detail"])),
        f"| **{sharing['processes']} processes together** | **{sharing['total_mb']:.1f} = {sharing['ratio_to_one_tier']:.2f}x one tier** |",
        "",
        f"- each ran {args.searches} SPARSE searches from the snapshot (memory-mapped; pages no query touched are not resident)",
        f"- first query {min(sharing['first_query_s']):.2f}-{max(sharing['first_query_s']):.2f} s after each of the "
        f"{sharing['processes']} processes started (all at once, on this machine's cores)",
        f"- a new process alone: first SPARSE result {first['wall_s']:.2f} s after the interpreter started, RSS +{first['rss_growth_mb']:.0f} MB",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"sharing_{args.docs}"
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "date": date, "sharing": sharing, "first": first}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
