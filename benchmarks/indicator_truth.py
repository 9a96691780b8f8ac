"""Truth recovery of the impact indicators: EECR06 net and the earnings ROI.

Runs :func:`impact.indicators.compute_indicators` on an evaluated data root (``panel/``,
``research/``, ``sources/``, ``twins/`` from ``impact run --select research,evaluation``)
and compares with the generator's ground truth (``truth/``; only this script and the tests
read it):

- **EECR06** (each criterion and combined): the true net effect is the treated-path rate
  minus the untreated-path rate over the *participants the estimate counts* (employed at
  entry, matched, horizon observed), using the generator's own definition
  (:func:`impact.synth.truth.eecr06`); the population truth over all participants
  (``truth/eecr06.parquet``) is reported beside it.
- **ROI** (12 and 24 months, per EUR of public and of total cost, annualised): the true
  extra real earnings ``sum over L+1..L+h of (Y1 - Y0)`` over the counted participants
  divided by their summed cost.

Checks: the estimate within 2 SE of the sample truth. Results go to
``benchmarks/results/indicator_truth.json`` (one record per data root).

Usage::

    python benchmarks/indicator_truth.py data/demo
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from _results import record_run

from impact.indicators import IndicatorSettings, compute_indicators, prepare, read_pairs
from impact.pseudonym import PseudonymKey, pseudonymise
from impact.synth import truth as T

RESULTS = Path(__file__).resolve().parent / "results" / "indicator_truth.json"


def truth_paths(root: Path) -> pl.DataFrame:
    p = pl.read_parquet(root / "truth" / "paths.parquet")
    return p.with_columns(
        pseudonymise(p["person_code"], PseudonymKey.demo(), "person").alias("pseudonym"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    root = args.root.resolve()
    settings = IndicatorSettings()
    pairs = read_pairs(root / "twins")
    treatment = pl.read_parquet(root / "research" / "treatment.parquet")
    t0 = time.perf_counter()
    res = compute_indicators(root / "panel", pairs, treatment, root / "sources", settings)
    secs = time.perf_counter() - t0
    sample, _, values = prepare(root / "panel", pairs, treatment, root / "sources", settings)
    by_id = {v.spec.id: v for v in values}
    head = res.table.filter(pl.col("dimension") == "all")
    paths = truth_paths(root)
    codes = sample.info["person_code"].to_numpy()

    def est(ind: str) -> dict[str, Any]:
        r = head.filter(pl.col("indicator") == ind).row(0, named=True)
        return {k: r[k] for k in ("n_participants", "n_twins", "participants", "twins", "net",
                                  "se", "ci_low", "ci_high")}

    def counted(ind: str) -> np.ndarray:
        v = by_id[ind]
        # a participant counts when its value is observed and some twin's value is too
        obs_p = np.isfinite(v.post_p) & (sample.weight > 0)
        if v.pre_p is not None:
            obs_p &= np.isfinite(v.pre_p)
        has_twin = np.bincount(sample.pair_treated, obs_p, sample.n_treated) > 0
        ok = np.isfinite(v.post_t) & has_twin
        if v.pre_t is not None:
            ok &= np.isfinite(v.pre_t)
        return codes[ok]

    out: dict[str, Any] = {"root": str(root), "n_treated": res.n_treated,
                           "n_pairs": res.n_pairs, "seconds_compute_indicators": secs,
                           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    # EECR06 on the counted participants, by the generator's definition
    pop = pl.read_parquet(root / "truth" / "eecr06.parquet")
    eecr = {}
    for crit in ("any", "occupation_up", "pay_up", "fixed_to_permanent", "part_to_full_time"):
        ind = f"eecr06_{crit}"
        who = counted(ind)
        p = paths.filter(pl.col("pseudonym").is_in(who)).with_columns(
            pl.col("pseudonym").alias("person"))
        t = T.eecr06(p).filter(pl.col("criterion") == crit).row(0, named=True)
        e = est(ind)
        z = (e["net"] - t["true_net_effect"]) / e["se"]
        eecr[ind] = {**e, "truth_sample": t["true_net_effect"], "n_truth": t["n_reference"],
                     "truth_treated_rate": t["treated"], "truth_untreated_rate": t["untreated"],
                     "truth_population": pop.filter(pl.col("criterion") == crit)[
                         "true_net_effect"][0],
                     "z": z, "within_2se": bool(abs(z) <= 2)}
    out["eecr06"] = eecr
    # ROI
    cost = treatment.select("person_code", pl.col("public_cost_eur").alias("public"),
                            (pl.col("public_cost_eur") + pl.col("co_payment_eur").fill_null(0))
                            .alias("total"))
    roi = {}
    for ind, num, h, which, scale in (
            ("roi_public_h12", "earnings_real_sum_h12", 12, "public", 1.0),
            ("roi_total_h12", "earnings_real_sum_h12", 12, "total", 1.0),
            ("roi_public_h24", "earnings_real_sum_h24", 24, "public", 1.0),
            ("roi_total_h24", "earnings_real_sum_h24", 24, "total", 1.0),
            ("roi_public_annual", "earnings_real_sum_h24", 24, "public", 0.5)):
        who = counted(num)
        gain = (paths.filter(pl.col("pseudonym").is_in(who)
                             & pl.col("event_end").is_between(1, h))
                .group_by("pseudonym")
                .agg((pl.col("earnings_real_1") - pl.col("earnings_real_0")).sum().alias("g")))
        c = cost.filter(pl.col("person_code").is_in(who))
        true_roi = scale * float(gain["g"].sum()) / float(c[which].sum())
        e = est(ind)
        z = (e["net"] - true_roi) / e["se"]
        roi[ind] = {**e, "truth_sample": true_roi, "n_truth": gain.height, "z": z,
                    "within_2se": bool(abs(z) <= 2)}
    out["roi"] = roi
    out["checks"] = {"eecr06_any_within_2se": eecr["eecr06_any"]["within_2se"],
                     "roi_within_2se": all(r["within_2se"] for r in roi.values())}
    record_run(args.out, out, ["root"])
    for k, r in {**eecr, **roi}.items():
        print(f"{k:26s} est {r['net']:9.4f} (SE {r['se']:.4f})  truth {r['truth_sample']:9.4f}"
              f"  z {r['z']:+.2f}")
    print("checks:", out["checks"])


if __name__ == "__main__":
    main()
