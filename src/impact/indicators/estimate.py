"""Participants, twins and net effect of every indicator in every breakdown cell.

The net effect is the matched estimator of :func:`impact.estimate.matched_did.matched_att`
applied to the indicator's per-person values (``did`` contrast: post minus pre; ``level``:
post), so indicators share the event study's inference: per-participant contributions plus
the Abadie-Imbens term for twins reused across participants, normal confidence intervals.
``participants`` and ``twins`` are the post-period values of the same persons (twins
weighted, renormalised per participant among their observed twins).

Ratios (ROI, fiscal return) divide the net effect on a per-person sum by the participants'
mean cost; their standard errors come from the linearised ratio (the cost is a sample
mean too).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from impact.estimate.matched_did import MatchedATT, matched_att
from impact.indicators.rules import Spec, Values

__all__ = ["COLUMNS", "estimate_cells", "ratio_rows"]

#: Columns of the indicator table (internal ``_`` columns feed disclosure control only).
COLUMNS: tuple[str, ...] = (
    "indicator", "family", "dimension", "group", "horizon", "kind", "unit", "contrast",
    "n_participants", "n_twins", "twins_ess", "participants", "twins", "participants_pre",
    "twins_pre", "net", "se", "ci_low", "ci_high", "p_value",
)


def _mag(v: np.ndarray) -> tuple[float, float, float]:
    """Largest, second largest and total absolute contribution."""
    a = np.sort(np.abs(v[np.isfinite(v)]))[::-1]
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(a[0]), float(a[1]) if a.size > 1 else 0.0, float(a.sum())


def _levels(res: MatchedATT, post_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Participants' mean and twins' weighted mean of the counted persons."""
    valid = np.isfinite(res.unit_effect)
    n = np.maximum(valid.sum(axis=0), 1)
    part = np.where(valid, post_t, 0.0).sum(axis=0) / n
    part = np.where(valid.any(axis=0), part, np.nan)
    return part, part - res.att


def _stack(values: Sequence[Values], keep: np.ndarray, pk: np.ndarray
           ) -> dict[str, np.ndarray]:
    """Matrices (persons x indicators) of post, pre and change scores for one cell."""
    pt = np.column_stack([v.post_t[keep] for v in values])
    pp = np.column_stack([v.post_p[pk] for v in values])
    bt = np.column_stack([v.pre_t[keep] if v.pre_t is not None else np.zeros(keep.sum())
                          for v in values])
    bp = np.column_stack([v.pre_p[pk] if v.pre_p is not None else np.zeros(pk.sum())
                          for v in values])
    did = np.array([v.spec.contrast == "did" for v in values])
    dt = np.where(did, pt - bt, pt)
    dp = np.where(did, pp - bp, pp)
    # a person counts only where both post and (for did) pre are observed
    pt, bt = np.where(np.isfinite(dt), pt, np.nan), np.where(np.isfinite(dt), bt, np.nan)
    pp, bp = np.where(np.isfinite(dp), pp, np.nan), np.where(np.isfinite(dp), bp, np.nan)
    return {"pt": pt, "pp": pp, "bt": bt, "bp": bp, "dt": dt, "dp": dp, "did": did}


def estimate_cells(
    values: Sequence[Values],
    pair_treated: np.ndarray,
    weight: np.ndarray,
    twin_pid: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    alpha: float = 0.05,
) -> tuple[pl.DataFrame, dict[tuple[str, str], MatchedATT]]:
    """Estimate every indicator in every (dimension, group) cell.

    Parameters
    ----------
    values
        Per-person values of the indicators (:func:`impact.indicators.rules.compute_values`).
    pair_treated, weight, twin_pid
        The pairs (see :class:`impact.indicators.sample.MatchedSample`).
    groups
        Dimension -> group label of every participant (``"all"`` included).
    alpha
        1 - confidence level of the intervals.

    Returns
    -------
    table : polars.DataFrame
        :data:`COLUMNS` plus internal magnitude columns ``_top1_participants``,
        ``_top2_participants``, ``_total_participants`` and the same for twins (kind
        ``mean`` only), for the dominance and p% rules of disclosure control.
    fits : dict
        The matched fit of the change scores per (dimension, group), indicator columns in
        the order of ``values`` (for ratio indicators).
    """
    z = stats.norm.ppf(1 - alpha / 2)
    gross = np.array([v.spec.contrast == "gross" for v in values])
    rows: list[dict] = []
    fits: dict[tuple[str, str], MatchedATT] = {}
    for dim, labels in groups.items():
        for grp in sorted(set(labels.tolist())):
            keep = labels == grp
            pk = keep[pair_treated]
            new_row = np.cumsum(keep) - 1
            pt_idx = new_row[pair_treated[pk]]
            w, tid = weight[pk], twin_pid[pk]
            m = _stack(values, keep, pk)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fit = matched_att(m["dt"], m["dp"], pt_idx, w, tid)
                lev = matched_att(m["pt"], m["pp"], pt_idx, w, tid)
                pre = matched_att(m["bt"], m["bp"], pt_idx, w, tid)
            fits[(dim, grp)] = fit
            part, twin = _levels(lev, m["pt"])
            part_pre, twin_pre = _levels(pre, m["bt"])
            se = fit.se_analytic
            for k, v in enumerate(values):
                s: Spec = v.spec
                row = {"indicator": s.id, "family": s.family, "dimension": dim, "group": grp,
                       "horizon": s.horizon, "kind": s.kind, "unit": s.unit,
                       "contrast": s.contrast}
                if gross[k]:
                    y = m["pt"][:, k]
                    y = y[np.isfinite(y)]
                    n = y.size
                    p = float(y.mean()) if n else None
                    row.update(n_participants=n, n_twins=_gross_twins(keep, pair_treated,
                                                                      twin_pid),
                               twins_ess=None, participants=p, twins=None,
                               participants_pre=None, twins_pre=None, net=None,
                               se=float(np.sqrt(p * (1 - p) / n)) if p is not None
                               and n > 1 else None,
                               ci_low=None, ci_high=None, p_value=None)
                else:
                    att, e = float(fit.att[k]), float(se[k])
                    ok = np.isfinite(att) and np.isfinite(e) and e > 0
                    row.update(
                        n_participants=int(fit.n_treated[k]), n_twins=int(fit.n_twins[k]),
                        twins_ess=_f(fit.twin_ess[k]), participants=_f(part[k]),
                        twins=_f(twin[k]),
                        participants_pre=_f(part_pre[k]) if m["did"][k] else None,
                        twins_pre=_f(twin_pre[k]) if m["did"][k] else None,
                        net=_f(att), se=_f(e) if ok else None,
                        ci_low=att - z * e if ok else None, ci_high=att + z * e if ok else None,
                        p_value=float(2 * stats.norm.sf(abs(att / e))) if ok else None)
                if s.kind == "mean":
                    row.update(_magnitudes(m["pt"][:, k], m["pp"][:, k], w, tid))
                rows.append(row)
    return _frame(rows), fits


