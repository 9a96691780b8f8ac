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
    (``staggered_dynamic.parquet``), the joint pre-trend test of every outcome
    (``pretrend.json``), the side-by-side comparison with disagreement flags
    (``comparison.parquet``), ``headline.json`` (earnings 6/12/24 months after leaving) and
    ``refutation.json`` (DoWhy refuters, E-values and Rosenbaum bounds at those horizons,
    placebo in time), ``subgroups.parquet`` (earnings effects by sex, age band,
    education, region and employment at the start) and ``sector_benchmark.parquet`` (the
    participants' earnings path beside their NACE division's average path: a descriptive
    reference, not a counterfactual; :mod:`impact.sector_benchmark`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from impact.atomic import write_json, write_parquet
from impact.twins.features import HISTORY, PanelArrays
from impact.twins.riskset import TwinSettings, TwinsResult, match_cohorts
from impact.twins.riskset import write as write_twins

#: Event times (months after leaving) reported as headline horizons.
HORIZONS = (6, 12, 24)
#: Fewest treated persons with an estimate for which refuters and bounds are computed.
MIN_TREATED_REFUTE = 20
#: Disagreement flag: matched and staggered estimates differ by more than this many
#: combined standard errors.
DISAGREEMENT_Z = 2.0


#: Default of ``estimates.naive_sample``: persons sampled for the naive comparison.
NAIVE_SAMPLE = 200_000


def _first_month(treatment: pl.DataFrame) -> date:
    """36 months before the first cohort (the first month the estimates need)."""
    first = treatment["cohort"].min()
    if first is None:
        raise ValueError("no treated persons: the treatment table is empty")
    return date(first.year - HISTORY // 12, first.month, 1)


def load_arrays(panel_dir: Path, treatment: pl.DataFrame) -> PanelArrays:
    """The panel as arrays from 36 months before the first cohort to the last month."""
    return PanelArrays.load(panel_dir, first=_first_month(treatment))


def load_estimation_arrays(
    panel_dir: Path,
    treatment: pl.DataFrame,
    pairs: pl.DataFrame,
    *,
    naive_sample: int = NAIVE_SAMPLE,
    seed: int = 0,
) -> tuple[PanelArrays, pl.DataFrame]:
    """The persons the estimates need as arrays, and ``pairs`` indexed into them.

    What :func:`run_estimates` reads of the panel: the matched treated persons and their
    twins (every estimate but the naive comparison) and, for the naive comparison's mean
    change of the risk set (:func:`impact.outcomes.candidate_change_means`), a uniform
    random sample of ``naive_sample`` of the panel's persons (seeded; drawn from all
    persons, participants and twins included, so that its members of a cohort's risk set
    are a uniform sample of that risk set). The arrays are a subset
    (:meth:`PanelArrays.load` with ``pids``) over the months of :func:`load_arrays`, with
    ``population_sample`` marking the sampled rows.

    Parameters
    ----------
    panel_dir
        The panel.
    treatment
        ``research/treatment.parquet`` (its first cohort sets the first month loaded).
    pairs
        The twins (:func:`impact.indicators.read_pairs`): ``treated_code``/``twin_code``
        identify the persons; their ``treated_pid``/``twin_pid`` are tried first and, if
        the panel's pids have moved since matching (a later delivery), the persons are
        found by their codes.
    naive_sample
        Persons sampled for the naive comparison; at least the panel's persons: everyone
        (the whole-panel arrays of :func:`load_arrays` are returned then).
    seed
        Seed of the sample.

    Returns
    -------
    arrays : PanelArrays
        Rows: the union of the treated, the twins and the sample, in pid order
        (``arrays.source_pid``); every person if the sample is everyone.
    pairs : polars.DataFrame
        ``pairs`` with ``treated_pid``/``twin_pid`` the persons' rows in ``arrays``
        (:func:`impact.twins.plan.align_pairs`).

    Notes
    -----
    Every estimate equals that on the whole-panel arrays (:func:`load_arrays`) except the
    naive comparison columns, whose candidate means are over the sample (the same when
    the sample is everyone). Memory of the load: about ``(n_treated + n_twins +
    naive_sample) x n_months x 75`` bytes at its peak (the arrays take 38 bytes per
    person-month, the rest are the yearly scans' frames and the interpreter), whatever the
    population: measured 1.6 GiB at national scale (14,407 treated, 61,493 twins, the
    default 200,000 sample: 261,601 persons x 82 months; the whole-panel load of 1.2 M
    persons peaks at 4.9 GiB; ``benchmarks/results/estimates_memory.json``). The
    estimation after it adds what grows with the participants (trajectories, bootstrap
    influence rows; about 1 GiB there). The sector daily wage outcome still needs the whole
    panel: it is aggregated by a scan (:func:`impact.outcomes.sector_daily_wage_table`).
    """
    from dataclasses import replace

    from impact.twins.plan import align_pairs

    if naive_sample < 0:
        raise ValueError(f"naive_sample must be >= 0, got {naive_sample}")
    first = _first_month(treatment)
    scan = pl.scan_parquet(Path(panel_dir) / "**" / "*.parquet", hive_partitioning=False)
    n_panel = int(scan.select(pl.col("pid").max()).collect().item()) + 1
    if naive_sample >= n_panel:  # everyone: the whole-panel arrays (faster to load)
        arrays = PanelArrays.load(panel_dir, first=first)
        return arrays, align_pairs(pairs, arrays.person_code)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n_panel, size=naive_sample, replace=False))
    codes = pl.concat([pairs["treated_code"].cast(pl.Utf8),
                       pairs["twin_code"].cast(pl.Utf8)]).unique()
    matched = np.r_[pairs["treated_pid"].to_numpy(), pairs["twin_pid"].to_numpy()]
    arrays = PanelArrays.load(panel_dir, first=first,
                              pids=np.union1d(matched.astype(np.int64), sample))
    if not codes.is_in(pl.Series(arrays.person_code, dtype=pl.Utf8).implode()).all():
        # the pids moved since matching: find the persons by their codes
        found = (scan.filter(pl.col("person_code").is_in(codes.implode())).select("pid")
                 .unique().collect()["pid"].to_numpy())
        arrays = PanelArrays.load(panel_dir, first=first,
                                  pids=np.union1d(found.astype(np.int64), sample))
    arrays = replace(arrays, population_sample=np.isin(arrays.source_pid, sample))
    return arrays, align_pairs(pairs, arrays.person_code)


