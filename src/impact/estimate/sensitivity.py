"""Sensitivity of matched estimates to unmeasured confounding: E-values and Rosenbaum bounds.

E-values (VanderWeele & Ding 2017, Ann. Intern. Med. 167(4))
------------------------------------------------------------
The E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both treatment and outcome (conditional on the
matching features) to explain away the estimate: ``E = RR + sqrt(RR (RR - 1))`` for
``RR >= 1`` (``RR < 1`` is inverted first). The E-value of the confidence limit closer to
the null says how strong it must be to move the CI to include the null (1 if it already does).

* ``kind="risk_ratio"``: binary outcomes (employment). Pass the risk ratio and its CI; for a
  matched DiD on a binary outcome, :func:`risk_ratio_from_att` turns the ATT (a risk
  difference) into ``RR = p1 / (p1 - ATT)`` with ``p1`` the treated mean at the horizon.
* ``kind="continuous"``: the standardised effect ``d = ATT / SD`` (SD of the outcome among the
  twins, the caller's choice of scale, see :func:`outcome_sd_among_twins`) is converted to an
  approximate risk ratio ``RR = exp(0.91 d)`` (VanderWeele & Ding 2017, Table 2, after Chinn
  2000 / Hasselblad & Hedges 1995: assumes the outcome is roughly normal and a dichotomy of it
  not too extreme); CI limits are converted the same way, i.e. ``exp(0.91 d +- 1.78 SE_d)``.

Rosenbaum bounds for matched sets (Rosenbaum 2002, *Observational Studies*, 2nd ed., ch. 4)
-----------------------------------------------------------------------------------------
Sensitivity model: within a matched set, two units with the same observed features may
differ in their odds of treatment by at most a factor ``Gamma >= 1`` because of an unobserved
``u``. For matched pairs and Wilcoxon's signed-rank statistic ``T = sum_i r_i 1[d_i > 0]``
(``r_i`` the rank of ``|d_i|``) under the null of no effect, ``T`` is bounded (stochastically)
above by ``T+ = sum_i r_i B_i``, ``B_i ~ Bernoulli(p+)`` independent, ``p+ = Gamma/(1+Gamma)``,
and below by the same with ``p- = 1/(1+Gamma)``. Large-sample approximation::

    E(T+) = p+ sum r_i,   Var(T+) = p+ (1 - p+) sum r_i^2,
    upper-bound p-value = 1 - Phi((T - E(T+)) / sqrt(Var(T+)))

(average ranks for ties, so the formula includes the usual tie correction; at ``Gamma = 1``
it is the ordinary normal-approximation Wilcoxon signed-rank test without continuity
correction). ``method="exact"`` computes the exact distribution of ``T+`` (given the ranks) by
convolution over doubled ranks (integers even with average ranks), feasible for a few hundred
sets. The critical ``Gamma`` is the largest one at which the upper-bound p-value stays below
``alpha``: a hidden bias of that size could not explain the effect away; beyond it, it could.

For 1:k matched sets the input is the per-set difference "treated outcome minus (weighted)
mean twin outcome" (:func:`matched_differences`) and the pair formula is applied to it. That
is exact for pairs (k = 1) and an approximation otherwise (for sets with several controls
the randomisation distribution of the averaged difference is not symmetric, and Rosenbaum's
stratified or M-statistic versions, e.g. R ``sensitivitymv``, are the exact analogue).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import optimize, stats

__all__ = [
    "EValueResult",
    "RosenbaumResult",
    "e_value",
    "matched_differences",
    "outcome_sd_among_twins",
    "risk_ratio_from_att",
    "rosenbaum_gamma",
    "rosenbaum_p_values",
]

EValueKind = Literal["continuous", "risk_ratio"]
Alternative = Literal["greater", "less"]
ZeroMethod = Literal["wilcox", "pratt"]
RosenbaumMethod = Literal["normal", "exact"]

_RR_PER_D = 0.91  # VanderWeele & Ding (2017), Table 2: RR ~ exp(0.91 d)
_MAX_EXACT = 200  # sets; the exact convolution is O(n^3) in time, O(n^2) in memory per Gamma


# --------------------------------------------------------------------------- E-values


@dataclass(frozen=True)
class EValueResult:
    """Result of :func:`e_value`.

    Attributes
    ----------
    kind : str
        ``"continuous"`` or ``"risk_ratio"``.
    estimate : float
        Estimate as given (ATT, or risk ratio).
    ci : tuple of float or None
        Its confidence interval as given.
    outcome_sd : float or None
        SD used to standardise (continuous only).
    d : float or None
        Standardised effect ``estimate / outcome_sd`` (continuous only).
    rr : float
        Risk ratio (given, or ``exp(0.91 d)``).
    rr_ci : tuple of float or None
        Risk-ratio CI.
    e_value : float
        E-value of the point estimate.
    e_value_ci : float or None
        E-value of the CI limit closer to the null (1 when the CI includes the null).
    """

    kind: str
    estimate: float
    ci: tuple[float, float] | None
    outcome_sd: float | None
    d: float | None
    rr: float
    rr_ci: tuple[float, float] | None
    e_value: float
    e_value_ci: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view."""
        return {
            "kind": self.kind,
            "estimate": self.estimate,
            "ci": None if self.ci is None else list(self.ci),
            "outcome_sd": self.outcome_sd,
            "d": self.d,
            "rr": self.rr,
            "rr_ci": None if self.rr_ci is None else list(self.rr_ci),
            "e_value": self.e_value,
            "e_value_ci": self.e_value_ci,
        }


