"""Regression bias correction of matched twins (Abadie & Imbens 2011).

Nearest-neighbour twins match the treated person only approximately: on the propensity score
within a caliper, so the twin's covariates ``X_j`` differ from the treated person's ``X_i``,
and in the coarser passes (:attr:`impact.twins.TwinSettings.coarsen`) an exact characteristic
such as region may differ too. The matched DiD then carries a *matching bias*
``mu_0(X_i) - mu_0(X_j)``, with ``mu_0(x)`` the expected untreated change score at ``x``.
Abadie & Imbens (2011, JBES 29(1)) remove it by regression: fit ``mu_0`` on the matched
controls and replace each twin's change by

.. math:: \\tilde D_j(e) = D_j(e) + \\big(X_i - X_j\\big)^\\top \\hat\\beta(e)

where ``beta(e)`` is the weighted least-squares slope of the twins' change scores ``D_j(e)``
on their covariates at event time ``e`` (with an intercept; each twin row weighted by its
matching weight renormalised over the twins observed at ``e``, so a reused twin counts as
often as it is used, as in AI's ``K_M`` weighting). The treated person's effect becomes
``D_i(e) - sum_j w_ij tilde D_j(e)``: the plain estimate minus ``(X_i - Xbar_i)' beta(e)``,
the part of the twins' gap explained by their remaining covariate differences.

Assumptions and choices:

* ``mu_0`` is linear in the covariates (one-hot categorical levels, standardised numeric
  features) with a slope common to all cohorts at an event time; the intercept (which
  absorbs calendar-month differences between cohorts) cancels in ``X_i - X_j``, since a
  treated person and its twins share the cohort month.
* The covariates are the twins' matching features at the cohort month
  (:func:`impact.twins.features.features_at`): the propensity model's features and the
  exact strata (constant within a pair in the first pass, so they only correct the
  coarser passes).
* An event time is corrected only when at least ``min_rows_per_coef`` observed twin rows per
  coefficient are available (default 5); otherwise it keeps the plain estimate and is
  reported as uncorrected (small subgroups, the ends of the event grid).
* The variance treats ``beta(e)`` as known (as AI 2011 do); the Abadie-Imbens reuse term of
  :mod:`impact.estimate.matched_did` is computed on the corrected changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl

from impact.twins.design import DesignSpec
from impact.twins.features import PanelArrays, features_at

if TYPE_CHECKING:
    from impact.outcomes import Trajectories
    from impact.twins.riskset import TwinSettings

__all__ = [
    "BiasCorrection",
    "MatchCovariates",
    "bias_corrected_twin_changes",
    "correction_features",
    "matching_covariates",
    "with_covariates",
]

#: Observed twin rows needed per regression coefficient before an event time is corrected.
MIN_ROWS_PER_COEF = 5


@dataclass(frozen=True)
class MatchCovariates:
    """Covariates of the matched treated persons and of each pair's twin at the cohort month.

    Attributes
    ----------
    names : tuple of str
        Columns of the matrices (``feature`` or ``feature=level`` for one-hot columns).
    treated : ndarray, shape (n_treated, p)
        Rows as :attr:`impact.outcomes.Trajectories.treated_pid`.
    twins : ndarray, shape (n_pairs, p)
        Rows as the trajectories' pairs (the twin of each pair at its treated person's
        cohort month).
    cache : dict
        Weighted Gram matrices of the regressions, by pattern of observed twins and weights
        (:func:`bias_corrected_twin_changes`); a subset starts its own.
    """

    names: tuple[str, ...]
    treated: np.ndarray = field(repr=False)
    twins: np.ndarray = field(repr=False)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        p = len(self.names)
        if self.treated.ndim != 2 or self.treated.shape[1] != p:
            raise ValueError(f"treated covariates must have {p} columns")
        if self.twins.ndim != 2 or self.twins.shape[1] != p:
            raise ValueError(f"twin covariates must have {p} columns")

    def subset(self, keep: np.ndarray, keep_pairs: np.ndarray) -> MatchCovariates:
        """The rows of the treated persons ``keep`` and of the pairs ``keep_pairs``."""
        return MatchCovariates(self.names, self.treated[keep], self.twins[keep_pairs])


def matching_covariates(
    arrays: PanelArrays,
    treated_pid: np.ndarray,
    cohort: np.ndarray,
    pair_treated: np.ndarray,
    twin_pid: np.ndarray,
    features: Sequence[str],
) -> MatchCovariates:
    """The covariate matrices of :class:`MatchCovariates` from the panel.

    Parameters
    ----------
    arrays
        The panel (at least the matched persons, 36 months of history before each cohort).
    treated_pid, cohort : ndarray, shape (n_treated,)
        Panel rows and cohort month indices of the treated persons.
    pair_treated, twin_pid : ndarray, shape (n_pairs,)
        Each pair's treated row and twin's panel row.
    features
        Columns of :func:`impact.twins.features.features_at` (numeric or categorical);
        categorical ones become one-hot columns (first level dropped), numeric ones are
        standardised over treated persons and twins together.

    Returns
    -------
    MatchCovariates
    """
    feats = list(dict.fromkeys(features))
    pair_treated = np.asarray(pair_treated, dtype=np.int64)
    cohort = np.asarray(cohort)
    parts_t, parts_p = [], []
    for c in np.unique(cohort):
        t_rows = np.nonzero(cohort == c)[0]
        p_rows = np.nonzero(cohort[pair_treated] == c)[0]
        parts_t.append(features_at(arrays, int(c), np.asarray(treated_pid)[t_rows])
                       .select(feats).with_columns(pl.Series("_row", t_rows)))
        parts_p.append(features_at(arrays, int(c), np.asarray(twin_pid)[p_rows])
                       .select(feats).with_columns(pl.Series("_row", p_rows)))
    ft = pl.concat(parts_t).sort("_row")
    fp = pl.concat(parts_p).sort("_row")
    spec = DesignSpec.fit(pl.concat([ft, fp]), feats)
    return MatchCovariates(tuple(spec.names), spec.transform(ft), spec.transform(fp))


def correction_features(settings: TwinSettings) -> tuple[str, ...]:
    """The covariates of the correction for twins matched with ``settings``: the propensity
    model's features and the exact strata (in that order, without repeats)."""
    return tuple(dict.fromkeys((*settings.features, *settings.exact)))


