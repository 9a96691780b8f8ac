"""Benchmark of the synthetic register generator: wall time and peak memory.

Runs ``impact synth`` in a child process for each requested population size and
writes the figures to ``benchmarks/results/synth_scale.json`` (one record per
size, replaced on re-run). Peak RSS is the child's maximum resident set size as
reported by the kernel (``getrusage``), so it includes everything the
generator allocated.

Usage::

    python benchmarks/synth_scale.py --persons 1200000 --format csv
    python benchmarks/synth_scale.py --persons 100000 300000 1200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "synth_scale.json"


def run_one(persons: int, seed: int, fmt: str, keep: Path | None) -> dict:
    out = keep or Path(tempfile.mkdtemp(prefix="impact-synth-bench-"))
    cmd = [sys.executable, "-m", "impact.cli", "synth", "--persons", str(persons), "--seed",
           str(seed), "--out", str(out), "--format", fmt]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"generator failed for {persons} persons:\n{proc.stderr[-4000:]}")
    manifest = json.loads(next((out / "landing").glob("*/manifest.json")).read_text())
    size = sum(f["bytes"] for f in manifest["files"])
    rows = sum(f["rows"] for f in manifest["files"])
    summary = json.loads((out / "truth" / "summary.json").read_text())
    record = {
        "persons": persons,
        "seed": seed,
        "format": fmt,
        "wall_seconds": round(wall, 1),
        "peak_rss_gib": round(max(peak_kib, before) / 1024**2, 2),
        "rows_total": rows,
        "bytes_total": size,
        "participants": summary["participants"],
        "accounts": summary["accounts"],
    }
    by_table: dict[str, int] = {}
    for f in manifest["files"]:
        by_table[f["table"]] = by_table.get(f["table"], 0) + f["rows"]
    record["rows_by_table"] = by_table
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, nargs="+", default=[1_200_000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ap.add_argument("--keep", type=Path, default=None, help="keep the output in this folder")
    args = ap.parse_args()
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    for n in args.persons:
        rec = run_one(n, args.seed, args.format, args.keep)
        rec["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}
        print(json.dumps(rec, indent=2))
        existing["runs"] = [r for r in existing["runs"]
                            if (r["persons"], r["format"]) != (n, args.format)] + [rec]
    existing["runs"].sort(key=lambda r: (r["format"], r["persons"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
