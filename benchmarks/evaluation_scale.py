"""Benchmark of the evaluation stages: twins and estimates, wall time and peak memory.

Runs :func:`impact.evaluate.load_arrays`, :func:`impact.evaluate.run_twins` and
:func:`impact.evaluate.run_estimates` (every outcome on both clocks with the bootstrap,
the staggered cross-check, refutations, placebo in time and subgroups) on a data root
that already holds ``panel/``, ``research/`` and ``sources/`` (e.g. the 1.2 M-person
synthetic evaluation), in a child process, writing to ``ROOT/bench_twins`` and
``ROOT/bench_estimates``. Figures go to ``benchmarks/results/evaluation_scale.json``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/evaluation_scale.py ROOT [--reps 999]
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

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation_scale.json"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import polars as pl
from impact import evaluate
from impact.twins.riskset import TwinSettings
root, reps = Path(sys.argv[1]), int(sys.argv[2])
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
t = {}
t0 = time.perf_counter()
tr = pl.read_parquet(root / "research" / "treatment.parquet")
arrays = evaluate.load_arrays(root / "panel", tr)
t["load_arrays"] = [time.perf_counter() - t0, rss()]
t0 = time.perf_counter()
tw = evaluate.run_twins(arrays, TwinSettings(), root / "bench_twins")
t["twins"] = [time.perf_counter() - t0, rss()]
t0 = time.perf_counter()
est = evaluate.run_estimates(arrays, tw.pairs, tr, root / "sources", root / "bench_estimates",
                             reps=reps, seed=0)
t["estimates"] = [time.perf_counter() - t0, rss()]
print(json.dumps({"stages": t, "estimate_parts": est.seconds, "persons": arrays.n_persons,
                  "treated": est.n_treated, "twins": est.n_twins,
                  "gate_passed": tw.passed, "disagreements": est.disagreements,
                  "headline": {h: {k: r[k] for k in ("att", "se")}
                               for h, r in est.headline.items()}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--reps", type=int, default=999)
    args = ap.parse_args()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.root), str(args.reps)],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    record = {
        "root": str(args.root),
        "reps": args.reps,
        "persons": child["persons"],
        "wall_seconds_process": round(wall, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2,
                              2),
        "stages": {k: {"seconds": round(v[0], 1), "max_rss_so_far_gib": round(v[1], 2)}
                   for k, v in child["stages"].items()},
        "estimate_parts_seconds": {k: round(v, 1) for k, v in child["estimate_parts"].items()},
        "treated": child["treated"],
        "twins": child["twins"],
        "gate_passed": child["gate_passed"],
        "staggered_disagreements": child["disagreements"],
        "headline": child["headline"],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1min": os.getloadavg()[0],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(record, indent=2))
    record_run(RESULTS, record, keys=("persons", "reps"))


if __name__ == "__main__":
    main()
