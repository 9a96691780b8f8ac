"""Risk-set ("not yet treated") statistical-twin matching, one cohort month at a time.

For every cohort month ``m`` (the month the first ILA course starts):

* **treated**: persons whose first course starts in ``m`` and who are eligible in ``m``
  (aged 18-64, alive and resident all month; ``eligible`` in the panel). Treated persons
  outside the target population are counted (``n_treated_ineligible``), not matched;
* **candidates**: eligible persons who have not started any ILA course by ``m``. With the
  ``not_yet_treated`` pool (default) persons who start later are candidates until their own
  start (the outcome stage censors them from then on); with ``never_treated`` only persons
  who never start are;
* **features**: :func:`impact.twins.features.features_at`, months ``< m`` only;
* **matching**: exact strata (default sex, age band, region, education band, employed in
  ``m-1``), then nearest neighbours on the logit propensity score (a model pooled over
  cohorts by default, or one per cohort) or on the Mahalanobis distance of the trajectory
  features; caliper, ``ratio`` twins, with or without replacement
  (:func:`impact.twins.match`).

Estimand: the ATT of starting ILA learning in month ``m`` for the *matched* treated. Treated
persons lost to the caliper or to strata without candidates are reported per cohort and
subgroup; if the share is material the estimand is that of the matched sub-population, and
the summary says so.

Balance gate
------------
The gate (|SMD| after matching below ``max_abs_smd`` for every covariate, overlap loss below
``max_unmatched_share``) is evaluated on **cohort groups**: consecutive cohort months merged
until the group has at least ``gate_min_treated`` matched treated persons (a short last
group joins the one before). With a few treated persons an SMD is mostly sampling noise
(its standard error is about ``sqrt(1/n_treated + 1/n_twins)``, 0.3 with 10 treated), so a
per-month gate would fail by chance; at national scale (hundreds of starts a month) every
cohort month is its own group. Balance is still reported per cohort month, per group and
pooled over all cohorts; the pooled gate must pass as well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from impact.balance import GateResult, balance_gate, balance_table
from impact.twins.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    PanelArrays,
    features_at,
)
from impact.twins.matching import MatchResult, match
from impact.twins.options import Distance, MatchOptions
from impact.twins.propensity import PropensityModel

Pool = Literal["not_yet_treated", "never_treated"]
PsScope = Literal["pooled", "per_cohort"]

DEFAULT_EXACT = ("sex", "age_band", "region_code", "edu_band", "employed_l1")
TRAJECTORY = (
    *(f"earn_l{k}" for k in range(1, 13)),
    "earn_m13_24",
    "earn_m25_36",
    "days_12",
    "days_24",
    "days_36",
    "unemp_months_36",
)
#: Covariates of the balance tables and the gate.
BALANCE_COVARIATES = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)


@dataclass(frozen=True)
class TwinSettings:
    """How twins are found (the ``twins`` section of an evaluation config).

    Matching vocabulary as in R MatchIt: ``exact``, ``caliper`` (SD of the logit score),
    ``ratio`` (k), ``replace``, ``distance``.
    """

    pool: Pool = "not_yet_treated"
    exact: tuple[str, ...] = DEFAULT_EXACT
    distance: Distance = "glm"
    ps_scope: PsScope = "pooled"
    features: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
    mahalanobis_features: tuple[str, ...] = TRAJECTORY
    caliper: float | None = 0.2
    ratio: int = 5
    replace: bool = True
    seed: int = 0
    ps_controls_per_treated: int = 50
    ps_C: float = 1.0
    max_abs_smd: float = 0.1
    max_unmatched_share: float = 0.05
    gate_min_treated: int = 100

    def options(self) -> MatchOptions:
        return MatchOptions(
            distance=self.distance,
            exact=self.exact,
            caliper=self.caliper,
            ratio=self.ratio,
            replace=self.replace,
            seed=self.seed,
            ps_model="precomputed"
            if (self.distance == "glm" and self.ps_scope == "pooled")
            else "per_call",
        )


@dataclass
class CohortMatch:
    """Twins of one cohort month."""

    cohort: date
    n_treated_ineligible: int
    n_candidates: int
    result: MatchResult
    frame: pl.DataFrame  # features of treated and candidates, with `treated` and `weight`
    balance: pl.DataFrame
    gate: GateResult
    seconds: float


@dataclass
class TwinsResult:
    """Twins of all cohorts.

    Attributes
    ----------
    pairs
        ``cohort``, ``treated_code``, ``twin_code``, ``treated_pid``, ``twin_pid``,
        ``weight`` (1/k' of the treated person's twins), ``distance``, ``rank``, ``stratum``.
    summary
        One row per cohort: counts (treated, ineligible, candidates, matched, unmatched by
        reason, twins used, pairs), unmatched share, max |SMD| after, gate result.
    unmatched
        Treated persons without twins: cohort, person, reason and their subgroup keys.
    balance
        Balance per covariate per cohort and pooled (``cohort`` null): SMD, variance ratio,
        KS before and after.
    cohorts
        The per-cohort details.
    """

    pairs: pl.DataFrame
    summary: pl.DataFrame
    unmatched: pl.DataFrame
    balance: pl.DataFrame
    cohorts: list[CohortMatch] = field(default_factory=list)
    settings: TwinSettings = field(default_factory=TwinSettings)
    model: PropensityModel | None = None
    pooled_gate: GateResult | None = None

    @property
    def passed(self) -> bool:
        """Every cohort group and the pooled sample pass the balance gate."""
        return bool(self.summary["gate_passed"].all()) and bool(self.pooled_gate)

    def failures(self) -> list[str]:
        """Why the gate failed, one line per failing cohort group or the pooled sample."""
        out = []
        if self.summary.height:
            bad = self.summary.filter(~pl.col("gate_passed"))
            for g in bad["cohort_group"].unique(maintain_order=True).to_list():
                rows = bad.filter(pl.col("cohort_group") == g)
                months = ", ".join(d.strftime("%Y-%m") for d in rows["cohort"])
                out.append(f"cohorts {months}: {rows['gate_reasons'][0]}")
        if self.pooled_gate is not None and not self.pooled_gate.passed:
            out.append("all cohorts pooled: " + "; ".join(self.pooled_gate.reasons))
        return out


def cohort_groups(n_matched: list[int], min_treated: int) -> list[int]:
    """Group consecutive cohorts until each group has ``min_treated`` matched treated.

    Returns the group number of every cohort (0, 1, ...). A last group short of the minimum
    joins the group before it.
    """
    groups: list[int] = []
    g, acc = 0, 0
    for n in n_matched:
        groups.append(g)
        acc += n
        if acc >= min_treated:
            g, acc = g + 1, 0
    if acc and g > 0 and groups:  # the last group is short: merge it into the previous
        groups = [x if x < g else g - 1 for x in groups]
    return groups


def _gate(table: pl.DataFrame, s: TwinSettings, unmatched_share: float) -> GateResult:
    return balance_gate(
        table,
        max_abs_smd=s.max_abs_smd,
        max_unmatched_share=s.max_unmatched_share,
        unmatched_share=unmatched_share,
    )


def cohort_months(arrays: PanelArrays) -> list[int]:
    """Month indices with at least one first ILA start and 36 months of history."""
    fs = arrays.first_start[arrays.first_start >= 36]
    return sorted(int(m) for m in np.unique(fs))


def risk_set(arrays: PanelArrays, m: int, pool: Pool) -> tuple[np.ndarray, np.ndarray, int]:
    """Treated pids, candidate pids and the number of ineligible treated of cohort ``m``."""
    eligible = arrays.series["eligible"][:, m] == 1
    fs = arrays.first_start
    starts = fs == m
    treated = np.nonzero(starts & eligible)[0]
    later = (fs == -1) if pool == "never_treated" else ((fs == -1) | (fs > m))
    candidates = np.nonzero(later & eligible)[0]
    return treated, candidates, int((starts & ~eligible).sum())


def cohort_frame(arrays: PanelArrays, m: int, pool: Pool) -> tuple[pl.DataFrame, int]:
    """Features of the treated and candidates of cohort ``m`` with a ``treated`` flag."""
    treated, candidates, ineligible = risk_set(arrays, m, pool)
    pids = np.concatenate([treated, candidates])
    df = features_at(arrays, m, pids).with_columns(
        pl.Series("treated", np.r_[np.ones(treated.size, bool), np.zeros(candidates.size, bool)])
    )
    return df, ineligible


def _pooled_model(arrays: PanelArrays, months: list[int], s: TwinSettings) -> PropensityModel:
    """One propensity model on all cohorts' treated and a sample of their candidates."""
    rng = np.random.default_rng(s.seed)
    parts = []
    full_levels: dict[str, set[str]] = {c: set() for c in s.features if c in CATEGORICAL_FEATURES}
    for m in months:
        df, _ = cohort_frame(arrays, m, s.pool)
        t = df.filter(pl.col("treated"))
        if t.height == 0:
            continue
        c = df.filter(~pl.col("treated"))
        k = min(c.height, s.ps_controls_per_treated * t.height)
        take = np.sort(rng.choice(c.height, size=k, replace=False))
        sample = c[take]
        for col in full_levels:  # every level of the full cohort must be scorable
            seen = set(sample[col].unique().to_list())
            levels = set(df[col].unique().to_list())
            full_levels[col] |= levels
            extra = levels - seen
            if extra:
                sample = pl.concat(
                    [
                        sample,
                        c.filter(pl.col(col).is_in(list(extra))).unique(
                            col, keep="first", maintain_order=True
                        ),
                    ]
                )
        parts.append(pl.concat([t, sample]))
    stacked = pl.concat(parts)
    return PropensityModel(C=s.ps_C).fit(stacked, treatment="treated", features=list(s.features))


