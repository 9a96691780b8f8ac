"""Covariate balance before and after matching (cobalt conventions, ATT).

For every covariate (numeric columns as they are, categorical columns as one 0/1 indicator
per level, named ``column=level``) :func:`balance_table` reports, in the unadjusted sample
("before") and in the matched sample weighted by the ATT matching weights ("after"):

- the treated and control means (weighted means after matching);
- the standardised mean difference ``(mean_t - mean_c) / s``. As in cobalt for the ATT
  (``s.d.denom = "treated"``), ``s`` is the standard deviation of the covariate among *all
  treated units of the unadjusted sample*, the same denominator before and after, so the two
  SMDs differ only through the means. Continuous covariates: ``sd`` with ``n - 1``. Binary
  covariates (0/1 valued, boolean, one-hot levels): ``sqrt(p (1 - p))`` with ``p`` the treated
  proportion (cobalt's ``binary = "std"``; cobalt's own default ``binary = "raw"`` would report
  the raw difference in proportions, available here as ``binary="raw"``). If the treated SD is
  0, the pooled ``sqrt((s_t^2 + s_c^2) / 2)`` of the unadjusted sample is used; if that is 0
  too, the SMD is 0 when the means agree and infinite otherwise;
- the variance ratio ``var_t / var_c`` (continuous covariates only; weighted variances with
  the unbiased "reliability weights" correction ``sum(w) / (sum(w)^2 - sum(w^2))``, as
  cobalt's ``col_w_var``);
- the Kolmogorov-Smirnov statistic: the largest gap between the weighted empirical CDFs of
  the two groups (equal to ``scipy.stats.ks_2samp``'s statistic with unit weights).

"After" uses only units with positive weight (matched treated units, used controls); a
control serving several treated units counts with its summed weight.

Computation (exact, without sorting the candidate controls per statistic)
-------------------------------------------------------------------------
Means and variances are weighted sums. The KS statistic is evaluated at the treated units'
distinct values only: between two consecutive treated values the treated ECDF is constant
and the control ECDF non-decreasing, so the largest gap is reached at a treated value
(``F_t(u) - F_c(u)``) or just before one (``F_t(u-) - F_c(u-)``); the control ECDF is needed
at those points only. For one-hot levels and other 0/1 columns the KS statistic is the
absolute difference in proportions.

Balance over several samples (e.g. the cohorts of risk-set matching) does not need the
samples stacked: :func:`balance_parts` keeps the treated units and the used controls as rows
and *all* candidate controls as mergeable sufficient statistics (count, mean, sum of squared
deviations, level counts, and their ECDF at a grid of evaluation points, which must contain
every treated value); :func:`balance_table_from_parts` gives the same table as
:func:`balance_table` on the stacked frames. With ``ks_sample`` the candidates' ECDF (the KS
statistic *before* matching only) is estimated from a seeded random sample of that many
candidates (means, SMDs and variance ratios stay exact).

:func:`love_plot_data` reshapes the table for a love plot; :func:`balance_gate` turns it into
a pass/fail publication gate naming the offending covariates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

BinarySMD = Literal["std", "raw"]

_STAGES = ("before", "after")


def _to_polars(frame: Any) -> pl.DataFrame:
    from impact.twins.matching import to_polars

    return to_polars(frame)


def _kinds(df: pl.DataFrame, covariates: Sequence[str]) -> dict[str, str]:
    """``"numeric"`` or ``"categorical"`` per covariate; checks presence, nulls, dtype."""
    from impact.twins.design import check_no_nulls, is_categorical

    missing = [c for c in covariates if c not in df.columns]
    if missing:
        raise KeyError(f"covariate columns not in the frame: {missing}")
    check_no_nulls(df, covariates)
    out = {}
    for c in covariates:
        dtype = df.schema[c]
        if is_categorical(dtype):
            out[c] = "categorical"
        elif dtype.is_numeric() or dtype == pl.Boolean:
            out[c] = "numeric"
        else:
            raise TypeError(f"covariate {c!r} has unsupported dtype {dtype}")
    return out


def _numeric(s: pl.Series) -> np.ndarray:
    """A numeric column as a numpy array in its own (int or float) dtype; checks finiteness."""
    x = s.cast(pl.Int8).to_numpy() if s.dtype == pl.Boolean else s.to_numpy()
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"covariate {s.name!r} has NaN or infinite values")
    return x


def _level_weights(s: pl.Series, w: np.ndarray | None) -> dict[str, float]:
    """Weighted count of every level of a categorical column (unit weights if ``w`` None)."""
    if w is None:
        vc = s.cast(pl.String).value_counts() if s.dtype == pl.Categorical else s.value_counts()
        return {str(k): float(n) for k, n in vc.iter_rows()}
    v = s.cast(pl.String)
    levels = v.unique().sort().to_list()
    codes = v.cast(pl.Enum(levels))
    sums = np.bincount(codes.to_physical().to_numpy(), weights=w, minlength=len(levels))
    return {lv: float(x) for lv, x in zip(levels, sums, strict=True)}


@dataclass(frozen=True)
class CandidateStats:
    """Unit-weight statistics of a set of control units, mergeable with ``+``.

    Attributes
    ----------
    n
        Number of units.
    mean, m2
        Per numeric covariate: mean and sum of squared deviations from it.
    is01
        Per numeric covariate: every value is 0 or 1.
    levels
        Per categorical covariate: count of units per level.
    grid, le, lt
        Per numeric covariate: evaluation points (sorted) and the number of units with a
        value ``<=`` / ``<`` each point (estimated from a random sample when ``sampled``).
    """

    n: int
    mean: dict[str, float]
    m2: dict[str, float]
    is01: dict[str, bool]
    levels: dict[str, dict[str, float]]
    grid: dict[str, np.ndarray]
    le: dict[str, np.ndarray]
    lt: dict[str, np.ndarray]
    sampled: bool = False

    def __add__(self, other: CandidateStats) -> CandidateStats:
        if self.mean.keys() != other.mean.keys() or self.levels.keys() != other.levels.keys():
            raise ValueError("candidate statistics of different covariates")
        n = self.n + other.n
        mean, m2 = {}, {}
        for c in self.mean:  # Chan et al.'s pairwise update
            if not other.n:
                mean[c], m2[c] = self.mean[c], self.m2[c]
                continue
            if not self.n:
                mean[c], m2[c] = other.mean[c], other.m2[c]
                continue
            delta = other.mean[c] - self.mean[c]
            mean[c] = self.mean[c] + delta * other.n / n
            m2[c] = self.m2[c] + other.m2[c] + delta**2 * self.n * other.n / n
        for c in self.grid:
            if self.grid[c] is not other.grid[c] and not np.array_equal(
                self.grid[c], other.grid[c]
            ):
                raise ValueError(f"candidate statistics on different KS grids ({c!r})")
        levels = {}
        for c, lv in self.levels.items():
            merged = dict(lv)
            for k, v in other.levels[c].items():
                merged[k] = merged.get(k, 0.0) + v
            levels[c] = merged
        return CandidateStats(
            n=n,
            mean=mean,
            m2=m2,
            is01={c: self.is01[c] and other.is01[c] for c in self.is01},
            levels=levels,
            grid=self.grid,
            le={c: self.le[c] + other.le[c] for c in self.le},
            lt={c: self.lt[c] + other.lt[c] for c in self.lt},
            sampled=self.sampled or other.sampled,
        )


def candidate_stats(
    frame: pl.DataFrame,
    covariates: Sequence[str],
    grid: dict[str, np.ndarray],
    *,
    rows: np.ndarray | None = None,
    ks_sample: int | None = None,
    seed: int = 0,
) -> CandidateStats:
    """:class:`CandidateStats` of the rows of ``frame`` (``rows``: a boolean mask of the
    control rows; default all rows).

    ``grid`` gives, per numeric covariate, the sorted points where the ECDF is kept (they must
    include every treated value the KS statistic will be evaluated at). With ``ks_sample``
    and more rows than that, the ECDF counts are estimated from a seeded random sample of
    ``ks_sample`` rows (scaled to the number of rows).
    """
    kinds = _kinds(frame, covariates)
    if rows is not None:
        rows = np.asarray(rows, dtype=bool)
        if rows.shape != (frame.height,):
            raise ValueError("rows must be a boolean mask with one entry per row")
    n = frame.height if rows is None else int(rows.sum())
    take = None
    if ks_sample is not None and n > ks_sample:
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(n, size=ks_sample, replace=False))
    scale = n / ks_sample if take is not None else 1.0
    mean, m2, is01, levels, le, lt = {}, {}, {}, {}, {}, {}
    for c, kind in kinds.items():
        s = frame.get_column(c)
        if kind == "categorical":
            levels[c] = _level_weights(s if rows is None else s.filter(rows), None)
            continue
        x = _numeric(s) if rows is None else _numeric(s)[rows]
        xf = x.astype(np.float64, copy=False)
        # shifted by the first value: a constant column has exactly that mean, variance 0
        dev = xf - xf[0] if n else xf
        mu = float(xf[0] + dev.mean()) if n else math.nan
        mean[c] = mu
        m2[c] = float(((dev - (mu - xf[0])) ** 2).sum()) if n else 0.0
        is01[c] = bool(((x == 0) | (x == 1)).all())
        g = grid[c]
        xs = np.sort(x if take is None else x[take])
        gg = g.astype(x.dtype) if x.dtype.kind in "iu" else g  # exact: grid values are data
        le[c] = np.searchsorted(xs, gg, side="right") * scale
        lt[c] = np.searchsorted(xs, gg, side="left") * scale
    return CandidateStats(
        n=n,
        mean=mean,
        m2=m2,
        is01=is01,
        levels=levels,
        grid={c: grid[c] for c in mean},
        le=le,
        lt=lt,
        sampled=take is not None,
    )


def ks_grid(frame: pl.DataFrame, covariates: Sequence[str]) -> dict[str, np.ndarray]:
    """Sorted distinct values of every numeric covariate of ``frame`` (a KS grid)."""
    kinds = _kinds(frame, covariates)
    return {
        c: np.unique(_numeric(frame.get_column(c)).astype(np.float64))
        for c, k in kinds.items()
        if k == "numeric"
    }


@dataclass(frozen=True)
class BalanceParts:
    """Mergeable inputs of a balance table (see the module docstring).

    Attributes
    ----------
    covariates
        Covariate columns.
    treated
        The treated units: covariates and ``weight`` (the ATT weight after matching; 1 when
        no weights were given).
    controls
        Controls with positive weight after matching: covariates and ``weight`` (None when no
        weights were given).
    candidates
        Statistics of all controls (the "before" sample).
    """

    covariates: tuple[str, ...]
    treated: pl.DataFrame
    controls: pl.DataFrame | None
    candidates: CandidateStats


def _weights(df: pl.DataFrame, weights: str | np.ndarray) -> np.ndarray:
    w = df.get_column(weights).to_numpy() if isinstance(weights, str) else np.asarray(weights)
    w = w.astype(np.float64)
    if w.shape != (df.height,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite, non-negative and one per row")
    return w


def balance_parts(
    frame: Any,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | None = None,
    grid: dict[str, np.ndarray] | None = None,
    ks_sample: int | None = None,
    seed: int = 0,
) -> BalanceParts:
    """Split a frame into :class:`BalanceParts` (arguments as :func:`balance_table`).

    ``grid``: KS evaluation points per numeric covariate (default: the treated values of
    ``frame``); parts to be merged must share one grid containing all their treated values.
    ``ks_sample``, ``seed``: see :func:`candidate_stats`.
    """
    from impact.twins.propensity import treatment_vector

    df = _to_polars(frame)
    d = treatment_vector(df, treatment)
    covariates = tuple(covariates)
    _kinds(df, covariates)
    w = _weights(df, weights) if weights is not None else None
    cols = df.select(covariates)
    # row subsets by gather, which copies: a filter may return a slice that keeps the whole
    # frame's buffers alive (the treated are often the first rows)
    treated = cols[np.flatnonzero(d)].with_columns(
        pl.Series("weight", w[d] if w is not None else np.ones(int(d.sum())))
    )
    controls = None
    if w is not None:
        used = ~d & (w > 0)
        controls = cols[np.flatnonzero(used)].with_columns(pl.Series("weight", w[used]))
    if grid is None:
        grid = ks_grid(treated, covariates)
    cand = candidate_stats(cols, covariates, grid, rows=~d, ks_sample=ks_sample, seed=seed)
    return BalanceParts(covariates, treated, controls, cand)


@dataclass(frozen=True)
class _Arm:
    """Weighted statistics of one arm at one stage, per expanded covariate."""

    n: int
    sw: float
    sw2: float
    mean: np.ndarray
    var: np.ndarray


def _arm_from_rows(
    df: pl.DataFrame, w: np.ndarray, layout: list[tuple[str, str | None]]
) -> tuple[_Arm, dict[str, np.ndarray]]:
    """Statistics of rows with weights ``w`` (> 0 only) and their numeric columns."""
    keep = w > 0
    df, w = df.filter(keep), w[keep]
    sw, sw2 = float(w.sum()), float((w**2).sum())
    denom = sw - sw2 / sw if sw > 0 else 0.0
    means, vars_ = [], []
    values: dict[str, np.ndarray] = {}
    level_w: dict[str, dict[str, float]] = {}
    for c, lv in layout:
        if lv is None:
            x = _numeric(df.get_column(c)).astype(np.float64)
            values[c] = x
            x0 = x[0] if x.size else 0.0  # shift: a constant column has exactly mean x0
            mu = x0 + (w @ (x - x0)) / sw if sw > 0 else math.nan
            var = (w @ (x - mu) ** 2) / denom if denom > 0 else math.nan
        else:
            if c not in level_w:
                level_w[c] = _level_weights(df.get_column(c), w)
            mu = level_w[c].get(lv, 0.0) / sw if sw > 0 else math.nan
            var = math.nan
        means.append(mu)
        vars_.append(var)
    return _Arm(int(keep.sum()), sw, sw2, np.array(means), np.array(vars_)), values


def _arm_from_stats(st: CandidateStats, layout: list[tuple[str, str | None]]) -> _Arm:
    n = st.n
    means, vars_ = [], []
    for c, lv in layout:
        if lv is None:
            means.append(st.mean[c] if n else math.nan)
            vars_.append(st.m2[c] / (n - 1) if n > 1 else math.nan)
        else:
            means.append(st.levels[c].get(lv, 0.0) / n if n else math.nan)
            vars_.append(math.nan)
    return _Arm(n, float(n), float(n), np.array(means), np.array(vars_))


def _treated_ecdf(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of ``x`` and the weighted ECDF at them (``<=`` and ``<``)."""
    u, inv = np.unique(x, return_inverse=True)
    cw = np.cumsum(np.bincount(inv.ravel(), weights=w, minlength=u.size)) / w.sum()
    return u, cw, np.r_[0.0, cw[:-1]]


