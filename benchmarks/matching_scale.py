"""Benchmark of the statistical-twin matching engine: wall time and peak memory per stage.

One matching problem of the size of a national cohort month: 1.2M candidate controls, 1,000
treated, 40 exact strata (region x sex x age band), 8 features (6 numeric, 2 categorical with
5 and 10 levels). Stages:

- ``ps_fit``: the per-call propensity model alone (unpenalised logistic regression);
- ``glm_per_call``: ``match()`` with the model fitted inside the call, k = 5, with replacement;
- ``glm_precomputed``: the same on a precomputed logit score (matching only);
- ``glm_precomputed_2threads``: the same, strata spread over 2 threads;
- ``glm_without_replacement``: precomputed score, k = 5, greedy without replacement;
- ``mahalanobis``: KD-tree on 4 whitened numeric features, k = 5, with replacement.

Peak RSS is sampled with psutil every 5 ms during each stage (``peak_rss_gib``: the largest
resident set size of the process seen during the stage; ``baseline_rss_gib``: before the
stage, with the input frame in memory). Figures go to
``benchmarks/results/matching_scale.json`` (one record per configuration, replaced on re-run).

The propensity fit is BLAS-bound: on small machines oversubscribed BLAS threads can slow it
down; the record notes ``OMP_NUM_THREADS`` so runs with ``OMP_NUM_THREADS=1`` are kept apart.

Usage::

    python benchmarks/matching_scale.py
    OMP_NUM_THREADS=1 python benchmarks/matching_scale.py
    python benchmarks/matching_scale.py --controls 300000 --treated 1000 --strata 40
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from _results import record_run

from impact.twins import MatchOptions, PropensityModel, match

RESULTS = Path(__file__).resolve().parent / "results" / "matching_scale.json"
GIB = 1024**3


class PeakRSS:
    """Sample this process's RSS in a background thread; ``peak`` after the block."""

    def __init__(self, interval: float = 0.005) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.proc.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def make_frame(n_controls: int, n_treated: int, n_strata: int, seed: int) -> pl.DataFrame:
    """Synthetic cohort: treated units are selected on the features (confounded)."""
    rng = np.random.default_rng(seed)
    n = n_controls + n_treated
    stratum = rng.integers(0, n_strata, n)
    age = rng.normal(42, 11, n)
    inc = [rng.lognormal(6.5, 0.6, n) for _ in range(3)]
    days = rng.integers(0, 1096, n).astype(np.float64)
    dependants = rng.poisson(0.8, n).astype(np.float64)
    edu = rng.choice([f"isced{i}" for i in range(5)], n)
    nace = rng.choice(list("ABCDEFGHIJ"), n)
    # treated: tilt towards younger, higher income, more days employed
    score = -0.03 * (age - 42) + 0.4 * np.log(inc[0]) + 0.001 * days + rng.normal(size=n)
    treated = np.zeros(n, dtype=bool)
    treated[np.argsort(-score)[: n_treated * 3][rng.permutation(n_treated * 3)[:n_treated]]] = True
    return pl.DataFrame(
        {
            "pid": rng.permutation(n).astype(np.int64),
            "treated": treated,
            "region": (stratum % 5).astype(np.int32),
            "sex": np.where((stratum // 5) % 2 == 0, "f", "m"),
            "age_band": (stratum // 10).astype(np.int32),
            "age": age,
            "inc_1": inc[0],
            "inc_2": inc[1],
            "inc_3": inc[2],
            "days_employed": days,
            "dependants": dependants,
            "education": edu,
            "nace": nace,
        }
    )


FEATURES = ["age", "inc_1", "inc_2", "inc_3", "days_employed", "dependants", "education", "nace"]
EXACT = ["region", "sex", "age_band"]


def timed(label: str, fn: Callable[[], object], stages: dict) -> object:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
    stages[label] = {
        "wall_seconds": round(wall, 3),
        "baseline_rss_gib": round(mem.baseline / GIB, 3),
        "peak_rss_gib": round(mem.peak / GIB, 3),
    }
    print(f"{label:28s} {wall:8.3f} s   peak RSS {mem.peak / GIB:.3f} GiB")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--controls", type=int, default=1_200_000)
    ap.add_argument("--treated", type=int, default=1_000)
    ap.add_argument("--strata", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.strata != 40:
        raise SystemExit("the exact columns encode 40 strata (5 regions x 2 sexes x 4 bands)")

    t0 = time.perf_counter()
    df = make_frame(args.controls, args.treated, args.strata, args.seed)
    print(f"frame {df.height:,} rows built in {time.perf_counter() - t0:.1f} s")
    stages: dict[str, dict] = {}

    model = timed(
        "ps_fit", lambda: PropensityModel().fit(df, treatment="treated", features=FEATURES), stages
    )
    df = df.with_columns(pl.Series("ps", model.logit(df)))
    glm = MatchOptions(ratio=5, exact=EXACT)
    res = timed(
        "glm_per_call",
        lambda: match(df, treatment="treated", id="pid", features=FEATURES, options=glm),
        stages,
    )
    pre = MatchOptions(ratio=5, exact=EXACT, ps_model="precomputed")
    res_pre = timed(
        "glm_precomputed",
        lambda: match(df, treatment="treated", id="pid", score="ps", options=pre),
        stages,
    )
    timed(
        "glm_precomputed_2threads",
        lambda: match(df, treatment="treated", id="pid", score="ps", options=pre, n_jobs=2),
        stages,
    )
    nr = MatchOptions(ratio=5, exact=EXACT, ps_model="precomputed", replace=False)
    res_nr = timed(
        "glm_without_replacement",
        lambda: match(df, treatment="treated", id="pid", score="ps", options=nr),
        stages,
    )
    mah = MatchOptions(distance="mahalanobis", ratio=5, exact=EXACT, caliper=None)
    timed(
        "mahalanobis",
        lambda: match(
            df,
            treatment="treated",
            id="pid",
            features=["age", "inc_1", "days_employed", "dependants"],
            options=mah,
        ),
        stages,
    )

    record = {
        "controls": args.controls,
        "treated": args.treated,
        "strata": args.strata,
        "seed": args.seed,
        "features": len(FEATURES),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "stages": stages,
        "result": {
            "glm_per_call": res.summary(),
            "glm_precomputed": res_pre.summary(),
            "glm_without_replacement": res_nr.summary(),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "measured": time.strftime("%Y-%m-%d"),
    }
    record_run(RESULTS, record,
               keys=("controls", "treated", "strata", "seed", "omp_num_threads"))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