def _gross_twins(keep: np.ndarray, pair_treated: np.ndarray,
                 twin_pid: np.ndarray) -> int:
    """Distinct twins behind a gross (twins-relative) value: the twins of the cell's
    participants (their average change is each participant's benchmark)."""
    pk = keep[pair_treated]
    return int(np.unique(twin_pid[pk]).size)


def _magnitudes(pt: np.ndarray, pp: np.ndarray, w: np.ndarray, tid: np.ndarray
                ) -> dict[str, float]:
    t1, t2, tt = _mag(pt)
    ok = np.isfinite(pp)
    if ok.any():
        ids, inv = np.unique(tid[ok], return_inverse=True)
        contrib = np.bincount(inv, np.abs(pp[ok]) * w[ok], ids.size)
        j1, j2, jt = _mag(contrib)
    else:
        j1 = j2 = jt = float("nan")
    return {"_top1_participants": t1, "_top2_participants": t2, "_total_participants": tt,
            "_top1_twins": j1, "_top2_twins": j2, "_total_twins": jt}


def _f(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


_SCHEMA = {
    "indicator": pl.String, "family": pl.String, "dimension": pl.String, "group": pl.String,
    "horizon": pl.Int64, "kind": pl.String, "unit": pl.String, "contrast": pl.String,
    "n_participants": pl.Int64, "n_twins": pl.Int64, "twins_ess": pl.Float64,
    "participants": pl.Float64, "twins": pl.Float64, "participants_pre": pl.Float64,
    "twins_pre": pl.Float64, "net": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "p_value": pl.Float64,
    "_top1_participants": pl.Float64, "_top2_participants": pl.Float64,
    "_total_participants": pl.Float64, "_top1_twins": pl.Float64, "_top2_twins": pl.Float64,
    "_total_twins": pl.Float64,
}


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_SCHEMA)


def ratio_rows(
    spec: Spec,
    fits: Mapping[tuple[str, str], MatchedATT],
    column: int,
    cost: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    scale: float = 1.0,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Ratio indicator per cell: ``scale * net effect / mean cost`` of the counted
    participants (e.g. ROI: extra real earnings per EUR of training cost).

    The linearised ratio ``R = att / c̄`` has contributions
    ``(c_i^att - R (cost_i - c̄) / n) / c̄`` per participant and ``c_j^att / c̄`` per twin.
    """
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for dim, labels in groups.items():
        for grp in sorted(set(labels.tolist())):
            fit = fits[(dim, grp)]
            c = cost[labels == grp]
            valid = np.isfinite(fit.unit_effect[:, column]) & np.isfinite(c)
            n = int(valid.sum())
            row = {"indicator": spec.id, "family": spec.family, "dimension": dim,
                   "group": grp, "horizon": spec.horizon, "kind": spec.kind,
                   "unit": spec.unit, "contrast": spec.contrast, "n_participants": n,
                   "n_twins": int(fit.n_twins[column]), "twins_ess": _f(fit.twin_ess[column])}
            cbar = float(c[valid].mean()) if n else float("nan")
            if n == 0 or not cbar > 0:
                rows.append(row)
                continue
            tau = fit.unit_effect[valid, column]
            r = float(tau.sum() / c[valid].sum())
            ct = np.zeros(c.size)
            ct[valid] = (tau - tau.mean()) / n - r * (c[valid] - cbar) / n
            var = float(((ct / cbar) ** 2).sum() + ((fit.contrib_twins[:, column] / cbar) ** 2
                                                   ).sum())
            e = float(np.sqrt(var)) * scale
            est = r * scale
            row.update(participants=cbar, net=est, se=e if e > 0 else None,
                       ci_low=est - z * e, ci_high=est + z * e,
                       p_value=float(2 * stats.norm.sf(abs(est / e))) if e > 0 else None)
            rows.append(row)
    return pl.DataFrame(rows, schema={k: v for k, v in _SCHEMA.items()
                                      if not k.startswith("_")})