def _ks(a_le: np.ndarray, a_lt: np.ndarray, c_le: np.ndarray, c_lt: np.ndarray) -> float:
    return float(max(np.abs(a_le - c_le).max(), np.abs(a_lt - c_lt).max()))


def _ks_rows(xt: np.ndarray, wt: np.ndarray, xc: np.ndarray, wc: np.ndarray) -> float:
    """Weighted KS between two sets of rows (positive weights)."""
    if not (wt.sum() > 0 and wc.sum() > 0):
        return math.nan
    u, a_le, a_lt = _treated_ecdf(xt, wt)
    order = np.argsort(xc, kind="stable")
    xs = xc[order]
    cw = np.r_[0.0, np.cumsum(wc[order])] / wc.sum()
    c_le = cw[np.searchsorted(xs, u, side="right")]
    c_lt = cw[np.searchsorted(xs, u, side="left")]
    return _ks(a_le, a_lt, c_le, c_lt)


def _ks_stats(xt: np.ndarray, st: CandidateStats, c: str) -> float:
    """KS between treated rows (unit weights) and candidate statistics on a grid."""
    if not (xt.size and st.n):
        return math.nan
    u, a_le, a_lt = _treated_ecdf(xt, np.ones(xt.size))
    g = st.grid[c]
    pos = np.minimum(np.searchsorted(g, u), g.size - 1)
    if g.size == 0 or not np.array_equal(g[pos], u):
        raise ValueError(f"KS grid of {c!r} does not contain every treated value")
    total = st.n  # sampled counts are scaled to n
    return _ks(a_le, a_lt, st.le[c][pos] / total, st.lt[c][pos] / total)


