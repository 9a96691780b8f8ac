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

Two representations of the (cells x units) influence functions
---------------------------------------------------------------
:class:`DenseInfluence` holds the matrix itself (general path: covariates, any estimator).

:class:`FactoredInfluence` is the exact closed form used without covariates (the "fast
path"). With ``x = ~1`` every 2x2 estimator (``reg``, ``ipw``, ``dr``, ``dr_imp``) is the
difference between the weighted mean outcome change of cohort ``g`` and of the comparison
units, and its influence function is, for unit ``i`` in cohort block ``h`` (units are
sorted by cohort, so blocks are contiguous),

.. math:: \\psi_{k i} = \\frac{n w_i}{W_g}\\, a_k' (Y_i - \\bar Y_g)\\,[h = g]
          - \\frac{n w_i}{W_{C_k}}\\, a_k' (Y_i - \\bar Y_{C_k})\\,[h \\in C_k],

with ``a_k = e_t - e_base`` (T-vector), ``W`` weight totals and ``Y-bar`` weighted means of
the cohort and of the comparison set ``C_k``. Writing ``Y_i = Y-bar_h + Z_i`` this is
``psi_ki = coef[k, h] . u_i`` with unit features ``u_i = w_i (Z_i, 1)`` (T + 1 values, the
same for every cell) and cell coefficients ``coef[k, h]`` (T + 1 values per block). Because
every ``a_k`` sums to zero, ``Z_i`` may also be shifted by any per-unit constant: it is
centred within the unit (over periods) and within its block (over units), which keeps the
features small and the sums below well conditioned.

Everything downstream is computed from this factorisation without forming the K x n matrix:
linear combinations of cells (aggregations, with the cohort-share estimation terms, which
are ``w_i`` times a per-block constant, i.e. the last feature) combine coefficients; the
analytic variance is ``sum_h coef_h S_h coef_h'`` with the per-block Gram ``S_h = U_h' U_h``
((T+1) x (T+1), computed once in O(n T^2)); the multiplier bootstrap multiplies each chunk
of multipliers by the features of a block, then by its coefficients (the same multipliers as
the dense product). Only cluster-robust inference forms the (clusters x cells) sums.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

from impact.estimate._drdid import ESTIMATORS, CellFailure
from impact.estimate._staggered_data import PanelArrays
from impact.estimate.inference import (
    BootstrapResult,
    MultiplierKind,
    analytic_se,
    analytic_vcov,
    multiplier_bootstrap,
    multiplier_bootstrap_product,
)

# ----------------------------------------------------------------------------- units


@dataclass(frozen=True, eq=False)
class UnitBlocks:
    """Units sorted by cohort: block ``h`` holds units ``bounds[h]:bounds[h + 1]``, whose first
    treated period is ``block_g[h]`` (ascending, ``inf`` = never treated last)."""

    bounds: np.ndarray  # (H + 1,) int64
    block_g: np.ndarray  # (H,) float
    w: np.ndarray  # (n,) unit weights (mean one)

    @classmethod
    def from_panel(cls, panel: PanelArrays) -> UnitBlocks:
        block_g, starts = np.unique(panel.g, return_index=True)
        bounds = np.append(starts, panel.n).astype(np.int64)
        return cls(bounds=bounds, block_g=block_g, w=panel.w)

    @property
    def n(self) -> int:
        return int(self.w.size)

    @property
    def n_blocks(self) -> int:
        return int(self.block_g.size)

    def ranges(self) -> list[tuple[int, int]]:
        b = self.bounds
        return [(int(b[h]), int(b[h + 1])) for h in range(b.size - 1)]

    @cached_property
    def block_id(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_blocks), np.diff(self.bounds))

    @cached_property
    def weight_totals(self) -> np.ndarray:
        return np.array([self.w[a:b].sum() for a, b in self.ranges()])


