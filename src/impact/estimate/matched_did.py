"""Matched difference-in-differences event study with statistical twins.

Estimator
---------
For outcome ``Y``, treated person ``i`` (matched in its cohort month) and its twins ``j``
(weights ``w_ij = 1/k_i``), with the change from the pre-period baseline

.. math:: D_u(e) = Y_u(e) - \\bar Y_u^{pre}, \\qquad
          \\bar Y_u^{pre} = \\text{mean of } Y_u \\text{ over start-clock months } [-12, -1]

(``baseline`` configurable; twins take their treated person's calendar months, see
:mod:`impact.outcomes`), the event-study coefficient at event time ``e`` is

.. math:: \\widehat{ATT}(e) = \\frac{1}{n_e} \\sum_{i \\in \\mathcal{V}_e}
          \\Big[ D_i(e) - \\sum_j \\tilde w_{ij}(e) D_j(e) \\Big], \\qquad
          \\tilde w_{ij}(e) = \\frac{w_{ij} \\, 1[j \\text{ observed at } e]}
                                  {\\sum_{l} w_{il} \\, 1[l \\text{ observed at } e]} .

**Weight renormalisation.** A twin censored at ``e`` (it started ILA learning itself, left
the panel, or its outcome is undefined, e.g. a daily wage without days worked) drops out and
the weights of the remaining twins of the same treated person are rescaled to sum to one, so
each treated person keeps weight ``1/n_e``. The alternative (dropping the whole twin set
as soon as one twin is censored) throws away most treated persons at long horizons under the
not-yet-treated pool; renormalising keeps them, at the price of assuming that censoring is
unrelated to the twin's untreated outcome given the matching features. ``V_e`` are the
treated persons observed at ``e`` with at least one observed twin; ``n_e = |V_e|`` and the
treated persons lost because all their twins are censored are counted (``n_lost``).

Two clocks: ``start`` (``e = 0`` the start month; ``e < 0`` are **placebo** estimates that
should be near zero) and ``end`` (``e = 0`` the leaving month; the ILA horizons 6, 12 and
24 months after leaving are ``e = 6, 12, 24``). On both clocks the baseline is the pre-start
mean. The estimand is the ATT of starting a first ILA course for the *matched* treated
persons (those with twins within the caliper), averaged over the persons observed at ``e``.

Identifying assumptions: (i) parallel trends of treated persons and their matched twins
conditional on the matching features (selection on observables for changes in ``Y(0)``);
(ii) no anticipation: ``Y`` before the start month is the untreated outcome (the baseline
and the placebos rely on it); (iii) SUTVA: no spill-overs from participants to twins, one
version of treatment (first course started); (iv) overlap for the matched treated;
(v) non-informative censoring of twins and of exits from the panel.

Inference
---------
The unit of resampling is the treated person with its twin set. Twins are drawn with
replacement, so one twin can serve several treated persons (in the same cohort or in
different cohorts); the treated-set contributions are then dependent and their plain
variance (what a bootstrap over treated persons with their twin sets gives) is too small.
As in :mod:`impact.estimate.did` we add the Abadie & Imbens (2006) reuse term, per event
time, and express it as extra influence rows so that the multiplier bootstrap of
:mod:`impact.estimate.inference` carries it:

* treated row ``i``: ``c_i(e) = (tau_i(e) - ATT(e)) / n_e`` (``tau_i`` the bracket above);
* twin row ``j`` (one per distinct twin person): with ``W_j(e) = sum_i w~_ij(e)`` and
  ``Q_j(e) = sum_i w~_ij(e)^2``,
  ``c_j(e) = sqrt(W_j^2 - Q_j) * u_j(e) / n_e``, where ``u_j`` estimates the conditional
  standard deviation of ``D_j(e)`` with sign: the deviation of ``D_j`` from the mean of the
  *other* twins of the same treated person (twins of one treated person are close on the
  matching score, so this is a within-match residual), scaled by ``sqrt((k-1)/k)`` to make
  its square unbiased for the variance, averaged over the uses of ``j`` (weights
  ``w~_ij``). Twins whose treated persons have a single observed twin get the root mean
  square residual of the event time.

``Var(ATT(e)) = sum_i c_i^2 + sum_j c_j^2`` is the AI variance (``W^2 - Q = 0`` for a twin
used once, so without reuse it is the paired, treated-cluster variance). Why not a cluster
bootstrap: with replacement and twins reused across cohorts, the clusters of treated persons
sharing twins chain into one giant component, and the naive bootstrap is invalid for
nearest-neighbour matching (Abadie & Imbens 2008). Standard errors are from the multiplier
bootstrap of these rows (Rademacher, IQR-based as in R ``did``; the analytic value is in
``bse_analytic``), with a sup-t uniform band over the reported event times and a joint Wald
pre-trend test over the placebo event times outside the baseline window (start clock only:
on the end clock negative event times include training months), its p-value from the
Hotelling F correction for a covariance estimated from ``G`` treated persons
(:class:`PreTrendTest`). Limitations: variance
conditional on the matched sample (no correction for the estimated propensity score), the
matching bias corrected only on request (``bias_correction``, regression on the matching
features: :mod:`impact.estimate.bias_correction`; its slopes are treated as known), a
person who is a twin in one cohort and treated in a later one
contributes two independent rows; a twin used in several cohorts is treated as one
observation with an averaged residual (its change scores at different calendar months are
highly but not perfectly correlated, so the reuse term is slightly conservative there).

Naive comparison
----------------
Beside the matched estimate, with ``arrays`` given, the same treated persons are compared
with the mean change of *all* not-yet-treated candidates of their cohort at the same
calendar months and with the same baseline (:func:`impact.outcomes.candidate_change_means`):
the gap between the two shows the selection that matching removes. (The estimates stage
loads a uniform random sample of the panel for this, ``estimates.naive_sample`` persons:
the candidates are then the sampled members of the risk set.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from scipy import sparse, stats

from impact.estimate.bias_correction import bias_corrected_twin_changes
from impact.estimate.inference import (
    WaldTest,
    analytic_vcov,
    multiplier_bootstrap,
    wald_test,
)
from impact.outcomes import Clock, Trajectories, candidate_change_means
from impact.twins.features import PanelArrays

__all__ = [
    "EventStudyResults",
    "MatchedATT",
    "PreTrendTest",
    "VarianceMethod",
    "matched_att",
    "matched_event_studies",
    "matched_event_study",
    "pretrend_test",
    "stack_tables",
]

VarianceMethod = Literal["abadie_imbens", "treated_clusters"]


class MatchedATT(NamedTuple):
    """Point estimates and variance contributions of :func:`matched_att` (``k`` columns).

    Attributes
    ----------
    att : ndarray, shape (k,)
        NaN where no treated person has an observed twin.
    unit_effect : ndarray, shape (n_treated, k)
        ``tau_i``: treated change minus the renormalised twin-weighted change; NaN where the
        treated person does not count.
    n_treated, n_twins, n_lost : ndarray of int, shape (k,)
        Treated persons counted; distinct twins with positive weight; treated persons
        observed but without any observed twin.
    twin_ess : ndarray, shape (k,)
        Kish effective number of twins ``(sum_j W_j)^2 / sum_j W_j^2``.
    contrib_treated : ndarray, shape (n_treated, k)
        ``c_i = (tau_i - att) / n`` (0 where not counted).
    contrib_twins : ndarray, shape (n_twin_persons, k)
        ``c_j`` reuse contributions (zeros for ``treated_clusters``).
    twin_ids : ndarray
        Twin person of each ``contrib_twins`` row (sorted).
    """

    att: np.ndarray
    unit_effect: np.ndarray
    n_treated: np.ndarray
    n_twins: np.ndarray
    n_lost: np.ndarray
    twin_ess: np.ndarray
    contrib_treated: np.ndarray
    contrib_twins: np.ndarray
    twin_ids: np.ndarray

    @property
    def se_analytic(self) -> np.ndarray:
        """``sqrt(sum_i c_i^2 + sum_j c_j^2)`` (NaN where ``att`` is NaN)."""
        v = (self.contrib_treated**2).sum(axis=0) + (self.contrib_twins**2).sum(axis=0)
        return np.where(np.isfinite(self.att), np.sqrt(v), np.nan)

    def influence(self) -> np.ndarray:
        """Rows ``[c_treated; c_twins]`` scaled to the convention of
        :mod:`impact.estimate.inference` (``theta - theta0 = mean of rows``); NaN columns
        where ``att`` is NaN."""
        rows = np.vstack([self.contrib_treated, self.contrib_twins])
        rows = rows * rows.shape[0]
        rows[:, ~np.isfinite(self.att)] = np.nan
        return rows


def matched_att(
    d_treated: np.ndarray,
    d_twins: np.ndarray,
    pair_treated: np.ndarray,
    weight: np.ndarray,
    twin_id: np.ndarray,
    *,
    variance: VarianceMethod = "abadie_imbens",
) -> MatchedATT:
    """Matched DiD on change scores: the core of :func:`matched_event_study`.

    Parameters
    ----------
    d_treated : ndarray, shape (n_treated, k)
        Change scores ``D_i`` of the treated persons (NaN = not observed) for ``k`` event
        times (or outcomes).
    d_twins : ndarray, shape (n_pairs, k)
        Change scores of the twin of each pair row (NaN = censored or missing).
    pair_treated : ndarray of int, shape (n_pairs,)
        Row of the pair's treated person in ``d_treated``.
    weight : ndarray, shape (n_pairs,)
        Matching weights (renormalised per column among observed twins).
    twin_id : ndarray, shape (n_pairs,)
        Person identifier of the twin (rows of the same person are pooled for the reuse term).
    variance
        ``"abadie_imbens"`` (treated sets + twin-reuse term) or ``"treated_clusters"``
        (treated sets only; too small under reuse, for comparison).

    Returns
    -------
    MatchedATT
    """
    if variance not in ("abadie_imbens", "treated_clusters"):
        raise ValueError(
            f"variance must be 'abadie_imbens' or 'treated_clusters'; got {variance!r}"
        )
    dt = np.asarray(d_treated, dtype=np.float64)
    dp = np.asarray(d_twins, dtype=np.float64)
    if dt.ndim == 1:
        dt, dp = dt[:, None], dp[:, None]
    n_t, k = dt.shape
    n_p = dp.shape[0]
    pt = np.asarray(pair_treated, dtype=np.int64)
    w = np.asarray(weight, dtype=np.float64)
    if dp.shape != (n_p, k) or pt.shape != (n_p,) or w.shape != (n_p,):
        raise ValueError("d_twins, pair_treated and weight must have one row per pair")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    agg = sparse.csr_matrix((np.ones(n_p), (pt, np.arange(n_p))), shape=(n_t, n_p))
    ok_p = np.isfinite(dp) & (w[:, None] > 0)
    wp = np.where(ok_p, w[:, None], 0.0)
    dp0 = np.where(ok_p, dp, 0.0)
    den = np.asarray(agg @ wp)
    num = np.asarray(agg @ (wp * dp0))
    obs_t = np.isfinite(dt)
    valid = obs_t & (den > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y0 = num / den
    tau = np.where(valid, dt - y0, np.nan)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        att = np.where(n > 0, np.where(valid, tau, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    nn = np.maximum(n, 1).astype(np.float64)
    c_t = np.where(valid, tau - att, 0.0) / nn

    # renormalised twin weights of counted treated persons
    use = ok_p & valid[pt]
    with np.errstate(invalid="ignore", divide="ignore"):
        wt = np.where(use, w[:, None] / den[pt], 0.0)
    twin_ids, twin_row = np.unique(np.asarray(twin_id), return_inverse=True)
    n_j = twin_ids.size
    by_twin = sparse.csr_matrix((np.ones(n_p), (twin_row, np.arange(n_p))), shape=(n_j, n_p))
    big_w = np.asarray(by_twin @ wt)
    big_q = np.asarray(by_twin @ (wt**2))
    n_twins = (big_w > 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.where(n > 0, n.astype(np.float64) ** 2 / (big_w**2).sum(axis=0), np.nan)
    n_lost = (obs_t & ~valid).sum(axis=0)

    c_j = np.zeros((n_j, k))
    if variance == "abadie_imbens" and n_p:
        cnt = np.asarray(agg @ use.astype(np.float64))[pt]  # observed twins of the set
        tot = np.asarray(agg @ np.where(use, dp, 0.0))[pt]
        has = use & (cnt >= 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            loo = (tot - dp) / (cnt - 1)
            s = np.where(has, (dp - loo) * np.sqrt((cnt - 1) / cnt), 0.0)
        sw = np.asarray(by_twin @ np.where(has, wt, 0.0))
        su = np.asarray(by_twin @ np.where(has, wt * s, 0.0))
        m_s = has.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.where(m_s > 0, np.sqrt((s**2).sum(axis=0) / np.maximum(m_s, 1)), 0.0)
            u = np.where(sw > 0, su / sw, rms[None, :])
        extra = np.clip(big_w**2 - big_q, 0.0, None)
        c_j = np.sqrt(extra) * u / nn
        c_j[:, n == 0] = 0.0
    return MatchedATT(
        att=att,
        unit_effect=tau,
        n_treated=n.astype(np.int64),
        n_twins=n_twins.astype(np.int64),
        n_lost=n_lost.astype(np.int64),
        twin_ess=ess,
        contrib_treated=c_t,
        contrib_twins=c_j,
        twin_ids=twin_ids,
    )


_Z = stats.norm.ppf


class PreTrendTest(NamedTuple):
    """Joint test that the placebo (pre-period) coefficients are zero.

    Attributes
    ----------
    statistic, df, pvalue_chi2
        Wald statistic ``W = theta' V^{-1} theta`` and its asymptotic chi-square p-value.
    f_statistic, df_denom, pvalue
        Hotelling small-sample version ``F = W (G - q) / (q (G - 1)) ~ F(q, G - q)`` with
        ``G`` the treated persons (independent units) and ``q = df``; ``pvalue`` is this one.
        With a covariance estimated from ``G`` units, the chi-square test over-rejects
        badly when ``q`` is not small relative to ``G`` (24 placebo months, 25 treated
        persons: a chi-square p-value of 1e-18 from noise alone); the F version is exact
        under normality and equal to the chi-square one for large ``G``.
    """

    statistic: float
    df: int
    pvalue_chi2: float
    f_statistic: float
    df_denom: int
    pvalue: float


def pretrend_test(theta: np.ndarray, vcov: np.ndarray, n_units: int) -> PreTrendTest | None:
    """Wald test of ``theta = 0`` with the Hotelling F correction (None if not computable:
    singular ``vcov`` or ``n_units <= len(theta)``)."""
    w: WaldTest | None = wald_test(theta, vcov)
    q = int(np.size(theta))
    if w is None or n_units <= q:
        return None
    f = w.statistic * (n_units - q) / (q * (n_units - 1))
    return PreTrendTest(
        statistic=w.statistic,
        df=q,
        pvalue_chi2=w.pvalue,
        f_statistic=float(f),
        df_denom=int(n_units - q),
        pvalue=float(stats.f.sf(f, q, n_units - q)),
    )


@dataclass(frozen=True)
class EventStudyResults:
    """Matched DiD event study of one outcome on one clock (statsmodels-style names).

    Attributes
    ----------
    outcome, clock
        What was estimated; ``clock`` ``"start"`` or ``"end"``.
    baseline
        Start-clock event-time window of the baseline (inclusive).
    event_time : ndarray, shape (E,)
    params : ndarray, shape (E,)
        ATT(e).
    bse : ndarray, shape (E,)
        Multiplier-bootstrap standard errors.
    bse_analytic : ndarray, shape (E,)
        Analytic standard errors of the same influence rows.
    crit_uniform : float
        Sup-t critical value of the simultaneous ``1 - alpha`` band over ``event_time``.
    nobs, n_twins, n_lost : ndarray of int
        Treated persons counted, distinct twins used, treated persons lost (all twins
        censored) per event time.
    twin_ess : ndarray
        Kish effective number of twins.
    naive_params, naive_bse : ndarray or None
        Naive comparison (same treated, all not-yet-treated candidates, same baseline).
    pretest : PreTrendTest or None
        Joint Wald test (Hotelling F p-value) that the placebo coefficients in
        ``pretest_event_time`` are zero.
    unit_effect : ndarray, shape (n_treated, E)
        ``tau_i(e)``, NaN where person ``i`` does not count (rows as ``treated_pid``).
    bias_corrected : ndarray of bool, shape (E,), or None
        With ``bias_correction``: whether each event time was regression-corrected
        (``None``: no correction asked).
    influence : ndarray, shape (n_rows, E)
        Influence rows (treated sets, then reused twins), scaled as in
        :mod:`impact.estimate.inference`.
    """

    outcome: str
    clock: Clock
    baseline: tuple[int, int]
    variance: str
    alpha: float
    reps: int
    seed: int
    event_time: np.ndarray
    params: np.ndarray
    bse: np.ndarray
    bse_analytic: np.ndarray
    crit_uniform: float
    nobs: np.ndarray
    n_twins: np.ndarray
    n_lost: np.ndarray
    twin_ess: np.ndarray
    n_treated_total: int
    treated_pid: np.ndarray = field(repr=False)
    unit_effect: np.ndarray = field(repr=False)
    influence: np.ndarray = field(repr=False)
    naive_params: np.ndarray | None = field(default=None, repr=False)
    naive_bse: np.ndarray | None = field(default=None, repr=False)
    pretest: PreTrendTest | None = None
    pretest_event_time: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bias_corrected: np.ndarray | None = field(default=None, repr=False)

    @property
    def tvalues(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.params / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided normal p-values of ``ATT(e) = 0`` (pointwise)."""
        return 2.0 * stats.norm.sf(np.abs(self.tvalues))

    def conf_int(self, alpha: float | None = None) -> np.ndarray:
        """Pointwise normal confidence intervals, shape (E, 2)."""
        z = _Z(1.0 - (self.alpha if alpha is None else alpha) / 2.0)
        return np.column_stack([self.params - z * self.bse, self.params + z * self.bse])

    def conf_int_uniform(self) -> np.ndarray:
        """Simultaneous ``1 - alpha`` band over ``event_time`` (sup-t), shape (E, 2)."""
        c = self.crit_uniform
        return np.column_stack([self.params - c * self.bse, self.params + c * self.bse])

    def _col(self, e: int) -> int:
        hit = np.nonzero(self.event_time == e)[0]
        if hit.size == 0:
            raise KeyError(f"event time {e} not estimated ({self.clock} clock)")
        return int(hit[0])

    def table(self) -> pl.DataFrame:
        """One row per event time: estimate, SEs, CI, band, p-value, counts, naive."""
        ci, band = self.conf_int(), self.conf_int_uniform()
        base_lo, base_hi = self.baseline
        period = np.where(self.event_time < 0, "pre", "post")
        if self.clock == "end":
            period = np.where(self.event_time < 0, "before_end", "after_end")
        cols: dict[str, Any] = {
            "outcome": [self.outcome] * self.event_time.size,
            "clock": [self.clock] * self.event_time.size,
            "event_time": self.event_time,
            "period": period,
            "att": self.params,
            "se": self.bse,
            "se_analytic": self.bse_analytic,
            "ci_low": ci[:, 0],
            "ci_high": ci[:, 1],
            "band_low": band[:, 0],
            "band_high": band[:, 1],
            "pvalue": self.pvalues,
            "n_treated": self.nobs,
            "n_twins": self.n_twins,
            "twin_ess": self.twin_ess,
            "n_lost": self.n_lost,
            "in_baseline": (self.clock == "start")
            & (self.event_time >= base_lo)
            & (self.event_time <= base_hi),
        }
        if self.naive_params is not None:
            cols["att_naive"] = self.naive_params
            cols["se_naive"] = self.naive_bse
        if self.bias_corrected is not None:
            cols["bias_corrected"] = self.bias_corrected
        return pl.DataFrame(cols)

    def at(self, e: int) -> dict[str, Any]:
        """Everything about event time ``e`` as plain numbers."""
        i = self._col(e)
        ci = self.conf_int()[i]
        out: dict[str, Any] = {
            "outcome": self.outcome,
            "clock": self.clock,
            "event_time": int(e),
            "att": float(self.params[i]),
            "se": float(self.bse[i]),
            "se_analytic": float(self.bse_analytic[i]),
            "ci_low": float(ci[0]),
            "ci_high": float(ci[1]),
            "pvalue": float(self.pvalues[i]),
            "n_treated": int(self.nobs[i]),
            "n_twins": int(self.n_twins[i]),
            "twin_ess": float(self.twin_ess[i]),
            "n_lost": int(self.n_lost[i]),
        }
        if self.naive_params is not None and self.naive_bse is not None:
            out["att_naive"] = float(self.naive_params[i])
            out["se_naive"] = float(self.naive_bse[i])
        return out

    def horizons(self, horizons: Iterable[int] = (6, 12, 24)) -> pl.DataFrame:
        """Rows of :meth:`table` at the given event times (ILA horizons on the end clock)."""
        hs = [h for h in horizons if h in set(self.event_time.tolist())]
        return self.table().filter(pl.col("event_time").is_in(hs))

    def summary(self, event_times: Iterable[int] | None = None) -> str:
        """Plain-text report (default event times: -12, -6, 0, 6, 12, 24, 36 if present)."""
        pick = list(event_times) if event_times is not None else [-12, -6, -1, 0, 6, 12, 24, 36]
        have = set(self.event_time.tolist())
        lines = [
            f"Matched DiD event study: {self.outcome}, {self.clock} clock "
            f"(baseline start-clock months {self.baseline[0]}..{self.baseline[1]})",
            f"  variance {self.variance}; multiplier bootstrap {self.reps} reps, "
            f"uniform critical value {self.crit_uniform:.3f}",
            *([f"  regression bias correction: {int(self.bias_corrected.sum())} of "
               f"{self.bias_corrected.size} event times corrected"]
              if self.bias_corrected is not None else []),
            f"  {'e':>4} {'ATT':>10} {'SE':>9} {'p':>7} {'n':>6} {'twins':>6} {'ESS':>8}"
            + (f" {'naive':>10}" if self.naive_params is not None else ""),
        ]
        for e in pick:
            if e not in have:
                continue
            r = self.at(e)
            line = (
                f"  {e:>4} {r['att']:>10.3f} {r['se']:>9.3f} {r['pvalue']:>7.3f} "
                f"{r['n_treated']:>6} {r['n_twins']:>6} {r['twin_ess']:>8.1f}"
            )
            if "att_naive" in r:
                line += f" {r['att_naive']:>10.3f}"
            lines.append(line)
        if self.pretest is not None:
            lines.append(
                f"  pre-trend Wald chi2({self.pretest.df}) = {self.pretest.statistic:.2f}, "
                f"F({self.pretest.df}, {self.pretest.df_denom}) = "
                f"{self.pretest.f_statistic:.2f}, p = {self.pretest.pvalue:.3f}"
            )
        return "\n".join(lines)


