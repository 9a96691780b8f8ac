"""Benchmark of the staggered ATT(g,t) estimator (Callaway & Sant'Anna) at register scale.

Simulates a balanced panel (default 100,000 units x 48 periods, 24 treatment cohorts plus
never-treated units, parallel trends, a homogeneous effect of 1.0 from the treatment period
on), runs ``impact.estimate.att_gt`` and the dynamic (event-study) aggregation, and writes wall
time and peak memory per configuration to ``benchmarks/results/staggered_scale.json`` (one
record per configuration, replaced on re-run). Three inference modes: ``analytic`` (influence-
function standard errors throughout), ``boot_dynamic`` (analytic ATT(g,t), multiplier bootstrap
and uniform band for the event study) and ``boot_all`` (R's default: bootstrap and uniform
bands for every cell too: with covariates a reps x units x cells product; without, the
influence functions are held factored and the product is reps x units x (periods + 1), then
small per-cohort products). Peak RSS is this process's maximum
resident set size (``getrusage``), so it includes the simulated data; the 1-minute load average
is recorded because the machine may be shared.

Usage::

    python benchmarks/staggered_scale.py
    python benchmarks/staggered_scale.py --units 20000 --methods reg --modes analytic
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl

from impact.estimate import att_gt

RESULTS = Path(__file__).resolve().parent / "results" / "staggered_scale.json"


def simulate(units: int, periods: int, cohorts: int, seed: int) -> pl.DataFrame:
    """Long panel: y = unit effect + period effect + 1.0 * treated + noise; one covariate."""
    rng = np.random.default_rng(seed)
    first = periods // 4 + 1
    g_values = np.arange(first, first + cohorts)
    # 30% never treated, the rest spread evenly over the cohorts
    g = np.where(rng.random(units) < 0.3, 0, rng.choice(g_values, size=units))
    x = rng.normal(size=units)
    alpha = rng.normal(size=units) + 0.5 * x
    t = np.arange(1, periods + 1)
    gamma = 0.05 * t + 0.3 * np.sin(t / 5)
    treated = (g[:, None] > 0) & (t[None, :] >= g[:, None])
    y = alpha[:, None] + gamma[None, :] + 1.0 * treated + rng.normal(size=(units, periods))
    return pl.DataFrame(
        {
            "id": np.repeat(np.arange(units, dtype=np.int64), periods),
            "t": np.tile(t, units),
            "g": np.repeat(g, periods),
            "x": np.repeat(x, periods),
            "y": y.ravel(),
        }
    )


MODES = {
    # att_gt inference, dynamic-aggregation inference
    "analytic": (False, False),  # analytic SEs everywhere, pointwise intervals
    "boot_dynamic": (False, True),  # analytic ATT(g,t) SEs; bootstrap + uniform band for e
    "boot_all": (True, True),  # R's default: bootstrap + uniform bands for cells and e
}


def run_one(df: pl.DataFrame, method: str, covariates: bool, mode: str) -> dict:
    boot_cells, boot_dyn = MODES[mode]
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = att_gt(
        df,
        y="y",
        t="t",
        g="g",
        id="id",
        x=("x",) if covariates else (),
        est_method=method,
        bootstrap=boot_cells,
        cband=boot_cells,
    )
    t1, c1 = time.perf_counter(), time.process_time()
    dyn = res.aggregate("dynamic", bootstrap=boot_dyn, cband=boot_dyn)
    t2, c2 = time.perf_counter(), time.process_time()
    post = dyn.table.filter(pl.col("event_time") >= 0)
    return {
        "est_method": method,
        "covariates": ["x"] if covariates else [],
        "mode": mode,
        "biters": res.options.biters if boot_dyn else 0,
        "cells": res.table.height,
        "event_times": dyn.table.height,
        "att_gt_seconds": round(t1 - t0, 2),
        "dynamic_seconds": round(t2 - t1, 2),
        "wall_seconds": round(t2 - t0, 2),
        # CPU seconds of this process (all threads): less sensitive to a shared machine
        "att_gt_cpu_seconds": round(c1 - c0, 2),
        "dynamic_cpu_seconds": round(c2 - c1, 2),
        "dynamic_overall_att": round(dyn.att, 4),
        "dynamic_overall_se": round(dyn.se, 5),
        "dynamic_crit_uniform": None if dyn.crit_uniform is None else round(dyn.crit_uniform, 3),
        "max_abs_error_post_event_times": round(float((post["att"] - 1.0).abs().max()), 4),
        "pretest_pvalue": None if res.pretest is None else round(res.pretest.pvalue, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--periods", type=int, default=48)
    ap.add_argument("--cohorts", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=["reg", "dr"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = ap.parse_args()

    t0 = time.perf_counter()
    df = simulate(args.units, args.periods, args.cohorts, args.seed)
    sim_seconds = time.perf_counter() - t0
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    key = ("units", "periods", "cohorts", "est_method", "covariates", "mode")
    for method in args.methods:
        for cov in (False, True):
            for mode in args.modes:
                if mode == "boot_all" and (cov or method != args.methods[0]):
                    continue  # the full cell bootstrap costs the same whatever the estimator
                rec = {
                    "units": args.units,
                    "periods": args.periods,
                    "cohorts": args.cohorts,
                    "rows": df.height,
                    "simulate_seconds": round(sim_seconds, 2),
                    **run_one(df, method, cov, mode),
                    "peak_rss_gib": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2
                    ),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                    },
                }
                print(json.dumps(rec), flush=True)
                existing["runs"] = [
                    r
                    for r in existing["runs"]
                    if tuple(r.get(k) for k in key) != tuple(rec[k] for k in key)
                ] + [rec]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
