"""Nearest-neighbour search within one exact stratum (internal).

Conventions
-----------
Controls arrive in *tie-key order*: local control index ``j`` is the control's rank by its
seeded tie key, so "smaller index" is the deterministic tie-break. Every search returns, per
treated unit, candidates sorted by ``(distance, control index)`` with ``-1`` / ``inf`` padding.

Two searchers share one interface:

- :class:`LineSearcher` (1-D logit score): two sorted copies of the controls, by
  ``(score, key)`` and by ``(score, -key)``; ``np.searchsorted`` gives each treated unit's
  insertion point, its ``k`` nearest lie among the ``k`` next controls to the right (first
  copy) and the ``k`` previous ones to the left (second copy, so equal scores on the left are
  also visited in ascending key order). The ``2k`` candidates are sorted per row. Cost
  ``O(n_c log n_c + n_t k log k)``, memory ``O(n_c + n_t k)``: no all-pairs matrix.
- :class:`TreeSearcher` (Mahalanobis): ``scipy.spatial.cKDTree`` on the whitened control
  features, built from controls in key order (so the result does not depend on input row
  order); ties at exactly equal distance are broken by key among the candidates the tree
  returns (a tie that straddles the k-th neighbour may not pick the smallest key, but the
  choice is still a deterministic function of the data and seed).

Each searcher also has a sequential greedy step (``take_sequential``) that
:func:`match_greedy` falls back on for dense problems.

:func:`match_with_replacement` and :func:`match_greedy` implement the two matching rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

REASON_MATCHED = 0
REASON_NO_CONTROLS = 1
REASON_CALIPER = 2
REASON_EXHAUSTED = 3
REASONS = {
    REASON_NO_CONTROLS: "no_controls",
    REASON_CALIPER: "caliper",
    REASON_EXHAUSTED: "exhausted",
}


class Searcher(Protocol):
    n_controls: int

    def query(
        self, points: np.ndarray, k: int, available: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def take_sequential(
        self, points: np.ndarray, available: np.ndarray, caliper: float
    ) -> tuple[np.ndarray, np.ndarray]: ...


def _sort_rows(cand: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (distance, control index), keep the first ``k`` columns."""
    n, m = cand.shape
    if m == 0:
        return np.full((n, k), -1, np.int64), np.full((n, k), np.inf)
    key = np.where(cand >= 0, cand, np.iinfo(np.int64).max)
    row = np.repeat(np.arange(n), m)
    order = np.lexsort((key.ravel(), dist.ravel(), row)).reshape(n, m) - (np.arange(n) * m)[:, None]
    cand = np.take_along_axis(cand, order, axis=1)[:, :k]
    dist = np.take_along_axis(dist, order, axis=1)[:, :k]
    if cand.shape[1] < k:
        pad = k - cand.shape[1]
        cand = np.pad(cand, ((0, 0), (0, pad)), constant_values=-1)
        dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
    return cand, dist


