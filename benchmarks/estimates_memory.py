"""The estimates stage alone: wall time and peak RSS of the whole-panel and the subset loader.

Runs the estimates stage of an evaluated data root (panel, treatment and twins present, e.g.
one made by ``benchmarks/national.py``) in a child process (so its peak RSS is its own),
with one of two ways of loading the panel:

``full``
    :func:`impact.evaluate.load_arrays`: dense arrays of every person of the panel (the
    stage's memory grows with the population);
``subset``
    :func:`impact.evaluate.load_estimation_arrays`: the matched participants, their twins and
    a seeded sample of ``naive_sample`` other persons for the naive comparison (memory grows
    with the participants and the configured sample, not with the population).

The outputs are written to ``--out/<variant>/`` (not to the root's ``estimates/``), so the
two variants' tables can be compared afterwards (:func:`compare`: every column except the
naive comparison's must be equal).

Usage::

    flock /tmp/bigjob.lock python benchmarks/estimates_memory.py CONFIG --variant full \\
        --out /tmp/est_mem
    flock /tmp/bigjob.lock python benchmarks/estimates_memory.py CONFIG --variant subset \\
        --out /tmp/est_mem [--naive-sample 200000]
    python benchmarks/estimates_memory.py CONFIG --compare --out /tmp/est_mem

Results: ``benchmarks/results/estimates_memory.json``: ``runs``, the last record per
population and variant, with the load averages before and after the run (the machine is
shared: compare timings taken under similar load); ``history``, every run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _results import record_run
from national import EPILOGUE, PRELUDE

RESULTS = Path(__file__).resolve().parent / "results" / "estimates_memory.json"

LOAD = {
    "full": r"""
from impact.evaluate import load_arrays
from impact.twins.plan import align_pairs
arrays = load_arrays(cfg.data.panel, tr)
pairs = align_pairs(read_pairs(cfg.data.twins), arrays.person_code)
""",
    "subset": r"""
from impact.evaluate import load_estimation_arrays
naive_sample = int(sys.argv[3]) if sys.argv[3] != "config" else cfg.estimates.naive_sample
extra["naive_sample"] = naive_sample
arrays, pairs = load_estimation_arrays(cfg.data.panel, tr, read_pairs(cfg.data.twins),
                                       naive_sample=naive_sample, seed=cfg.estimates.seed)
""",
}
BODY = r"""
import polars as pl
from impact.evaluate import run_estimates
from impact.indicators import read_pairs
tr = pl.read_parquet(cfg.data.research / "treatment.parquet")
{load}
extra["load_seconds"] = time.perf_counter() - t0
extra["load_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
extra["arrays_persons"] = arrays.n_persons
extra["arrays_months"] = len(arrays.months)
extra["arrays_gib"] = (sum(a.nbytes for a in arrays.series.values())
                       + sum(a.nbytes for a in arrays.codes.values())) / 1024**3
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
res = run_estimates(arrays, pairs, tr, cfg.data.sources, out,
                    reps=cfg.estimates.reps, seed=cfg.estimates.seed)
extra.update(parts=res.seconds, treated=res.n_treated, twins=res.n_twins, pairs=pairs.height,
             headline={{h: {{k: r[k] for k in ("att", "se", "att_naive")}}
                       for h, r in res.headline.items()}})
"""


def run(config: Path, variant: str, out: Path, naive_sample: int | None) -> dict:
    """Run the estimates stage with ``variant``'s loader in a child process."""
    code = PRELUDE + BODY.format(load=LOAD[variant]) + EPILOGUE
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(config), str(out / variant),
         "config" if naive_sample is None else str(naive_sample)],
        capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"estimates ({variant}) failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"variant": variant, "seconds": round(res["seconds"], 1),
            "process_seconds": round(wall, 1), "peak_rss_gib": round(res["peak_rss_gib"], 2),
            **res["extra"],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg_start": load_before, "load_avg_end": os.getloadavg()}}


def compare(out: Path) -> dict:
    """Largest absolute difference between the ``full`` and ``subset`` outputs, per table
    (naive comparison columns apart)."""
    import numpy as np
    import polars as pl

    diffs: dict[str, float] = {}
    for name in ("event_study", "staggered_dynamic", "comparison", "subgroups",
                 "sector_benchmark"):
        a = pl.read_parquet(out / "full" / f"{name}.parquet")
        b = pl.read_parquet(out / "subset" / f"{name}.parquet")
        if a.shape != b.shape or a.columns != b.columns:
            diffs[name] = float("inf")
            continue
        worst = 0.0
        for c in a.columns:
            if "naive" in c:
                continue
            if a[c].dtype.is_numeric():
                x, y = a[c].cast(pl.Float64).to_numpy(), b[c].cast(pl.Float64).to_numpy()
                if (np.isnan(x) != np.isnan(y)).any():
                    worst = float("inf")
                    continue
                ok = ~np.isnan(x)
                worst = max(worst, float(np.abs(x[ok] - y[ok]).max(initial=0.0)))
            elif not a[c].equals(b[c]):
                worst = float("inf")
        diffs[name] = worst
    es = {v: pl.read_parquet(out / v / "event_study.parquet") for v in ("full", "subset")}
    naive = [c for c in es["full"].columns if "naive" in c]
    diffs["event_study_naive_max_abs"] = {
        c: float(np.nanmax(np.abs(es["full"][c].cast(pl.Float64).to_numpy()
                                  - es["subset"][c].cast(pl.Float64).to_numpy())))
        for c in naive}
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--variant", choices=sorted(LOAD))
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for the outputs (outside the repository)")
    ap.add_argument("--naive-sample", type=int, default=None,
                    help="subset variant: persons sampled for the naive comparison "
                    "(default: the config's estimates.naive_sample)")
    ap.add_argument("--compare", action="store_true",
                    help="compare the outputs of the two variants under --out")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from impact.config import load_config

    cfg = load_config(args.config)
    if args.compare:
        diffs = compare(args.out)
        data = json.loads(RESULTS.read_text())
        for r in data["runs"]:
            if r.get("variant") == "subset" and r.get("root") == str(cfg.data.root):
                r["max_abs_diff_vs_full"] = diffs
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps(diffs, indent=2))
        return
    if args.variant is None:
        ap.error("--variant is required (or --compare)")
    persons = pl_persons(cfg.data.panel)
    rec = {"persons": persons, "root": str(cfg.data.root), "reps": cfg.estimates.reps,
           **run(args.config, args.variant, args.out, args.naive_sample)}
    record_run(RESULTS, rec, keys=("persons", "variant"))
    # every run is kept in "history" too (timings vary with the machine's load)
    data = json.loads(RESULTS.read_text())
    data.setdefault("history", []).append(
        {k: rec[k] for k in ("persons", "variant", "seconds", "peak_rss_gib", "load_seconds",
                             "load_peak_rss_gib", "arrays_persons", "parts", "machine")})
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: rec[k] for k in ("variant", "seconds", "peak_rss_gib",
                                          "load_seconds", "arrays_persons")}))


def pl_persons(panel: Path) -> int:
    """Persons in the panel (largest pid + 1)."""
    import polars as pl

    scan = pl.scan_parquet(Path(panel) / "**" / "*.parquet", hive_partitioning=False)
    return int(scan.select(pl.col("pid").max()).collect().item()) + 1


if __name__ == "__main__":
    main()