def store_cohort_outcomes(panel_dir: Path, treatment: pl.DataFrame, pairs: pl.DataFrame,
                          cohorts: list[date], sources: Path, store: Path) -> Any:
    """Build and store the event-time trajectories of ``cohorts`` (:mod:`impact.outcome_store`).

    Loads only those cohorts' treated persons and twins (:func:`load_estimation_arrays`
    without a sample), so memory follows the cohorts' size. Cohorts already stored with
    current inputs are left as they are; a cohort without matched pairs has no
    trajectories. Returns the :class:`impact.outcome_store.StoreStats`.
    """
    from impact.outcome_store import StoreStats, store_cohorts
    from impact.outcomes import load_sector_rel_wage

    sel = pairs.filter(pl.col("cohort").is_in(cohorts))
    if sel.height == 0:
        return StoreStats((), ())
    arrays, sel = load_estimation_arrays(panel_dir, treatment, sel, naive_sample=0)
    return store_cohorts(arrays, sel, treatment, store,
                         sector_rel_wage=load_sector_rel_wage(sources))


def run_twins(arrays: PanelArrays, settings: TwinSettings, out: Path) -> TwinsResult:
    """Match every cohort and write the twins and their diagnostics to ``out``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = match_cohorts(arrays, settings, pre=True)
    write_twins(result, out)
    return result


@dataclass(frozen=True)
class EstimatesSummary:
    """What :func:`run_estimates` wrote (plain values for asset metadata)."""

    headline: dict[str, Any]
    n_treated: int
    n_twins: int
    disagreements: int
    seconds: dict[str, float]
    #: cohorts whose trajectories came from the outcome store / were built (with a store)
    cohorts_reused: tuple[str, ...] = ()
    cohorts_built: tuple[str, ...] = ()


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


def matched_cross_section(arrays: PanelArrays, traj: Any, outcome: str, horizon: int,
                          clock: str = "end",
                          baseline: tuple[int, int] = (-12, -1)) -> pl.DataFrame:
    """The matched sample at one horizon as a cross-section, for refutation.

    One row per treated person (weight 1) and one per (treated, twin) pair (weight: the
    pair's matching weight renormalised over the twins observed at the horizon), with
    ``change`` = outcome at the horizon minus the pre-period baseline, the matching
    features of the cohort month (numeric ones) and ``set`` (the treated person's matched
    set, for clustering). Units or twins not observed at the horizon are left out.
    """
    from impact.twins.features import NUMERIC_FEATURES, features_at

    grid = traj.grid(clock)
    i = grid.column(horizon)
    base_t, base_w = traj.baseline(outcome, baseline)
    yt = grid.treated[outcome][:, i].astype(np.float64) - base_t
    yw = grid.twins[outcome][:, i].astype(np.float64) - base_w
    pt = traj.pair_treated
    ok_w = np.isfinite(yw)
    w = np.where(ok_w, traj.weight, 0.0)
    wsum = np.bincount(pt, weights=w, minlength=traj.n_treated)
    keep_t = np.isfinite(yt) & (wsum > 0)
    w = np.where(ok_w & keep_t[pt], w / np.where(wsum[pt] > 0, wsum[pt], 1.0), 0.0)
    rows_t = np.nonzero(keep_t)[0]
    rows_w = np.nonzero(w > 0)[0]
    parts = []
    for cohort in np.unique(traj.cohort[rows_t]):
        t_rows = rows_t[traj.cohort[rows_t] == cohort]
        w_rows = rows_w[traj.cohort[pt[rows_w]] == cohort]
        pids = np.r_[traj.treated_pid[t_rows], traj.twin_pid[w_rows]]
        feats = features_at(arrays, int(cohort), pids).select(NUMERIC_FEATURES)
        parts.append(feats.with_columns(
            pl.Series("treated", np.r_[np.ones(t_rows.size, np.int8),
                                       np.zeros(w_rows.size, np.int8)]),
            pl.Series("change", np.r_[yt[t_rows], yw[w_rows]]),
            pl.Series("weight", np.r_[np.ones(t_rows.size), w[w_rows]]),
            pl.Series("set", np.r_[t_rows, pt[w_rows]].astype(np.int64)),
        ))
    return pl.concat(parts)


def refute_and_sensitivity(arrays: PanelArrays, traj: Any, res: Any, *,
                           outcome: str = "earnings_real", horizons: tuple[int, ...] = HORIZONS,
                           seed: int = 0) -> dict[str, Any]:
    """DoWhy refuters, E-values and Rosenbaum bounds for the headline horizons.

    The refuters run on :func:`matched_cross_section` with the numeric matching features as
    common causes and the event study's SE for the pass rules. Rosenbaum bounds use the
    per-treated matched differences of the event study; E-values standardise the effect by
    the weighted SD of the twins' changes.
    """
    from impact.estimate.refute import refute_matched
    from impact.estimate.sensitivity import e_value, outcome_sd_among_twins, rosenbaum_gamma
    from impact.twins.features import NUMERIC_FEATURES

    out: dict[str, Any] = {}
    have = set(res.event_time.tolist())
    for h in horizons:
        if h not in have:
            continue
        r = res.at(h)
        diffs = res.unit_effect[:, res._col(h)]
        n_used = int(np.isfinite(diffs).sum())
        if not (np.isfinite(r["se"]) and r["se"] > 0) or n_used < MIN_TREATED_REFUTE:
            out[str(h)] = {"att": r["att"], "se": r["se"], "skipped":
                           f"{n_used} treated persons with an estimate and SE {r['se']}: "
                           f"refutation needs at least {MIN_TREATED_REFUTE} and SE > 0"}
            continue
        frame = matched_cross_section(arrays, traj, outcome, h, clock=res.clock)
        causes = [c for c in NUMERIC_FEATURES if frame[c].n_unique() > 1]
        report = refute_matched(frame, treatment="treated", outcome="change",
                                common_causes=causes, weights="weight", cluster="set",
                                seed=seed, se=r["se"], placebo_reps=50, subset_reps=25,
                                random_common_cause_reps=25)
        sd = outcome_sd_among_twins(frame, treatment="treated", outcome="change",
                                    weights="weight")
        ev = e_value(r["att"], (r["ci_low"], r["ci_high"]), outcome_sd=sd)
        rb = rosenbaum_gamma(diffs[np.isfinite(diffs)],
                             alternative="greater" if r["att"] >= 0 else "less")
        out[str(h)] = {"att": r["att"], "se": r["se"], "refutation": report.to_dict(),
                       "e_value": ev.to_dict(), "rosenbaum": rb.to_dict()}
    return out


#: Subgroup dimensions of the estimates (treated persons' matching features at the cohort):
#: the publication's breakdowns among the default exact strata
#: (:data:`impact.twins.riskset.STATUS_EXACT`), so that a subgroup's twins share its value;
#: region only in the first pass (treated persons matched in a coarser pass, counted in the
#: twins' summary as ``n_matched_fallback``, may have twins from another region).
SUBGROUPS = ("sex", "age_band", "edu_band", "region_code", "employed_l1", "registered_l1")


def subgroup_estimates(arrays: PanelArrays, traj: Any, *, outcome: str = "earnings_real",
                       clock: str = "end", horizons: tuple[int, ...] = HORIZONS,
                       dimensions: tuple[str, ...] = SUBGROUPS, min_treated: int = 30,
                       reps: int = 999, seed: int = 0,
                       bias_correction: bool = False) -> pl.DataFrame:
    """Matched DiD by subgroup of the treated persons (same twins, same estimator).

    A subgroup is defined by the treated person's value of a matching feature at the cohort
    month (e.g. sex, age band); its twins follow it. Subgroups with fewer than
    ``min_treated`` treated persons are listed with null estimates. With
    ``bias_correction`` (``traj`` must carry covariates) each subgroup's regression is fitted
    on its own twins; a subgroup too small for it keeps the plain estimate
    (``bias_corrected`` false).

    Returns
    -------
    polars.DataFrame
        ``dimension``, ``value``, ``event_time``, ``att``, ``se``, ``ci_low``, ``ci_high``,
        ``pvalue``, ``n_treated``, ``n_twins``.
    """
    from impact.estimate.matched_did import matched_event_study
    from impact.twins.features import features_at

    values: dict[str, np.ndarray] = {d: np.empty(traj.n_treated, dtype=object)
                                     for d in dimensions}
    for cohort in np.unique(traj.cohort):
        rows = np.nonzero(traj.cohort == cohort)[0]
        f = features_at(arrays, int(cohort), traj.treated_pid[rows])
        for d in dimensions:
            values[d][rows] = f[d].cast(pl.Utf8).to_numpy()
    out = []
    for d in dimensions:
        for v in sorted(set(values[d].tolist())):
            keep = values[d] == v
            row = {"dimension": d, "value": str(v), "n_treated": int(keep.sum())}
            if keep.sum() < min_treated:
                out += [row | {"event_time": h} for h in horizons]
                continue
            sub = traj.subset(keep)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = matched_event_study(sub, outcome, clock, event_times=list(horizons),
                                          reps=reps, seed=seed, bias_correction=bias_correction)
            for h in horizons:
                if h not in set(res.event_time.tolist()):
                    continue
                r = res.at(h)
                extra = ({"bias_corrected": bool(res.bias_corrected[res._col(h)])}
                         if res.bias_corrected is not None else {})
                out.append(row | {"event_time": h, "att": r["att"], "se": r["se"],
                                  "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                                  "pvalue": r["pvalue"],
                                  "n_twins": int(np.unique(sub.twin_pid).size)} | extra)
    return pl.DataFrame(out, infer_schema_length=None)


def placebo_in_time(traj: Any, *, outcome: str = "earnings_real", shift: int = 12,
                    reps: int = 999, seed: int = 0) -> dict[str, Any]:
    """The matched DiD with a fake start ``shift`` months before the real one.

    The change from the mean of start-clock months ``-shift-12 .. -shift-1`` (the fake
    pre-period) to month ``-1`` (the last month before the real start) compares treated
    persons and twins entirely before training: under parallel trends it is zero. Note that
    the earnings means of months 13-24 and 25-36 before the start are matching features, so
    this placebo is partly balanced by construction (a weaker test than it looks). It is
    never regression-corrected: with the earnings months as covariates the corrected placebo
    would be zero by construction.
    """
    from impact.estimate.matched_did import matched_event_study

    base = (-shift - 12, -shift - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = matched_event_study(traj, outcome, "start", baseline=base, event_times=[-1],
                                  reps=reps, seed=seed)
    r = res.at(-1)
    z = r["att"] / r["se"] if r["se"] > 0 else float("nan")
    return {"outcome": outcome, "fake_start_months_earlier": shift, "baseline": list(base),
            "event_time": -1, "att": r["att"], "se": r["se"], "p_value": r["pvalue"],
            "passed": bool(abs(z) <= 1.96) if np.isfinite(z) else None}


def _pretrend_record(res: Any) -> dict[str, Any]:
    """The joint pre-trend test of a start-clock event study as plain values."""
    t = res.pretest
    if t is None:
        return {"computed": False, "event_times": []}
    return {"computed": True, "statistic": float(t.statistic), "df": int(t.df),
            "f_statistic": float(t.f_statistic), "df_denom": int(t.df_denom),
            "pvalue": float(t.pvalue), "pvalue_chi2": float(t.pvalue_chi2),
            "event_times": [int(e) for e in res.pretest_event_time]}


def pretrend_failures(estimates: Path, outcomes: tuple[str, ...] | list[str],
                      alpha: float) -> list[str]:
    """Outcomes whose joint pre-trend test rejects parallel pre-trends.

    Reads ``estimates/pretrend.json`` (written by :func:`run_estimates`). The test of each
    listed outcome (start clock: every placebo month before the baseline window) rejects
    when its Hotelling-F p-value is below ``alpha / len(outcomes)`` (Bonferroni over the
    outcomes). An outcome whose test could not be computed is reported too. Returns one
    line per failing outcome (empty: every test passed).
    """
    import json

    path = estimates / "pretrend.json"
    if not path.exists():
        return [f"no pre-trend tests at {path}: materialise the estimates first"]
    tests = json.loads(path.read_text(encoding="utf-8"))
    level = alpha / max(1, len(outcomes))
    out = []
    for o in outcomes:
        t = tests.get(o)
        if t is None or not t.get("computed"):
            out.append(f"{o}: no pre-trend test (too few treated persons or placebo months)")
        elif t["pvalue"] < level:
            e = t["event_times"]
            out.append(f"{o}: joint pre-trend test over event times {min(e)}..{max(e)} "
                       f"rejects (F = {t['f_statistic']:.2f}, p = {t['pvalue']:.2g} < "
                       f"{level:.3g})")
    return out


def run_estimates(arrays: PanelArrays, pairs: pl.DataFrame, treatment: pl.DataFrame,
                  sources: Path, out: Path, *, reps: int = 999, seed: int = 0,
                  outcome_store: Path | None = None,
                  bias_correction: Sequence[str] | None = None) -> EstimatesSummary:
    """Matched event studies, the staggered cross-check and their comparison, to ``out``.

    ``arrays`` are the whole panel (:func:`load_arrays`) or the persons the estimates need
    (:func:`load_estimation_arrays`, the stage's loader): the results are the same but for
    the naive comparison, whose candidates are then the sampled members of each risk set.
    ``pairs``' ``treated_pid``/``twin_pid`` are rows of ``arrays``. With ``outcome_store``
    the event-time trajectories of cohorts stored there with current inputs are read
    instead of rebuilt, and those built here are stored (:mod:`impact.outcome_store`); the
    results are the same. With ``bias_correction`` (the covariates' feature names, e.g.
    :func:`impact.estimate.bias_correction.correction_features`) the matched event studies
    and subgroups are regression-corrected (:mod:`impact.estimate.bias_correction`); the
    pre-trend tests, the placebo in time, refutation and sensitivity stay on the plain
    estimates (the pre-start earnings are covariates, so corrected placebos are fitted by
    construction).
    """
    from impact.estimate.matched_did import matched_event_study
    from impact.outcome_store import trajectories_for
    from impact.outcomes import build_trajectories, load_sector_rel_wage

    if pairs.height == 0:
        raise ValueError(
            "no matched pairs: no treated person has a twin (see twins/summary.parquet and "
            "twins/unmatched.parquet for the overlap losses per cohort); nothing to estimate")
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    rel = load_sector_rel_wage(sources)
    reused: tuple[str, ...] = ()
    built: tuple[str, ...] = ()
    if outcome_store is None:
        traj = build_trajectories(arrays, pairs, treatment, sector_rel_wage=rel)
    else:
        traj, stats = trajectories_for(arrays, pairs, treatment, outcome_store,
                                       sector_rel_wage=rel)
        reused, built = stats.reused, stats.built
    secs["trajectories"] = time.perf_counter() - t0
    bc = bias_correction is not None
    if bc:
        from impact.estimate.bias_correction import with_covariates

        t0 = time.perf_counter()
        traj = with_covariates(traj, arrays, list(bias_correction or ()))
        secs["covariates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = []
    headline: dict[str, Any] = {}
    pretrend: dict[str, Any] = {}
    end_earnings = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for outcome in traj.outcomes:
            for clock in ("start", "end"):
                naive = outcome == "earnings_real"
                res = matched_event_study(traj, outcome, clock, reps=reps, seed=seed,
                                          arrays=arrays if naive else None,
                                          bias_correction=bc)
                tables.append(res.table())
                if clock == "start":
                    pretrend[outcome] = _pretrend_record(res)
                if outcome == "earnings_real" and clock == "end":
                    headline = {str(h): res.at(h) for h in HORIZONS
                                if h in set(res.event_time.tolist())}
                    end_earnings = res
    event_study = pl.concat(tables, how="diagonal_relaxed")
    secs["matched_event_studies"] = time.perf_counter() - t0
    write_parquet(event_study, out / "event_study.parquet")
    write_json(pretrend, out / "pretrend.json")

    t0 = time.perf_counter()
    stag = staggered_on_matched(arrays, pairs, seed=seed)
    secs["staggered"] = time.perf_counter() - t0
    write_parquet(stag, out / "staggered_dynamic.parquet")
    matched = event_study.filter((pl.col("outcome") == "earnings_real")
                                 & (pl.col("clock") == "start")).select(
        "event_time", pl.col("att").alias("att_matched"), pl.col("se").alias("se_matched"))
    cmp = matched.join(stag.select("event_time", pl.col("att").alias("att_staggered"),
                                   pl.col("se").alias("se_staggered")),
                       on="event_time", how="inner").with_columns(
        ((pl.col("att_matched") - pl.col("att_staggered"))
         / (pl.col("se_matched") ** 2 + pl.col("se_staggered") ** 2).sqrt()).alias("z"),
    ).with_columns((pl.col("z").abs() > DISAGREEMENT_Z).alias("disagree")).sort("event_time")
    write_parquet(cmp, out / "comparison.parquet")
    t0 = time.perf_counter()
    refutation = (refute_and_sensitivity(arrays, traj, end_earnings, seed=seed)
                  if end_earnings is not None else {})
    refutation["placebo_in_time"] = placebo_in_time(traj, reps=reps, seed=seed)
    t1 = time.perf_counter()
    write_parquet(subgroup_estimates(arrays, traj, reps=reps, seed=seed, bias_correction=bc),
                  out / "subgroups.parquet")
    secs["subgroups"] = time.perf_counter() - t1
    secs["refutation"] = time.perf_counter() - t0
    write_json(refutation, out / "refutation.json")
    if arrays.panel_dir is not None:  # the descriptive sector reference path, both clocks
        from impact.sector_benchmark import sector_benchmark

        t0 = time.perf_counter()
        write_parquet(pl.concat([sector_benchmark(arrays.panel_dir, treatment, clock=clock)
                                 for clock in ("start", "end")], how="diagonal_relaxed"),
                      out / "sector_benchmark.parquet")
        secs["sector_benchmark"] = time.perf_counter() - t0
    n_treated = int(pairs["treated_pid"].n_unique())
    write_json({"outcome": "earnings_real", "clock": "end", "unit": "EUR per month, "
                  "real (CPI base year)", "horizons": headline,
                  "bias_correction": list(bias_correction) if bc else None,
                  "staggered_disagreements": int(cmp["disagree"].sum()),
                  "seconds": secs}, out / "headline.json")
    return EstimatesSummary(headline=headline, n_treated=n_treated,
                            n_twins=int(pairs["twin_pid"].n_unique()),
                            disagreements=int(cmp["disagree"].sum()), seconds=secs,
                            cohorts_reused=reused, cohorts_built=built)
