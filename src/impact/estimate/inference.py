"""Inference from influence functions: analytic variance, multiplier bootstrap, Wald test.

Generic over the estimator. Every function here takes an ``influence`` matrix of shape
``(n_units, k)`` whose rows are the estimated influence functions :math:`\\psi_i` of ``k``
estimators :math:`\\hat\\theta_j`, scaled so that

.. math:: \\hat\\theta - \\theta = \\frac{1}{n} \\sum_{i=1}^{n} \\psi_i + o_p(n^{-1/2}),

which is the convention of R ``did``/``DRDID`` (their ``inffunc`` / ``att.inf.func``). Units may
be grouped into clusters (for example a treated person with its statistical twins, or a
region); the variance then uses the cluster sums :math:`S_c = \\sum_{i \\in c} \\psi_i`:

.. math:: \\widehat{\\mathrm{Var}}(\\hat\\theta) = \\frac{1}{n^2} \\sum_c S_c S_c^\\top ,

which without clustering (every unit its own cluster) is R ``did``'s analytic variance
``t(inffunc) %*% inffunc / n^2``. No small-sample (``C/(C-1)``) correction is applied, as in R.

The multiplier bootstrap (Callaway & Sant'Anna 2021, section 4 and Remark 10) perturbs the
cluster sums with i.i.d. mean-zero, unit-variance multipliers :math:`V_{bc}`:
:math:`\\hat\\theta^*_b - \\hat\\theta = \\frac{1}{n} \\sum_c V_{bc} S_c`. Standard errors are the
interquartile range of the draws divided by that of the standard normal (robust to heavy
tails, as in R ``did::mboot``); the uniform critical value is the :math:`1-\\alpha` quantile of
the sup-t statistic :math:`\\max_j |\\hat\\theta^*_{bj} - \\hat\\theta_j| / \\hat\\sigma_j`. All
quantiles are R's ``type = 1`` (inverse of the empirical distribution function). Multipliers
are Rademacher (:math:`\\pm 1`, what R ``did``/``BMisc::multiplier_bootstrap`` draws) or
Mammen's two-point distribution. Draws are made ``reps x n_clusters`` in chunks of bounded
memory, and the random stream does not depend on the chunking, so a seed fixes the result.
:func:`multiplier_bootstrap_product` draws the same multipliers for influence functions held
in a factored form (the caller supplies the product of a block of multipliers with them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from scipy import sparse, stats
from scipy.linalg import blas

__all__ = [
    "BootstrapResult",
    "MultiplierKind",
    "WaldTest",
    "analytic_se",
    "analytic_vcov",
    "bootstrap_draws",
    "cluster_sums",
    "multiplier_bootstrap",
    "multiplier_bootstrap_product",
    "wald_test",
]

MultiplierKind = Literal["rademacher", "mammen"]

#: R's ``sqrt(.Machine$double.eps) * 10``: standard errors at or below it are reported as NaN.
TINY_SE = float(np.sqrt(np.finfo(float).eps) * 10.0)

# Normal-scale of the interquartile range: qnorm(.75) - qnorm(.25).
_IQR_NORMAL = float(stats.norm.ppf(0.75) - stats.norm.ppf(0.25))

# Mammen (1993) two-point multipliers: mean 0, variance 1, third moment 1.
_SQRT5 = float(np.sqrt(5.0))
_MAMMEN_LOW = (1.0 - _SQRT5) / 2.0
_MAMMEN_HIGH = (1.0 + _SQRT5) / 2.0
_MAMMEN_P_LOW = (_SQRT5 + 1.0) / (2.0 * _SQRT5)

# Bytes of multipliers held at once (one chunk of reps x n_clusters float64).
_CHUNK_BYTES = 64 * 1024**2


class BootstrapResult(NamedTuple):
    """Result of :func:`multiplier_bootstrap`: ``se, crit_uniform = multiplier_bootstrap(...)``.

    Attributes
    ----------
    se : ndarray, shape (k,)
        Bootstrap standard errors; NaN for degenerate (all-zero or NaN) columns.
    crit_uniform : float
        Critical value of the sup-t uniform band over the non-degenerate columns (NaN if none).
    """

    se: np.ndarray
    crit_uniform: float


class WaldTest(NamedTuple):
    """Wald chi-square test of ``theta = 0``."""

    statistic: float
    df: int
    pvalue: float


def _as_influence(influence: np.ndarray) -> np.ndarray:
    inf = np.asarray(influence, dtype=np.float64)
    if inf.ndim == 1:
        inf = inf[:, None]
    if inf.ndim != 2:
        raise ValueError(f"influence must be 1-D or 2-D (n_units x k); got shape {inf.shape}")
    return inf


def cluster_sums(
    influence: np.ndarray, cluster: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Sum the influence function within clusters.

    Parameters
    ----------
    influence : ndarray, shape (n_units, k) or (n_units,)
    cluster : ndarray, shape (n_units,), or None
        Cluster label of each unit (any hashable dtype). ``None``: each unit is its own cluster.

    Returns
    -------
    sums : ndarray, shape (n_clusters, k)
        Cluster sums, clusters in sorted label order (``influence`` itself when ``cluster`` is
        None).
    n_clusters : int
    """
    inf = _as_influence(influence)
    if cluster is None:
        return inf, inf.shape[0]
    cl = np.asarray(cluster)
    if cl.shape != (inf.shape[0],):
        raise ValueError(
            f"cluster must have one label per unit ({inf.shape[0]}); got shape {cl.shape}"
        )
    _, codes = np.unique(cl, return_inverse=True)
    n_clusters = int(codes.max()) + 1 if codes.size else 0
    indicator = sparse.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))),
        shape=(n_clusters, codes.size),
    )
    return np.asarray(indicator @ inf), n_clusters