def _cluster_codes(cluster: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes of the clusters in sorted label order (as :func:`inference.cluster_sums`)."""
    _, codes = np.unique(np.asarray(cluster), return_inverse=True)
    return codes, int(codes.max()) + 1 if codes.size else 0


# ----------------------------------------------------------------------------- influence


class DenseInfluence:
    """Influence functions of ``k`` estimators as a dense ``(k, n)`` matrix."""

    def __init__(self, mat: np.ndarray, blocks: UnitBlocks) -> None:
        self.mat = mat
        self.blocks = blocks

    @property
    def k(self) -> int:
        return int(self.mat.shape[0])

    @property
    def n(self) -> int:
        return int(self.mat.shape[1])

    def dense(self) -> np.ndarray:
        """The ``(k, n)`` matrix (NaN rows for estimators that could not be computed)."""
        return self.mat

    def rows(self, idx: np.ndarray) -> DenseInfluence:
        return DenseInfluence(self.mat[idx], self.blocks)

    def combine(self, weights: np.ndarray, q: np.ndarray | None = None) -> DenseInfluence:
        """Influence of ``weights @ theta`` (rows of ``weights``: E x k), plus ``w_i q[e, h]``
        for units ``i`` of block ``h`` (``q``: E x H; the cohort-share estimation terms)."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        out = np.empty((weights.shape[0], self.n))
        for e, row in enumerate(weights):
            nz = np.flatnonzero(row != 0)  # NaN weights count (and propagate)
            out[e] = row @ self.mat if nz.size == self.k else row[nz] @ self.mat[nz]
            if q is not None and np.any(q[e] != 0):
                out[e] += q[e, self.blocks.block_id] * self.blocks.w
        return DenseInfluence(out, self.blocks)

    def analytic_se(self, cluster: np.ndarray | None) -> np.ndarray:
        return analytic_se(self.mat.T, cluster)

    def analytic_vcov(self, cluster: np.ndarray | None) -> np.ndarray:
        return analytic_vcov(self.mat.T, cluster)

    def bootstrap(
        self,
        cluster: np.ndarray | None,
        *,
        reps: int,
        seed: int | None,
        alpha: float,
        multiplier: MultiplierKind,
    ) -> BootstrapResult:
        return multiplier_bootstrap(
            self.mat.T, cluster, reps=reps, seed=seed, alpha=alpha, multiplier=multiplier
        )


class _Basis:
    """Unit features ``u_i = w_i (Z_i, 1)`` (n x (T+1)) shared by factored influences, with
    their per-block Gram matrices and single-precision copy computed once, on demand."""

    def __init__(self, blocks: UnitBlocks, feat: np.ndarray) -> None:
        self.blocks = blocks
        self.feat = feat
        self._ranges = blocks.ranges()

    @cached_property
    def gram(self) -> np.ndarray:
        """``S_h = U_h' U_h`` per block, (H, F, F)."""
        f = self.feat.shape[1]
        out = np.empty((self.blocks.n_blocks, f, f))
        for h, (a, b) in enumerate(self._ranges):
            u = self.feat[a:b]
            out[h] = u.T @ u
        return out

    @cached_property
    def feat32(self) -> np.ndarray:
        return self.feat.astype(np.float32)


class FactoredInfluence:
    """Influence functions ``psi[k, i] = coef[k, block(i)] . u_i`` (see the module docstring).

    ``coef`` is (k, H, T + 1); ``nan`` flags estimators that could not be computed (their
    coefficients are zero; they are NaN in :meth:`dense` and in every statistic)."""

    def __init__(self, coef: np.ndarray, nan: np.ndarray, basis: _Basis) -> None:
        self.coef = coef
        self.nan = nan
        self.basis = basis
        self.blocks = basis.blocks
        self._dense: np.ndarray | None = None
        self._sums: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def k(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n(self) -> int:
        return self.blocks.n

    def _block_rows(self, h: int) -> np.ndarray:
        """Estimators with a nonzero coefficient on block ``h``."""
        return np.flatnonzero(np.any(self.coef[:, h, :] != 0, axis=1))

    def dense(self) -> np.ndarray:
        """The ``(k, n)`` matrix, formed once on request (the general path's layout)."""
        if self._dense is None:
            out = np.empty((self.k, self.n))
            for h, (a, b) in enumerate(self.basis._ranges):
                out[:, a:b] = self.coef[:, h, :] @ self.basis.feat[a:b].T
            out[self.nan] = np.nan
            self._dense = out
        return self._dense

    def rows(self, idx: np.ndarray) -> FactoredInfluence:
        return FactoredInfluence(self.coef[idx], self.nan[idx], self.basis)

    def combine(self, weights: np.ndarray, q: np.ndarray | None = None) -> FactoredInfluence:
        """As :meth:`DenseInfluence.combine`: coefficients combine, ``q`` adds to the last
        (``w_i``) feature."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        n_out = weights.shape[0]
        bad = np.isnan(weights).any(axis=1) | np.any(weights[:, self.nan] != 0, axis=1)
        if q is not None:
            bad |= np.isnan(q).any(axis=1)
        wz = np.where(np.isnan(weights), 0.0, weights)
        wz[:, self.nan] = 0.0
        _, n_h, n_f = self.coef.shape
        coef = (wz @ self.coef.reshape(self.k, n_h * n_f)).reshape(n_out, n_h, n_f)
        if q is not None:
            coef[:, :, n_f - 1] += np.where(np.isnan(q), 0.0, q)
        coef[bad] = 0.0
        return FactoredInfluence(coef, bad, self.basis)

    def analytic_se(self, cluster: np.ndarray | None) -> np.ndarray:
        """``sqrt(sum_c S_c^2) / n``; without clusters ``sqrt(coef_h S_h coef_h') / n``."""
        if cluster is not None:
            sums = self._cluster_sums(cluster)
            se = np.sqrt(np.einsum("ij,ij->j", sums, sums)) / float(self.n)
        else:
            gram = self.basis.gram
            q = np.zeros(self.k)
            for h in range(self.blocks.n_blocks):
                rows = self._block_rows(h)
                if rows.size:
                    c = self.coef[rows, h, :]
                    q[rows] += np.einsum("kf,kf->k", c @ gram[h], c)
            se = np.sqrt(np.maximum(q, 0.0)) / float(self.n)
        se[self.nan] = np.nan
        return se

    def analytic_vcov(self, cluster: np.ndarray | None) -> np.ndarray:
        """``sum_c S_c S_c' / n^2``; without clusters ``sum_h coef_h S_h coef_h' / n^2``."""
        if cluster is not None:
            sums = self._cluster_sums(cluster)
            v = sums.T @ sums
        else:
            gram = self.basis.gram
            v = np.zeros((self.k, self.k))
            for h in range(self.blocks.n_blocks):
                rows = self._block_rows(h)
                if rows.size:
                    c = self.coef[rows, h, :]
                    v[np.ix_(rows, rows)] += c @ gram[h] @ c.T
        v = (v + v.T) / 2.0 / float(self.n) ** 2
        v[self.nan, :] = np.nan
        v[:, self.nan] = np.nan
        return v

    def _cluster_sums(self, cluster: np.ndarray) -> np.ndarray:
        """``(C, k)`` cluster sums of the influence functions (clusters in sorted order)."""
        if self._sums is not None and self._sums[0] is cluster:
            return self._sums[1]
        codes, n_cl = _cluster_codes(cluster)
        feat = self.basis.feat
        sums = np.zeros((n_cl, self.k))
        for h, (a, b) in enumerate(self.basis._ranges):
            rows = self._block_rows(h)
            if rows.size == 0 or b == a:
                continue
            present, local = np.unique(codes[a:b], return_inverse=True)
            ind = sparse.csr_matrix(
                (np.ones(b - a), (local, np.arange(b - a))), shape=(present.size, b - a)
            )
            sums[np.ix_(present, rows)] += np.asarray(ind @ feat[a:b]) @ self.coef[rows, h, :].T
        self._sums = (cluster, sums)
        return sums

    def bootstrap(
        self,
        cluster: np.ndarray | None,
        *,
        reps: int,
        seed: int | None,
        alpha: float,
        multiplier: MultiplierKind,
    ) -> BootstrapResult:
        """Multiplier bootstrap with the multipliers of :func:`inference.multiplier_bootstrap`:
        without clusters, each chunk of multipliers times a block's features (float32, as the
        dense product), then times the block's coefficients."""
        if cluster is not None:
            sums32 = self._cluster_sums(cluster).astype(np.float32)
            n_cl = sums32.shape[0]

            def product(v: np.ndarray) -> np.ndarray:
                return v @ sums32

        else:
            n_cl = self.n
            feat32 = self.basis.feat32
            parts = []
            for h, (a, b) in enumerate(self.basis._ranges):
                rows = self._block_rows(h)
                if rows.size:
                    parts.append((a, b, rows, self.coef[rows, h, :].T))

            def product(v: np.ndarray) -> np.ndarray:
                out = np.zeros((v.shape[0], self.k))
                for a, b, rows, coef_t in parts:
                    pv = (v[:, a:b] @ feat32[a:b]).astype(np.float64)
                    out[:, rows] += pv @ coef_t
                return out

        return multiplier_bootstrap_product(
            product,
            n_units=self.n,
            n_clusters=n_cl,
            k=self.k,
            nan_cols=self.nan,
            reps=reps,
            seed=seed,
            alpha=alpha,
            multiplier=multiplier,
        )


Influence = DenseInfluence | FactoredInfluence


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True, eq=False)
class CellEstimates:
    """All ATT(g,t) cells, in cohort-major then time order (R's order)."""

    group: np.ndarray  # (K,) float cohort
    time: np.ndarray  # (K,) int64 period
    base: np.ndarray  # (K,) int64 base period
    att: np.ndarray  # (K,) NaN where the cell failed
    inf: Influence  # (K, n) influence functions, one row per cell (NaN row if failed)
    n_treated: np.ndarray  # (K,) int64
    n_control: np.ndarray  # (K,) int64
    failures: tuple[tuple[float, int, str], ...]


def base_period_index(periods: np.ndarray, g: float, anticipation: int) -> int:
    """Index of the last period with ``period + anticipation < g`` (``g - anticipation - 1``)."""
    idx = np.flatnonzero(periods + anticipation < g)
    if idx.size == 0:  # excluded upstream: such cohorts are dropped
        raise ValueError(f"cohort {g:g} has no pre-treatment period")
    return int(idx[-1])


def fast_path_applies(panel: PanelArrays) -> bool:
    """The factored (closed-form) path is exact without covariates; it also needs every
    cohort block to carry positive weight (otherwise the general path reports what R does)."""
    if panel.x is not None:
        return False
    return bool(np.all(UnitBlocks.from_panel(panel).weight_totals > 0))


def _cell_layout(
    panel: PanelArrays,
    gval: float,
    ti: int,
    pret: int,
    *,
    control_group: str,
    anticipation: int,
    tfac: int,
) -> tuple[list[slice], int, int]:
    """Unit blocks of a cell (treated block and comparison block, or one block containing
    both), the offset of the treated units in it and their number."""
    g_unit, n, periods = panel.g, panel.n, panel.periods
    a = int(np.searchsorted(g_unit, gval, side="left"))
    b = int(np.searchsorted(g_unit, gval, side="right"))
    if control_group == "never_treated":
        lo = int(np.searchsorted(g_unit, np.inf, side="left"))
    else:  # never treated or first treated after max(t, base) + anticipation
        cutoff = periods[max(ti, pret) + tfac] + anticipation
        lo = int(np.searchsorted(g_unit, cutoff, side="right"))
    # treated block [a, b) and comparison block [lo, n) minus the cohort itself
    blocks = [slice(lo, n)] if a >= lo else [slice(a, b), slice(lo, n)]
    t_off = a - lo if a >= lo else 0
    return blocks, t_off, b - a


def _take(arr: np.ndarray, blocks: list[slice]) -> np.ndarray:
    parts = [arr[b] for b in blocks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def compute_cells(
    panel: PanelArrays,
    *,
    control_group: str,
    est_method: str,
    anticipation: int,
    base_period: str,
    fast: bool | None = None,
) -> CellEstimates:
    """Estimate every ATT(g,t) cell (units of ``panel`` are sorted by cohort).

    ``fast``: use the factored closed form (None: whenever :func:`fast_path_applies`; True
    raises if it does not apply; False: the general per-cell estimators)."""
    use_fast = fast_path_applies(panel) if fast is None else fast
    if use_fast and not fast_path_applies(panel):
        raise ValueError("the factored path needs no covariates and positive cohort weights")
    kw = dict(
        control_group=control_group,
        est_method=est_method,
        anticipation=anticipation,
        base_period=base_period,
    )
    return _cells_factored(panel, **kw) if use_fast else _cells_general(panel, **kw)


def _cells_general(
    panel: PanelArrays,
    *,
    control_group: str,
    est_method: str,
    anticipation: int,
    base_period: str,
) -> CellEstimates:
    """Every cell through its 2x2 estimator; the dense (K x n) influence matrix."""
    periods = panel.periods
    n = panel.n
    n_t = periods.size
    tfac = 1 if base_period == "varying" else 0
    estimator = ESTIMATORS[est_method]
    ones = np.ones(n)
    y = panel.y

    n_cells = panel.groups.size * (n_t - tfac)
    group = np.empty(n_cells)
    time = np.empty(n_cells, dtype=np.int64)
    base = np.empty(n_cells, dtype=np.int64)
    att = np.full(n_cells, np.nan)
    inf = np.zeros((n_cells, n))
    n_tr = np.zeros(n_cells, dtype=np.int64)
    n_co = np.zeros(n_cells, dtype=np.int64)
    failures: list[tuple[float, int, str]] = []

    with _single_threaded_blas():
        k = 0
        for gval in panel.groups:
            pret_g = base_period_index(periods, gval, anticipation)
            for ti in range(n_t - tfac):
                cur = ti + tfac
                pret = pret_g if (base_period == "universal" or gval <= periods[cur]) else ti
                group[k], time[k], base[k] = gval, periods[cur], periods[pret]
                if pret == cur:  # universal base period: normalised to zero
                    att[k] = 0.0
                    k += 1
                    continue
                blocks, t_off, size_g = _cell_layout(
                    panel,
                    gval,
                    ti,
                    pret,
                    control_group=control_group,
                    anticipation=anticipation,
                    tfac=tfac,
                )
                n_cell = sum(bl.stop - bl.start for bl in blocks)
                d = np.zeros(n_cell)
                d[t_off : t_off + size_g] = 1.0
                n_tr[k] = size_g
                n_co[k] = n_cell - size_g
                dy = _take(y[cur], blocks) - _take(y[pret], blocks)
                if panel.x is None:
                    xmat = ones[:n_cell, None]
                else:
                    xmat = np.column_stack(
                        [ones[:n_cell], _take(panel.x[min(pret, cur)], blocks)]
                    )
                try:
                    res = estimator(dy, d, xmat, _take(panel.w, blocks))
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
        inf=DenseInfluence(inf, UnitBlocks.from_panel(panel)),
        n_treated=n_tr,
        n_control=n_co,
        failures=tuple(failures),
    )


# A propensity score (the cohort's weighted share of the cell) outside this range sends the
# cell of ipw/dr/dr_imp through its estimator to reproduce its failure rules (overlap at
# 0.999, trimming at 0.995, logit clipping) exactly; inside it they cannot trigger.
_SAFE_SHARE = (1e-6, 0.99)


def _cells_factored(
    panel: PanelArrays,
    *,
    control_group: str,
    est_method: str,
    anticipation: int,
    base_period: str,
) -> CellEstimates:
    """Every cell in closed form (no covariates): means by cohort block and the factored
    influence functions (module docstring)."""
    periods = panel.periods
    n = panel.n
    n_t = periods.size
    tfac = 1 if base_period == "varying" else 0
    blocks = UnitBlocks.from_panel(panel)
    ranges = blocks.ranges()
    n_blocks = blocks.n_blocks
    sizes = np.diff(blocks.bounds)
    wsum = blocks.weight_totals
    w = panel.w

    # features: outcome centred within unit (over periods), then within block (weighted,
    # over units); ybar: the blocks' weighted means of the unit-centred outcome
    ybar = np.empty((n_blocks, n_t))
    feat = np.empty((n, n_t + 1))
    for h, (a, b) in enumerate(ranges):
        z = panel.y_units[a:b] - panel.y_units[a:b].mean(axis=1, keepdims=True)
        ybar[h] = (w[a:b] @ z) / wsum[h]
        z -= ybar[h]
        np.multiply(z, w[a:b, None], out=feat[a:b, :n_t])
        feat[a:b, n_t] = w[a:b]
    basis = _Basis(blocks, feat)

    n_cells = panel.groups.size * (n_t - tfac)
    group = np.empty(n_cells)
    time = np.empty(n_cells, dtype=np.int64)
    base = np.empty(n_cells, dtype=np.int64)
    att = np.full(n_cells, np.nan)
    coef = np.zeros((n_cells, n_blocks, n_t + 1))
    nan = np.zeros(n_cells, dtype=bool)
    n_tr = np.zeros(n_cells, dtype=np.int64)
    n_co = np.zeros(n_cells, dtype=np.int64)
    failures: list[tuple[float, int, str]] = []
    all_blocks = np.arange(n_blocks)
    never = n_blocks - 1  # prepare_panel guarantees never-treated units for this choice

    k = 0
    for gval in panel.groups:
        hg = int(np.searchsorted(blocks.block_g, gval))
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
                ctrl = all_blocks[never:]
            else:
                cutoff = periods[max(ti, pret) + tfac] + anticipation
                lo = int(np.searchsorted(blocks.block_g, cutoff, side="right"))
                ctrl = all_blocks[lo:]
                ctrl = ctrl[ctrl != hg]
            n_tr[k] = sizes[hg]
            n_co[k] = int(sizes[ctrl].sum())
            failure = None
            if n_co[k] == 0:
                failure = "no comparison units"
            elif est_method != "reg":
                share = wsum[hg] / (wsum[hg] + wsum[ctrl].sum())
                if not _SAFE_SHARE[0] < share < _SAFE_SHARE[1]:
                    failure = _estimator_failure(
                        panel, est_method, gval, ti, cur, pret, control_group, anticipation, tfac
                    )
            if failure is not None:
                failures.append((float(gval), int(periods[cur]), failure))
                nan[k] = True
                k += 1
                continue
            w_c = wsum[ctrl].sum()
            mean_c = (wsum[ctrl] @ ybar[ctrl]) / w_c
            d_c = mean_c[cur] - mean_c[pret]
            att[k] = (ybar[hg, cur] - ybar[hg, pret]) - d_c
            s_t, s_c = n / wsum[hg], n / w_c
            coef[k, hg, cur], coef[k, hg, pret] = s_t, -s_t
            coef[k, ctrl, cur] = -s_c
            coef[k, ctrl, pret] = s_c
            coef[k, ctrl, n_t] = -s_c * ((ybar[ctrl, cur] - ybar[ctrl, pret]) - d_c)
            k += 1
    return CellEstimates(
        group=group,
        time=time,
        base=base,
        att=att,
        inf=FactoredInfluence(coef, nan, basis),
        n_treated=n_tr,
        n_control=n_co,
        failures=tuple(failures),
    )


def _estimator_failure(
    panel: PanelArrays,
    est_method: str,
    gval: float,
    ti: int,
    cur: int,
    pret: int,
    control_group: str,
    anticipation: int,
    tfac: int,
) -> str | None:
    """Run the cell's own estimator; its failure message, or None if it succeeds."""
    blocks, t_off, size_g = _cell_layout(
        panel, gval, ti, pret, control_group=control_group, anticipation=anticipation, tfac=tfac
    )
    n_cell = sum(bl.stop - bl.start for bl in blocks)
    d = np.zeros(n_cell)
    d[t_off : t_off + size_g] = 1.0
    y = panel.y_units
    dy = _take(y[:, cur], blocks) - _take(y[:, pret], blocks)
    try:
        ESTIMATORS[est_method](dy, d, np.ones((n_cell, 1)), _take(panel.w, blocks))
    except CellFailure as exc:
        return str(exc)
    return None


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Per-cell linear algebra is (n x k)'(n x k) with small k: memory-bound, and a threaded
    BLAS only adds synchronisation (badly so on a loaded machine). Limit it to one thread
    for the cell loop when threadpoolctl is installed (it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