def match_cohort(
    arrays: PanelArrays, m: int, s: TwinSettings, model: PropensityModel | None = None
) -> CohortMatch:
    """Twins of the cohort of month index ``m`` (see the module docstring)."""
    t0 = time.perf_counter()
    df, ineligible = cohort_frame(arrays, m, s.pool)
    opts = s.options()
    kwargs: dict = {}
    if opts.ps_model == "precomputed":
        if model is None:
            raise ValueError("pooled propensity scope needs the fitted pooled model")
        df = df.with_columns(pl.Series("ps_logit", model.logit(df)))
        kwargs = {"score": "ps_logit"}
    feats = s.mahalanobis_features if s.distance == "mahalanobis" else s.features
    res = match(df, treatment="treated", features=list(feats), id="pid", options=opts, **kwargs)
    df = res.attach_weights(df, name="weight")
    bal = balance_table(
        df, treatment="treated", covariates=list(BALANCE_COVARIATES), weights="weight"
    )
    gate = balance_gate(
        bal,
        max_abs_smd=s.max_abs_smd,
        max_unmatched_share=s.max_unmatched_share,
        unmatched_share=res.unmatched_share,
    )
    return CohortMatch(
        cohort=arrays.months[m],
        n_treated_ineligible=ineligible,
        n_candidates=int((~df["treated"]).sum()),
        result=res,
        frame=df,
        balance=bal,
        gate=gate,
        seconds=time.perf_counter() - t0,
    )