def analytic_vcov(influence: np.ndarray, cluster: np.ndarray | None = None) -> np.ndarray:
    """Analytic (cluster-robust) variance matrix ``sum_c S_c S_c' / n^2``, shape (k, k)."""
    inf = _as_influence(influence)
    n = inf.shape[0]
    sums, _ = cluster_sums(inf, cluster)
    return _gram(sums) / float(n) ** 2


def _gram(a: np.ndarray) -> np.ndarray:
    """``a' a`` by BLAS syrk (half the work of a general product), symmetrised."""
    if a.dtype != np.float64 or not (a.flags.f_contiguous or a.flags.c_contiguous):
        a = np.asfortranarray(a, dtype=np.float64)
    if a.flags.f_contiguous:
        upper = blas.dsyrk(1.0, a, trans=1)  # a is n x k in Fortran order: a' a
    else:
        upper = blas.dsyrk(1.0, a.T, trans=0)  # a.T is k x n in Fortran order: (a.T)(a.T)'
    return np.triu(upper) + np.triu(upper, 1).T


def analytic_se(influence: np.ndarray, cluster: np.ndarray | None = None) -> np.ndarray:
    """Analytic (cluster-robust) standard errors ``sqrt(sum_c S_c^2) / n``, shape (k,).

    Without clusters this is R ``did``'s ``sqrt(colMeans(inffunc^2) / n)``.
    """
    inf = _as_influence(influence)
    n = inf.shape[0]
    sums, _ = cluster_sums(inf, cluster)
    return np.sqrt(np.einsum("ij,ij->j", sums, sums)) / float(n)