class LineSearcher:
    """k nearest controls on a 1-D score by sorted search (see module docstring)."""

    def __init__(self, score: np.ndarray) -> None:
        self.score = np.asarray(score, dtype=np.float64)
        self.n_controls = self.score.size
        n = self.n_controls
        # controls arrive in key order, so a stable sort on the score breaks ties by key
        self._asc = np.argsort(self.score, kind="stable")  # score up, key up: walk right
        # score up, key down (walk left): stable sort of the reversed array, mapped back
        self._desc = n - 1 - np.argsort(self.score[::-1], kind="stable")

    def query(
        self, points: np.ndarray, k: int, available: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(points, dtype=np.float64)
        right_ix, left_ix = self._asc, self._desc
        if available is not None:
            right_ix = right_ix[available[right_ix]]
            left_ix = left_ix[available[left_ix]]
        n = right_ix.size
        sorted_score = self.score[right_ix]
        pos = np.searchsorted(sorted_score, t, side="left")
        steps = np.arange(k)
        r = pos[:, None] + steps[None, :]
        l_ = pos[:, None] - 1 - steps[None, :]
        r_ok = r < n
        l_ok = l_ >= 0
        cand = np.concatenate(
            [
                np.where(r_ok, right_ix[np.minimum(r, max(n - 1, 0))] if n else -1, -1),
                np.where(l_ok, left_ix[np.maximum(l_, 0)] if n else -1, -1),
            ],
            axis=1,
        )
        dist = np.where(cand >= 0, np.abs(t[:, None] - self.score[np.maximum(cand, 0)]), np.inf)
        return _sort_rows(cand, dist, k)

    def take_sequential(
        self, points: np.ndarray, available: np.ndarray, caliper: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sequential greedy step: in the given order each unit takes its nearest available
        control within ``caliper``; ``available`` is updated in place.

        Next-available pointers with path compression (a union-find over the two sorted
        copies) make each step near O(1); the per-unit loop is plain Python, used only when
        the vectorised passes stall (see :func:`match_greedy`).

        Returns the chosen control per unit (-1: none) and the distance to the nearest
        available control at the unit's turn (inf: none left).
        """
        n = self.n_controls
        asc, desc = self._asc, self._desc
        rank_asc = np.empty(n, np.int64)
        rank_asc[asc] = np.arange(n)
        rank_desc = np.empty(n, np.int64)
        rank_desc[desc] = np.arange(n)
        t = np.asarray(points, dtype=np.float64)
        ins = np.searchsorted(self.score[asc], t, side="left").tolist()
        idx = np.arange(n)
        # right pointers over asc positions (sentinel n); left over desc positions + 1
        # (sentinel 0): an unavailable slot points to its neighbour in the walking direction
        par_r = np.where(available[asc], idx, idx + 1).tolist() + [n]
        par_l = [0, *np.where(available[desc], idx + 1, idx).tolist()]
        score, asc_l, desc_l = self.score.tolist(), asc.tolist(), desc.tolist()
        ra, rd = rank_asc.tolist(), rank_desc.tolist()
        chosen = [-1] * len(ins)
        nearest = [np.inf] * len(ins)
        for u, (p, tu) in enumerate(zip(ins, t.tolist(), strict=True)):
            r = _find(par_r, p)
            left = _find(par_l, p) - 1
            best, bd = -1, np.inf
            if r < n:
                best = asc_l[r]
                bd = score[best] - tu
            if left >= 0:
                c = desc_l[left]
                d = tu - score[c]
                if d < bd or (d == bd and c < best):
                    best, bd = c, d
            nearest[u] = bd
            if best >= 0 and bd <= caliper:
                chosen[u] = best
                par_r[ra[best]] = ra[best] + 1
                par_l[rd[best] + 1] = rd[best]
        out = np.array(chosen, dtype=np.int64)
        available[out[out >= 0]] = False
        return out, np.array(nearest, dtype=np.float64)


def _find(parent: list[int], i: int) -> int:
    """Root of ``i`` in a pointer forest, compressing the path on the way."""
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


class TreeSearcher:
    """k nearest controls in Euclidean distance on whitened features (cKDTree)."""

    def __init__(self, x: np.ndarray, upper_bound: float | None = None) -> None:
        from scipy.spatial import cKDTree

        self._tree_cls = cKDTree
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.n_controls = self.x.shape[0]
        self.upper = np.inf if upper_bound is None else float(np.nextafter(upper_bound, np.inf))
        self._tree = cKDTree(self.x) if self.n_controls else None

    def query(
        self, points: np.ndarray, k: int, available: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        n_t = pts.shape[0]
        if available is None or available.all():
            tree, sub = self._tree, None
            n_av = self.n_controls
        else:
            sub = np.flatnonzero(available)
            n_av = sub.size
            tree = self._tree_cls(self.x[sub]) if n_av else None
        kk = min(k, n_av)
        if kk == 0 or tree is None:
            return np.full((n_t, k), -1, np.int64), np.full((n_t, k), np.inf)
        dist, idx = tree.query(pts, k=kk, distance_upper_bound=self.upper)
        dist = np.asarray(dist, dtype=np.float64).reshape(n_t, kk)
        idx = np.asarray(idx, dtype=np.int64).reshape(n_t, kk)
        missing = idx >= n_av
        if sub is not None:
            idx = sub[np.minimum(idx, n_av - 1)]
        idx = np.where(missing, -1, idx)
        dist = np.where(missing, np.inf, dist)
        return _sort_rows(idx, dist, k)

    def take_sequential(
        self, points: np.ndarray, available: np.ndarray, caliper: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sequential greedy step on the full tree: per unit, query a growing number of
        neighbours until an available control is found (see ``LineSearcher``)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        n = self.n_controls
        chosen = np.full(pts.shape[0], -1, np.int64)
        nearest = np.full(pts.shape[0], np.inf)
        for u in range(pts.shape[0]):
            kq = min(8, n)
            while kq:
                d, i = self._tree.query(pts[u], k=kq, distance_upper_bound=self.upper)
                d, i = np.atleast_1d(d), np.atleast_1d(i)
                valid = i < n
                d, i = d[valid], i[valid]
                o = np.lexsort((i, d))
                d, i = d[o], i[o]
                free = available[i]
                if free.any():
                    j = int(np.argmax(free))
                    nearest[u] = d[j]
                    if d[j] <= caliper:
                        chosen[u] = i[j]
                        available[i[j]] = False
                    break
                if kq >= n or not valid.all():  # all controls seen, or the rest beyond caliper
                    break
                kq = min(n, kq * 4)
        return chosen, nearest


@dataclass(frozen=True)
class StratumMatch:
    """Matches of one stratum, in local indices (treated and controls of the stratum)."""

    treated: np.ndarray  # int64, local treated index per pair
    control: np.ndarray  # int64, local control index per pair
    distance: np.ndarray  # float64 per pair
    rank: np.ndarray  # int64, 1..k' per pair (order of the twin for its treated unit)
    reason: np.ndarray  # int8 per treated unit, REASON_*
    nearest: np.ndarray  # float64 per treated unit: distance to its first candidate (nan: none)


def _no_controls(n_t: int) -> StratumMatch:
    e = np.zeros(0, np.int64)
    return StratumMatch(
        e, e, np.zeros(0), e, np.full(n_t, REASON_NO_CONTROLS, np.int8), np.full(n_t, np.nan)
    )


def match_with_replacement(
    searcher: Searcher, points: np.ndarray, k: int, caliper: float
) -> StratumMatch:
    """Each treated unit takes its ``k`` nearest controls within ``caliper``, independently."""
    n_t = len(points)
    if searcher.n_controls == 0:
        return _no_controls(n_t)
    cand, dist = searcher.query(points, k)
    ok = (cand >= 0) & (dist <= caliper)
    rows, cols = np.nonzero(ok)
    reason = np.where(ok.any(axis=1), REASON_MATCHED, REASON_CALIPER).astype(np.int8)
    nearest = np.where(cand[:, 0] >= 0, dist[:, 0], np.nan)
    return StratumMatch(
        rows.astype(np.int64), cand[rows, cols], dist[rows, cols], cols + 1, reason, nearest
    )


def match_mahvars(
    searcher: LineSearcher,
    points: np.ndarray,
    t_maha: np.ndarray,
    c_maha: np.ndarray,
    k: int,
    caliper: float,
    n_candidates: int,
) -> StratumMatch:
    """MatchIt's ``mahvars`` with replacement: each treated unit takes the ``k`` controls
    nearest in Mahalanobis distance (Euclidean on the whitened ``*_maha`` rows) among its
    ``n_candidates`` score-nearest controls within ``caliper`` on the score. Ties by control
    index (tie key). ``nearest`` and the unmatched reason refer to the score, as in
    :func:`match_with_replacement`, so the same treated units are matched."""
    n_t = len(points)
    if searcher.n_controls == 0:
        return _no_controls(n_t)
    cand, dps = searcher.query(points, min(max(n_candidates, k), searcher.n_controls))
    ok = (cand >= 0) & (dps <= caliper)
    dm = np.full(cand.shape, np.inf)
    chunk = max(1, 2_000_000 // max(cand.shape[1] * max(t_maha.shape[1], 1), 1))
    for lo in range(0, n_t, chunk):  # bounded memory: rows x candidates x features
        sl = slice(lo, lo + chunk)
        diff = c_maha[np.maximum(cand[sl], 0)] - t_maha[sl, None, :]
        dm[sl] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    dm = np.where(ok, dm, np.inf)
    top, dist = _sort_rows(np.where(ok, cand, -1), dm, k)
    got = (top >= 0) & np.isfinite(dist)
    rows, cols = np.nonzero(got)
    reason = np.where(got.any(axis=1), REASON_MATCHED, REASON_CALIPER).astype(np.int8)
    nearest = np.where(cand[:, 0] >= 0, dps[:, 0], np.nan)
    return StratumMatch(
        rows.astype(np.int64), top[rows, cols], dist[rows, cols], cols + 1, reason, nearest
    )


def _first_duplicate(proposal: np.ndarray) -> int:
    """Position of the first entry equal to an earlier one (``len`` if none)."""
    _, first, inverse = np.unique(proposal, return_index=True, return_inverse=True)
    dup = first[inverse] != np.arange(proposal.size)
    return int(np.argmax(dup)) if dup.any() else proposal.size


#: Below this share of pending units accepted by a vectorised pass, the rest of the round is
#: matched by the sequential step (dense problems: many collisions, passes would be O(n_t)).
STALL_FRACTION = 0.25


def match_greedy(
    searcher: Searcher, points: np.ndarray, k: int, caliper: float, order: np.ndarray
) -> StratumMatch:
    """Greedy matching without replacement, in ``k`` rounds, treated units in ``order``.

    Rule (MatchIt's ``replace = FALSE``): in order, each treated unit takes its nearest
    available control within the caliper, and that control is removed. For ``k > 1`` this is
    done in rounds (first twin for every unit, then the second, ...); a unit that gets no twin
    in a round takes part in no later round.

    Implementation: vectorised passes. In a pass all pending units propose their nearest
    available control at once and the longest prefix (in order) whose proposals are pairwise
    distinct is accepted; this is exactly what the sequential rule does for that prefix,
    because removing a control that is not a unit's nearest does not change its nearest. The
    first pending unit is always accepted. When controls far outnumber treated units (the
    cohort case) collisions are rare and a round takes one or two passes. When a pass accepts
    less than ``STALL_FRACTION`` of the pending units (dense problems), the rest of the round
    is done by the searcher's sequential step (a per-unit loop with near O(1) pointer updates),
    which gives the same result as the passes would.
    """
    n_t = len(points)
    if searcher.n_controls == 0:
        return _no_controls(n_t)
    available = np.ones(searcher.n_controls, dtype=bool)
    reason = np.zeros(n_t, np.int8)
    nearest = np.full(n_t, np.nan)
    out_t: list[np.ndarray] = []
    out_c: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    out_r: list[np.ndarray] = []

    def record(
        rnd: int, units: np.ndarray, cand: np.ndarray, dist: np.ndarray, n_free: int
    ) -> np.ndarray:
        """Store the outcome of ``units`` (taken in order); returns the matched units."""
        got = cand >= 0
        if rnd == 1:
            nearest[units] = np.where(np.isfinite(dist), dist, np.nan)
            # controls still free at each unit's turn: none left -> "exhausted"
            free_at_turn = n_free - (np.cumsum(got) - got)
            reason[units[~got]] = np.where(
                free_at_turn[~got] > 0, REASON_CALIPER, REASON_EXHAUSTED
            ).astype(np.int8)
        out_t.append(units[got])
        out_c.append(cand[got])
        out_d.append(dist[got])
        out_r.append(np.full(int(got.sum()), rnd, np.int64))
        return units[got]

    active = np.asarray(order, dtype=np.int64)
    for rnd in range(1, k + 1):
        pending = active
        kept: list[np.ndarray] = []
        while pending.size:
            n_free = int(available.sum())
            cand, dist = searcher.query(points[pending], 1, available)
            cand, dist = cand[:, 0], dist[:, 0]
            ok = (cand >= 0) & (dist <= caliper)
            m = _first_duplicate(np.where(ok, cand, -1 - np.arange(cand.size)))
            taken = np.where(ok[:m], cand[:m], -1)
            kept.append(record(rnd, pending[:m], taken, dist[:m], n_free))
            available[taken[taken >= 0]] = False
            pending = pending[m:]
            if pending.size and m < STALL_FRACTION * (m + pending.size):
                n_free = int(available.sum())
                cand, dist = searcher.take_sequential(points[pending], available, caliper)
                kept.append(record(rnd, pending, cand, dist, n_free))
                pending = pending[:0]
        active = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        if not active.size:
            break
    cat = np.concatenate
    return StratumMatch(
        cat(out_t) if out_t else np.zeros(0, np.int64),
        cat(out_c) if out_c else np.zeros(0, np.int64),
        cat(out_d) if out_d else np.zeros(0),
        cat(out_r) if out_r else np.zeros(0, np.int64),
        reason,
        nearest,
    )