def _e_of_rr(rr: float) -> float:
    """E-value of a single risk ratio (inverted first when below 1)."""
    if not rr > 0:
        raise ValueError(f"risk ratio must be positive, got {rr}")
    r = rr if rr >= 1 else 1.0 / rr
    return float(r + math.sqrt(r * (r - 1.0)))


def e_value(
    estimate: float,
    ci: tuple[float, float] | None = None,
    *,
    outcome_sd: float | None = None,
    kind: EValueKind = "continuous",
) -> EValueResult:
    """E-value of an estimate and of its confidence limit closer to the null.

    Parameters
    ----------
    estimate : float
        ``kind="continuous"``: the effect in outcome units (e.g. the ATT on monthly
        earnings); ``kind="risk_ratio"``: the risk ratio.
    ci : (float, float), optional
        Confidence interval on the same scale as ``estimate``; must contain it.
    outcome_sd : float, optional
        Required for ``kind="continuous"``: SD of the outcome among the twins.
    kind : {"continuous", "risk_ratio"}
        Scale of ``estimate``.

    Returns
    -------
    EValueResult

    Notes
    -----
    Assumes (VanderWeele & Ding 2017) an unmeasured confounder whose associations with
    treatment and outcome are measured as risk ratios conditional on the matching features.
    The continuous conversion ``exp(0.91 d)`` is an approximation (module docstring).
    """
    if kind not in ("continuous", "risk_ratio"):
        raise ValueError(f"kind must be 'continuous' or 'risk_ratio', got {kind!r}")
    if not math.isfinite(estimate):
        raise ValueError("estimate must be finite")
    if ci is not None:
        lo, hi = float(ci[0]), float(ci[1])
        if not lo <= estimate <= hi:
            raise ValueError(f"ci {ci} must contain the estimate {estimate}")
        ci = (lo, hi)
    d: float | None = None
    if kind == "continuous":
        if outcome_sd is None or not outcome_sd > 0:
            raise ValueError("kind='continuous' needs a positive outcome_sd")
        d = float(estimate) / outcome_sd
        rr = math.exp(_RR_PER_D * d)
        rr_ci = None
        if ci is not None:
            rr_ci = (
                math.exp(_RR_PER_D * ci[0] / outcome_sd),
                math.exp(_RR_PER_D * ci[1] / outcome_sd),
            )
    else:
        if not estimate > 0:
            raise ValueError("a risk ratio must be positive")
        rr = float(estimate)
        rr_ci = ci
        if ci is not None and not ci[0] > 0:
            raise ValueError("risk-ratio CI limits must be positive")
    e_ci: float | None = None
    if rr_ci is not None:
        if rr >= 1:
            e_ci = 1.0 if rr_ci[0] <= 1 else _e_of_rr(rr_ci[0])
        else:
            e_ci = 1.0 if rr_ci[1] >= 1 else _e_of_rr(rr_ci[1])
    return EValueResult(
        kind=kind,
        estimate=float(estimate),
        ci=ci,
        outcome_sd=None if outcome_sd is None else float(outcome_sd),
        d=d,
        rr=float(rr),
        rr_ci=rr_ci,
        e_value=_e_of_rr(rr),
        e_value_ci=e_ci,
    )


