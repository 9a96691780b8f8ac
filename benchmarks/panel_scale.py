"""Benchmark of the person-month panel: build time, peak memory, a typical query.

Builds the panel and the episode tables from ``ROOT/sources`` (the ingest output of a
synthetic delivery, e.g. 1.2 M persons: ``impact synth --persons 1200000 --out ROOT``, then
the ingest) in a child process, then times a typical researcher query with DuckDB (mean
daily real wage by region and month for participants). Writes
``benchmarks/results/panel_scale.json``. Peak RSS is the child's maximum resident set size.

Usage::

    python benchmarks/panel_scale.py ROOT [--persons 1200000] [--chunk 400000]
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

RESULTS = Path(__file__).resolve().parent / "results" / "panel_scale.json"

CHILD = r"""
import json, sys, time
from pathlib import Path
from impact import panel
root, chunk = Path(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
res = panel.build(root / "sources", root / "panel_bench", chunk_persons=chunk)
t1 = time.perf_counter()
counts = panel.build_episodes(root / "sources", root / "research_bench")
t2 = time.perf_counter()
print(json.dumps({"panel_seconds": t1 - t0, "episodes_seconds": t2 - t1, "rows": res.rows,
                  "persons": res.persons, "seconds_by_year": res.seconds_by_year,
                  "episodes": counts}))
"""

QUERY = """
SELECT p.region_code, p.month, avg(p.daily_wage_real) AS mean_daily_wage, count(*) AS n
FROM read_parquet('{panel}/**/*.parquet') p
JOIN read_parquet('{research}/treatment.parquet') t USING (person_code)
WHERE p.daily_wage_real IS NOT NULL
GROUP BY ALL ORDER BY ALL
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--persons", type=int, default=None, help="label for the results")
    ap.add_argument("--chunk", type=int, default=400_000, help="persons per part")
    args = ap.parse_args()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.root), str(args.chunk)],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2

    import duckdb

    sql = QUERY.format(panel=args.root / "panel_bench", research=args.root / "research_bench")
    con = duckdb.connect()
    t = time.perf_counter()
    n_rows = len(con.sql(sql).fetchall())
    query_seconds = time.perf_counter() - t
    record = {
        "persons": args.persons,
        "chunk_persons": args.chunk,
        "wall_seconds_process": round(wall, 1),
        "panel_seconds": round(child["panel_seconds"], 1),
        "episodes_seconds": round(child["episodes_seconds"], 1),
        "peak_rss_gib": round(peak, 2),
        "person_months": child["rows"],
        "persons_in_panel": child["persons"],
        "seconds_by_year": child["seconds_by_year"],
        "episodes": child["episodes"],
        "query": " ".join(QUERY.split()),
        "query_seconds": round(query_seconds, 2),
        "query_rows": n_rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(record, indent=2))
    record_run(RESULTS, record, keys=("persons",))


if __name__ == "__main__":
    main()