def balance_table_from_parts(
    parts: Sequence[BalanceParts], *, binary: BinarySMD = "std"
) -> pl.DataFrame:
    """The :func:`balance_table` of the stacked samples of ``parts`` (see the module
    docstring); all parts must have the same covariates and KS grid."""
    if binary not in ("std", "raw"):
        raise ValueError(f"binary must be 'std' or 'raw' (got {binary!r})")
    if not parts:
        raise ValueError("no parts to compute balance on")
    covariates = parts[0].covariates
    if any(p.covariates != covariates for p in parts):
        raise ValueError("parts with different covariates")
    treated = pl.concat([p.treated for p in parts], how="vertical_relaxed")
    cand = parts[0].candidates
    for p in parts[1:]:
        cand = cand + p.candidates
    has_after = all(p.controls is not None for p in parts)
    if not has_after and any(p.controls is not None for p in parts):
        raise ValueError("parts with and without matching weights")
    controls = pl.concat([p.controls for p in parts], how="vertical_relaxed") if has_after else None

    # layout: numeric columns as they are, categoricals one row per level present (sorted)
    kinds = _kinds(treated, covariates)
    layout: list[tuple[str, str | None]] = []
    is_bin: list[bool] = []
    for c in covariates:
        if kinds[c] == "numeric":
            xt = _numeric(treated.get_column(c))
            layout.append((c, None))
            is_bin.append(bool(((xt == 0) | (xt == 1)).all()) and cand.is01[c])
        else:
            present = set(treated.get_column(c).cast(pl.String).unique().to_list())
            present |= {k for k, v in cand.levels[c].items() if v > 0}
            for lv in sorted(present):
                layout.append((c, lv))
                is_bin.append(True)
    names = [c if lv is None else f"{c}={lv}" for c, lv in layout]
    is_bin_a = np.array(is_bin, dtype=bool)

    ones = np.ones(treated.height)
    t_before, t_values = _arm_from_rows(treated, ones, layout)
    c_before = _arm_from_stats(cand, layout)

    def ks_before() -> np.ndarray:
        out = []
        for j, (c, lv) in enumerate(layout):
            if lv is not None:
                out.append(_binary_ks(t_before.mean[j], c_before.mean[j]))
            else:
                out.append(_ks_stats(t_values[c], cand, c))
        return np.array(out, dtype=np.float64)

    p_t = t_before.mean
    with np.errstate(invalid="ignore"):
        sd_t = np.where(is_bin_a, np.sqrt(np.clip(p_t * (1 - p_t), 0, None)), np.sqrt(t_before.var))
        p_c = c_before.mean
        sd_c = np.where(is_bin_a, np.sqrt(np.clip(p_c * (1 - p_c), 0, None)), np.sqrt(c_before.var))
    pooled = np.sqrt((np.nan_to_num(sd_t) ** 2 + np.nan_to_num(sd_c) ** 2) / 2)
    denom = np.where(np.nan_to_num(sd_t) > 0, sd_t, pooled)
    if binary == "raw":
        denom = np.where(is_bin_a, 1.0, denom)

    cols: dict[str, Any] = {
        "covariate": names,
        "variable": [c for c, _ in layout],
        "type": ["binary" if b else "continuous" for b in is_bin],
        "sd_denom": denom,
    }
    stages: dict[str, tuple[_Arm, _Arm, np.ndarray] | None] = {
        "before": (t_before, c_before, ks_before())
    }
    if controls is not None:
        wt = treated.get_column("weight").to_numpy().astype(np.float64)
        wc = controls.get_column("weight").to_numpy().astype(np.float64)
        t_after, t_vals = _arm_from_rows(treated, wt, layout)
        c_after, c_vals = _arm_from_rows(controls, wc, layout)
        wt_pos, wc_pos = wt[wt > 0], wc[wc > 0]
        ks_after = np.array(
            [
                _binary_ks(t_after.mean[j], c_after.mean[j])
                if lv is not None
                else _ks_rows(t_vals[c], wt_pos, c_vals[c], wc_pos)
                for j, (c, lv) in enumerate(layout)
            ],
            dtype=np.float64,
        )
        stages["after"] = (t_after, c_after, ks_after)
    else:
        stages["after"] = None

    for stage, arms in stages.items():
        if arms is None:
            for k in ("mean_treated", "mean_control", "smd", "vr", "ks"):
                cols[f"{k}_{stage}"] = np.full(len(names), np.nan)
            cols[f"n_treated_{stage}"] = None
            cols[f"n_control_{stage}"] = None
            cols[f"ess_control_{stage}"] = None
            continue
        t, c, ks = arms
        diff = t.mean - c.mean
        with np.errstate(divide="ignore", invalid="ignore"):
            smd = np.where(
                denom > 0, diff / denom, np.where(diff == 0, 0.0, np.inf * np.sign(diff))
            )
            vr = np.where(is_bin_a, np.nan, t.var / c.var)
        cols[f"mean_treated_{stage}"] = t.mean
        cols[f"mean_control_{stage}"] = c.mean
        cols[f"smd_{stage}"] = smd
        cols[f"vr_{stage}"] = vr
        cols[f"ks_{stage}"] = ks
        cols[f"n_treated_{stage}"] = t.n
        cols[f"n_control_{stage}"] = c.n
        cols[f"ess_control_{stage}"] = float(c.sw**2 / c.sw2) if c.sw2 > 0 else 0.0

    n = len(names)
    out = pl.DataFrame(
        {k: (v if isinstance(v, list | np.ndarray) else [v] * n) for k, v in cols.items()},
        schema_overrides={
            **{f"n_treated_{s}": pl.Int64 for s in _STAGES},
            **{f"n_control_{s}": pl.Int64 for s in _STAGES},
            **{f"ess_control_{s}": pl.Float64 for s in _STAGES},
        },
    )
    float_cols = [c for c in out.columns if out.schema[c] == pl.Float64]
    return out.with_columns(pl.col(float_cols).fill_nan(None))