def with_covariates(traj: Trajectories, arrays: PanelArrays,
                    features: Sequence[str]) -> Trajectories:
    """``traj`` with :attr:`~impact.outcomes.Trajectories.covariates` attached (the
    :func:`matching_covariates` of its treated persons and pairs), for
    ``matched_event_study(..., bias_correction=True)``; subsets keep them."""
    cov = matching_covariates(arrays, traj.treated_pid, traj.cohort, traj.pair_treated,
                              traj.twin_pid, features)
    return dataclasses.replace(traj, covariates=cov)


class BiasCorrection(NamedTuple):
    """Result of :func:`bias_corrected_twin_changes`.

    Attributes
    ----------
    d_twins : ndarray, shape (n_pairs, k)
        Corrected twin change scores (the input where a column is not corrected).
    coef : ndarray, shape (k, p + 1)
        Intercept and slopes of each column's regression (NaN where not corrected).
    corrected : ndarray of bool, shape (k,)
        Whether the column was corrected.
    mean_correction : ndarray, shape (k,)
        Mean over counted treated persons of ``(X_i - Xbar_i)' beta``: what the correction
        subtracts from the plain estimate (0 where not corrected).
    """

    d_twins: np.ndarray
    coef: np.ndarray
    corrected: np.ndarray
    mean_correction: np.ndarray


