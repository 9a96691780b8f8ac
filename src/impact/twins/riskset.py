"""Risk-set ("not yet treated") statistical-twin matching, one cohort month at a time.

For every cohort month ``m`` (the month the first ILA course starts):

* **treated**: persons whose first course starts in ``m`` and who are eligible in ``m``
  (aged 18-64, alive and resident all month; ``eligible`` in the panel). Treated persons
  outside the target population are counted (``n_treated_ineligible``), not matched;
* **candidates**: eligible persons who have not started any ILA course by ``m``. With the
  ``not_yet_treated`` pool (default) persons who start later are candidates until their own
  start (the outcome stage censors them from then on); with ``never_treated`` only persons
  who never start are; with ``account_holders`` (the report's "near-participants") only
  not-yet-treated persons who had opened an ILA account by ``m-1``: people who showed the
  same intent to learn, which the registers do not otherwise record; with ``coworkers`` (the
  report's "same-firm non-completers") only not-yet-treated persons whose main employer in
  ``m-1`` is a treated person's, in firms of at least ``coworkers_min_firm_size`` persons,
  and the employer is an extra exact-stratum key, so twins come from the treated person's
  own firm; treated persons without an employer or in a smaller firm are unmatched with
  reason ``no_employer`` / ``firm_too_small`` (:mod:`impact.twins.coworkers`);
* **features**: :func:`impact.twins.features.features_at`, months ``< m`` only;
* **matching**: exact strata (default sex, age band, region, education band, employed and
  registered unemployed in ``m-1``, months since the last job in bands; treated persons
  without twins in them are matched again in coarser strata, ``coarsen``), then nearest
  neighbours on the logit propensity score
  (a model pooled over cohorts by default, or one per cohort) or on the Mahalanobis distance
  of the trajectory features; caliper, ``ratio`` twins, with or without replacement,
  optionally MatchIt's ``mahvars`` (:func:`impact.twins.match`).

Estimand: the ATT of starting ILA learning in month ``m`` for the *matched* treated. Treated
persons lost to the caliper or to strata without candidates are reported per cohort and
subgroup; if the share is material the estimand is that of the matched sub-population, and
the summary says so.

Balance gate
------------
The gate (|SMD| after matching below ``max_abs_smd`` for every covariate, overlap loss below
``max_unmatched_share``) is evaluated on **cohort groups**: consecutive cohort months merged
until the group has at least ``gate_min_treated`` matched treated persons (a short last
group joins the one before), and on all cohorts pooled. Balance is reported per cohort
month, per group and pooled.

Why groups of 1,000 (``gate_min_treated``): the gate takes the *largest* |SMD| over ~90
covariates (one-hot levels included). Even under perfect balance in expectation each SMD
has a sampling standard error of about ``sqrt(1/n_treated + 1/ess_twins)`` (0.1 with 125
treated and five twins each, 0.035 with 1,000), and the largest of ~90 of them is about
three standard errors, so the gate fails by chance unless groups hold about a thousand
treated persons. Placebo runs (treated drawn at random among never-starters, same cohort
sizes, same engine) fail just as the real data do: on the synthetic 100k panel (about 130
treated per month) every group of >= 100 failed, placebo as real (median largest |SMD|
0.24 and 0.26); on the synthetic 1.2M panel (about 700 treated per month) per-month groups
passed 9 of 18 times (placebo) and 11 of 18 (real), groups of >= 1,000 passed 11 of 11
(placebo) and 9 of 9 (real, largest |SMD| 0.098). A failing group is evidence of
imbalance only once groups are this large; below that the pooled gate is the one that
speaks (with 1,167 treated in all, the 100k panel is a single group).

Defaults and why (MatchIt/cobalt vocabulary; all in :class:`TwinSettings`)
-------------------------------------------------------------------------
* ``exact`` = sex, age band, region, education band, employed in ``m-1``, registered
  unemployed in ``m-1`` (:data:`STATUS_EXACT`), and ``job_recency``. The two statuses nest
  the publication's status at entry (employed, registered unemployed, other;
  :mod:`impact.indicators.breakdowns`), so the twins of each status share it and subgroup
  estimates by status compare like with like; every person breakdown of the publication is
  an exact stratum. With registration in the score only, it balanced on average over the
  non-employed but not within the two statuses: at 1.2 M synthetic persons whose selection
  is ignorable given the registers (``hidden_confounding: 0``,
  ``benchmarks/truth_recovery.py``, ``bias_anatomy``), the earnings effect 6/12/24 months
  after leaving was off by +63/+106/+143 EUR for the registered (SE 49-57) and
  -119/-95/-65 for the other non-employed (SE 25-36); with the stratum by -61/-42/+4 and
  -71/-50/-24.
* ``job_recency`` (:mod:`impact.twins.features`): the months since the last job in bands
  (employed; left 1-3, 4-11, 12-35 months before; none in 36). The DiD baseline of a person
  who lost a job a few months before starting holds most of a year of wages; the score
  balances the time since the last job on average, not person by person, and a twin who
  left work a year earlier has no wages in the baseline. As a stratum it brings the other
  non-employed, on the same 1.2 M persons, from -71/-50/-24 to -32/-14/+13 (SE 23-36).
* ``coarsen`` = drop region, then also ``job_recency`` (:data:`DEFAULT_COARSEN`; a
  multi-pass exact match, :class:`impact.twins.MatchOptions` ``exact_fallback``): a treated
  person without a twin in the full strata is matched again without region, then without
  the months since the last job too, so no treated person is lost that the status strata
  alone would match. On the full strata alone 76 of 1,167 treated (6.5 %) of the 100 k
  synthetic delivery found no twin, above the overlap gate's 5 %; with the two further
  passes 6 (0.5 %), 70 being matched in a further pass; at 1.2 M 73 of 14,365 in one pass,
  1 with the further passes (72 matched there). The pooled bias there moved from -11/-11/+3
  (one pass) to -11/-10/+5 (SE 10-14). Region goes first: it is a publication breakdown,
  but a twin from another region is a smaller error than one with another job history.
  Falling back to the status strata with region instead (``coarsen = [job_recency]``)
  brought back part of the recency bias at 100 k (other non-employed, demo data: -236 at 6
  months against -108 with the default and -300 without ``job_recency``; SE 101-114).
  Every pass keeps the status at entry. The twins' summary counts who was matched in a further pass
  (``n_matched_fallback``) and each pair its ``match_pass``.
* ``features`` = ``balance_covariates`` = :data:`DEFAULT_FEATURES`: NACE section, ISCED
  field and ISCO major group enter the model and the balance table in coarse groups
  (NACE A*10, ISCED 1997 broad groups, ISCO skilled/low-skilled x non-manual/manual).
  Levels held by 0.1-2 % of the treated (NACE K, L, ISCED field 08, ISCO 6 ...) have SMDs
  dominated by noise and add parameters to the model; the coarse groups removed most of
  those failures (median largest group |SMD| 0.26 -> 0.23 at 100k, 0.103 -> 0.093 with
  per-month groups at 1.2M) at no cost in overlap. The detailed columns stay available
  (:data:`BALANCE_COVARIATES`).
* ``ratio`` = 5, ``caliper`` = 0.2 SD of the logit (Austin 2011): k = 10 barely changed
  the largest |SMD| (the treated side's noise dominates) and doubles the pairs; k = 1
  raised it (0.32 vs 0.26 at 100k); calipers 0.1 and 0.05 doubled and quadrupled the
  unmatched share (3.3 %, 6.7 %) without better balance.
* ``mahvars`` = None: Mahalanobis matching on the earnings/days/benefit trajectories
  within the score caliper (MatchIt's ``mahvars``) made twins closer pair by pair but
  *worsened* mean balance (pooled largest |SMD| 0.05 -> 0.13-0.22 at 100k, 0.016 -> 0.106
  at 1.2M, 0.19 in a placebo run): nearest neighbours in 14 skewed, zero-inflated
  dimensions are biased towards the bulk for treated persons in the tails, while score
  matching balances in expectation. Available for sensitivity analyses.
* ``smd_binary`` = ``"std"``: binary SMDs standardised by the treated SD (Austin 2009),
  stricter for rare levels than cobalt's default raw difference in proportions (``"raw"``,
  available; it lowered the median largest |SMD| of 100k groups from 0.26 to 0.16).
* ``ks_sample`` = 200,000: the KS statistic *before* matching is computed on at most that
  many (seeded) random candidates per cohort; SMDs, variance ratios and everything after
  matching are exact. With 1,000 treated the sampling error of the candidates' ECDF
  (about 0.002) is negligible next to the treated side's (0.03).
* ``ps_max_controls`` = 250,000: the pooled model samples 50 candidates per treated
  person, fewer if that exceeds 250,000 in all (the variance of the coefficients is driven
  by the ~15,000 treated; 1/15,000 + 1/250,000 vs 1/15,000 + 1/750,000: +3.5 %).

Scale: features come from the column-major panel arrays; the candidates of a cohort are
summarised (means, variances, level counts, ECDF on the treated values) right after its
matching and only the treated and their twins are kept, so memory does not grow with the
number of cohorts (``benchmarks/twins_scale.py``).

Memory bounded by configuration (:class:`Population`)
------------------------------------------------------
* **Month window**: matching cohorts ``a .. b`` reads only the months ``a-36 .. b``
  (features and pre-period paths: the 36 months before the cohort month; risk set:
  eligibility in ``m``, the account and employer of ``m-1``, the first ILA start). Nothing
  of a cohort's matching depends on the first loaded month (the plan's model and KS grid,
  seeds from calendar months), so a cohort matched on arrays from ``a-36`` equals the same
  cohort matched on arrays from the plan's first month. First starts before the loaded
  months are :data:`STARTED_BEFORE` (:func:`load_window`), not ``-1`` ("never").
* **Person chunks** (``twins.person_chunk``): the panel is read that many pids at a time
  (``PanelArrays.load(pids=...)``). The risk sets come from light columns over all pids
  (:meth:`Population.prefetch`); the features of a cohort's treated and candidates, the
  candidates' mean pre-period paths (added person by person in pid order, the same sums as
  at once), the pooled model's sample (drawn from the risk sets, then gathered chunk by
  chunk, :func:`_pooled_model`) and the coworkers' employer codes
  (:func:`impact.twins.coworkers.read_employers`) are built chunk by chunk, so that the
  arrays of one chunk are held at a time, plus one cohort's feature frame (persons x ~40
  features). Categorical features of different chunks are put on the union of their
  categories, which is what every person's arrays give. The twins, balance tables, summary,
  pre-trajectories and plan fingerprint equal those of the unchunked run
  (tests/test_twins_chunked.py; at 1.2 M persons ``benchmarks/twins_memory.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from impact.balance import (
    BalanceParts,
    BinarySMD,
    GateResult,
    balance_gate,
    balance_parts,
    balance_table_from_parts,
    ks_grid,
)
from impact.twins import coworkers
from impact.twins.features import (
    ALL_NUMERIC_FEATURES,
    CATEGORICAL_FEATURES,
    COARSE_FEATURES,
    HISTORY,
    NUMERIC_FEATURES,
    OPTIONAL_CATEGORICAL_FEATURES,
    PanelArrays,
    categorical_codes,
    features_at,
)
from impact.twins.matching import MatchResult, match
from impact.twins.options import Distance, MatchOptions
from impact.twins.propensity import PropensityModel

Pool = Literal["not_yet_treated", "never_treated", "account_holders", "coworkers"]
PsScope = Literal["pooled", "per_cohort"]

#: The person breakdowns of the publication, status at entry included (employed and
#: registered unemployed in ``m-1``).
STATUS_EXACT = ("sex", "age_band", "region_code", "edu_band", "employed_l1", "registered_l1")
#: Default exact strata: :data:`STATUS_EXACT` and the months since the last job in bands.
DEFAULT_EXACT = (*STATUS_EXACT, "job_recency")
#: Default coarsening for treated persons without twins in the exact strata: a second pass
#: without region, a third also without the months since the last job.
DEFAULT_COARSEN = (("region_code",), ("job_recency",))
TRAJECTORY = (
    *(f"earn_l{k}" for k in range(1, 13)),
    "earn_m13_24",
    "earn_m25_36",
    "days_12",
    "days_24",
    "days_36",
    "unemp_months_36",
)
#: Every feature with the detailed categoricals (NACE section, ISCED field, ISCO major group).
BALANCE_COVARIATES = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
_COARSE_OF = {
    "nace_section": "nace_group",
    "isced_field": "isced_field_group",
    "isco_major": "isco_group",
}
#: Default propensity-model covariates and balance/gate covariates: every feature, with NACE,
#: ISCED field and ISCO in their coarse groups (:data:`impact.twins.features.COARSE_FEATURES`).
DEFAULT_FEATURES = (*NUMERIC_FEATURES, *(_COARSE_OF.get(c, c) for c in CATEGORICAL_FEATURES))


@dataclass(frozen=True)
class TwinSettings:
    """How twins are found (the ``twins`` section of an evaluation config).

    Matching vocabulary as in R MatchIt: ``exact``, ``caliper`` (SD of the logit score),
    ``ratio`` (k), ``replace``, ``distance``, ``mahvars`` (with ``mahvars_candidates``, see
    :class:`impact.twins.MatchOptions`). ``features``: propensity-model covariates;
    ``balance_covariates``: covariates of the balance tables and the gate (None: the
    ``features``); ``coarsen``: exact-strata columns dropped, one group per further pass, for
    treated persons left without twins (cumulative; :meth:`exact_levels`); ``smd_binary``:
    ``"std"`` or cobalt's ``"raw"`` for binary SMDs;
    ``gate_min_treated``: cohort-group size of the gate; ``ks_sample``: candidates per
    cohort for the KS statistic before matching (None: all); ``ps_controls_per_treated``,
    ``ps_max_controls``: candidate sample of the pooled model; ``coworkers_min_firm_size``:
    smallest firm (persons whose main employer in ``m-1`` it is) whose employees are
    candidates of the ``coworkers`` pool (unused by the other pools). The defaults and the
    measurements behind them are in the module docstring.
    """

    pool: Pool = "not_yet_treated"
    exact: tuple[str, ...] = DEFAULT_EXACT
    coarsen: tuple[tuple[str, ...], ...] = DEFAULT_COARSEN
    distance: Distance = "glm"
    ps_scope: PsScope = "pooled"
    features: tuple[str, ...] = DEFAULT_FEATURES
    mahalanobis_features: tuple[str, ...] = TRAJECTORY
    mahvars: tuple[str, ...] | None = None
    mahvars_candidates: int = 200
    caliper: float | None = 0.2
    ratio: int = 5
    replace: bool = True
    seed: int = 0
    ps_controls_per_treated: int = 50
    ps_max_controls: int | None = 250_000
    ps_C: float = 1.0
    max_abs_smd: float = 0.1
    max_unmatched_share: float = 0.05
    gate_min_treated: int = 1000
    balance_covariates: tuple[str, ...] | None = None
    smd_binary: BinarySMD = "std"
    ks_sample: int | None = 200_000
    coworkers_min_firm_size: int = coworkers.DEFAULT_MIN_FIRM_SIZE

    def __post_init__(self) -> None:
        self.exact_levels()  # a coarsening that does not fit the strata fails here

    def exact_levels(self) -> tuple[tuple[str, ...], ...]:
        """The exact strata of every matching pass: ``exact``, then ``exact`` without the
        columns of ``coarsen[0]``, then also without ``coarsen[1]``, ...

        Raises
        ------
        ValueError
            A column to drop is not in ``exact`` (or listed twice), or a group is empty.
        """
        levels = [tuple(self.exact)]
        dropped: set[str] = set()
        for group in self.coarsen:
            if isinstance(group, str) or not group:
                raise ValueError(f"coarsen: each pass drops a list of columns (got {group!r})")
            bad = [c for c in group if c not in self.exact or c in dropped]
            if bad:
                raise ValueError(
                    f"coarsen drops {bad}, not in the exact strata {list(self.exact)} (or "
                    "dropped already): remove them from coarsen or add them to exact"
                )
            dropped.update(group)
            levels.append(tuple(c for c in self.exact if c not in dropped))
        return tuple(levels)

    @property
    def covariates(self) -> tuple[str, ...]:
        """Covariates of the balance tables and the gate: ``balance_covariates``, by default
        the propensity-model ``features`` (cobalt's choice for a matchit object)."""
        return self.features if self.balance_covariates is None else self.balance_covariates

    def options(self) -> MatchOptions:
        """Matching options; the ``coworkers`` pool adds the employer of ``m-1``
        (:data:`impact.twins.coworkers.EMPLOYER_KEY`) to the exact strata of every pass."""
        exact, *fallback = self.exact_levels()
        if self.pool == "coworkers":
            exact = (*exact, coworkers.EMPLOYER_KEY)
            fallback = tuple((*level, coworkers.EMPLOYER_KEY) for level in fallback)
        return MatchOptions(
            distance=self.distance,
            exact=exact,
            exact_fallback=tuple(fallback) or None,
            mahvars=self.mahvars,
            mahvars_candidates=self.mahvars_candidates,
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
    """Twins of one cohort month.

    ``result.units`` and ``frame`` hold the treated persons and the candidates serving as
    twins only; the other candidates are counted in ``n_candidates`` and summarised (for the
    balance tables) in ``parts``.
    """

    cohort: date
    n_treated_ineligible: int
    n_candidates: int
    result: MatchResult
    frame: pl.DataFrame  # features, `treated`, `weight`, `ps_logit` (treated and twins)
    balance: pl.DataFrame
    gate: GateResult
    seconds: float
    parts: BalanceParts | None = None  # mergeable balance inputs (cohort groups, pooled)
    min_firm_size: int = coworkers.DEFAULT_MIN_FIRM_SIZE  # of the coworkers pool
    #: all candidates' mean pre-period paths (:attr:`CohortInputs.candidate_pre`)
    candidate_pre: np.ndarray | None = None


@dataclass
class TwinsResult:
    """Twins of all cohorts.

    Attributes
    ----------
    pairs
        ``cohort``, ``treated_code``, ``twin_code``, ``treated_pid``, ``twin_pid``,
        ``weight`` (1/k' of the treated person's twins), ``distance``, ``rank``, ``stratum``,
        ``match_pass`` (0: the full exact strata; 1, 2, ...: the ``coarsen`` passes).
    summary
        One row per cohort: counts (treated, ineligible, candidates, matched, matched in a
        coarser pass ``n_matched_fallback``, unmatched by reason, twins used, pairs),
        unmatched share, max |SMD| after, gate result.
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
    #: seconds per stage: treated_features, pooled_model, matching (features, score, match
    #: and balance of each cohort), balance (cohort groups, pooled, result tables)
    timings: dict[str, float] = field(default_factory=dict)
    #: pooled pre-period trajectories (:func:`pool_pre_trajectories`) when computed
    pre: pl.DataFrame = field(default_factory=pl.DataFrame)

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
    if table.height == 0:  # no cohort with treated persons and candidates (e.g. coworkers)
        return GateResult(
            passed=False, offending=(), offending_variance=(),
            reasons=("no treated person has twin candidates",), max_abs_smd=float("nan"),
            unmatched_share=unmatched_share,
        )
    return balance_gate(
        table,
        max_abs_smd=s.max_abs_smd,
        max_unmatched_share=s.max_unmatched_share,
        unmatched_share=unmatched_share,
    )


def _month_number(d: date) -> int:
    """Months since year 0 (a seed offset that does not depend on the panel's first month)."""
    return d.year * 12 + d.month - 1


def cohort_months(arrays: PanelArrays) -> list[int]:
    """Month indices with at least one first ILA start and 36 months of history."""
    fs = arrays.first_start[arrays.first_start >= 36]
    return sorted(int(m) for m in np.unique(fs))


def _max_abs(s: pl.Series) -> float:
    """Largest absolute value (NaN for an empty or all-null column: a cohort without
    candidates has no balance rows)."""
    v = s.abs().max()
    return float(v) if v is not None else float("nan")


#: ``first_start`` of a person whose first ILA start precedes the loaded months
#: (:func:`load_window`): neither treated in nor a candidate of any loaded cohort.
STARTED_BEFORE = int(np.iinfo(np.int32).min)


def shift_month(month: date, k: int) -> date:
    """The first day of the month ``k`` months after ``month`` (before it if ``k < 0``)."""
    n = _month_number(month) + k
    return date(n // 12, n % 12 + 1, 1)


def _scan(panel_dir: Path) -> pl.LazyFrame:
    return pl.scan_parquet(Path(panel_dir) / "**" / "*.parquet", hive_partitioning=False)


def load_window(
    panel_dir: Path, first: date, last: date | None = None, *, pids: np.ndarray | None = None
) -> PanelArrays:
    """:meth:`PanelArrays.load` of the months ``first`` .. ``last`` (default: the panel's last
    month; ``pids``: only these persons), with :data:`STARTED_BEFORE` as the first start of
    persons whose first ILA start precedes ``first``.

    ``PanelArrays.load`` records a first start as a month index from ``first``: a start
    before ``first`` becomes negative, and a start one month before it ``-1``, which means
    "never started" (a candidate of every cohort of the ``never_treated`` and
    ``not_yet_treated`` pools). The persons with a start before ``first`` are found by one
    scan of the loaded months' ``pid`` and ``ila_first_start`` columns. Everything else is
    as loaded, so cohorts whose 36 months of history are loaded are matched as on arrays
    loaded from an earlier month (tests/test_twins_chunked.py).
    """
    arrays = PanelArrays.load(Path(panel_dir), first, last, pids=pids)
    cond = pl.col("month").is_between(first, arrays.months[-1]) & (
        pl.col("ila_first_start") < first
    )
    if arrays.source_pid is not None:
        cond &= pl.col("pid").is_in(arrays.source_pid)
    before = (
        _scan(panel_dir).filter(cond).select(pl.col("pid").unique()).collect()["pid"].to_numpy()
    )
    if before.size:
        arrays.first_start[arrays.rows(before)] = STARTED_BEFORE
    return arrays


def risk_set(
    arrays: PanelArrays,
    m: int,
    pool: Pool,
    *,
    min_firm_size: int = coworkers.DEFAULT_MIN_FIRM_SIZE,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Treated pids, candidate pids and the number of ineligible treated of cohort ``m``.

    The treated do not depend on the pool. ``min_firm_size``: the ``coworkers`` pool's
    smallest firm (:func:`impact.twins.coworkers.coworker_candidates`; ignored otherwise).
    """
    account = arrays.series["ila_account"][:, m - 1] == 1 if m > 0 else False
    return _risk(
        arrays.first_start, m, arrays.series["eligible"][:, m] == 1, account, pool,
        lambda: coworkers.employers_l1(arrays, m), min_firm_size,
    )


def _risk(
    fs: np.ndarray,
    m: int,
    eligible: np.ndarray,
    account: np.ndarray | bool,
    pool: Pool,
    employers: Callable[[], np.ndarray],
    min_firm_size: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`risk_set` from first starts ``fs`` (``-1``: never), cohort ``m`` on the same
    scale, eligibility in ``m``, an ILA account in ``m-1`` and the employers of ``m-1``."""
    starts = fs == m
    treated = np.nonzero(starts & eligible)[0]
    later = (fs == -1) if pool == "never_treated" else ((fs == -1) | (fs > m))
    if pool == "account_holders":
        later &= account
    candidates = np.nonzero(later & eligible)[0]
    if pool == "coworkers":
        candidates = coworkers.candidates_by_codes(employers(), treated, candidates,
                                                   min_firm_size)
    return treated, candidates, int((starts & ~eligible).sum())


@dataclass
class Population:
    """The persons the cohorts are matched among, over the months ``first`` .. ``last``.

    Either ``arrays`` of every person (:meth:`of`; ``person_chunk`` None, the default), or
    the panel under ``panel_dir`` read ``chunk`` pids at a time (:meth:`chunked`): then the
    risk sets come from a few light columns (eligibility in the cohort month, first ILA
    start, account in ``m-1``, employer of ``m-1``; :meth:`risk`), and the features from
    arrays of one pid range at a time (:meth:`chunks`), so that memory is bounded by
    ``chunk`` times the months rather than by the population. Both give the same twins.

    Assumptions: pids are ``0 .. n_persons - 1`` (the panel's); a person's
    ``ila_first_start`` is the same in all their rows (a person attribute).
    """

    first: date
    last: date
    n_persons: int
    arrays: PanelArrays | None = None
    panel_dir: Path | None = None
    chunk: int | None = None
    # light columns of a chunked population (:meth:`prefetch`), over pids
    _first_start: np.ndarray | None = field(default=None, repr=False)
    _eligible: dict[date, np.ndarray] = field(default_factory=dict, repr=False)
    _account: dict[date, np.ndarray] = field(default_factory=dict, repr=False)
    _employers: dict[date, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, arrays: PanelArrays) -> Population:
        """Every person's arrays (their first starts before the first loaded month should be
        :data:`STARTED_BEFORE`, as :func:`load_window` makes them)."""
        if arrays.source_pid is not None:
            raise ValueError("the arrays hold a subset of the persons: use Population.chunked")
        return cls(first=arrays.months[0], last=arrays.months[-1],
                   n_persons=arrays.n_persons, arrays=arrays, panel_dir=arrays.panel_dir)

    @classmethod
    def chunked(cls, panel_dir: Path, first: date, last: date | None, chunk: int) -> Population:
        """The panel under ``panel_dir`` read ``chunk`` pids at a time (``last`` None: the
        panel's last month)."""
        if chunk < 1:
            raise ValueError("person_chunk must be at least 1")
        b = _scan(panel_dir).select(pl.col("month").max().alias("b"),
                                    pl.col("pid").max().alias("n")).collect()
        return cls(first=first, last=last or b["b"][0], n_persons=int(b["n"][0]) + 1,
                   panel_dir=Path(panel_dir), chunk=chunk)

    @classmethod
    def read(cls, panel_dir: Path, first: date, last: date | None = None,
             chunk: int | None = None) -> Population:
        """The panel's months ``first`` .. ``last``: every person's arrays
        (:func:`load_window`) if ``chunk`` is None, else read ``chunk`` pids at a time."""
        if chunk is None:
            return cls.of(load_window(panel_dir, first, last))
        return cls.chunked(panel_dir, first, last, chunk)

    def cohort_months(self) -> list[date]:
        """Months with at least one first ILA start and 36 months of loaded history."""
        if self.arrays is not None:
            return [self.arrays.months[m] for m in cohort_months(self.arrays)]
        lo = shift_month(self.first, HISTORY)
        assert self.panel_dir is not None
        starts = (
            _scan(self.panel_dir)
            .filter(pl.col("month").is_between(self.first, self.last)
                    & pl.col("ila_first_start").is_between(lo, self.last))
            .select(pl.col("ila_first_start").unique())
            .collect()["ila_first_start"]
        )
        return sorted(date(d.year, d.month, 1) for d in starts.to_list())

    def employers(self, cohort: date) -> np.ndarray:
        """Main employer of ``cohort``'s month before of every pid (int32 code, -1: none)."""
        if self.arrays is not None:
            return coworkers.employers_l1(self.arrays, self.arrays.month_index(cohort))
        if cohort not in self._employers:
            assert self.panel_dir is not None
            self._employers[cohort] = coworkers.read_employers(
                self.panel_dir, shift_month(cohort, -1), self.n_persons, self.chunk)
        return self._employers[cohort]

    def risk(self, cohort: date, pool: Pool,
             min_firm_size: int = coworkers.DEFAULT_MIN_FIRM_SIZE
             ) -> tuple[np.ndarray, np.ndarray, int]:
        """:func:`risk_set` of ``cohort`` (pids of the panel)."""
        if self.arrays is not None:
            return risk_set(self.arrays, self.arrays.month_index(cohort), pool,
                            min_firm_size=min_firm_size)
        self.prefetch([cohort], pool)
        assert self._first_start is not None
        return _risk(self._first_start, _month_number(cohort), self._eligible[cohort],
                     self._account.get(cohort, False), pool, lambda: self.employers(cohort),
                     min_firm_size)

    def prefetch(self, cohorts: list[date], pool: Pool) -> None:
        """Read the light columns of the risk sets of ``cohorts`` not read yet, ``chunk``
        pids at a time, in one scan per chunk: every person's first ILA start as a month
        number (so that a start before the loaded months is simply earlier; as
        ``PanelArrays.load``, from any row of the loaded months), eligibility in each cohort
        month and (``account_holders``) an ILA account in the month before. Nothing to do
        for every person's arrays."""
        if self.arrays is not None:
            return
        assert self.panel_dir is not None and self.chunk is not None
        need = sorted({c for c in cohorts if c not in self._eligible})
        prev = sorted({shift_month(c, -1) for c in cohorts if c not in self._account}
                      if pool == "account_holders" else set())
        if not need and not prev and self._first_start is not None:
            return
        scan = _scan(self.panel_dir)
        n = self.n_persons
        fs = np.full(n, -1, dtype=np.int64) if self._first_start is None else None
        eligible = {c: np.zeros(n, dtype=bool) for c in need}
        account = {c: np.zeros(n, dtype=bool) for c in prev}
        start = pl.col("ila_first_start")
        month_no = start.dt.year().cast(pl.Int64) * 12 + start.dt.month().cast(pl.Int64) - 1
        for lo in range(0, n, self.chunk):
            rng = pl.col("pid").is_between(lo, lo + self.chunk - 1)
            if fs is not None:
                have = (scan.filter(rng & pl.col("month").is_between(self.first, self.last)
                                    & start.is_not_null())
                        .group_by("pid").agg(month_no.first().alias("s")).collect())
                fs[have["pid"].to_numpy()] = have["s"].to_numpy()
            for flags, column in ((eligible, "eligible"), (account, "ila_account")):
                if not flags:
                    continue
                rows = (scan.filter(rng & pl.col("month").is_in(list(flags))
                                    & (pl.col(column).fill_null(0).cast(pl.Int8) == 1))
                        .select("pid", "month").collect())
                for c, part in rows.partition_by("month", as_dict=True).items():
                    flags[c[0]][part["pid"].to_numpy()] = True
        if fs is not None:
            self._first_start = fs
        self._eligible.update(eligible)
        self._account.update({shift_month(c, 1): v for c, v in account.items()})

    def chunks(self, first: date, last: date) -> Iterator[tuple[int, PanelArrays]]:
        """Arrays of the months ``first`` .. ``last`` of one pid range at a time: the first
        pid and the arrays (rows ``0 ..``: pids ``first pid ..``). With every person's arrays,
        those arrays (they must hold the months)."""
        if self.arrays is not None:
            yield 0, self.arrays
            return
        assert self.panel_dir is not None and self.chunk is not None
        for lo in range(0, self.n_persons, self.chunk):
            pids = np.arange(lo, min(lo + self.chunk, self.n_persons))
            yield lo, PanelArrays.load(self.panel_dir, first, last, pids=pids)

    def units(self, pids: np.ndarray, first: date, last: date) -> PanelArrays:
        """Arrays holding (at least) the persons ``pids`` over ``first`` .. ``last``."""
        if self.arrays is not None:
            return self.arrays
        assert self.panel_dir is not None
        return PanelArrays.load(self.panel_dir, first, last, pids=np.unique(pids))


def _within(pids: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The sorted ``pids`` in ``lo`` .. ``hi - 1``."""
    a, b = np.searchsorted(pids, [lo, hi])
    return pids[a:b]


def _features(arrays: PanelArrays, m: int, pids: np.ndarray) -> pl.DataFrame:
    """:func:`features_at` of the panel pids ``pids`` (sorted) with their panel ``pid``."""
    f = features_at(arrays, m, arrays.rows(pids))
    if arrays.source_pid is not None:
        f = f.with_columns(pl.Series("pid", np.asarray(pids), dtype=pl.Int32))
    return f


def _stack(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Frames of :func:`features_at` stacked; the Enum columns of frames of arrays of
    different persons (whose categories are those of their persons) get the union of the
    categories, sorted, as :func:`features_at` would give on arrays of all of them."""
    if len(frames) == 1:
        return frames[0]
    casts = {}
    for name, dtype in frames[0].schema.items():
        if isinstance(dtype, pl.Enum) and any(f.schema[name] != dtype for f in frames):
            cats = {c for f in frames for c in f.schema[name].categories.to_list()}
            casts[name] = pl.Enum(sorted(cats))
    return pl.concat([f.with_columns(pl.col(k).cast(v) for k, v in casts.items())
                      for f in frames])


def _gather(pop: Population, wanted: dict[Hashable, tuple[date, np.ndarray]], first: date,
            last: date, visit: Callable[[Hashable, PanelArrays, int, int], None] | None = None,
            spill: Path | None = None) -> dict[Hashable, list[pl.DataFrame | Path]]:
    """Features at cohort ``c`` of the (sorted) panel pids ``p`` of every ``key -> (c, p)`` of
    ``wanted``, one part per chunk (in pid order; :func:`_collect` stacks them), from one pass
    over ``pop``'s chunks of the months ``first`` .. ``last``; ``visit(key, arrays, m,
    first_pid)`` is called on every chunk and key too. ``spill``: a folder the parts are
    written to (Arrow IPC) instead of being held in memory."""
    parts: dict[Hashable, list[pl.DataFrame | Path]] = {k: [] for k in wanted}
    for lo, arrays in pop.chunks(first, last):
        for i, (k, (c, pids)) in enumerate(wanted.items()):
            m = arrays.month_index(c)
            f = _features(arrays, m, _within(pids, lo, lo + arrays.n_persons))
            if spill is not None:
                path = spill / f"{i}-{lo}.arrow"
                f.write_ipc(path)
                parts[k].append(path)
            else:
                parts[k].append(f)
            del f
            if visit is not None:
                visit(k, arrays, m, lo)
        del arrays
    return parts


def _collect(parts: list[pl.DataFrame | Path]) -> pl.DataFrame:
    """The parts of one key of :func:`_gather` stacked (:func:`_stack`); spilled parts are
    read back and deleted."""
    frames = []
    for part in parts:
        if isinstance(part, Path):
            frames.append(pl.read_ipc(part))
            part.unlink()
        else:
            frames.append(part)
    return _stack(frames)


PRE_SERIES = ("earnings_real", "employed", "days_worked")
#: Months of the pre-period trajectories.
PRE_WINDOW = 36


def _add_paths(acc: np.ndarray, arrays: PanelArrays, m: int, pids: np.ndarray,
               series: tuple[str, ...] = PRE_SERIES, window: int = PRE_WINDOW,
               block: int = 1 << 16) -> np.ndarray:
    """``acc`` (one row per series) plus the months ``m - window .. m - 1`` of ``pids``,
    added person after person, as ``mean(axis=0)`` adds the rows of a C-ordered matrix: the
    sum over chunks of pids is then the same number as over all at once (``block`` persons'
    months are held at a time)."""
    rows = arrays.rows(pids)
    out = acc.copy()
    for k, name in enumerate(series):
        for i in range(0, rows.size, block):
            x = arrays.series[name][rows[i : i + block], m - window : m].astype(np.float64)
            out[k] = np.add.reduce(np.concatenate([out[k][None, :], x]), axis=0)
    return out


def _means(acc: np.ndarray, n: int) -> np.ndarray:
    """``acc / n`` (NaN if ``n`` is 0, as the mean of no rows)."""
    return acc / n if n else np.full_like(acc, np.nan)


@dataclass
class CohortInputs:
    """What matching one cohort needs, whoever loaded it (:func:`cohort_inputs`).

    ``treated``, ``candidates``: features (:func:`features_at`, panel pids, pid order);
    ``candidate_pre``: mean paths of :data:`PRE_SERIES` over the :data:`PRE_WINDOW` months
    before the cohort month of all candidates (one row per series; NaN without candidates).
    """

    cohort: date
    treated: pl.DataFrame
    candidates: pl.DataFrame
    n_treated_ineligible: int
    candidate_pre: np.ndarray


def cohort_inputs(pop: Population, cohort: date, s: TwinSettings, *,
                  treated: pl.DataFrame | None = None) -> CohortInputs:
    """The features of ``cohort``'s treated (unless given) and candidates and the candidates'
    mean pre-period paths, built one chunk of ``pop`` at a time (months ``m-36 .. m``)."""
    return next(cohorts_inputs(pop, [cohort], s, treated=treated))


def cohorts_inputs(pop: Population, cohorts: list[date], s: TwinSettings, *,
                   treated: pl.DataFrame | None = None,
                   spill: Path | None = None) -> Iterator[CohortInputs]:
    """The :class:`CohortInputs` of every cohort, in order.

    Without ``spill``, one pass over ``pop``'s chunks of each cohort's months ``m-36 .. m``
    per cohort. With a ``spill`` folder, a single pass over the chunks of the months of all
    ``cohorts`` (36 before the first .. the last): each chunk's features of every cohort are
    written there and read back one cohort at a time, so memory holds one chunk's arrays and
    one cohort's frame rather than every cohort's frames. ``treated``: the features of the
    treated of a single cohort, if known.
    """
    if spill is None and len(cohorts) > 1:
        for c in cohorts:
            yield from cohorts_inputs(pop, [c], s)
        return
    risk = {}
    for c in cohorts:  # pids as int32 (every cohort's candidates are held at once)
        t_, cand_, n_ = pop.risk(c, s.pool, s.coworkers_min_firm_size)
        risk[c] = (t_.astype(np.int32), cand_.astype(np.int32), n_)
    wanted: dict[Hashable, tuple[date, np.ndarray]] = {}
    for c in cohorts:
        wanted[(c, "candidates")] = (c, risk[c][1])
        if treated is None:
            wanted[(c, "treated")] = (c, risk[c][0])
    acc = {c: np.zeros((len(PRE_SERIES), PRE_WINDOW)) for c in cohorts}

    def paths(key: Hashable, arrays: PanelArrays, m: int, lo: int) -> None:
        c, kind = key  # type: ignore[misc]
        if kind == "candidates":
            cand = _within(risk[c][1], lo, lo + arrays.n_persons)
            acc[c] = _add_paths(acc[c], arrays, m, cand)

    parts = _gather(pop, wanted, shift_month(min(cohorts), -HISTORY), max(cohorts), paths,
                    spill)
    for c in cohorts:
        t = _collect(parts.pop((c, "treated"))) if treated is None else treated
        yield CohortInputs(c, t, _collect(parts.pop((c, "candidates"))), risk[c][2],
                           _means(acc[c], risk[c][1].size))


def cohort_frame(
    arrays: PanelArrays,
    m: int,
    pool: Pool,
    *,
    min_firm_size: int = coworkers.DEFAULT_MIN_FIRM_SIZE,
) -> tuple[pl.DataFrame, int]:
    """Features of the treated and candidates of cohort ``m`` with a ``treated`` flag (and,
    for the ``coworkers`` pool, the employer code of ``m-1``)."""
    treated, candidates, ineligible = risk_set(arrays, m, pool, min_firm_size=min_firm_size)
    df = _frame(features_at(arrays, m, treated), features_at(arrays, m, candidates))
    if pool == "coworkers":
        df = _with_employer(coworkers.employers_l1(arrays, m), df)
    return df, ineligible


def _with_employer(codes: np.ndarray, df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with the main employer of ``m-1`` (``codes`` over pids) of each ``pid`` (the
    coworkers' exact key)."""
    return df.with_columns(pl.Series(coworkers.EMPLOYER_KEY, codes[df["pid"].to_numpy()]))


def _frame(treated: pl.DataFrame, candidates: pl.DataFrame) -> pl.DataFrame:
    flag = np.r_[np.ones(treated.height, bool), np.zeros(candidates.height, bool)]
    return _stack([treated, candidates]).with_columns(pl.Series("treated", flag))


def _pooled_model(
    pop: Population, cohorts: list[date], s: TwinSettings, treated: dict[date, pl.DataFrame]
) -> PropensityModel | None:
    """One propensity model on all cohorts' treated and a sample of their candidates.

    Per cohort: its treated persons, ``ps_controls_per_treated`` random candidates per treated
    person (fewer, the same number per treated person in every cohort, if that would exceed
    ``ps_max_controls`` sampled candidates in all), and, for every level of a categorical
    feature that the cohort's candidates have but the sample lacks, the first candidate with
    that level (so that every candidate can be scored). Only the sampled candidates'
    features are built. With the ``coworkers`` pool only the treated persons in qualifying
    firms enter (the others have no candidates); None if there are none.

    The draw needs only the risk sets (:func:`_draw`: positions among each cohort's
    candidates, one generator over the cohorts in order); the features of the drawn
    candidates and the levels of all candidates are then read in one pass over ``pop``'s
    chunks, so the sample is the same however the persons are chunked.
    """
    sample = _draw(pop, cohorts, s, {c: t["pid"].to_numpy() for c, t in treated.items()})
    if sample is None:
        return None
    parts = _gather(pop, sample.wanted(), pop.first, pop.last, sample.visit)
    return sample.fit(treated, parts, s)


@dataclass
class _Sample:
    """The pooled model's candidate sample (:func:`_draw`): per cohort with treated persons
    entering the model, which of its treated (in pid order) enter, its candidates, the drawn
    positions among them and the levels of the candidates (:class:`_Levels`)."""

    keep: dict[date, np.ndarray]
    cands: dict[date, np.ndarray]
    takes: dict[date, np.ndarray]
    levels: dict[date, _Levels]

    def wanted(self) -> dict[Hashable, tuple[date, np.ndarray]]:
        """The drawn candidates of every cohort (keys ``("sample", cohort)``, :func:`_gather`)."""
        return {("sample", c): (c, self.cands[c][self.takes[c]]) for c in self.takes}

    def visit(self, key: Hashable, arrays: PanelArrays, m: int, lo: int) -> None:
        """Record the levels of the cohort's candidates held by a chunk (:func:`_gather`)."""
        if isinstance(key, tuple) and key[0] == "sample" and self.levels[key[1]].cols:
            self.levels[key[1]].add(arrays, m, self.cands[key[1]], lo)

    def fit(self, treated: dict[date, pl.DataFrame],
            parts: dict[Hashable, list[pl.DataFrame | Path]], s: TwinSettings
            ) -> PropensityModel:
        """The model on the treated that enter and the sample (drawn candidates, then the
        first candidate of every level the sample lacked, in :meth:`_Levels.rows` order)."""
        frames = []
        for c in self.takes:
            levels = self.levels[c]
            order = levels.rows()  # positions among the candidates, in the sample's order
            pool = _stack([_collect(parts[("sample", c)]), *levels.frames])
            pos = np.r_[self.takes[c], *levels.positions]
            at = {int(p): i for i, p in enumerate(pos)}
            sample = pool[[at[int(p)] for p in order]]
            frames.append(_frame(treated[c].filter(pl.Series(self.keep[c])), sample))
        return PropensityModel(C=s.ps_C).fit(_stack(frames), treatment="treated",
                                             features=list(s.features))


def _draw(pop: Population, cohorts: list[date], s: TwinSettings,
          treated: dict[date, np.ndarray]) -> _Sample | None:
    """Draw the pooled model's candidate sample (see :func:`_pooled_model`) from the risk sets
    of ``pop``; ``treated``: every cohort's treated pids (sorted). None without treated
    persons entering the model."""
    rng = np.random.default_rng(s.seed)
    keep = {c: np.ones(treated[c].size, dtype=bool) for c in cohorts}
    if s.pool == "coworkers":  # only the treated in qualifying firms
        keep = {c: coworkers.reasons_by_codes(pop.employers(c), treated[c],
                                              s.coworkers_min_firm_size) == ""
                for c in cohorts}
    n = {c: int(keep[c].sum()) for c in cohorts}
    per_treated: float = s.ps_controls_per_treated
    n_treated = sum(n.values())
    if n_treated == 0:
        return None
    if s.ps_max_controls is not None and per_treated * n_treated > s.ps_max_controls:
        per_treated = s.ps_max_controls / n_treated
    cat_cols = [c for c in s.features
                if c in (*CATEGORICAL_FEATURES, *COARSE_FEATURES, *OPTIONAL_CATEGORICAL_FEATURES)]
    cands: dict[date, np.ndarray] = {}
    takes: dict[date, np.ndarray] = {}
    for c in cohorts:
        if n[c] == 0:
            continue
        cand = pop.risk(c, s.pool, s.coworkers_min_firm_size)[1]
        k = min(cand.size, int(per_treated * n[c]))
        cands[c] = cand.astype(np.int32)  # every cohort's candidates are held at once
        takes[c] = np.sort(rng.choice(cand.size, size=k, replace=False))
    if not takes:
        return None
    return _Sample(keep, cands, takes, {c: _Levels(cat_cols, takes[c]) for c in takes})


class _Levels:
    """The categorical levels of one cohort's candidates, seen chunk by chunk (for the pooled
    model's sample, :func:`_pooled_model`): per column, the first candidate (position among
    the candidates) with each level, the levels of every column of those candidates and
    their features, and the levels the drawn positions ``take`` hold."""

    def __init__(self, cols: list[str], take: np.ndarray) -> None:
        self.cols = cols
        self.take = take
        self.first: dict[str, dict[str | None, int]] = {c: {} for c in cols}
        self.of: dict[int, dict[str, str | None]] = {}  # position -> column -> level
        self.seen: dict[str, set[str | None]] = {c: set() for c in cols}
        self.frames: list[pl.DataFrame] = []
        self.positions: list[np.ndarray] = []

    def add(self, arrays: PanelArrays, m: int, cand: np.ndarray, lo: int) -> None:
        """The candidates ``cand`` (panel pids) held by ``arrays`` (pids ``lo ..``)."""
        a, b = np.searchsorted(cand, [lo, lo + arrays.n_persons])
        if a == b:
            return
        codes = categorical_codes(arrays, m, arrays.rows(cand[a:b]), self.cols)

        def label(col: str, code: int) -> str | None:  # a level (None: missing, code -1)
            return codes[col][0][code] if code >= 0 else None

        taken = self.take[(self.take >= a) & (self.take < b)] - a
        new: set[int] = set()
        for col in self.cols:
            k = codes[col][1]
            self.seen[col].update(label(col, v) for v in np.unique(k[taken]).tolist())
            values, first = np.unique(k, return_index=True)
            for v, i in zip(values.tolist(), first.tolist(), strict=True):
                if label(col, v) not in self.first[col]:
                    self.first[col][label(col, v)] = a + i
                    new.add(i)
        if new:
            local = np.array(sorted(new), dtype=np.int64)
            for i in local.tolist():
                self.of[a + i] = {c: label(c, int(codes[c][1][i])) for c in self.cols}
            self.frames.append(_features(arrays, m, cand[a + local]))
            self.positions.append(a + local)

    def rows(self) -> np.ndarray:
        """The sample's positions: ``take``, then per column the first candidate of every
        level that neither ``take`` nor the candidates added for earlier columns hold."""
        rows = [self.take]
        added: list[int] = []
        for col in self.cols:
            seen = self.seen[col] | {self.of[p][col] for p in added}
            extra = sorted(p for v, p in self.first[col].items() if v not in seen)
            if extra:
                rows.append(np.array(extra, dtype=np.int64))
                added.extend(extra)
        return np.concatenate(rows)


def _add_unqualified(res: MatchResult, pids: np.ndarray, why: np.ndarray) -> MatchResult:
    """``res`` (the match of the coworkers pool's qualifying treated and their co-workers)
    with the treated persons ``pids`` who have no qualifying firm added as unmatched.

    Each ``why`` (:data:`impact.twins.coworkers.REASONS`) becomes a pseudo-stratum (-1, -2,
    ...; exact values null) of the strata table with its own ``n_unmatched_<why>`` column,
    and the reason of those persons' rows of the unmatched table; in ``units`` they are
    treated with weight 0 and no score. Counts, shares and reason totals
    (:meth:`MatchResult.summary`) then cover every treated person of the cohort.
    """
    if pids.size == 0:
        return res
    id_dtype = res.units.schema["id"]
    stratum = np.zeros(pids.size, dtype=np.int64)
    rows = []
    for i, reason in enumerate(coworkers.REASONS):
        hit = why == reason
        stratum[hit] = -(i + 1)
        n = int(hit.sum())
        if n:
            rows.append({"stratum": -(i + 1), "n_treated": n, "n_unmatched": n,
                         **{f"n_unmatched_{r}": n if r == reason else 0
                            for r in coworkers.REASONS}})
    extra = pl.DataFrame(rows, schema_overrides={"stratum": pl.Int64})
    strata = pl.concat([res.strata, extra], how="diagonal_relaxed")
    strata = strata.with_columns(
        pl.col(c).fill_null(0).cast(pl.Int64) for c in strata.columns if c.startswith("n_")
    )
    unmatched = pl.concat([
        res.unmatched,
        pl.DataFrame({
            "treated_id": pl.Series(pids, dtype=id_dtype),
            "stratum": stratum,
            "reason": pl.Series(why, dtype=pl.String),
            "nearest_distance": pl.Series([None] * pids.size, dtype=pl.Float64),
        }),
    ]).sort(["stratum", "treated_id"])
    units = pl.concat([
        res.units,
        pl.DataFrame({
            "id": pl.Series(pids, dtype=id_dtype),
            "treated": np.ones(pids.size, dtype=bool),
            "stratum": stratum,
            "score": pl.Series([None] * pids.size, dtype=pl.Float64),
            "weight": np.zeros(pids.size),
        }),
    ]).sort("id")
    return dataclasses.replace(res, strata=strata, unmatched=unmatched, units=units)


def _match_coworkers(
    codes: np.ndarray, s: TwinSettings, model: PropensityModel | None, df: pl.DataFrame,
) -> tuple[pl.DataFrame, MatchResult]:
    """The coworkers pool's match of a cohort: ``df`` (treated and candidates) with the
    employer of ``m-1`` (``codes`` over pids; an exact key) and, with a pooled model,
    ``ps_logit``; the match of the treated in qualifying firms and their co-workers, the
    others added as unmatched (:func:`_add_unqualified`). Only the qualifying rows are scored
    or fitted (the others may hold levels the model never saw) and define the caliper's SD."""
    opts = s.options()
    df = _with_employer(codes, df)
    pids = df["pid"].to_numpy()
    why = coworkers.reasons_by_codes(codes, pids, s.coworkers_min_firm_size)
    why[~df["treated"].to_numpy()] = ""  # candidates are in qualifying firms by construction
    keep = why == ""
    sub = df.filter(pl.Series(keep))
    feats = s.mahalanobis_features if s.distance == "mahalanobis" else s.features
    if not sub["treated"].any():  # no qualifying treated (hence no candidates): empty match
        empty = dataclasses.replace(opts, distance="glm", ps_model="precomputed", mahvars=None,
                                    m_order=None)
        sub = sub.with_columns(pl.lit(0.0, dtype=pl.Float64).alias("ps_logit"))
        res = match(sub, treatment="treated", id="pid", options=empty, score="ps_logit")
    else:
        kwargs: dict = {}
        if opts.ps_model == "precomputed":
            if model is None:
                raise ValueError("pooled propensity scope needs the fitted pooled model")
            logit = model.logit(sub)
            sub = sub.with_columns(pl.Series("ps_logit", logit))
            full = np.full(df.height, np.nan)
            full[keep] = logit
            df = df.with_columns(pl.Series("ps_logit", full).fill_nan(None))
            kwargs = {"score": "ps_logit"}
        res = match(sub, treatment="treated", features=list(feats), id="pid", options=opts,
                    **kwargs)
    return df, _add_unqualified(res, pids[~keep], why[~keep])


def match_cohort(
    arrays: PanelArrays,
    m: int,
    s: TwinSettings,
    model: PropensityModel | None = None,
    *,
    treated: pl.DataFrame | None = None,
    grid: dict[str, np.ndarray] | None = None,
) -> CohortMatch:
    """Twins of the cohort of month index ``m`` of ``arrays`` (every person's; see the module
    docstring): :func:`match_inputs` of :func:`cohort_inputs`.

    ``treated`` (the features of the cohort's treated persons) and ``grid`` (the KS grid of
    the balance tables, holding every treated value of all cohorts to be pooled) are passed
    by :func:`match_cohorts`; by default they are built for this cohort alone.
    """
    t0 = time.perf_counter()
    pop = Population.of(arrays)
    inputs = cohort_inputs(pop, arrays.months[m], s, treated=treated)
    return match_inputs(inputs, s, model, grid=grid, employers=pop.employers, t0=t0)


def match_inputs(
    inputs: CohortInputs,
    s: TwinSettings,
    model: PropensityModel | None = None,
    *,
    grid: dict[str, np.ndarray] | None = None,
    employers: Callable[[date], np.ndarray] | None = None,
    t0: float | None = None,
) -> CohortMatch:
    """Twins of one cohort from its prebuilt :class:`CohortInputs` (panel pids).

    ``employers(cohort)``: the employer codes of ``m-1`` over all pids (the ``coworkers``
    pool only; :meth:`Population.employers`); ``grid``: see :func:`match_cohort`; ``t0``:
    start of the cohort's clock (``seconds``).
    """
    t0 = time.perf_counter() if t0 is None else t0
    treated = inputs.treated
    df = _frame(treated, inputs.candidates)
    n_candidates = inputs.candidates.height
    opts = s.options()
    feats = s.mahalanobis_features if s.distance == "mahalanobis" else s.features
    if s.pool == "coworkers":
        if employers is None:
            raise ValueError("the coworkers pool needs the employers of the month before")
        df, res = _match_coworkers(employers(inputs.cohort), s, model, df)
    else:
        kwargs: dict = {}
        if opts.ps_model == "precomputed":
            if model is None:
                raise ValueError("pooled propensity scope needs the fitted pooled model")
            df = df.with_columns(pl.Series("ps_logit", model.logit(df)))
            kwargs = {"score": "ps_logit"}
        res = match(df, treatment="treated", features=list(feats), id="pid", options=opts,
                    **kwargs)
    # per-person weight and score from the match's units (pid = panel pid)
    ids = res.units["id"].to_numpy()
    pid = df["pid"].to_numpy()
    n = int(pid.max()) + 1 if pid.size else 0
    weight = np.zeros(n)
    weight[ids] = res.units["weight"].to_numpy()
    df = df.with_columns(pl.Series("weight", weight[pid]))
    if "ps_logit" not in df.columns:  # per-cohort model: its logit; Mahalanobis: null
        score = np.full(n, np.nan)
        score[ids] = res.units["score"].fill_null(np.nan).to_numpy()
        df = df.with_columns(pl.Series("ps_logit", score[pid]).fill_nan(None))
    # keep the treated and the twins only (all candidates of all cohorts would not fit)
    # (gathered, not filtered: a filter may keep the whole frame's buffers alive as a slice)
    keep_units = res.units.select(pl.col("treated") | (pl.col("weight") > 0)).to_series()
    res = dataclasses.replace(res, units=res.units[np.flatnonzero(keep_units.to_numpy())])
    if grid is None:
        grid = ks_grid(treated, [c for c in s.covariates if c in ALL_NUMERIC_FEATURES])
    parts = balance_parts(
        df,
        treatment="treated",
        covariates=s.covariates,
        weights="weight",
        grid=grid,
        ks_sample=s.ks_sample,
        seed=s.seed + _month_number(inputs.cohort),
    )
    bal = balance_table_from_parts([parts], binary=s.smd_binary)
    gate = balance_gate(
        bal,
        max_abs_smd=s.max_abs_smd,
        max_unmatched_share=s.max_unmatched_share,
        unmatched_share=res.unmatched_share,
    )
    return CohortMatch(
        cohort=inputs.cohort,
        n_treated_ineligible=inputs.n_treated_ineligible,
        n_candidates=int(n_candidates),
        result=res,
        frame=df[np.flatnonzero(df["treated"].to_numpy() | (df["weight"].to_numpy() > 0))],
        balance=bal,
        gate=gate,
        seconds=time.perf_counter() - t0,
        parts=parts,
        min_firm_size=s.coworkers_min_firm_size,
        candidate_pre=inputs.candidate_pre,
    )


@dataclass
class CohortOutput:
    """Everything the combination stage needs from one matched cohort (picklable, small).

    ``pairs`` and ``unmatched`` are the cohort's rows of :attr:`TwinsResult.pairs` and
    :attr:`TwinsResult.unmatched`; ``summary`` its row of :attr:`TwinsResult.summary`
    (before the cohort-group gate is filled in); ``balance`` its balance table; ``parts``
    its mergeable balance inputs; ``pre`` its pre-period trajectories (see
    :func:`cohort_pre_trajectories`; empty unless asked for).
    """

    cohort: date
    n_treated: int
    n_matched: int
    n_unmatched: int
    pairs: pl.DataFrame
    unmatched: pl.DataFrame
    summary: dict
    balance: pl.DataFrame
    parts: BalanceParts | None
    pre: pl.DataFrame = field(default_factory=pl.DataFrame)


PAIR_COLUMNS = (
    "cohort",
    "treated_code",
    "twin_code",
    "treated_pid",
    "twin_pid",
    "weight",
    "distance",
    "rank",
    "stratum",
    "match_pass",
)


def cohort_output(
    arrays: PanelArrays, c: CohortMatch, pool: Pool, *, pre: bool = False
) -> CohortOutput:
    """The :class:`CohortOutput` of a matched cohort (``pre``: with its pre-trajectories).

    ``arrays`` hold (at least) the cohort's treated persons and twins, over the 36 months
    before the cohort month if ``pre`` (every person's arrays, or :meth:`Population.units`).
    """
    r = c.result

    def code(pids: np.ndarray) -> np.ndarray:
        return arrays.person_code[arrays.rows(pids)]

    tid = r.pairs["treated_id"].to_numpy()
    cid = r.pairs["control_id"].to_numpy()
    pairs = (
        r.pairs.with_columns(
            pl.lit(c.cohort).alias("cohort"),
            pl.Series("treated_code", code(tid).astype(str)),
            pl.Series("twin_code", code(cid).astype(str)),
        )
        .rename({"treated_id": "treated_pid", "control_id": "twin_pid"})
        .select(PAIR_COLUMNS)
    )
    unmatched = pl.DataFrame()
    if r.unmatched.height:
        keys = c.frame.select(
            "pid",
            *(
                pl.col(k).cast(pl.String) if isinstance(c.frame.schema[k], pl.Enum) else k
                for k in DEFAULT_EXACT
            ),
        )
        um = r.unmatched.join(keys, left_on="treated_id", right_on="pid", how="left")
        unmatched = um.with_columns(
            pl.lit(c.cohort).alias("cohort"),
            pl.Series("treated_code", code(um["treated_id"].to_numpy()).astype(str)),
        )
    sm = r.summary()
    if pool == "coworkers":  # the same reason columns in every cohort
        by_reason = sm["unmatched_by_reason"]
        order = (*(k for k in by_reason if k not in coworkers.REASONS), *coworkers.REASONS)
        sm["unmatched_by_reason"] = {k: by_reason.get(k, 0) for k in order}
    summary = {
        "cohort": c.cohort,
        "n_treated": sm["n_treated"],
        "n_treated_ineligible": c.n_treated_ineligible,
        "n_candidates": c.n_candidates,
        "n_matched": sm["n_matched"],
        "n_unmatched": sm["n_unmatched"],
        "n_matched_fallback": sum(sm["n_matched_by_pass"][1:]),
        **{f"unmatched_{k}": v for k, v in sm["unmatched_by_reason"].items()},
        "unmatched_share": sm["unmatched_share"],
        "n_twins": sm["n_controls_used"],
        "n_pairs": sm["n_pairs"],
        "twin_ess": sm["control_ess"],
        "max_abs_smd_before": _max_abs(c.balance["smd_before"]),
        "max_abs_smd_after": c.gate.max_abs_smd,
        "gate_passed": c.gate.passed,
        "gate_reasons": "; ".join(c.gate.reasons),
        "seconds": round(c.seconds, 3),
    }
    return CohortOutput(
        cohort=c.cohort,
        n_treated=r.n_treated,
        n_matched=r.n_matched,
        n_unmatched=r.n_unmatched,
        pairs=pairs,
        unmatched=unmatched,
        summary=summary,
        balance=c.balance.with_columns(pl.lit(c.cohort).alias("cohort")),
        parts=c.parts,
        pre=cohort_pre_trajectories(arrays, c, pool) if pre else pl.DataFrame(),
    )


def pooled_balance(parts: list[BalanceParts | None], binary: BinarySMD = "std") -> pl.DataFrame:
    """Balance over cohorts stacked, from their :class:`impact.balance.BalanceParts`.

    The same as :func:`impact.balance.balance_table` on the stacked frames of the cohorts
    (treated persons and all candidates of every cohort; a person who is a candidate in
    several cohorts counts once per cohort), without stacking the candidates. Cohorts
    without treated persons or candidates are left out.
    """
    use = [p for p in parts if p is not None and p.treated.height and p.candidates.n]
    return balance_table_from_parts(use, binary=binary) if use else pl.DataFrame()


def combine_cohorts(
    outputs: list[CohortOutput],
    s: TwinSettings,
    *,
    model: PropensityModel | None = None,
    cohorts: list[CohortMatch] | None = None,
    timings: dict[str, float] | None = None,
) -> TwinsResult:
    """Stack the cohorts' outputs and apply the balance gate per cohort group and pooled.

    The outputs may come from one process (:func:`match_cohorts`) or from cohorts matched
    separately (:mod:`impact.twins.plan`): the result is the same as long as every cohort
    used the same settings, propensity model and KS grid. Cohorts are taken in date order.
    """
    outputs = sorted(outputs, key=lambda o: o.cohort)
    summary = [dict(o.summary) for o in outputs]
    balance = [o.balance for o in outputs]
    groups = cohort_groups([o.n_matched for o in outputs], s.gate_min_treated)
    group_gate: dict[int, GateResult] = {}
    for g in sorted(set(groups)):
        members = [o for o, gi in zip(outputs, groups, strict=True) if gi == g]
        bal = pooled_balance([o.parts for o in members], s.smd_binary)
        n_t = sum(o.n_treated for o in members)
        lost = sum(o.n_unmatched for o in members)
        group_gate[g] = _gate(bal, s, lost / n_t if n_t else 0.0)
        balance.append(
            bal.with_columns(pl.lit(None, pl.Date).alias("cohort"),
                             pl.lit(g, pl.Int64).alias("cohort_group"))
        )
    for row, g in zip(summary, groups, strict=True):
        row["cohort_group"] = g
        row["gate_passed"] = group_gate[g].passed
        row["gate_reasons"] = "; ".join(group_gate[g].reasons)
    pooled = pooled_balance([o.parts for o in outputs], s.smd_binary)
    pooled_gate = None
    if pooled.height:
        balance.append(
            pooled.with_columns(
                pl.lit(None, pl.Date).alias("cohort"), pl.lit(None, pl.Int64).alias("cohort_group")
            )
        )
        n_t = sum(o.n_treated for o in outputs)
        pooled_gate = _gate(pooled, s, sum(o.n_unmatched for o in outputs) / n_t)
    pairs = [o.pairs for o in outputs]
    unmatched = [o.unmatched for o in outputs if o.unmatched.height]
    pre = [o.pre for o in outputs if o.pre.height]
    return TwinsResult(
        pairs=pl.concat(pairs) if pairs else pl.DataFrame(),
        summary=pl.DataFrame(summary),
        unmatched=pl.concat(unmatched, how="diagonal") if unmatched else pl.DataFrame(),
        balance=pl.concat(balance, how="diagonal") if balance else pl.DataFrame(),
        cohorts=cohorts or [],
        settings=s,
        model=model,
        pooled_gate=pooled_gate,
        timings=timings or {},
        pre=pool_pre_trajectories(pre) if pre else pl.DataFrame(),
    )


def prepare_cohorts(
    source: PanelArrays | Population, s: TwinSettings, cohorts: list[date]
) -> tuple[dict[date, pl.DataFrame], dict[str, np.ndarray]]:
    """The treated persons' features of every cohort (one pass over the chunks of a
    :class:`Population`) and the KS grid shared by all cohorts (every numeric balance
    covariate's distinct treated values over all cohorts)."""
    treated, grid, _ = prepare_and_fit(source, s, cohorts, fit=False)
    return treated, grid


def prepare_and_fit(
    source: PanelArrays | Population, s: TwinSettings, cohorts: list[date], *,
    fit: bool = True,
) -> tuple[dict[date, pl.DataFrame], dict[str, np.ndarray], PropensityModel | None]:
    """:func:`prepare_cohorts` and (``fit``) :func:`fit_pooled_model` with a single pass over
    the chunks of a :class:`Population` (the treated persons' features and the model's
    candidate sample are gathered together)."""
    pop = source if isinstance(source, Population) else Population.of(source)
    pop.prefetch(cohorts, s.pool)
    pids = {c: pop.risk(c, s.pool, s.coworkers_min_firm_size)[0] for c in cohorts}
    sample = None
    if fit and s.distance == "glm" and s.ps_scope == "pooled" and cohorts:
        sample = _draw(pop, cohorts, s, pids)
    wanted: dict[Hashable, tuple[date, np.ndarray]] = {
        ("treated", c): (c, p) for c, p in pids.items()}
    if sample is not None:
        wanted.update(sample.wanted())
    parts = (_gather(pop, wanted, pop.first, pop.last,
                     sample.visit if sample is not None else None) if cohorts else {})
    frames = [_collect(parts[("treated", c)]) for c in cohorts]
    if len({tuple(f.schema.items()) for f in frames}) > 1:
        # one set of categories for all cohorts (their frames are concatenated)
        stacked = _stack(frames)
        sizes = np.cumsum([0, *(f.height for f in frames)])
        frames = [stacked[int(a):int(b)] for a, b in zip(sizes, sizes[1:], strict=True)]
    treated = dict(zip(cohorts, frames, strict=True))
    numeric = [c for c in s.covariates if c in ALL_NUMERIC_FEATURES]
    grid = ks_grid(pl.concat(frames), numeric) if cohorts else {}
    model = sample.fit(treated, parts, s) if sample is not None else None
    return treated, grid, model


def fit_pooled_model(
    source: PanelArrays | Population, s: TwinSettings, cohorts: list[date],
    treated: dict[date, pl.DataFrame],
) -> PropensityModel | None:
    """The pooled propensity model, or None when the settings do not use one."""
    if s.distance == "glm" and s.ps_scope == "pooled":
        pop = source if isinstance(source, Population) else Population.of(source)
        return _pooled_model(pop, cohorts, s, treated)
    return None


def match_cohorts(
    arrays: PanelArrays,
    s: TwinSettings | None = None,
    cohorts: list[date] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    pre: bool = False,
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
    progress
        Called with the name of each stage when it ends (``"treated_features"``,
        ``"pooled_model"``, ``"matching"``, ``"balance"``), e.g. to measure memory per stage;
        the seconds per stage are in :attr:`TwinsResult.timings`.
    pre
        Also compute the pre-period trajectories (:attr:`TwinsResult.pre`).
    """
    s = s or TwinSettings()
    months = cohort_months(arrays) if cohorts is None else [arrays.month_index(c) for c in cohorts]
    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t0
        stages[stage] = time.perf_counter() - t0
        if progress is not None:
            progress(stage)
        t0 = time.perf_counter()

    dates = [arrays.months[m] for m in months]
    treated, grid = prepare_cohorts(arrays, s, dates)
    lap("treated_features")
    model = fit_pooled_model(arrays, s, dates, treated)
    if model is not None:
        lap("pooled_model")
    done = [match_cohort(arrays, m, s, model, treated=treated[c], grid=grid)
            for m, c in zip(months, dates, strict=True)]
    outputs = [cohort_output(arrays, c, s.pool, pre=pre) for c in done]
    lap("matching")
    result = combine_cohorts(outputs, s, model=model, cohorts=done, timings=stages)
    lap("balance")
    return result


def cohort_pre_trajectories(
    arrays: PanelArrays,
    c: CohortMatch,
    pool: Pool,
    series: tuple[str, ...] = PRE_SERIES,
    window: int = PRE_WINDOW,
) -> pl.DataFrame:
    """Mean pre-period paths of one cohort: treated, matched twins and all candidates.

    For event time ``e = -window..-1`` (month ``m + e``): the mean of each series over the
    matched treated, the matching-weighted mean over their twins, and the plain mean over all
    candidates of the cohort (what a naive comparison would use); ``n`` matched treated.
    ``arrays`` hold the treated and twins; the candidates' means are those computed with the
    match (:attr:`CohortMatch.candidate_pre`) for the default series and window, else they
    are computed here from ``arrays`` (then every person's).
    """
    m = arrays.month_index(c.cohort)
    f = c.frame
    w = f["weight"].to_numpy()
    d = f["treated"].to_numpy()
    rows = arrays.rows(f["pid"].to_numpy())
    matched_t = d & (w > 0)
    n_t = int(matched_t.sum())
    if n_t == 0:
        return pl.DataFrame()
    twins = ~d & (w > 0)
    cand_means = c.candidate_pre
    if cand_means is None or series != PRE_SERIES or window != PRE_WINDOW:
        cand = risk_set(arrays, m, pool, min_firm_size=c.min_firm_size)[1]  # all candidates
        acc = _add_paths(np.zeros((len(series), window)), arrays, m, cand, series, window)
        cand_means = _means(acc, cand.size)
    out = []
    for k, name in enumerate(series):
        x = arrays.series[name][rows, m - window : m].astype(np.float64)
        out.append(
            pl.DataFrame(
                {
                    "event_time": np.arange(-window, 0, dtype=np.int16),
                    "series": name,
                    "treated": x[matched_t].mean(axis=0),
                    "twins": (x[twins] * w[twins, None]).sum(axis=0) / w[twins].sum(),
                    "candidates": cand_means[k],
                    "n": n_t,
                }
            )
        )
    return pl.concat(out)


def pool_pre_trajectories(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Cohorts' pre-period paths pooled with weights equal to their matched treated."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame()
    return (
        pl.concat(frames)
        .group_by("series", "event_time")
        .agg(
            *[
                ((pl.col(k) * pl.col("n")).sum() / pl.col("n").sum()).alias(k)
                for k in ("treated", "twins", "candidates")
            ],
        )
        .sort("series", "event_time")
    )


def pre_trajectories(
    arrays: PanelArrays,
    result: TwinsResult,
    series: tuple[str, ...] = PRE_SERIES,
    window: int = PRE_WINDOW,
) -> pl.DataFrame:
    """Mean pre-period paths of treated, matched twins and all candidates (naive).

    :func:`cohort_pre_trajectories` of every cohort of ``result``, pooled with weights
    equal to their number of matched treated (:func:`pool_pre_trajectories`).

    Returns
    -------
    polars.DataFrame
        ``event_time``, ``series``, ``treated``, ``twins``, ``candidates`` (long format).
    """
    return pool_pre_trajectories([
        cohort_pre_trajectories(arrays, c, result.settings.pool, series, window)
        for c in result.cohorts
    ])


def cohort_key(cohort: date) -> str:
    """``YYYY-MM``: the folder and partition name of a cohort month."""
    return cohort.strftime("%Y-%m")


def write_pairs(pairs: pl.DataFrame, cohort: date, out: Path) -> Path:
    """Write one cohort's pairs to ``out/pairs/cohort=YYYY-MM/part-0.parquet`` atomically."""
    from impact.atomic import write_parquet

    path = out / "pairs" / f"cohort={cohort_key(cohort)}" / "part-0.parquet"
    write_parquet(pairs, path)
    return path


def write(result: TwinsResult, out: Path, *, pairs: bool = True,
          meta: dict | None = None) -> dict[str, int]:
    """Write the twins of every cohort and their diagnostics under ``out``.

    Layout: ``pairs/cohort=YYYY-MM/part-0.parquet``, ``summary.parquet``,
    ``balance.parquet``, ``unmatched.parquet``, ``pre_trajectories.parquet`` (when
    computed), ``settings.json``. Files are replaced atomically. ``pairs=False`` leaves the
    pairs to the cohort steps that wrote them (:mod:`impact.twins.plan`). Either way the
    pairs folders of cohorts not in ``result`` (left by an earlier run with other cohorts)
    are removed, so readers of ``pairs/**`` see exactly these cohorts. ``meta`` is added
    to ``settings.json``.
    """
    import dataclasses
    import shutil

    from impact.atomic import write_json, write_parquet

    cohorts = result.summary["cohort"].to_list() if result.summary.height else []
    if pairs:
        for c in cohorts:
            write_pairs(result.pairs.filter(pl.col("cohort") == c), c, out)
    keep = {f"cohort={cohort_key(c)}" for c in cohorts}
    if (out / "pairs").is_dir():
        for d in (out / "pairs").iterdir():
            if d.is_dir() and d.name not in keep:
                shutil.rmtree(d)
    write_parquet(result.summary, out / "summary.parquet")
    write_parquet(result.balance, out / "balance.parquet")
    write_parquet(result.unmatched, out / "unmatched.parquet")
    if result.pre.height:
        write_parquet(result.pre, out / "pre_trajectories.parquet")
    doc = {
        "settings": dataclasses.asdict(result.settings),
        "pooled_gate_passed": bool(result.pooled_gate) if result.pooled_gate else None,
        "failures": result.failures(),
        **(meta or {}),
    }
    write_json(doc, out / "settings.json")
    return {"pairs": result.pairs.height, "cohorts": len(cohorts)}