def _binary_ks(p_t: float, p_c: float) -> float:
    """KS statistic of a 0/1 variable: the difference in proportions (nan if undefined)."""
    return abs(p_t - p_c) if np.isfinite(p_t) and np.isfinite(p_c) else math.nan


def weighted_ks(x: np.ndarray, w: np.ndarray, treated: np.ndarray) -> float:
    """Largest gap between the weighted ECDFs of the treated and control values of ``x``.

    Parameters
    ----------
    x
        Values (1-D).
    w
        Non-negative weights; only units with ``w > 0`` count.
    treated
        Boolean group flag.
    """
    x, w, treated = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(treated)
    keep = w > 0
    t, c = keep & treated, keep & ~treated
    return _ks_rows(x[t], w[t], x[c], w[c])


def balance_table(
    frame: Any,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | None = None,
    binary: BinarySMD = "std",
) -> pl.DataFrame:
    """Balance of ``covariates`` between treated and controls, before and after matching.

    Parameters
    ----------
    frame
        polars or pandas DataFrame with all units (treated and candidate controls).
    treatment
        Boolean or 0/1 column.
    covariates
        Numeric, boolean or categorical (string/Categorical/Enum) columns, without nulls.
    weights
        ATT matching weights (column name or array aligned with the rows), e.g. from
        :meth:`impact.twins.MatchResult.attach_weights`. ``None``: only the "before" columns
        are filled (the "after" ones are null).
    binary
        ``"std"`` (default): binary SMDs standardised by ``sqrt(p_t (1 - p_t))``; ``"raw"``:
        the raw difference in proportions.

    Returns
    -------
    polars.DataFrame
        One row per (expanded) covariate: ``covariate``, ``variable`` (source column),
        ``type`` (``"binary"``/``"continuous"``), ``sd_denom``, and for each stage in
        ``before``/``after``: ``mean_treated_<stage>``, ``mean_control_<stage>``,
        ``smd_<stage>``, ``vr_<stage>`` (null for binary), ``ks_<stage>``; plus
        ``n_treated_<stage>``/``n_control_<stage>`` (units with positive weight) and
        ``ess_control_<stage>`` (Kish effective sample size of the controls) as columns
        repeated on every row.
    """
    if binary not in ("std", "raw"):
        raise ValueError(f"binary must be 'std' or 'raw' (got {binary!r})")
    parts = balance_parts(frame, treatment=treatment, covariates=covariates, weights=weights)
    return balance_table_from_parts([parts], binary=binary)