def _multipliers(
    rng: np.random.Generator, reps: int, n_clusters: int, kind: MultiplierKind
) -> np.ndarray:
    """``reps x n_clusters`` multipliers; consecutive calls continue one stream row by row."""
    if kind == "rademacher":
        words = -(-n_clusters // 64)  # 64 signs per raw 64-bit word, whole words per row
        raw = rng.bit_generator.random_raw(reps * words).astype("<u8", copy=False)
        bits = np.unpackbits(raw.view(np.uint8), bitorder="little")
        bits = bits.reshape(reps, words * 64)[:, :n_clusters]
        return 1.0 - 2.0 * bits.astype(np.float32)
    u = rng.random((reps, n_clusters))
    return np.where(u < _MAMMEN_P_LOW, _MAMMEN_LOW, _MAMMEN_HIGH).astype(np.float32)


def _check_boot_args(reps: int, multiplier: str) -> None:
    if reps < 2:
        raise ValueError(f"reps must be at least 2; got {reps}")
    if multiplier not in ("rademacher", "mammen"):
        raise ValueError(f"multiplier must be 'rademacher' or 'mammen'; got {multiplier!r}")


def _bres(
    influence: np.ndarray,
    cluster: np.ndarray | None,
    reps: int,
    seed: int | np.random.Generator | None,
    multiplier: MultiplierKind,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """R's ``bres = sqrt(C) * colMeans(V * S)``; returns (bres, n, C, NaN-column mask)."""
    inf = _as_influence(influence)
    n, k = inf.shape
    nan_cols = np.isnan(inf).any(axis=0)
    if nan_cols.any():
        inf = np.where(nan_cols[None, :], 0.0, inf)
    sums, n_clusters = cluster_sums(inf, cluster)
    # single precision for the (reps x C) @ (C x k) product: twice the speed, and its
    # rounding (~1e-6 relative) is far below the Monte Carlo error of the draws (~1/sqrt(reps))
    sums32 = np.asarray(sums, dtype=np.float32)
    bres = _bres_product(lambda v: v @ sums32, n_clusters, k, reps, seed, multiplier)
    return bres, n, n_clusters, nan_cols


def _bres_product(
    product: Callable[[np.ndarray], np.ndarray],
    n_clusters: int,
    k: int,
    reps: int,
    seed: int | np.random.Generator | None,
    multiplier: MultiplierKind,
) -> np.ndarray:
    """``bres`` from ``product(V) = V @ S`` (V: a chunk of reps x C multipliers, float32)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bres = np.empty((reps, k))
    chunk = max(1, min(reps, _CHUNK_BYTES // (4 * max(n_clusters, 1))))
    for start in range(0, reps, chunk):
        stop = min(reps, start + chunk)
        v = _multipliers(rng, stop - start, n_clusters, multiplier)
        bres[start:stop] = product(v)
    bres /= np.sqrt(n_clusters)
    return bres


def bootstrap_draws(
    influence: np.ndarray,
    cluster: np.ndarray | None = None,
    *,
    reps: int = 999,
    seed: int | np.random.Generator | None = 0,
    multiplier: MultiplierKind = "rademacher",
) -> np.ndarray:
    """Multiplier-bootstrap draws of ``theta* - theta_hat``, shape (reps, k).

    The same draws as :func:`multiplier_bootstrap` with the same arguments (for percentile
    intervals, joint tests or plots). NaN columns of ``influence`` give zero draws.
    """
    _check_boot_args(reps, multiplier)
    bres, n, n_clusters, _ = _bres(influence, cluster, reps, seed, multiplier)
    return bres * (np.sqrt(n_clusters) / n)


def multiplier_bootstrap(
    influence: np.ndarray,
    cluster: np.ndarray | None = None,
    *,
    reps: int = 999,
    seed: int | np.random.Generator | None = 0,
    alpha: float = 0.05,
    multiplier: MultiplierKind = "rademacher",
) -> BootstrapResult:
    """Multiplier bootstrap standard errors and sup-t uniform critical value.

    Port of R ``did::mboot`` (its current cluster-sum form): the draws are
    ``sqrt(C) * mean_c(V_bc * S_c)``; standard error = IQR of the draws / IQR of N(0, 1), times
    ``sqrt(C) / n``; uniform critical value = type-1 quantile ``1 - alpha`` of
    ``max_j |draw_bj| / sigma_j`` over non-degenerate columns.

    Parameters
    ----------
    influence : ndarray, shape (n_units, k) or (n_units,)
        Influence functions (see the module docstring for the scaling). Columns containing NaN
        are treated as degenerate.
    cluster : ndarray, shape (n_units,), or None
        Cluster label per unit; multipliers are drawn per cluster (in sorted label order).
        None: per unit, in row order.
    reps : int
        Bootstrap repetitions (R ``biters``).
    seed : int, numpy Generator or None
        Seed of the multipliers (None: fresh OS entropy, not reproducible).
    alpha : float
        Level of the uniform band (``1 - alpha`` coverage).
    multiplier : {"rademacher", "mammen"}
        Distribution of the multipliers. R ``did`` draws Rademacher.

    Returns
    -------
    BootstrapResult
        ``(se, crit_uniform)``.
    """
    _check_boot_args(reps, multiplier)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    bres, n, n_clusters, nan_cols = _bres(influence, cluster, reps, seed, multiplier)
    return _summarise_bres(bres, n, n_clusters, nan_cols, alpha)


def multiplier_bootstrap_product(
    product: Callable[[np.ndarray], np.ndarray],
    *,
    n_units: int,
    n_clusters: int,
    k: int,
    nan_cols: np.ndarray | None = None,
    reps: int = 999,
    seed: int | np.random.Generator | None = 0,
    alpha: float = 0.05,
    multiplier: MultiplierKind = "rademacher",
) -> BootstrapResult:
    """:func:`multiplier_bootstrap` for influence functions held in a factored form.

    ``product(V)`` must return ``V @ S`` for a ``(m, n_clusters)`` float32 block ``V`` of
    multipliers, ``S`` being the ``(n_clusters, k)`` cluster sums of the influence functions
    (rows in sorted cluster order, or units in row order without clusters), with NaN columns
    replaced by zeros and flagged in ``nan_cols``. The multipliers are those
    :func:`multiplier_bootstrap` draws with the same ``seed``, ``reps`` and ``n_clusters``, so
    both give the same result up to the rounding of the product.
    """
    _check_boot_args(reps, multiplier)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    bres = _bres_product(product, n_clusters, k, reps, seed, multiplier)
    nan = np.zeros(k, dtype=bool) if nan_cols is None else np.asarray(nan_cols, dtype=bool)
    return _summarise_bres(bres, n_units, n_clusters, nan, alpha)


def _summarise_bres(
    bres: np.ndarray, n: int, n_clusters: int, nan_cols: np.ndarray, alpha: float
) -> BootstrapResult:
    """Standard errors (IQR / IQR of N(0,1)) and the sup-t critical value of the draws."""
    k = bres.shape[1]
    # non-degenerate dimensions (R: colSums(bres^2) > sqrt(eps) * 10)
    ok = ~nan_cols & (np.einsum("ij,ij->j", bres, bres) > TINY_SE)
    se = np.full(k, np.nan)
    crit = float("nan")
    if ok.any():
        q25, q75 = np.quantile(bres[:, ok], [0.25, 0.75], axis=0, method="inverted_cdf")
        b_sigma = (q75 - q25) / _IQR_NORMAL
        se[ok] = b_sigma * np.sqrt(n_clusters) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            t_abs = np.abs(bres[:, ok] / b_sigma)
        t_abs[~np.isfinite(t_abs)] = np.nan
        valid = ~np.all(np.isnan(t_abs), axis=1)
        if valid.any():
            b_t = np.nanmax(t_abs[valid], axis=1)
            crit = float(np.quantile(b_t, 1.0 - alpha, method="inverted_cdf"))
    return BootstrapResult(se=se, crit_uniform=crit)


def wald_test(estimates: np.ndarray, vcov: np.ndarray) -> WaldTest | None:
    """Wald test of ``theta = 0``: ``theta' V^{-1} theta ~ chi2(q)``.

    Returns None when ``vcov`` is empty, has NaN, or is numerically singular (reciprocal
    1-norm condition number at or below machine epsilon, R's ``rcond`` rule).
    """
    theta = np.asarray(estimates, dtype=np.float64).ravel()
    v = np.atleast_2d(np.asarray(vcov, dtype=np.float64))
    q = theta.size
    if q == 0 or v.shape != (q, q) or np.isnan(v).any() or np.isnan(theta).any():
        return None
    try:
        singular = 1.0 / np.linalg.cond(v, 1) <= np.finfo(float).eps
    except np.linalg.LinAlgError:
        singular = True
    if singular:
        return None
    stat = float(theta @ np.linalg.solve(v, theta))
    return WaldTest(statistic=stat, df=q, pvalue=float(stats.chi2.sf(stat, q)))
