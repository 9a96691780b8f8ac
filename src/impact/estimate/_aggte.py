"""Aggregation of ATT(g,t) into summary parameters, with their influence functions.

Port of R ``did::compute.aggte`` (Callaway & Sant'Anna 2021, section 3). Cells are weighted
by the cohort shares :math:`p_g = E_n[w 1\\{G = g\\}]`. Because these shares are estimated, the
influence function of a share-weighted average :math:`\\theta = \\sum_k p_k a_k / \\sum_k p_k`
carries, besides :math:`\\sum_k (p_k/\\sum p) \\psi_k`, the term of R's ``wif``:

.. math:: \\frac{1}{\\sum_k p_k} \\sum_k (w 1\\{G = g_k\\} - p_k)(a_k - \\theta)
          = \\frac{w}{\\sum_k p_k} \\sum_{k:\\, g_k = G} (a_k - \\theta),

(the :math:`p_k` terms cancel), computed here in closed form, O(n) per aggregate, instead of
R's ``n x k`` matrix.

Every aggregate is a linear combination of the cells plus such a term, ``w_i`` times a
constant per cohort: the influence functions are obtained by
``inf.combine(weights, q)`` (``weights``: elements x cells, ``q``: elements x cohort blocks),
so the same code serves the dense influence matrix and its factored form
(:mod:`impact.estimate._attgt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from impact.estimate._attgt import Influence

AggregationKind = Literal["simple", "dynamic", "group", "calendar"]


@dataclass(frozen=True, eq=False)
class RawAggregate:
    kind: str
    labels: np.ndarray  # (E,) event times / cohorts / periods; empty for "simple"
    att: np.ndarray  # (E,)
    inf: Influence  # (E, n) influence functions of the elements
    overall_att: float
    overall_inf: Influence  # (1, n)
    n_cells: np.ndarray  # (E,) number of ATT(g,t) averaged per element


def _wif_q(
    labels: np.ndarray, pg: np.ndarray, att: np.ndarray, block_g: np.ndarray
) -> np.ndarray:
    """``wif(keepers) %*% att[keepers]`` of R ``did`` in closed form: unit ``i`` of cohort
    block ``h`` gets ``w_i * q[h]``; returns ``q`` (H,)."""
    total = pg.sum()
    theta = float(pg @ att) / total
    uniq, inv = np.unique(labels, return_inverse=True)
    c = np.bincount(inv, weights=att - theta, minlength=uniq.size)
    pos = np.clip(np.searchsorted(block_g, uniq), 0, block_g.size - 1)
    hit = block_g[pos] == uniq
    q = np.zeros(block_g.size)
    q[pos[hit]] = c[hit] / total
    return q


def aggregate(
    kind: AggregationKind,
    *,
    group: np.ndarray,
    time: np.ndarray,
    att: np.ndarray,
    inf: Influence,
    g_unit: np.ndarray,
    w: np.ndarray,
    periods: np.ndarray,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    balance_e: int | None = None,
    na_rm: bool = False,
) -> RawAggregate:
    """Aggregate cells (``inf``: their influence functions, one row per cell) as R
    ``aggte(type=kind)``."""
    n_all = att.size
    cells = np.arange(n_all)
    nan = np.isnan(att)
    if nan.any():
        if not na_rm:
            raise ValueError(
                f"{int(nan.sum())} ATT(g,t) are missing (cells that could not be estimated); "
                "pass na_rm=True to aggregate the others"
            )
        cells = cells[~nan]
    group, time, att = group[cells], time[cells], att[cells]
    post = group <= time
    if kind == "group":
        # cohorts without any post-treatment cell drop out (R, na.rm branch)
        with_post = np.unique(group[post])
        keep = np.isin(group, with_post)
        cells, group, time, att, post = cells[keep], group[keep], time[keep], att[keep], post[keep]
    if not post.any():
        raise ValueError("no post-treatment ATT(g,t) to aggregate")

    glist = np.unique(group)
    pg_of = {g: float(np.mean(w * (g_unit == g))) for g in glist}
    pg_cell = np.array([pg_of[g] for g in group])
    block_g = inf.blocks.block_g

    def weighted(rows: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Share-weighted average of the cells ``rows``: estimate, cell weights, wif term."""
        p = pg_cell[rows]
        weights = p / p.sum()
        est = float(weights @ att[rows])
        wrow = np.zeros(n_all)
        wrow[cells[rows]] = weights
        return est, wrow, _wif_q(group[rows], p, att[rows], block_g)

    def elements(parts: list[tuple[float, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, Influence]:
        """Estimates of the elements and their influence functions, one row each."""
        att_e = np.array([p[0] for p in parts])
        wmat = np.array([p[1] for p in parts]).reshape(len(parts), n_all)
        qmat = np.array([p[2] for p in parts]).reshape(len(parts), block_g.size)
        return att_e, inf.combine(wmat, qmat)

    if kind == "simple":
        est, wrow, q = weighted(np.flatnonzero(post))
        return RawAggregate(
            kind,
            np.empty(0),
            np.empty(0),
            inf.combine(np.zeros((0, n_all))),
            est,
            inf.combine(wrow[None, :], q[None, :]),
            np.empty(0, np.int64),
        )

    if kind == "group":
        labels = glist
        rows_by = [np.flatnonzero((group == g) & post) for g in labels]
        att_e = np.array([att[r].mean() for r in rows_by])
        # equal weights within a cohort (its shares are equal): no wif term
        wmat = np.zeros((labels.size, n_all))
        for e, r in enumerate(rows_by):
            wmat[e, cells[r]] = 1.0 / r.size
        inf_e = inf.combine(wmat)
        pgg = np.array([pg_of[g] for g in labels])
        weights = pgg / pgg.sum()
        overall = float(weights @ att_e)
        # weight-estimation term over the cohorts, as csdid 0.4.3. R did's compute.aggte
        # (seen up to v2.x) passes `group = group`, i.e. the first nG entries of the *cell*
        # cohort vector, to wif() here -- an indexing slip; on mpdta it moves this SE by 0.2%.
        overall_inf = inf_e.combine(weights[None, :], _wif_q(labels, pgg, att_e, block_g)[None])
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
        parts, counts = [], []
        for e in eseq:
            rows = np.flatnonzero((e_cell == e) & include)
            parts.append(weighted(rows))
            counts.append(rows.size)
        att_e, inf_e = elements(parts)
        epos = eseq >= 0
        if epos.any():
            overall = float(att_e[epos].mean())
            overall_inf = inf_e.combine((epos / epos.sum())[None, :])
        else:
            overall = float("nan")
            overall_inf = inf_e.combine(np.full((1, eseq.size), np.nan))
        return RawAggregate(
            kind, eseq.astype(np.int64), att_e, inf_e, overall, overall_inf, np.array(counts)
        )

    if kind == "calendar":
        times = np.unique(time[time >= group.min()])
        labels_list, parts, counts = [], [], []
        for t1 in times:
            rows = np.flatnonzero((time == t1) & post)
            if rows.size == 0:
                continue
            labels_list.append(t1)
            parts.append(weighted(rows))
            counts.append(rows.size)
        att_e, inf_e = elements(parts)
        overall = float(att_e.mean())
        overall_inf = inf_e.combine(np.full((1, att_e.size), 1.0 / att_e.size))
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