def love_plot_data(table: pl.DataFrame) -> pl.DataFrame:
    """Long format for a love plot: ``covariate``, ``stage`` (before/after), ``smd``, ``abs_smd``.

    Rows are ordered by the absolute SMD before matching (largest first), then by stage.
    """
    order = table.select("covariate", pl.col("smd_before").abs().alias("_o")).with_row_index("_r")
    long = (
        table.select(
            "covariate", pl.col("smd_before").alias("before"), pl.col("smd_after").alias("after")
        )
        .unpivot(index="covariate", variable_name="stage", value_name="smd")
        .join(order, on="covariate", how="left")
        .with_columns(
            pl.col("smd").abs().alias("abs_smd"),
            pl.col("stage").replace_strict({"before": 0, "after": 1}).alias("_s"),
        )
        .sort(["_o", "_r", "_s"], descending=[True, False, False], nulls_last=True)
        .drop("_o", "_r", "_s")
    )
    return long


@dataclass(frozen=True)
class GateResult:
    """Outcome of :func:`balance_gate`; truthy when the gate passes.

    Attributes
    ----------
    passed : bool
    offending : tuple of str
        Covariates whose |SMD| after matching exceeds the threshold (or is undefined).
    offending_variance : tuple of str
        Continuous covariates whose variance ratio is outside ``[1/max, max]`` (only when a
        ``max_variance_ratio`` was given).
    reasons : tuple of str
        Human-readable reasons for a failure (empty when passed).
    max_abs_smd : float
        Largest |SMD| after matching.
    unmatched_share : float or None
    """

    passed: bool
    offending: tuple[str, ...]
    offending_variance: tuple[str, ...]
    reasons: tuple[str, ...]
    max_abs_smd: float
    unmatched_share: float | None
    thresholds: dict[str, float | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed


def balance_gate(
    table: pl.DataFrame,
    *,
    max_abs_smd: float = 0.1,
    max_unmatched_share: float = 0.05,
    unmatched_share: float | None = None,
    max_variance_ratio: float | None = None,
) -> GateResult:
    """Publication gate on a :func:`balance_table` (design.md, section 5).

    Fails when any covariate has |SMD after| > ``max_abs_smd`` (an undefined SMD after
    matching, e.g. no matched units, fails too), when ``unmatched_share`` (share of treated
    units lost to the caliper / empty strata, e.g. ``MatchResult.unmatched_share``) exceeds
    ``max_unmatched_share``, or, if ``max_variance_ratio`` is given, when a continuous
    covariate's variance ratio after matching is outside ``[1/max, max]``.
    ``unmatched_share=None`` skips the overlap-loss check (and says so in ``thresholds``).
    """
    if "smd_after" not in table.columns:
        raise ValueError("table must come from balance_table(...)")
    smd = table.get_column("smd_after").to_numpy().astype(np.float64)
    names = table.get_column("covariate").to_list()
    abs_smd = np.abs(smd)
    bad = ~(abs_smd <= max_abs_smd)  # NaN fails
    offending = tuple(n for n, b in zip(names, bad, strict=True) if b)
    reasons: list[str] = []
    if offending:
        worst = sorted(
            zip(names, abs_smd, strict=True), key=lambda t: -np.nan_to_num(t[1], nan=np.inf)
        )
        shown = ", ".join(
            f"{n} ({'undefined' if np.isnan(v) else f'{v:.3f}'})"
            for n, v in worst
            if n in offending
        )
        reasons.append(f"|SMD| after matching above {max_abs_smd}: {shown}")
    off_var: tuple[str, ...] = ()
    if max_variance_ratio is not None:
        vr = table.get_column("vr_after").to_numpy().astype(np.float64)
        cont = table.get_column("type").to_numpy() == "continuous"
        lo, hi = 1.0 / max_variance_ratio, max_variance_ratio
        vbad = cont & ~((vr >= lo) & (vr <= hi))
        off_var = tuple(n for n, b in zip(names, vbad, strict=True) if b)
        if off_var:
            reasons.append(
                f"variance ratio after matching outside [{lo:.2f}, {hi:.2f}]: {', '.join(off_var)}"
            )
    if unmatched_share is not None and not unmatched_share <= max_unmatched_share:
        reasons.append(
            f"share of treated units without twins {unmatched_share:.3f} above "
            f"{max_unmatched_share}"
        )
    defined = ~np.isnan(abs_smd)
    return GateResult(
        passed=not reasons,
        offending=offending,
        offending_variance=off_var,
        reasons=tuple(reasons),
        max_abs_smd=float(np.nanmax(abs_smd)) if defined.any() else math.nan,
        unmatched_share=unmatched_share,
        thresholds={
            "max_abs_smd": max_abs_smd,
            "max_unmatched_share": max_unmatched_share if unmatched_share is not None else None,
            "max_variance_ratio": max_variance_ratio,
        },
    )
