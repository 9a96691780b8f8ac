"""The evaluation stages after the panel: statistical twins, outcomes and estimates.

Plain functions over paths and frames, called by the Dagster assets (``pipelines/``) and
usable from a notebook. Each stage reads what the previous one wrote under the data root:

``twins/``
    :func:`run_twins` -- risk-set matching per cohort month (:mod:`impact.twins.riskset`):
    ``pairs/cohort=YYYY-MM/``, ``summary``, ``balance``, ``unmatched``,
    ``pre_trajectories`` and ``settings.json``.
``estimates/``
    :func:`run_estimates` -- matched DiD event studies of every outcome on both clocks
    (start, leaving) with the naive comparison for earnings (``event_study.parquet``), the
    staggered ATT(g,t) cross-check on the same matched persons
    (``staggered_dynamic.parquet``), the side-by-side comparison with disagreement flags
    (``comparison.parquet``) and ``headline.json`` (earnings 6/12/24 months after leaving).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from impact.twins.features import HISTORY, PanelArrays
from impact.twins.riskset import TwinSettings, TwinsResult, match_cohorts, pre_trajectories
from impact.twins.riskset import write as write_twins

#: Event times (months after leaving) reported as headline horizons.
HORIZONS = (6, 12, 24)
#: Disagreement flag: matched and staggered estimates differ by more than this many
#: combined standard errors.
DISAGREEMENT_Z = 2.0


def _atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.write_parquet(tmp, compression="zstd")
    tmp.replace(path)


def _atomic_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_arrays(panel_dir: Path, treatment: pl.DataFrame) -> PanelArrays:
    """The panel as arrays from 36 months before the first cohort to the last month."""
    first = treatment["cohort"].min()
    if first is None:
        raise ValueError("no treated persons: the treatment table is empty")
    start = date(first.year - HISTORY // 12, first.month, 1)
    return PanelArrays.load(panel_dir, first=start)


def run_twins(arrays: PanelArrays, settings: TwinSettings, out: Path) -> TwinsResult:
    """Match every cohort and write the twins and their diagnostics to ``out``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = match_cohorts(arrays, settings)
    write_twins(result, out)
    _atomic_parquet(pre_trajectories(arrays, result), out / "pre_trajectories.parquet")
    return result


@dataclass(frozen=True)
class EstimatesSummary:
    """What :func:`run_estimates` wrote (plain values for asset metadata)."""

    headline: dict[str, Any]
    n_treated: int
    n_twins: int
    disagreements: int
    seconds: dict[str, float]


def staggered_on_matched(arrays: PanelArrays, pairs: pl.DataFrame, *,
                         outcome: str = "earnings_real", event_times: range = range(-12, 25),
                         seed: int = 0) -> pl.DataFrame:
    """Callaway & Sant'Anna ATT(g,t), dynamic aggregation, on the matched persons.

    Units: the matched treated persons and their distinct twins; periods: the loaded months;
    group: month of the unit's first ILA start (never-starters 0); comparison: not yet
    treated (a twin who starts later is a comparison unit until then). Outcome regression
    without covariates (the units are already matched), varying base period, no
    anticipation, analytic standard errors. Months in which a person is out of the panel
    count as zero earnings (the convention of the generator's truth).

    Returns
    -------
    polars.DataFrame
        ``event_time``, ``att``, ``se``, ``ci_low``, ``ci_high`` (start clock).
    """
    from impact.estimate.staggered import att_gt

    units = np.unique(np.r_[pairs["treated_pid"].to_numpy(), pairs["twin_pid"].to_numpy()])
    y = arrays.series[outcome][units].astype(np.float64)
    t_n = y.shape[1]
    g = arrays.first_start[units].astype(np.int64)
    g = np.where(g >= 0, g + 1, 0)  # periods are 1-based; 0 = never treated
    long = pl.DataFrame({
        "id": np.repeat(units, t_n),
        "t": np.tile(np.arange(1, t_n + 1), units.size),
        "g": np.repeat(g, t_n),
        "y": y.ravel(),
    })
    res = att_gt(long, y="y", t="t", g="g", id="id", control_group="not_yet_treated",
                 est_method="reg", bootstrap=False, cband=False, seed=seed)
    agg = res.aggregate("dynamic", min_e=event_times.start, max_e=event_times.stop - 1,
                        na_rm=True, bootstrap=False, cband=False)
    return agg.table.rename({"e": "event_time"}) if "e" in agg.table.columns else agg.table


def run_estimates(arrays: PanelArrays, pairs: pl.DataFrame, treatment: pl.DataFrame,
                  sources: Path, out: Path, *, reps: int = 999, seed: int = 0) -> EstimatesSummary:
    """Matched event studies, the staggered cross-check and their comparison, to ``out``."""
    from impact.estimate.matched_did import matched_event_study
    from impact.outcomes import build_trajectories, load_sector_rel_wage

    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    traj = build_trajectories(arrays, pairs, treatment,
                              sector_rel_wage=load_sector_rel_wage(sources))
    secs["trajectories"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = []
    headline: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for outcome in traj.outcomes:
            for clock in ("start", "end"):
                naive = outcome == "earnings_real"
                res = matched_event_study(traj, outcome, clock, reps=reps, seed=seed,
                                          arrays=arrays if naive else None)
                tables.append(res.table())
                if outcome == "earnings_real" and clock == "end":
                    headline = {str(h): res.at(h) for h in HORIZONS
                                if h in set(res.event_time.tolist())}
    event_study = pl.concat(tables, how="diagonal_relaxed")
    secs["matched_event_studies"] = time.perf_counter() - t0
    _atomic_parquet(event_study, out / "event_study.parquet")

    t0 = time.perf_counter()
    stag = staggered_on_matched(arrays, pairs, seed=seed)
    secs["staggered"] = time.perf_counter() - t0
    _atomic_parquet(stag, out / "staggered_dynamic.parquet")
    matched = event_study.filter((pl.col("outcome") == "earnings_real")
                                 & (pl.col("clock") == "start")).select(
        "event_time", pl.col("att").alias("att_matched"), pl.col("se").alias("se_matched"))
    cmp = matched.join(stag.select("event_time", pl.col("att").alias("att_staggered"),
                                   pl.col("se").alias("se_staggered")),
                       on="event_time", how="inner").with_columns(
        ((pl.col("att_matched") - pl.col("att_staggered"))
         / (pl.col("se_matched") ** 2 + pl.col("se_staggered") ** 2).sqrt()).alias("z"),
    ).with_columns((pl.col("z").abs() > DISAGREEMENT_Z).alias("disagree")).sort("event_time")
    _atomic_parquet(cmp, out / "comparison.parquet")
    n_treated = int(pairs["treated_pid"].n_unique())
    _atomic_json({"outcome": "earnings_real", "clock": "end", "unit": "EUR per month, "
                  "real (CPI base year)", "horizons": headline,
                  "staggered_disagreements": int(cmp["disagree"].sum()),
                  "seconds": secs}, out / "headline.json")
    return EstimatesSummary(headline=headline, n_treated=n_treated,
                            n_twins=int(pairs["twin_pid"].n_unique()),
                            disagreements=int(cmp["disagree"].sum()), seconds=secs)
