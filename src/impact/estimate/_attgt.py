"""Group-time average treatment effects ATT(g,t): the loop over (g,t) cells.

Port of R ``did::compute.att_gt2`` for balanced panels. For cohort ``g`` and period ``t``
the cell compares the outcome change between a base period and ``t`` for units first treated
in ``g`` with the comparison units, using one of the 2x2 estimators of :mod:`._drdid`:

* base period: ``varying`` -- post-treatment cells (``g <= t``) use ``g - anticipation - 1``
  (the last period with ``period + anticipation < g``), pre-treatment cells use ``t - 1``;
  ``universal`` -- every cell uses ``g - anticipation - 1`` and the cell ``t`` equal to it is
  set to 0 by construction;
* comparison units: ``never_treated`` -- ``g = inf``; ``not_yet_treated`` -- never treated or
  ``g > max(t, base) + anticipation`` (other than cohort ``g`` itself);
* covariates are taken in the earlier of the two periods of the cell (R ``did`` >= 2.2).

The per-cell influence function is rescaled by ``n / n_cell`` (units outside the cell have
zero influence), which makes the cells' influence functions comparable on the full sample
and lets aggregations and the bootstrap stack them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from impact.estimate._drdid import ESTIMATORS, CellFailure
from impact.estimate._staggered_data import PanelArrays


@dataclass(frozen=True, eq=False)
class CellEstimates:
    """All ATT(g,t) cells, in cohort-major then time order (R's order)."""

    group: np.ndarray  # (K,) float cohort
    time: np.ndarray  # (K,) int64 period
    base: np.ndarray  # (K,) int64 base period
    att: np.ndarray  # (K,) NaN where the cell failed
    inf: np.ndarray  # (K, n) influence function, one row per cell (NaN row if failed)
    n_treated: np.ndarray  # (K,) int64
    n_control: np.ndarray  # (K,) int64
    failures: tuple[tuple[float, int, str], ...]


def base_period_index(periods: np.ndarray, g: float, anticipation: int) -> int:
    """Index of the last period with ``period + anticipation < g`` (``g - anticipation - 1``)."""
    idx = np.flatnonzero(periods + anticipation < g)
    if idx.size == 0:  # excluded upstream: such cohorts are dropped
        raise ValueError(f"cohort {g:g} has no pre-treatment period")
    return int(idx[-1])


def compute_cells(
    panel: PanelArrays,
    *,
    control_group: str,
    est_method: str,
    anticipation: int,
    base_period: str,
) -> CellEstimates:
    """Estimate every ATT(g,t) cell (units of ``panel`` are sorted by cohort)."""
    periods = panel.periods
    n = panel.n
    n_t = periods.size
    tfac = 1 if base_period == "varying" else 0
    estimator = ESTIMATORS[est_method]
    g_unit = panel.g  # ascending, inf (never treated) last
    start_never = int(np.searchsorted(g_unit, np.inf, side="left"))
    ones = np.ones(n)

    n_cells = panel.groups.size * (n_t - tfac)
    group = np.empty(n_cells)
    time = np.empty(n_cells, dtype=np.int64)
    base = np.empty(n_cells, dtype=np.int64)
    att = np.full(n_cells, np.nan)
    inf = np.zeros((n_cells, n))
    n_tr = np.zeros(n_cells, dtype=np.int64)
    n_co = np.zeros(n_cells, dtype=np.int64)
    failures: list[tuple[float, int, str]] = []

    def take(arr: np.ndarray, blocks: list[slice]) -> np.ndarray:
        parts = [arr[b] for b in blocks]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    with _single_threaded_blas():
        k = 0
        for gval in panel.groups:
            a = int(np.searchsorted(g_unit, gval, side="left"))
            b = int(np.searchsorted(g_unit, gval, side="right"))
            pret_g = base_period_index(periods, gval, anticipation)
            for ti in range(n_t - tfac):
                cur = ti + tfac
                pret = pret_g if (base_period == "universal" or gval <= periods[cur]) else ti
                group[k], time[k], base[k] = gval, periods[cur], periods[pret]
                if pret == cur:  # universal base period: normalised to zero
                    att[k] = 0.0
                    k += 1
                    continue
                if control_group == "never_treated":
                    lo = start_never
                else:  # never treated or first treated after max(t, base) + anticipation
                    cutoff = periods[max(ti, pret) + tfac] + anticipation
                    lo = int(np.searchsorted(g_unit, cutoff, side="right"))
                # treated block [a, b) and comparison block [lo, n) minus the cohort itself
                blocks = [slice(lo, n)] if a >= lo else [slice(a, b), slice(lo, n)]
                n_cell = sum(bl.stop - bl.start for bl in blocks)
                d = np.zeros(n_cell)
                t_off = a - lo if a >= lo else 0
                d[t_off : t_off + (b - a)] = 1.0
                n_tr[k] = b - a
                n_co[k] = n_cell - (b - a)
                dy = take(panel.y[cur], blocks) - take(panel.y[pret], blocks)
                if panel.x is None:
                    xmat = ones[:n_cell, None]
                else:
                    xmat = np.column_stack(
                        [ones[:n_cell], take(panel.x[min(pret, cur)], blocks)]
                    )
                try:
                    res = estimator(dy, d, xmat, take(panel.w, blocks))
                except CellFailure as exc:
                    failures.append((float(gval), int(periods[cur]), str(exc)))
                    inf[k] = np.nan
                    k += 1
                    continue
                att[k] = res.att
                scaled = (n / n_cell) * res.inf
                pos = 0
                for bl in blocks:
                    size = bl.stop - bl.start
                    inf[k, bl] = scaled[pos : pos + size]
                    pos += size
                k += 1
    return CellEstimates(
        group=group,
        time=time,
        base=base,
        att=att,
        inf=inf,
        n_treated=n_tr,
        n_control=n_co,
        failures=tuple(failures),
    )


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Per-cell linear algebra is (n x k)'(n x k) with small k: memory-bound, and a threaded
    BLAS only adds synchronisation (badly so on a loaded machine). Limit it to one thread
    for the cell loop when threadpoolctl is installed (it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