def bias_corrected_twin_changes(
    d_treated: np.ndarray,
    d_twins: np.ndarray,
    x_treated: np.ndarray,
    x_twins: np.ndarray,
    pair_treated: np.ndarray,
    weight: np.ndarray,
    *,
    min_rows_per_coef: int = MIN_ROWS_PER_COEF,
    cache: dict | None = None,
) -> BiasCorrection:
    """Twin change scores with the Abadie-Imbens regression correction, column by column.

    Parameters
    ----------
    d_treated : ndarray, shape (n_treated, k)
        Treated change scores (NaN: not observed), as for
        :func:`impact.estimate.matched_did.matched_att`.
    d_twins : ndarray, shape (n_pairs, k)
        Twin change scores of each pair row (NaN: censored).
    x_treated : ndarray, shape (n_treated, p)
    x_twins : ndarray, shape (n_pairs, p)
        Covariates (:class:`MatchCovariates`).
    pair_treated, weight : ndarray, shape (n_pairs,)
        Pair's treated row and matching weight.
    min_rows_per_coef
        A column is corrected only with at least this many observed twin rows per
        coefficient (``p + 1``).
    cache
        A dict kept between calls with the same covariates (:attr:`MatchCovariates.cache`):
        the weighted Gram matrix of each pattern of observed twins is computed once (other
        outcomes observed in the same months reuse it).

    Returns
    -------
    BiasCorrection
    """
    dt = np.asarray(d_treated, dtype=np.float64)
    dp = np.asarray(d_twins, dtype=np.float64)
    if dt.ndim == 1:
        dt, dp = dt[:, None], dp[:, None]
    xt = np.asarray(x_treated, dtype=np.float64)
    xp = np.asarray(x_twins, dtype=np.float64)
    pt = np.asarray(pair_treated, dtype=np.int64)
    w = np.asarray(weight, dtype=np.float64)
    n_t, k = dt.shape
    n_p, p = xp.shape
    if xt.shape != (n_t, p):
        raise ValueError(f"x_treated must have shape ({n_t}, {p}); got {xt.shape}")
    if dp.shape != (n_p, k) or pt.shape != (n_p,) or w.shape != (n_p,):
        raise ValueError("d_twins, x_twins, pair_treated and weight must have one row per pair")
    if not (np.isfinite(xt).all() and np.isfinite(xp).all()):
        raise ValueError("covariates have NaN or infinite values")
    gap = xt[pt] - xp  # (n_pairs, p): the matching discrepancy of each pair
    design = np.column_stack([np.ones(n_p), xp])
    out = dp.copy()
    coef = np.full((k, p + 1), np.nan)
    corrected = np.zeros(k, dtype=bool)
    mean_corr = np.zeros(k)
    ok_all = np.isfinite(dp) & (w > 0)[:, None] & np.isfinite(dt[pt])
    cols = np.nonzero(ok_all.sum(axis=0) >= min_rows_per_coef * (p + 1))[0]
    # columns with the same observed twins share the weights and the Gram matrix (the
    # pre-period months, and outcomes observed in the same months): one solve per pattern
    groups: dict[bytes, list[int]] = {}
    for j in cols:
        groups.setdefault(np.packbits(ok_all[:, j]).tobytes(), []).append(int(j))
    w_key = hashlib.blake2b(w.tobytes(), digest_size=16).digest()
    for mask_bytes, js in groups.items():
        ok = ok_all[:, js[0]]
        den = np.bincount(pt[ok], weights=w[ok], minlength=n_t)
        # renormalised among the observed twins of the set (0 for the others)
        wz = np.where(ok, w / np.where(den[pt] > 0, den[pt], 1.0), 0.0)
        key = (hashlib.blake2b(mask_bytes, digest_size=16).digest(), w_key)
        gram = None if cache is None else cache.get(key)
        if gram is None:
            gram = design.T @ (design * wz[:, None])
            if cache is not None:
                cache[key] = gram
        rhs = design.T @ (wz[:, None] * np.where(ok[:, None], dp[:, js], 0.0))
        beta = np.linalg.lstsq(gram, rhs, rcond=None)[0]  # (p + 1, len(js))
        adj = gap @ beta[1:]
        out[:, js] = np.where(ok[:, None], dp[:, js] + adj, dp[:, js])
        coef[js] = beta.T
        corrected[js] = True
        # each treated person's correction sum_j w~_ij (X_i - X_j)' beta, averaged
        counted = den > 0  # treated persons with an observed twin
        for c, j in enumerate(js):
            per_t = np.bincount(pt, weights=wz * adj[:, c], minlength=n_t)
            mean_corr[j] = float(per_t[counted].mean()) if counted.any() else 0.0
    return BiasCorrection(out, coef, corrected, mean_corr)