def _pooled_balance(cohorts: list[CohortMatch]) -> pl.DataFrame:
    """Balance over all cohorts stacked (each cohort's candidates with their weights).

    Before matching, candidates of every cohort get weight ``n_treated / n_candidates`` so
    that each cohort's controls count as much as its treated (a cohort-balanced comparison).
    """
    parts = []
    for c in cohorts:
        n_t = int(c.frame["treated"].sum())
        n_c = c.frame.height - n_t
        if n_t == 0 or n_c == 0:
            continue
        cols = ["treated", "weight", *BALANCE_COVARIATES]
        parts.append(c.frame.select(cols))
    if not parts:
        return pl.DataFrame()
    return balance_table(
        pl.concat(parts), treatment="treated", covariates=list(BALANCE_COVARIATES), weights="weight"
    )


def match_cohorts(
    arrays: PanelArrays, s: TwinSettings | None = None, cohorts: list[date] | None = None
) -> TwinsResult:
    """Twins for every cohort month (or the given ``cohorts``).

    Parameters
    ----------
    arrays
        The panel loaded with at least 36 months before the first cohort.
    s
        Settings (default :class:`TwinSettings`).
    cohorts
        First days of the cohort months to match (default: every month with first starts).
    """
    s = s or TwinSettings()
    months = cohort_months(arrays) if cohorts is None else [arrays.month_index(c) for c in cohorts]
    model = None
    if s.distance == "glm" and s.ps_scope == "pooled":
        model = _pooled_model(arrays, months, s)
    done = [match_cohort(arrays, m, s, model) for m in months]
    code = arrays.person_code
    pairs, unmatched, summary, balance = [], [], [], []
    for c in done:
        r = c.result
        tid = r.pairs["treated_id"].to_numpy()
        cid = r.pairs["control_id"].to_numpy()
        pairs.append(
            r.pairs.with_columns(
                pl.lit(c.cohort).alias("cohort"),
                pl.Series("treated_code", code[tid].astype(str)),
                pl.Series("twin_code", code[cid].astype(str)),
            ).rename({"treated_id": "treated_pid", "control_id": "twin_pid"})
        )
        if r.unmatched.height:
            keys = c.frame.select("pid", *DEFAULT_EXACT)
            um = r.unmatched.join(keys, left_on="treated_id", right_on="pid", how="left")
            unmatched.append(
                um.with_columns(
                    pl.lit(c.cohort).alias("cohort"),
                    pl.Series("treated_code", code[um["treated_id"].to_numpy()].astype(str)),
                )
            )
        sm = r.summary()
        summary.append(
            {
                "cohort": c.cohort,
                "n_treated": sm["n_treated"],
                "n_treated_ineligible": c.n_treated_ineligible,
                "n_candidates": c.n_candidates,
                "n_matched": sm["n_matched"],
                "n_unmatched": sm["n_unmatched"],
                **{f"unmatched_{k}": v for k, v in sm["unmatched_by_reason"].items()},
                "unmatched_share": sm["unmatched_share"],
                "n_twins": sm["n_controls_used"],
                "n_pairs": sm["n_pairs"],
                "twin_ess": sm["control_ess"],
                "max_abs_smd_before": float(c.balance["smd_before"].abs().max()),
                "max_abs_smd_after": c.gate.max_abs_smd,
                "gate_passed": c.gate.passed,
                "gate_reasons": "; ".join(c.gate.reasons),
                "seconds": round(c.seconds, 3),
            }
        )
        balance.append(c.balance.with_columns(pl.lit(c.cohort).alias("cohort")))
    groups = cohort_groups([c.result.n_matched for c in done], s.gate_min_treated)
    group_gate: dict[int, GateResult] = {}
    for g in sorted(set(groups)):
        members = [c for c, gi in zip(done, groups, strict=True) if gi == g]
        bal = _pooled_balance(members)
        n_t = sum(c.result.n_treated for c in members)
        lost = sum(c.result.n_unmatched for c in members)
        group_gate[g] = _gate(bal, s, lost / n_t if n_t else 0.0)
        balance.append(
            bal.with_columns(pl.lit(None, pl.Date).alias("cohort"),
                             pl.lit(g, pl.Int64).alias("cohort_group"))
        )
    for row, g in zip(summary, groups, strict=True):
        row["cohort_group"] = g
        row["gate_passed"] = group_gate[g].passed
        row["gate_reasons"] = "; ".join(group_gate[g].reasons)
    pooled = _pooled_balance(done)
    if pooled.height:
        balance.append(
            pooled.with_columns(
                pl.lit(None, pl.Date).alias("cohort"), pl.lit(None, pl.Int64).alias("cohort_group")
            )
        )
        n_t = sum(c.result.n_treated for c in done)
        pooled_gate = _gate(pooled, s, sum(c.result.n_unmatched for c in done) / n_t)
    else:
        pooled_gate = None
    pair_cols = [
        "cohort",
        "treated_code",
        "twin_code",
        "treated_pid",
        "twin_pid",
        "weight",
        "distance",
        "rank",
        "stratum",
    ]
    return TwinsResult(
        pairs=pl.concat(pairs).select(pair_cols) if pairs else pl.DataFrame(),
        summary=pl.DataFrame(summary),
        unmatched=pl.concat(unmatched, how="diagonal") if unmatched else pl.DataFrame(),
        balance=pl.concat(balance, how="diagonal"),
        cohorts=done,
        settings=s,
        model=model,
        pooled_gate=pooled_gate,
    )


