"""Aggregation of ATT(g,t) into summary parameters, with their influence functions.

Port of R ``did::compute.aggte`` (Callaway & Sant'Anna 2021, section 3). Cells are weighted
by the cohort shares :math:`p_g = E_n[w 1\\{G = g\\}]`. Because these shares are estimated, the
influence function of a share-weighted average :math:`\\theta = \\sum_k p_k a_k / \\sum_k p_k`
carries, besides :math:`\\sum_k (p_k/\\sum p) \\psi_k`, the term of R's ``wif``:

.. math:: \\frac{1}{\\sum_k p_k} \\sum_k (w 1\\{G = g_k\\} - p_k)(a_k - \\theta)
          = \\frac{w}{\\sum_k p_k} \\sum_{k:\\, g_k = G} (a_k - \\theta),

(the :math:`p_k` terms cancel), computed here in closed form, O(n) per aggregate, instead of
R's ``n x k`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

AggregationKind = Literal["simple", "dynamic", "group", "calendar"]


@dataclass(frozen=True, eq=False)
class RawAggregate:
    kind: str
    labels: np.ndarray  # (E,) event times / cohorts / periods; empty for "simple"
    att: np.ndarray  # (E,)
    inf: np.ndarray  # (n, E)
    overall_att: float
    overall_inf: np.ndarray  # (n,)
    n_cells: np.ndarray  # (E,) number of ATT(g,t) averaged per element


def _wif_att(
    labels: np.ndarray, pg: np.ndarray, att: np.ndarray, g_unit: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """``wif(keepers) %*% att[keepers]`` of R ``did`` in closed form, shape (n,)."""
    total = pg.sum()
    theta = float(pg @ att) / total
    uniq, inv = np.unique(labels, return_inverse=True)
    c = np.bincount(inv, weights=att - theta, minlength=uniq.size)
    pos = np.clip(np.searchsorted(uniq, g_unit), 0, uniq.size - 1)
    hit = uniq[pos] == g_unit
    out = np.zeros(g_unit.size)
    out[hit] = w[hit] * c[pos[hit]] / total
    return out


def _weighted(
    rows: np.ndarray,
    att: np.ndarray,
    inf: np.ndarray,
    pg_cell: np.ndarray,
    group: np.ndarray,
    g_unit: np.ndarray,
    w: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Share-weighted average of the cells ``rows`` and its influence function (with wif)."""
    p = pg_cell[rows]
    weights = p / p.sum()
    est = float(weights @ att[rows])
    psi = weights @ inf[rows] + _wif_att(group[rows], p, att[rows], g_unit, w)
    return est, psi


def aggregate(
    kind: AggregationKind,
    *,
    group: np.ndarray,
    time: np.ndarray,
    att: np.ndarray,
    inf: np.ndarray,
    g_unit: np.ndarray,
    w: np.ndarray,
    periods: np.ndarray,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    balance_e: int | None = None,
    na_rm: bool = False,
) -> RawAggregate:
    """Aggregate cells (``inf`` is cells x units) as R ``aggte(type=kind)``."""
    nan = np.isnan(att)
    if nan.any():
        if not na_rm:
            raise ValueError(
                f"{int(nan.sum())} ATT(g,t) are missing (cells that could not be estimated); "
                "pass na_rm=True to aggregate the others"
            )
        keep = ~nan
        group, time, att, inf = group[keep], time[keep], att[keep], inf[keep]
    post = group <= time
    if kind == "group":
        # cohorts without any post-treatment cell drop out (R, na.rm branch)
        with_post = np.unique(group[post])
        keep = np.isin(group, with_post)
        group, time, att, inf, post = group[keep], time[keep], att[keep], inf[keep], post[keep]
    if not post.any():
        raise ValueError("no post-treatment ATT(g,t) to aggregate")

    glist = np.unique(group)
    pg_of = {g: float(np.mean(w * (g_unit == g))) for g in glist}
    pg_cell = np.array([pg_of[g] for g in group])
    n = g_unit.size

    if kind == "simple":
        rows = np.flatnonzero(post)
        est, psi = _weighted(rows, att, inf, pg_cell, group, g_unit, w)
        return RawAggregate(
            kind, np.empty(0), np.empty(0), np.empty((n, 0)), est, psi, np.empty(0, np.int64)
        )

    if kind == "group":
        labels = glist
        rows_by = [np.flatnonzero((group == g) & post) for g in labels]
        att_e = np.array([att[r].mean() for r in rows_by])
        # equal weights within a cohort (its shares are equal): no wif term
        inf_e = np.column_stack([inf[r].mean(axis=0) for r in rows_by])
        pgg = np.array([pg_of[g] for g in labels])
        weights = pgg / pgg.sum()
        overall = float(weights @ att_e)
        # weight-estimation term over the cohorts, as csdid 0.4.3. R did's compute.aggte
        # (seen up to v2.x) passes `group = group`, i.e. the first nG entries of the *cell*
        # cohort vector, to wif() here -- an indexing slip; on mpdta it moves this SE by 0.2%.
        overall_inf = inf_e @ weights + _wif_att(labels, pgg, att_e, g_unit, w)
        counts = np.array([r.size for r in rows_by])
        return RawAggregate(kind, labels, att_e, inf_e, overall, overall_inf, counts)

    if kind == "dynamic":
        e_cell = time - group
        include = np.ones(group.size, dtype=bool)
        eseq = np.unique(e_cell)
        if balance_e is not None:
            t_max, t_min = float(time.max()), float(periods[0])
            include = (t_max - group) >= balance_e
            eseq = np.unique(e_cell[include])
            eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - t_max + t_min)]
        eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
        if eseq.size == 0:
            raise ValueError("no event time left after min_e / max_e / balance_e")
        att_list, inf_list, counts = [], [], []
        for e in eseq:
            rows = np.flatnonzero((e_cell == e) & include)
            est, psi = _weighted(rows, att, inf, pg_cell, group, g_unit, w)
            att_list.append(est)
            inf_list.append(psi)
            counts.append(rows.size)
        att_e, inf_e = np.array(att_list), np.column_stack(inf_list)
        epos = eseq >= 0
        if epos.any():
            overall = float(att_e[epos].mean())
            overall_inf = inf_e[:, epos].mean(axis=1)
        else:
            overall, overall_inf = float("nan"), np.full(n, np.nan)
        return RawAggregate(
            kind, eseq.astype(np.int64), att_e, inf_e, overall, overall_inf, np.array(counts)
        )

    if kind == "calendar":
        times = np.unique(time[time >= group.min()])
        labels_list, att_list, inf_list, counts = [], [], [], []
        for t1 in times:
            rows = np.flatnonzero((time == t1) & post)
            if rows.size == 0:
                continue
            est, psi = _weighted(rows, att, inf, pg_cell, group, g_unit, w)
            labels_list.append(t1)
            att_list.append(est)
            inf_list.append(psi)
            counts.append(rows.size)
        att_e, inf_e = np.array(att_list), np.column_stack(inf_list)
        overall = float(att_e.mean())
        overall_inf = inf_e.mean(axis=1)
        return RawAggregate(
            kind,
            np.array(labels_list, dtype=np.int64),
            att_e,
            inf_e,
            overall,
            overall_inf,
            np.array(counts),
        )

    raise ValueError(f"kind must be one of simple, dynamic, group, calendar; got {kind!r}")