def risk_ratio_from_att(
    att: float,
    treated_mean: float,
    ci: tuple[float, float] | None = None,
) -> tuple[float, tuple[float, float] | None]:
    """Risk ratio of a binary outcome from a matched ATT (a risk difference).

    ``RR = p1 / (p1 - ATT)`` with ``p1`` the treated units' outcome rate at the horizon and
    ``p1 - ATT`` their counterfactual rate; CI limits map the ATT limits the same way,
    holding ``p1`` fixed (its sampling error is ignored, a small-order approximation next to
    the ATT's).

    Parameters
    ----------
    att : float
        ATT on the probability scale.
    treated_mean : float
        Outcome rate among the (matched) treated at the horizon, in (0, 1].
    ci : (float, float), optional
        CI of the ATT.

    Returns
    -------
    rr : float
    rr_ci : (float, float) or None
    """
    if not 0 < treated_mean <= 1:
        raise ValueError("treated_mean must be in (0, 1]")

    def rr_of(a: float) -> float:
        counterfactual = treated_mean - a
        if not 0 < counterfactual <= 1:
            raise ValueError(
                f"counterfactual rate {counterfactual:.4g} = treated_mean - ATT is outside (0, 1]"
            )
        return treated_mean / counterfactual

    rr = rr_of(att)
    if ci is None:
        return rr, None
    return rr, (rr_of(ci[0]), rr_of(ci[1]))


def outcome_sd_among_twins(
    frame: Any,
    *,
    treatment: str,
    outcome: str,
    weights: str | None = None,
) -> float:
    """Weighted SD of ``outcome`` among the twins (rows with treatment 0), for :func:`e_value`.

    With ``weights`` (the ATT matching weights) the twins are weighted as in the estimate, so
    the SD describes the counterfactual distribution of the matched treated. Which outcome to
    standardise by (the level at the horizon or the change) is the caller's choice; state it.
    """
    df = _to_polars(frame).filter(~pl.col(treatment).cast(pl.Boolean))
    y = df[outcome].cast(pl.Float64).to_numpy()
    w = np.ones_like(y) if weights is None else df[weights].cast(pl.Float64).to_numpy()
    if y.size < 2 or not w.sum() > 0:
        raise ValueError("need at least two twins with positive weight")
    mean = float(w @ y / w.sum())
    return float(math.sqrt(w @ (y - mean) ** 2 / w.sum()))


def _to_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    return pl.from_pandas(frame)


# --------------------------------------------------------------------------- Rosenbaum bounds


@dataclass(frozen=True)
class RosenbaumResult:
    """Result of :func:`rosenbaum_gamma`.

    Attributes
    ----------
    gammas : tuple of float
        Grid of Gamma values.
    p_upper, p_lower : tuple of float
        Upper- and lower-bound one-sided p-values at each Gamma.
    alpha : float
        Level.
    critical_gamma : float or None
        Largest grid Gamma up to which every upper-bound p-value is below ``alpha``; None if
        not even Gamma = 1 is significant. Equal to the grid's end when ``beyond_grid``.
    beyond_grid : bool
        The upper-bound p-value is below ``alpha`` on the whole grid.
    gamma_at_alpha : float or None
        Gamma solving ``p_upper(Gamma) = alpha`` (root finding; ``inf`` if never reached
        below 1e6); None if not significant at Gamma = 1.
    statistic : float
        Signed-rank statistic ``T`` (sum of ranks of positive differences).
    n_sets : int
        Differences given.
    n_used : int
        Non-zero differences used.
    alternative, method, zero_method : str
        As passed.
    """

    gammas: tuple[float, ...]
    p_upper: tuple[float, ...]
    p_lower: tuple[float, ...]
    alpha: float
    critical_gamma: float | None
    beyond_grid: bool
    gamma_at_alpha: float | None
    statistic: float
    n_sets: int
    n_used: int
    alternative: str
    method: str
    zero_method: str

    @property
    def table(self) -> pl.DataFrame:
        """Gamma, upper- and lower-bound p-values, and whether the upper bound is < alpha."""
        return pl.DataFrame(
            {
                "gamma": list(self.gammas),
                "p_upper": list(self.p_upper),
                "p_lower": list(self.p_lower),
                "significant": [p < self.alpha for p in self.p_upper],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable except ``inf``)."""
        return {
            "gammas": list(self.gammas),
            "p_upper": list(self.p_upper),
            "p_lower": list(self.p_lower),
            "alpha": self.alpha,
            "critical_gamma": self.critical_gamma,
            "beyond_grid": self.beyond_grid,
            "gamma_at_alpha": self.gamma_at_alpha,
            "statistic": self.statistic,
            "n_sets": self.n_sets,
            "n_used": self.n_used,
            "alternative": self.alternative,
            "method": self.method,
            "zero_method": self.zero_method,
        }


def _signed_ranks(
    diffs: np.ndarray, alternative: Alternative, zero_method: ZeroMethod
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of |d| and the positive-sign indicator, zeros handled as in scipy's wilcoxon."""
    d = np.asarray(diffs, dtype=float).ravel()
    if not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite")
    if alternative == "less":
        d = -d
    elif alternative != "greater":
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    if zero_method == "wilcox":
        d = d[d != 0]
        ranks = stats.rankdata(np.abs(d))
    elif zero_method == "pratt":
        ranks = stats.rankdata(np.abs(d))
        keep = d != 0
        d, ranks = d[keep], ranks[keep]
    else:
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    return ranks, d > 0


def _p_normal(t: float, ranks: np.ndarray, p: np.ndarray, continuity: bool) -> np.ndarray:
    s, q = ranks.sum(), (ranks**2).sum()
    mean = p * s
    sd = np.sqrt(p * (1 - p) * q)
    num = t - mean
    if continuity:
        num = num - 0.5 * np.sign(num)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, num / sd, np.where(num >= 0, -np.inf, np.inf))
    return stats.norm.sf(z)