def pre_trajectories(
    arrays: PanelArrays,
    result: TwinsResult,
    series: tuple[str, ...] = ("earnings_real", "employed", "days_worked"),
    window: int = 36,
) -> pl.DataFrame:
    """Mean pre-period paths of treated, matched twins and all candidates (naive).

    For every cohort and event time ``e = -window..-1`` (month ``m + e``): the mean of each
    series over the matched treated, the matching-weighted mean over their twins, and the
    plain mean over all candidates of the cohort (what a naive comparison would use).
    Cohorts are pooled with weights equal to their number of matched treated.

    Returns
    -------
    polars.DataFrame
        ``event_time``, ``series``, ``treated``, ``twins``, ``candidates`` (long format).
    """
    rows = []
    for c in result.cohorts:
        m = arrays.month_index(c.cohort)
        f = c.frame
        w = f["weight"].to_numpy()
        d = f["treated"].to_numpy()
        pid = f["pid"].to_numpy()
        matched_t = d & (w > 0)
        n_t = int(matched_t.sum())
        if n_t == 0:
            continue
        twins = ~d & (w > 0)
        cand = ~d
        for name in series:
            x = arrays.series[name][pid, m - window : m].astype(np.float64)
            rows.append(
                pl.DataFrame(
                    {
                        "event_time": np.arange(-window, 0, dtype=np.int16),
                        "series": name,
                        "treated": x[matched_t].mean(axis=0),
                        "twins": (x[twins] * w[twins, None]).sum(axis=0) / w[twins].sum(),
                        "candidates": x[cand].mean(axis=0),
                        "n": n_t,
                    }
                )
            )
    if not rows:
        return pl.DataFrame()
    df = pl.concat(rows)
    return (
        df.group_by("series", "event_time")
        .agg(
            *[
                ((pl.col(k) * pl.col("n")).sum() / pl.col("n").sum()).alias(k)
                for k in ("treated", "twins", "candidates")
            ],
        )
        .sort("series", "event_time")
    )


def write(result: TwinsResult, out: Path) -> dict[str, int]:
    """Write the twins of every cohort and their diagnostics under ``out``.

    Layout: ``pairs/cohort=YYYY-MM/part-0.parquet``, ``summary.parquet``,
    ``balance.parquet``, ``unmatched.parquet``, ``settings.json``. Files are replaced
    atomically.
    """
    import dataclasses
    import json

    def put(df: pl.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        df.write_parquet(tmp, compression="zstd")
        tmp.replace(path)

    for c in result.cohorts:
        key = c.cohort.strftime("%Y-%m")
        put(
            result.pairs.filter(pl.col("cohort") == c.cohort),
            out / "pairs" / f"cohort={key}" / "part-0.parquet",
        )
    put(result.summary, out / "summary.parquet")
    put(result.balance, out / "balance.parquet")
    put(result.unmatched, out / "unmatched.parquet")
    meta = {
        "settings": dataclasses.asdict(result.settings),
        "pooled_gate_passed": bool(result.pooled_gate) if result.pooled_gate else None,
        "failures": result.failures(),
    }
    tmp = out / "settings.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.replace(out / "settings.json")
    return {"pairs": result.pairs.height, "cohorts": len(result.cohorts)}
