"""Staggered difference-in-differences: Callaway & Sant'Anna (2021) group-time ATT(g,t).

Port of R ``did`` (``att_gt`` / ``aggte``) for balanced panels. The estimand of cell (g,t) is

.. math:: ATT(g,t) = E[Y_t(g) - Y_t(0) \\mid G = g],

the average effect in period ``t`` on the units first treated in period ``g`` (the cohort).

Identifying assumptions (Callaway & Sant'Anna 2021, Assumptions 1-6):

* **Irreversible, staggered treatment**: once treated a unit stays treated; ``g`` is its first
  treated period (0 = never treated within the window).
* **Limited anticipation**: no effect before ``g - anticipation``.
* **Conditional parallel trends** (on the covariates ``x``, measured in the earlier period of
  each comparison), either with the never-treated (``control_group="never_treated"``) or with
  the not-yet-treated units (``"not_yet_treated"``, which also assumes parallel trends among
  the later cohorts before they are treated).
* **Overlap**: for every cohort, the propensity score of belonging to it (versus the
  comparison group) is bounded away from one.
* **Random sampling** of units (panel data), or of clusters when ``cluster`` is given.

Inference uses the influence function of each ATT(g,t): analytic standard errors, or the
multiplier bootstrap with uniform (sup-t) bands over all cells or all aggregated elements
(:mod:`impact.estimate.inference`). ``ATTgtResults.aggregate`` gives the simple, event-study
(``"dynamic"``), cohort (``"group"``) and calendar-time summaries of ``did::aggte``, with the
estimation of the cohort weights included in their influence function.

Computation: without covariates every 2x2 estimator is a difference in weighted means, and
the cells x units influence matrix has a closed, factored form (per unit ``T + 1`` features,
per cell and cohort block ``T + 1`` coefficients; :mod:`impact.estimate._attgt`). Estimates,
standard errors, the pre-test, the aggregations and the bootstrap are then computed from the
factors without forming that matrix (O(n T^2) instead of O(n K^2) for K cells); the results
equal those of the general per-cell path up to rounding (tests/test_staggered_fast.py). With
covariates (or a cohort of zero total weight) every cell runs its 2x2 estimator and the
matrix is held densely.

Differences from R ``did`` (2.x), deliberate:

* Balanced panels only (no ``allow_unbalanced_panel``, no repeated cross-sections). An
  unbalanced panel, duplicated (id, period) pairs or missing outcomes/covariates raise an error
  naming the ids and periods; R drops such units with a warning. Weights and the cluster
  variable must be constant within unit (R's ``fix_weights`` choices are not offered).
* ``est_method="dr"`` is DRDID ``drdid_panel``, as in ``att_gt``; the *improved* estimator
  ``drdid_imp_panel`` is ``"dr_imp"``. If its inverse-probability-tilting score does not
  converge it falls back to the logit score (R first retries IPT with ``nlm``). User-supplied
  estimator functions are not supported. The overlap check (a score >= 0.999 makes the cell
  missing) uses the weighted logit, R an unweighted preliminary logit.
* With ``cluster``, analytic standard errors and the pre-test are cluster-robust; R ignores
  the clustering without the bootstrap (with a warning). The bootstrap follows R (cluster
  sums, Rademacher multipliers) but not R's random stream, and one set of multipliers serves
  all elements of a call; its matrix product runs in single precision.
* Aggregation: the overall "group" parameter's weight-estimation term uses the list of
  cohorts (as csdid 0.4.3; the R code passes the first entries of the cell cohort vector, a
  0.2 % difference in that SE on mpdta); cohorts without post-treatment cells leave the
  "group" aggregation instead of making it missing; ``min_e``/``max_e``/``balance_e`` apply
  to ``"dynamic"`` only. The pre-test p-value is not rounded.

References: Callaway, B. and Sant'Anna, P. H. C. (2021), "Difference-in-Differences with
multiple time periods", Journal of Econometrics 225(2), 200-230. Sant'Anna, P. H. C. and
Zhao, J. (2020), "Doubly robust difference-in-differences estimators", Journal of
Econometrics 219(1), 101-122.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import polars as pl
from scipy import stats

from impact.estimate._aggte import AggregationKind, aggregate
from impact.estimate._attgt import Influence, compute_cells
from impact.estimate._staggered_data import prepare_panel
from impact.estimate.inference import TINY_SE, MultiplierKind, wald_test

__all__ = [
    "AggregateResults",
    "AggregationKind",
    "ATTgtResults",
    "BasePeriod",
    "ControlGroup",
    "EstMethod",
    "PreTest",
    "StaggeredOptions",
    "att_gt",
]

ControlGroup = Literal["never_treated", "not_yet_treated"]
EstMethod = Literal["reg", "ipw", "dr", "dr_imp"]
BasePeriod = Literal["varying", "universal"]


def _check_literal(name: str, value: object, alias: object) -> None:
    allowed = get_args(alias)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


@dataclass(frozen=True, kw_only=True)
class StaggeredOptions:
    """Options of :func:`att_gt`, validated on construction (names follow R ``did``).

    Attributes
    ----------
    control_group : {"never_treated", "not_yet_treated"}
        Comparison units of each cell.
    est_method : {"reg", "ipw", "dr", "dr_imp"}
        2x2 estimator per cell: outcome regression (DRDID ``reg_did_panel``), normalised IPW
        (``std_ipw_did_panel``), locally efficient doubly robust (``drdid_panel``, what
        ``did::att_gt(est_method="dr")`` runs) or the improved doubly robust estimator with
        inverse-probability-tilting score (``drdid_imp_panel``).
    anticipation : int
        Periods of anticipation ``delta``: the base period of a post-treatment cell is
        ``g - delta - 1``.
    base_period : {"varying", "universal"}
        ``varying``: pre-treatment cells compare ``t`` with ``t - 1`` (short differences);
        ``universal``: every cell compares with ``g - delta - 1`` (long differences).
    alpha : float
        Significance level of intervals and bands.
    bootstrap : bool
        Multiplier bootstrap standard errors (R's default) instead of analytic ones.
    biters : int
        Bootstrap repetitions.
    seed : int or None
        Seed of the bootstrap multipliers (None: not reproducible).
    cband : bool
        Uniform (simultaneous) confidence bands; requires ``bootstrap``.
    multiplier : {"rademacher", "mammen"}
        Bootstrap multipliers; R ``did`` draws Rademacher.
    """

    control_group: ControlGroup = "never_treated"
    est_method: EstMethod = "dr"
    anticipation: int = 0
    base_period: BasePeriod = "varying"
    alpha: float = 0.05
    bootstrap: bool = True
    biters: int = 999
    seed: int | None = 0
    cband: bool = True
    multiplier: MultiplierKind = "rademacher"

    def __post_init__(self) -> None:
        _check_literal("control_group", self.control_group, ControlGroup)
        _check_literal("est_method", self.est_method, EstMethod)
        _check_literal("base_period", self.base_period, BasePeriod)
        _check_literal("multiplier", self.multiplier, MultiplierKind)
        if isinstance(self.anticipation, bool) or not isinstance(self.anticipation, int):
            raise TypeError(f"anticipation must be an int; got {self.anticipation!r}")
        if self.anticipation < 0:
            raise ValueError(f"anticipation must be >= 0; got {self.anticipation}")
        if not (isinstance(self.alpha, float | int) and 0.0 < float(self.alpha) < 1.0):
            raise ValueError(f"alpha must be in (0, 1); got {self.alpha!r}")
        if not isinstance(self.biters, int) or self.biters < 2:
            raise ValueError(f"biters must be an int >= 2; got {self.biters!r}")
        if self.seed is not None and not isinstance(self.seed, int | np.integer):
            raise TypeError(f"seed must be an int or None; got {self.seed!r}")
        if self.cband and not self.bootstrap:
            raise ValueError("cband=True (uniform bands) needs bootstrap=True")


@dataclass(frozen=True)
class PreTest:
    """Wald pre-test of parallel trends: all pre-treatment ATT(g,t) (``g > t``) are zero.

    Uses the analytic (influence-function) variance, as R ``did`` ("P-value for pre-test of
    parallel trends assumption"); cells with a zero or missing standard error are left out.
    """

    statistic: float
    df: int
    pvalue: float


def _pointwise_crit(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def _standard_errors(
    influence: Influence,
    cluster: np.ndarray | None,
    opts: StaggeredOptions,
    se_analytic: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None]:
    """SEs of the estimators of ``influence`` (one row each), and the uniform critical value."""
    se = influence.analytic_se(cluster) if se_analytic is None else se_analytic
    crit = None
    if opts.bootstrap:
        boot = influence.bootstrap(
            cluster,
            reps=opts.biters,
            seed=opts.seed,
            alpha=opts.alpha,
            multiplier=opts.multiplier,
        )
        degenerate = np.isnan(se) | (se <= TINY_SE)
        se = np.where(degenerate, np.nan, boot.se)
        if opts.cband:
            crit = boot.crit_uniform
    se = np.where(np.isnan(se) | (se <= TINY_SE), np.nan, se)
    return se, crit


def _fmt(v: float, digits: int = 4) -> str:
    return "NA" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


@dataclass(frozen=True, eq=False)
class AggregateResults:
    """An aggregated treatment effect (R ``aggte``).

    Attributes
    ----------
    kind : {"simple", "dynamic", "group", "calendar"}
    att, se : float
        Overall summary parameter and its standard error.
    ci_low, ci_high : float
        Pointwise ``1 - alpha`` interval of the overall parameter.
    table : polars.DataFrame or None
        One row per element (event time ``e``, cohort ``g`` or period ``t``): ``att``, ``se``,
        pointwise ``ci_low``/``ci_high``, uniform ``cband_low``/``cband_high`` (NaN without
        ``cband``) and ``n_cells`` (ATT(g,t) averaged). None for ``"simple"``.
    crit_pointwise, crit_uniform : float
        Normal critical value and the sup-t one of the element bands (None without ``cband``).
    """

    kind: AggregationKind
    att: float
    se: float
    ci_low: float
    ci_high: float
    table: pl.DataFrame | None
    crit_pointwise: float
    crit_uniform: float | None
    options: StaggeredOptions
    min_e: float = -math.inf
    max_e: float = math.inf
    balance_e: int | None = None
    _influence: Influence | None = field(default=None, repr=False)  # (1, units)
    _element_influence: Influence | None = field(default=None, repr=False)  # (elements, units)

    @property
    def influence(self) -> np.ndarray:
        """Influence function of the overall parameter, shape (n_units,)."""
        if self._influence is None:
            return np.empty(0)
        return self._influence.dense()[0]

    @property
    def element_influence(self) -> np.ndarray:
        """Influence functions of the elements, shape (n_units, n_elements)."""
        if self._element_influence is None:
            return np.empty((0, 0))
        return self._element_influence.dense().T

    def summary(self) -> str:
        a = self.options.alpha
        title = {
            "simple": "simple weighted average",
            "dynamic": "event-study/dynamic aggregation",
            "group": "group/cohort aggregation",
            "calendar": "calendar time aggregation",
        }[self.kind]
        lines = [
            f"Overall summary of ATT's based on {title}:",
            f"  ATT {_fmt(self.att)}  SE {_fmt(self.se)}  "
            f"[{100 * (1 - a):g}% CI {_fmt(self.ci_low)}, {_fmt(self.ci_high)}]",
        ]
        if self.table is not None:
            label = self.table.columns[0]
            band = "simult." if self.crit_uniform is not None else "pointwise"
            lines.append(f"  {label:>10} {'estimate':>9} {'se':>8}  [{band} band]")
            lo = "cband_low" if self.crit_uniform is not None else "ci_low"
            hi = "cband_high" if self.crit_uniform is not None else "ci_high"
            for row in self.table.iter_rows(named=True):
                lines.append(
                    f"  {row[label]:>10} {_fmt(row['att']):>9} {_fmt(row['se']):>8}  "
                    f"[{_fmt(row[lo])}, {_fmt(row[hi])}]"
                )
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class ATTgtResults:
    """Group-time average treatment effects (R ``did::att_gt`` output).

    Attributes
    ----------
    table : polars.DataFrame
        One row per cell, cohort-major: ``group``, ``time``, ``base_period``,
        ``event_time`` (= time - group), ``post`` (group <= time), ``att``, ``se``,
        pointwise ``ci_low``/``ci_high``, uniform ``cband_low``/``cband_high`` (NaN without
        ``cband``), ``n`` (units in the cell), ``n_treated``, ``n_control`` (0 for the
        reference cell ``g - anticipation - 1`` of the universal base period, which is not
        estimated).
    options : StaggeredOptions
    n_units : int
        Units in the estimation sample (after R's sample rules).
    n_clusters : int or None
    crit_pointwise : float
        Normal critical value ``z_{1-alpha/2}``.
    crit_uniform : float or None
        Sup-t critical value of the uniform band over all cells (with ``cband``).
    pretest : PreTest or None
        Wald pre-test of parallel trends (None when there are no usable pre-treatment cells).
    notes : tuple of str
        Sample adjustments and cells that could not be estimated.
    unit_ids : ndarray
        Ids of the units in the estimation sample, in the row order of ``influence`` (by
        cohort, never treated last, then by id).
    """

    table: pl.DataFrame
    options: StaggeredOptions
    n_units: int
    n_clusters: int | None
    periods: np.ndarray
    groups: np.ndarray
    crit_pointwise: float
    crit_uniform: float | None
    pretest: PreTest | None
    notes: tuple[str, ...]
    unit_ids: np.ndarray = field(repr=False)
    _influence: Influence = field(repr=False)  # (cells, units), dense or factored
    _g_unit: np.ndarray = field(repr=False)
    _w: np.ndarray = field(repr=False)
    _cluster: np.ndarray | None = field(repr=False)

    # statsmodels-style accessors -------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        """ATT(g,t), in table order."""
        return self.table["att"].to_numpy()

    @property
    def bse(self) -> np.ndarray:
        """Standard errors of ATT(g,t), in table order."""
        return self.table["se"].to_numpy()

    def conf_int(self, *, uniform: bool = False) -> np.ndarray:
        """``(cells, 2)`` array of pointwise (or uniform-band) interval bounds."""
        lo, hi = ("cband_low", "cband_high") if uniform else ("ci_low", "ci_high")
        return self.table.select(lo, hi).to_numpy()

    @property
    def influence(self) -> np.ndarray:
        """Influence functions of the ATT(g,t), shape (n_units, cells), rows as ``unit_ids``.

        Scaled as R ``did``'s ``inffunc``: ``att_hat - att = mean over units + o_p(n^-1/2)``.
        A read-only view (formed on first access when the influence functions are held in
        factored form, i.e. without covariates).
        """
        view = self._influence.dense().T
        view.flags.writeable = False
        return view

    # aggregation ---------------------------------------------------------------------
    def aggregate(
        self,
        kind: AggregationKind = "group",
        *,
        min_e: float = -math.inf,
        max_e: float = math.inf,
        balance_e: int | None = None,
        na_rm: bool = False,
        bootstrap: bool | None = None,
        cband: bool | None = None,
        alpha: float | None = None,
    ) -> AggregateResults:
        """Aggregate the ATT(g,t) as R ``did::aggte(type=kind)``.

        Parameters
        ----------
        kind : {"simple", "dynamic", "group", "calendar"}
            ``simple``: post-treatment cells weighted by cohort size; ``dynamic``: by event
            time ``e = t - g`` (cohort-size weights within ``e``; overall = mean over
            ``e >= 0``); ``group``: mean over each cohort's post-treatment periods (overall
            weighted by cohort size); ``calendar``: by period (overall = mean over periods).
        min_e, max_e : float
            Event-time window (``dynamic`` only).
        balance_e : int, optional
            ``dynamic`` only: keep the cohorts observed for at least ``balance_e`` periods
            after treatment, and event times up to ``balance_e`` (a balanced event study).
        na_rm : bool
            Drop cells that could not be estimated (otherwise an error, as in R).
        bootstrap, cband, alpha : optional
            Override the fitted options for this aggregation (R ``aggte(bstrap, cband,
            alp)``). E.g. estimate ATT(g,t) with analytic standard errors (fast: no bootstrap
            over every cell) and bootstrap only the event-study bands.
        """
        _check_literal("kind", kind, AggregationKind)
        if kind != "dynamic" and (
            balance_e is not None or min_e != -math.inf or max_e != math.inf
        ):
            raise ValueError("min_e, max_e and balance_e apply to kind='dynamic' only")
        raw = aggregate(
            kind,
            group=self.table["group"].to_numpy(),
            time=self.table["time"].to_numpy(),
            att=self.params,
            inf=self._influence,
            g_unit=self._g_unit,
            w=self._w,
            periods=self.periods,
            min_e=min_e,
            max_e=max_e,
            balance_e=balance_e,
            na_rm=na_rm,
        )
        if bootstrap is False and cband is None:
            cband = False  # uniform bands need the bootstrap
        overrides = {
            k: v
            for k, v in (("bootstrap", bootstrap), ("cband", cband), ("alpha", alpha))
            if v is not None
        }
        opts = dataclasses.replace(self.options, **overrides) if overrides else self.options
        z = _pointwise_crit(opts.alpha)
        overall_se, _ = _standard_errors(raw.overall_inf, self._cluster, opts)
        se0 = float(overall_se[0])
        table = None
        crit_u = None
        if kind != "simple":
            se_e, crit_u = _standard_errors(raw.inf, self._cluster, opts)
            if crit_u is not None:
                if not math.isfinite(crit_u):
                    warnings.warn(
                        "simultaneous critical value is NA (standard errors missing); "
                        "reporting pointwise intervals",
                        UserWarning,
                        stacklevel=2,
                    )
                    crit_u = None
                elif crit_u < z:
                    warnings.warn(
                        "simultaneous band narrower than the pointwise one; reporting "
                        "pointwise intervals",
                        UserWarning,
                        stacklevel=2,
                    )
                    crit_u = z
            label = {"dynamic": "event_time", "group": "group", "calendar": "time"}[kind]
            cu = crit_u if crit_u is not None else math.nan
            labels = raw.labels.astype(np.int64)
            table = pl.DataFrame(
                {
                    label: labels,
                    "att": raw.att,
                    "se": se_e,
                    "ci_low": raw.att - z * se_e,
                    "ci_high": raw.att + z * se_e,
                    "cband_low": raw.att - cu * se_e,
                    "cband_high": raw.att + cu * se_e,
                    "n_cells": raw.n_cells.astype(np.int64),
                }
            )
        return AggregateResults(
            kind=kind,
            att=raw.overall_att,
            se=se0,
            ci_low=raw.overall_att - z * se0,
            ci_high=raw.overall_att + z * se0,
            table=table,
            crit_pointwise=z,
            crit_uniform=crit_u,
            options=opts,
            min_e=min_e,
            max_e=max_e,
            balance_e=balance_e,
            _influence=raw.overall_inf,
            _element_influence=raw.inf,
        )

    # display -------------------------------------------------------------------------
    def summary(self) -> str:
        o = self.options
        band = "simult." if self.crit_uniform is not None else "pointwise"
        lines = [
            "Group-Time Average Treatment Effects (Callaway & Sant'Anna 2021)",
            f"  {'group':>6} {'time':>6} {'ATT(g,t)':>9} {'se':>8}  "
            f"[{100 * (1 - o.alpha):g}% {band} band]",
        ]
        lo = "cband_low" if self.crit_uniform is not None else "ci_low"
        hi = "cband_high" if self.crit_uniform is not None else "ci_high"
        for r in self.table.iter_rows(named=True):
            lines.append(
                f"  {r['group']:>6g} {r['time']:>6} {_fmt(r['att']):>9} {_fmt(r['se']):>8}  "
                f"[{_fmt(r[lo])}, {_fmt(r[hi])}]"
            )
        if self.pretest is not None:
            lines.append(
                "P-value for pre-test of parallel trends assumption: "
                f"{self.pretest.pvalue:.5f}"
            )
        lines.append(
            f"Control group: {o.control_group}; anticipation periods: {o.anticipation}; "
            f"estimation method: {o.est_method}; base period: {o.base_period}; "
            f"units: {self.n_units}"
            + (f"; clusters: {self.n_clusters}" if self.n_clusters is not None else "")
        )
        lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)


def att_gt(
    data: Any,
    *,
    y: str,
    t: str,
    g: str,
    id: str,  # noqa: A002 - R's idname; the column role is "id"
    x: Sequence[str] = (),
    weights: str | None = None,
    cluster: str | None = None,
    control_group: ControlGroup = "never_treated",
    est_method: EstMethod = "dr",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    alpha: float = 0.05,
    bootstrap: bool = True,
    biters: int = 999,
    seed: int | None = 0,
    cband: bool = True,
    multiplier: MultiplierKind = "rademacher",
) -> ATTgtResults:
    """Estimate all group-time average treatment effects ATT(g,t) (R ``did::att_gt``).

    Parameters
    ----------
    data : pandas.DataFrame or polars.DataFrame / LazyFrame
        Long **balanced** panel, one row per unit and period, in any row order. An unbalanced
        panel, a duplicated (id, period) pair or a missing outcome/covariate raises
        ``ValueError`` naming the offending ids and periods (no silent dropping).
    y, t, g, id : str
        Columns of the outcome, the integer time period, the first treated period (0 = never
        treated; constant within unit) and the unit id.
    x : sequence of str
        Covariates of the conditional parallel-trends assumption (R ``xformla``); empty means
        ``~1`` (intercept only). Values of the earlier period of each comparison are used.
    weights : str, optional
        Sampling weights, constant within unit; normalised to mean one.
    cluster : str, optional
        Cluster variable, constant within unit (e.g. a person's twin set, a region). Standard
        errors, bands and the pre-test are then cluster-robust (units are always clusters of
        their own rows).
    control_group, est_method, anticipation, base_period, alpha, bootstrap, biters, seed,
    cband, multiplier
        See :class:`StaggeredOptions` (validated before any data work).

    Returns
    -------
    ATTgtResults

    Notes
    -----
    Identification of ATT(g,t) rests on (Callaway & Sant'Anna 2021): staggered, irreversible
    treatment; no anticipation earlier than ``anticipation`` periods before ``g``; parallel
    trends of the untreated outcome conditional on ``x`` between cohort ``g`` and the
    comparison group (never treated, or not yet treated by ``max(t, base) + anticipation``);
    overlap (each cohort's propensity score against the comparison group below one); i.i.d.
    sampling of units (or of clusters). ``reg`` additionally needs a linear outcome-change
    model in ``x``, ``ipw`` a logit propensity score, ``dr``/``dr_imp`` either one of them.

    Sample rules of R ``did`` (``pre_process_did2``): ``g`` beyond the last period plus
    ``anticipation`` is coded never treated (silently, as in R); with a warning and a note,
    units treated by the first period (``g <= t_1 + anticipation``) are dropped, and without
    never-treated units the last cohort becomes the comparison group (``never_treated``) or
    serves only as comparison (``not_yet_treated``), the periods from ``g_last -
    anticipation`` on being dropped. A cell without comparison units, or whose regression /
    propensity score cannot be estimated, gets a missing ATT and a note (R's warning).
    """
    opts = StaggeredOptions(
        control_group=control_group,
        est_method=est_method,
        anticipation=anticipation,
        base_period=base_period,
        alpha=alpha,
        bootstrap=bootstrap,
        biters=biters,
        seed=seed,
        cband=cband,
        multiplier=multiplier,
    )
    if isinstance(x, str):
        x = (x,)
    panel = prepare_panel(
        data,
        y=y,
        t=t,
        g=g,
        id=id,
        x=tuple(x),
        weights=weights,
        cluster=cluster,
        anticipation=opts.anticipation,
        control_group=opts.control_group,
    )
    cells = compute_cells(
        panel,
        control_group=opts.control_group,
        est_method=opts.est_method,
        anticipation=opts.anticipation,
        base_period=opts.base_period,
    )
    notes = list(panel.notes)
    for gval, tval, why in cells.failures:
        msg = f"ATT({gval:g},{tval}) not estimated: {why}"
        notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)

    influence = cells.inf  # one row per cell (dense or factored)
    se_analytic = influence.analytic_se(panel.cluster)
    se, crit_u = _standard_errors(influence, panel.cluster, opts, se_analytic)
    if crit_u is not None and not math.isfinite(crit_u):
        crit_u = None

    # Wald pre-test on the analytic variance (R: pre <- which(group > t), minus zero/NA se)
    pre = np.flatnonzero(
        (cells.group > cells.time) & np.isfinite(se_analytic) & (se_analytic > TINY_SE)
    )
    pretest = None
    if pre.size:
        wt = wald_test(cells.att[pre], influence.rows(pre).analytic_vcov(panel.cluster))
        if wt is not None:
            pretest = PreTest(statistic=wt.statistic, df=wt.df, pvalue=wt.pvalue)
        else:
            notes.append("pre-test not computed: singular variance of pre-treatment ATT(g,t)")

    z = _pointwise_crit(opts.alpha)
    cu = crit_u if crit_u is not None else math.nan
    att = cells.att
    table = pl.DataFrame(
        {
            "group": cells.group.astype(np.int64),
            "time": cells.time,
            "base_period": cells.base,
            "event_time": cells.time - cells.group.astype(np.int64),
            "post": cells.group <= cells.time,
            "att": att,
            "se": se,
            "ci_low": att - z * se,
            "ci_high": att + z * se,
            "cband_low": att - cu * se,
            "cband_high": att + cu * se,
            "n": cells.n_treated + cells.n_control,
            "n_treated": cells.n_treated,
            "n_control": cells.n_control,
        }
    )
    n_clusters = int(np.unique(panel.cluster).size) if panel.cluster is not None else None
    return ATTgtResults(
        table=table,
        options=opts,
        n_units=panel.n,
        n_clusters=n_clusters,
        periods=panel.periods,
        groups=panel.groups,
        crit_pointwise=z,
        crit_uniform=crit_u,
        pretest=pretest,
        notes=tuple(notes),
        unit_ids=panel.ids,
        _influence=cells.inf,
        _g_unit=panel.g,
        _w=panel.w,
        _cluster=panel.cluster,
    )