def _naive(
    arrays: PanelArrays,
    traj: Trajectories,
    outcome: str,
    anchor: np.ndarray,
    event_time: np.ndarray,
    d_treated: np.ndarray,
    valid: np.ndarray,
    baseline: tuple[int, int],
    pool: Literal["not_yet_treated", "never_treated"],
    max_candidates: int | None,
    sector_rel_wage: Mapping[str, float] | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    cohorts, row = np.unique(traj.cohort, return_inverse=True)
    mean, _ = candidate_change_means(
        arrays,
        cohorts,
        outcome,
        baseline=baseline,
        pool=pool,
        sector_rel_wage=sector_rel_wage,
        max_candidates=max_candidates,
        seed=seed,
    )
    n_months = mean.shape[1]
    t = anchor[:, None] + event_time[None, :]
    inside = (t >= 0) & (t < n_months) & (anchor[:, None] >= 0)
    c = np.where(inside, mean[row[:, None], np.clip(t, 0, n_months - 1)], np.nan)
    tau = np.where(valid, d_treated - c, np.nan)
    ok = np.isfinite(tau)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        att = np.where(n > 0, np.where(ok, tau, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, tau - att, 0.0)
        se = np.where(n > 0, np.sqrt((dev**2).sum(axis=0)) / np.maximum(n, 1), np.nan)
    return att, se


def matched_event_study(
    traj: Trajectories,
    outcome: str = "earnings_real",
    clock: Clock = "start",
    *,
    baseline: tuple[int, int] = (-12, -1),
    event_times: Sequence[int] | None = None,
    variance: VarianceMethod = "abadie_imbens",
    reps: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    pretest_event_times: Sequence[int] | None = None,
    arrays: PanelArrays | None = None,
    naive_pool: Literal["not_yet_treated", "never_treated"] = "not_yet_treated",
    naive_max_candidates: int | None = None,
    sector_rel_wage: Mapping[str, float] | None = None,
    bias_correction: bool = False,
) -> EventStudyResults:
    """Matched DiD event study (see the module docstring for estimator and inference).

    Parameters
    ----------
    traj
        :func:`impact.outcomes.build_trajectories` output.
    outcome
        One of ``traj.outcomes``.
    clock
        ``"start"`` (event time from the first start) or ``"end"`` (from leaving).
    baseline
        Inclusive start-clock window of the pre-period baseline (default the 12 months
        before the start).
    event_times
        Event times to report (default: the whole grid of the clock). The uniform band
        covers exactly these.
    variance
        ``"abadie_imbens"`` (default; accounts for twins reused across treated persons) or
        ``"treated_clusters"`` (ignores reuse; for comparison).
    reps, seed, alpha
        Multiplier bootstrap (Rademacher) repetitions, seed, and level of CIs and band.
    pretest_event_times
        Placebo event times of the joint pre-trend test (default on the start clock: every
        reported ``e < 0`` outside the baseline window; none on the end clock).
    arrays
        The panel; when given, the naive comparison with all not-yet-treated candidates
        is computed beside the matched estimate.
    naive_pool, naive_max_candidates
        Candidate pool and subsample cap of the naive comparison.
    sector_rel_wage
        Reference table for a naive ``sector_rel_wage`` comparison.
    bias_correction
        Correct each twin's change for its remaining covariate gap to the treated person
        by regression (Abadie & Imbens 2011; :mod:`impact.estimate.bias_correction`).
        Needs ``traj.covariates``
        (:func:`impact.estimate.bias_correction.with_covariates`). Event times with too
        few observed twins for the regression keep the plain estimate
        (``EventStudyResults.bias_corrected``). The joint pre-trend test then uses the
        uncorrected placebo estimates (the pre-start earnings months are covariates of the
        regression, which fits their corrected placebos by construction).

    Returns
    -------
    EventStudyResults
    """
    if outcome not in traj.outcomes:
        raise KeyError(f"outcome {outcome!r} not in the trajectories ({traj.outcomes})")
    g = traj.grid(clock)
    if event_times is None:
        cols = np.arange(g.event_time.size)
    else:
        cols = np.array([g.column(int(e)) for e in event_times], dtype=np.int64)
    ev = g.event_time[cols]
    base_t, base_p = traj.baseline(outcome, baseline)
    dt = g.treated[outcome][:, cols] - base_t[:, None]
    dp = g.twins[outcome][:, cols] - base_p[:, None]
    corrected = None
    if bias_correction:
        if traj.covariates is None:
            raise ValueError(
                "bias_correction needs the trajectories' covariates: attach them with "
                "impact.estimate.bias_correction.with_covariates(traj, arrays, features)"
            )
        bc = bias_corrected_twin_changes(dt, dp, traj.covariates.treated,
                                         traj.covariates.twins, traj.pair_treated,
                                         traj.weight, cache=traj.covariates.cache)
        dp_plain, dp, corrected = dp, bc.d_twins, bc.corrected
    core = matched_att(dt, dp, traj.pair_treated, traj.weight, traj.twin_pid, variance=variance)
    inf = core.influence()
    boot = multiplier_bootstrap(inf, None, reps=reps, seed=seed, alpha=alpha)

    lo, hi = baseline
    if pretest_event_times is None:
        pre = ev[(ev < 0) & ((ev < lo) | (ev > hi))] if clock == "start" else ev[:0]
    else:
        pre = np.asarray(pretest_event_times, dtype=np.int64)
    col_of = {int(e): i for i, e in enumerate(ev)}
    idx = np.array([col_of[int(e)] for e in pre if int(e) in col_of], dtype=np.int64)
    idx = idx[np.isfinite(core.att[idx])]
    pre = ev[idx]
    test = None
    if idx.size:
        if corrected is None:
            p_att, p_inf, p_n = core.att[idx], inf[:, idx], core.n_treated[idx]
        else:
            # with the bias correction the placebo months are tested on the plain changes:
            # the earnings months before the start are matching covariates, so the regression
            # fits their corrected placebos (nearly) exactly and their covariance is singular
            pc = matched_att(dt[:, idx], dp_plain[:, idx], traj.pair_treated, traj.weight,
                             traj.twin_pid, variance=variance)
            p_att, p_inf, p_n = pc.att, pc.influence(), pc.n_treated
        test = pretrend_test(p_att, analytic_vcov(p_inf), int(p_n.min()))

    naive_att = naive_se = None
    if arrays is not None:
        anchor = traj.cohort if clock == "start" else traj.end
        valid = np.isfinite(core.unit_effect)
        naive_att, naive_se = _naive(
            arrays,
            traj,
            outcome,
            anchor,
            ev,
            dt,
            valid,
            baseline,
            naive_pool,
            naive_max_candidates,
            sector_rel_wage,
            seed,
        )
    return EventStudyResults(
        outcome=outcome,
        clock=clock,
        baseline=(int(lo), int(hi)),
        variance=variance,
        alpha=alpha,
        reps=reps,
        seed=seed,
        event_time=ev,
        params=core.att,
        bse=np.where(np.isfinite(core.att), boot.se, np.nan),
        bse_analytic=core.se_analytic,
        crit_uniform=float(boot.crit_uniform),
        nobs=core.n_treated,
        n_twins=core.n_twins,
        n_lost=core.n_lost,
        twin_ess=core.twin_ess,
        n_treated_total=traj.n_treated,
        treated_pid=traj.treated_pid,
        unit_effect=core.unit_effect,
        influence=inf,
        naive_params=naive_att,
        naive_bse=naive_se,
        pretest=test,
        pretest_event_time=pre,
        bias_corrected=corrected,
    )


def matched_event_studies(
    traj: Trajectories,
    outcomes: Sequence[str] | None = None,
    clocks: Sequence[Clock] = ("start", "end"),
    **kwargs: Any,
) -> dict[tuple[str, str], EventStudyResults]:
    """:func:`matched_event_study` for several outcomes and clocks, keyed ``(outcome, clock)``."""
    out = {}
    for o in outcomes or traj.outcomes:
        for c in clocks:
            if c in traj.grids:
                out[(o, c)] = matched_event_study(traj, o, c, **kwargs)
    return out


def stack_tables(results: Mapping[Any, EventStudyResults]) -> pl.DataFrame:
    """All :meth:`EventStudyResults.table` frames stacked (long format)."""
    frames = [r.table() for r in results.values()]
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