def _p_exact(t: float, ranks: np.ndarray, p: np.ndarray) -> np.ndarray:
    """P(sum r_i B_i >= t), B_i ~ Bernoulli(p) independent, by convolution on doubled ranks."""
    r2 = np.rint(2 * ranks).astype(np.int64)
    if not np.allclose(r2, 2 * ranks):
        raise ValueError("ranks must be integers or halves")
    total = int(r2.sum())
    p = np.atleast_1d(p)
    dist = np.zeros((p.size, total + 1))
    dist[:, 0] = 1.0
    q = (1 - p)[:, None]
    pp = p[:, None]
    for r in r2:
        shifted = np.zeros_like(dist)
        shifted[:, r:] = dist[:, :-r]
        dist = dist * q + shifted * pp
    t2 = int(np.rint(2 * t))
    return np.clip(dist[:, t2:].sum(axis=1), 0.0, 1.0)


def rosenbaum_p_values(
    diffs: Sequence[float] | np.ndarray,
    gammas: Sequence[float] | np.ndarray,
    *,
    alternative: Alternative = "greater",
    method: RosenbaumMethod = "normal",
    zero_method: ZeroMethod = "wilcox",
    continuity: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Upper- and lower-bound one-sided p-values of Wilcoxon's signed-rank test per Gamma.

    Returns ``(p_upper, p_lower, T)``; see :func:`rosenbaum_gamma` for the parameters.
    """
    g = np.asarray(gammas, dtype=float)
    if np.any(g < 1):
        raise ValueError("Gamma must be >= 1")
    ranks, positive = _signed_ranks(np.asarray(diffs), alternative, zero_method)
    t = float(ranks[positive].sum())
    if ranks.size == 0:
        ones = np.ones_like(g)
        return ones, ones, t
    p_plus, p_minus = g / (1 + g), 1 / (1 + g)
    if method == "normal":
        return (
            _p_normal(t, ranks, p_plus, continuity),
            _p_normal(t, ranks, p_minus, continuity),
            t,
        )
    if method == "exact":
        if ranks.size > _MAX_EXACT:
            raise ValueError(f"method='exact' is limited to {_MAX_EXACT} non-zero differences")
        return _p_exact(t, ranks, p_plus), _p_exact(t, ranks, p_minus), t
    raise ValueError(f"method must be 'normal' or 'exact', got {method!r}")


def rosenbaum_gamma(
    diffs: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    gammas: Sequence[float] | np.ndarray | None = None,
    *,
    alternative: Alternative = "greater",
    method: RosenbaumMethod = "normal",
    zero_method: ZeroMethod = "wilcox",
    continuity: bool = False,
) -> RosenbaumResult:
    """Rosenbaum sensitivity analysis of the signed-rank test for matched differences.

    Parameters
    ----------
    diffs : array-like
        One difference per matched set: treated outcome minus (weighted) mean twin outcome
        (:func:`matched_differences`); for DiD, of the change scores.
    alpha : float
        One-sided level.
    gammas : array-like, optional
        Grid of Gamma >= 1 (default ``np.arange(1, 3.01, 0.05)``).
    alternative : {"greater", "less"}
        Direction of the effect tested (``"less"`` flips the signs).
    method : {"normal", "exact"}
        Large-sample approximation (Rosenbaum 2002, ch. 4) or exact convolution (few hundred
        sets at most).
    zero_method : {"wilcox", "pratt"}
        Zero differences dropped before ranking (``wilcox``) or ranked then dropped
        (``pratt``), as in :func:`scipy.stats.wilcoxon`.
    continuity : bool
        Continuity correction of 0.5 towards the mean (normal method only).

    Returns
    -------
    RosenbaumResult

    Notes
    -----
    Assumes the matched sets are independent (twins not shared between sets, or the sharing
    ignored), the sensitivity model of the module docstring, and for 1:k sets the
    averaged-difference approximation described there.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    grid = np.arange(1, 3.01, 0.05) if gammas is None else np.asarray(gammas, dtype=float)
    grid = np.round(np.sort(grid), 12)
    d = np.asarray(diffs, dtype=float).ravel()
    kwargs: dict[str, Any] = {
        "alternative": alternative,
        "method": method,
        "zero_method": zero_method,
        "continuity": continuity,
    }
    p_up, p_lo, t = rosenbaum_p_values(d, grid, **kwargs)
    below = p_up < alpha
    if below.size and below[0]:
        first_fail = int(np.argmin(below)) if not below.all() else below.size
        critical: float | None = float(grid[first_fail - 1])
    else:
        critical = None
    beyond = bool(below.size and below.all())

    gamma_at_alpha: float | None = None
    p1 = rosenbaum_p_values(d, [1.0], **kwargs)[0][0]
    if p1 < alpha:

        def f(log_g: float) -> float:
            return float(rosenbaum_p_values(d, [math.exp(log_g)], **kwargs)[0][0]) - alpha

        hi = math.log(1e6)
        if f(hi) < 0:
            gamma_at_alpha = math.inf
        else:
            gamma_at_alpha = float(math.exp(optimize.brentq(f, 0.0, hi, xtol=1e-10)))

    n_used = int(np.count_nonzero(d))
    return RosenbaumResult(
        gammas=tuple(float(x) for x in grid),
        p_upper=tuple(float(x) for x in p_up),
        p_lower=tuple(float(x) for x in p_lo),
        alpha=alpha,
        critical_gamma=critical,
        beyond_grid=beyond,
        gamma_at_alpha=gamma_at_alpha,
        statistic=t,
        n_sets=int(d.size),
        n_used=n_used,
        alternative=alternative,
        method=method,
        zero_method=zero_method,
    )


def matched_differences(
    frame: Any,
    *,
    treatment: str,
    outcome: str,
    cluster: str,
    weights: str | None = None,
) -> np.ndarray:
    """Per matched set: mean treated outcome minus (weighted) mean twin outcome.

    Parameters
    ----------
    frame : polars or pandas frame
        Long layout, one row per (matched set, member): the treated person and its twins
        share the ``cluster`` id. A twin reused in several sets appears once per set.
    treatment, outcome, cluster : str
        Columns.
    weights : str, optional
        Weights of the twins within a set (e.g. ``1/k'``); equal weights if None.

    Returns
    -------
    ndarray
        One difference per set that has both a treated unit and a twin, sets in sorted
        cluster order (deterministic).
    """
    cols = [treatment, outcome, cluster] + ([weights] if weights else [])
    df = _to_polars(frame).select(cols)
    w = pl.col(weights).cast(pl.Float64) if weights else pl.lit(1.0)
    t = pl.col(treatment).cast(pl.Boolean)
    y = pl.col(outcome).cast(pl.Float64)
    out = (
        df.group_by(cluster)
        .agg(
            y.filter(t).mean().alias("y1"),
            ((y * w).filter(~t).sum() / w.filter(~t).sum()).alias("y0"),
            t.sum().alias("n1"),
            (~t).sum().alias("n0"),
        )
        .filter((pl.col("n1") > 0) & (pl.col("n0") > 0))
        .sort(cluster)
    )
    return (out["y1"] - out["y0"]).to_numpy()
