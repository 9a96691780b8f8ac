"""Benchmark of ingest: wall time, peak memory and per-table figures.

Ingests the deliveries under ``ROOT/landing`` (e.g. a 1.2 M-person synthetic
delivery made with ``impact synth --persons 1200000 --out ROOT``) in a child
process and writes ``benchmarks/results/ingest_scale.json``. Peak RSS is the
child's maximum resident set size (``getrusage``).

Usage::

    python benchmarks/ingest_scale.py ROOT [--persons 1200000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from _results import record_run

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_scale.json"

CHILD = r"""
import json, sys, time
from pathlib import Path
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.pseudonym import PseudonymKey
root = Path(sys.argv[1])
t0 = time.perf_counter()
res = ingest(deliveries_in(root / "landing"),
             IngestSettings(out=root / "ingest_bench", key=PseudonymKey.demo()))
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "tables": {n: {"ok": r.ok, "rows_in": r.rows_in,
      "accepted": r.accepted, "quarantined": r.quarantined, "seconds": r.seconds,
      "failure": r.failure} for n, r in res.items()}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--persons", type=int, default=None, help="label for the results")
    args = ap.parse_args()
    load_before = os.getloadavg()  # other jobs on the machine slow the run down
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.root)], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    record = {
        "persons": args.persons,
        "wall_seconds_process": round(wall, 1),
        "wall_seconds_ingest": round(child["wall"], 1),
        "peak_rss_gib": round(peak, 2),
        "rows_in": sum(t["rows_in"] for t in child["tables"].values()),
        "quarantined": sum(t["quarantined"] for t in child["tables"].values()),
        "all_ok": all(t["ok"] for t in child["tables"].values()),
        "tables": child["tables"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(record, indent=2))
    record_run(RESULTS, record, keys=("persons",))


if __name__ == "__main__":
    main()
