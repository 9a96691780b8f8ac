"""Validation of a long panel and its one-off pivot to unit x period arrays for ATT(g,t).

Everything here is vectorised (polars to dense integer codes, numpy scatter into arrays); no
Python loop touches units or rows. Rows may come in any order: units are ordered by cohort
and id and periods by time, so results do not depend on the input order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

_MAX_NAMED = 10  # offending ids/periods quoted in an error message


@dataclass(frozen=True, eq=False)
class PanelArrays:
    """A balanced panel as arrays (units sorted by cohort, never treated last, then by id;
    periods ascending).

    Attributes
    ----------
    ids : ndarray (n,)
        Unit ids, in the unit order of all arrays (by cohort, then id).
    periods : ndarray (T,) int64
        Time periods, ascending.
    y_units : ndarray (n, T)
        Outcome, one row per unit (C-contiguous). :attr:`y` is its (T, n) transpose.
    x : ndarray (T, n, k) or None
        Covariates without the intercept, per period; None when there are none.
    g : ndarray (n,) float64
        First treated period; ``inf`` for never treated (including ``g = 0`` and ``g`` beyond
        the last period plus anticipation).
    w : ndarray (n,)
        Sampling weights normalised to mean one over the units kept.
    cluster : ndarray (n,) int64 or None
        Dense cluster codes.
    groups : ndarray
        Treatment cohorts for which ATT(g,t) are computed, ascending.
    notes : tuple of str
        Sample adjustments made (also issued as warnings).
    """

    ids: np.ndarray
    periods: np.ndarray
    y_units: np.ndarray
    x: np.ndarray | None
    g: np.ndarray
    w: np.ndarray
    cluster: np.ndarray | None
    groups: np.ndarray
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n(self) -> int:
        return int(self.g.size)

    @cached_property
    def y(self) -> np.ndarray:
        """Outcome (T, n), one contiguous row per period (for per-cell extraction)."""
        return np.ascontiguousarray(self.y_units.T)


def _to_polars(data: Any, columns: Sequence[str]) -> pl.DataFrame:
    if isinstance(data, pl.LazyFrame):
        data = data.select(columns).collect()
    if isinstance(data, pl.DataFrame):
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ValueError(f"columns not found in data: {missing}")
        return data.select(columns)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a project dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ValueError(f"columns not found in data: {missing}")
        return pl.from_pandas(data.loc[:, list(columns)].reset_index(drop=True))
    raise TypeError(f"data must be a pandas or polars DataFrame; got {type(data).__name__}")


def _name_some(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_NAMED])
    more = f" and {values.size - _MAX_NAMED} more" if values.size > _MAX_NAMED else ""
    return f"{shown}{more}"


def _integral(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise ValueError(f"column {name!r} must hold whole numbers (integer periods)")
        return values.astype(np.int64)
    raise ValueError(f"column {name!r} must be numeric (integer periods); got {values.dtype}")


def _constant_within_unit(
    values: np.ndarray,
    flat: np.ndarray | None,
    n: int,
    n_t: int,
    name: str,
    ids: np.ndarray,
) -> np.ndarray:
    """Scatter to (n, T) and check the value is the same in every period; return (n,).

    ``flat=None``: the rows are already in (unit, period) order, a reshape suffices."""
    if flat is None:
        wide = values.reshape(n, n_t)
    else:
        wide = np.empty(n * n_t, dtype=values.dtype)
        wide[flat] = values
        wide = wide.reshape(n, n_t)
    first = wide[:, 0]
    same = wide == first[:, None]
    if values.dtype.kind == "f":
        same |= np.isnan(wide) & np.isnan(first)[:, None]
    bad = ~same.all(axis=1)
    if bad.any():
        raise ValueError(
            f"column {name!r} must be constant within unit; it varies for id(s) "
            f"{_name_some(ids[bad])}"
        )
    return first.copy()


def _ordered_layout(
    ids: pl.Series, t_vals: np.ndarray, periods_raw: np.ndarray
) -> np.ndarray | None:
    """The sorted distinct ids if the rows are sorted by (id, period) with every unit observed
    once in every period (the usual layout of a balanced long panel), else None.

    Checked in a few vectorised passes; the pivot is then a reshape."""
    n_t = periods_raw.size
    n_rows = t_vals.size
    if not ids.dtype.is_numeric() or n_rows % n_t:
        return None
    n = n_rows // n_t
    if not bool((t_vals.reshape(n, n_t) == periods_raw).all()):
        return None
    wide = ids.to_numpy().reshape(n, n_t)
    first = wide[:, 0]
    if not (bool(np.all(first[1:] > first[:-1])) and bool((wide == first[:, None]).all())):
        return None
    return first.copy()


def _period_codes(t_vals: np.ndarray, periods_raw: np.ndarray) -> np.ndarray:
    """Position of each row's period among the sorted distinct periods."""
    if t_vals.dtype.kind in "iu" and periods_raw.size:
        lo, hi = int(periods_raw[0]), int(periods_raw[-1])
        if hi - lo < 4 * t_vals.size + 1024:  # a lookup table over the range of periods
            lut = np.zeros(hi - lo + 1, dtype=np.int64)
            lut[periods_raw.astype(np.int64) - lo] = np.arange(periods_raw.size)
            return lut[t_vals.astype(np.int64) - lo]
    return np.searchsorted(periods_raw, t_vals)


def _unit_codes(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of the unit ids (codes follow the sorted ids) and the sorted distinct ids.

    Ids already in non-decreasing order are coded by one pass (a cumulative count of id
    changes); otherwise by polars' dense rank (a sort)."""
    if ids.dtype.is_numeric() and ids.len() > 1:
        vals = ids.to_numpy()
        if bool(np.all(vals[1:] >= vals[:-1])):  # False on NaN: the general branch
            new = np.empty(vals.size, dtype=bool)
            new[0] = True
            np.not_equal(vals[1:], vals[:-1], out=new[1:])
            return np.cumsum(new, dtype=np.int64) - 1, vals[new]
    codes = (ids.rank("dense").cast(pl.Int64) - 1).to_numpy()
    return codes, ids.unique().sort().to_numpy()


def prepare_panel(
    data: Any,
    *,
    y: str,
    t: str,
    g: str,
    id: str,  # noqa: A002 - the user-facing column role is called "id"
    x: Sequence[str],
    weights: str | None,
    cluster: str | None,
    anticipation: int,
    control_group: str,
) -> PanelArrays:
    """Validate the long panel and pivot it (see :func:`impact.estimate.staggered.att_gt`)."""
    roles = {"y": y, "t": t, "g": g, "id": id}
    for role, col in roles.items():
        if not isinstance(col, str) or not col:
            raise TypeError(f"{role} must be a column name (str); got {col!r}")
    columns = list(dict.fromkeys([id, t, g, y, *x] + [c for c in (weights, cluster) if c]))
    df = _to_polars(data, columns)
    if df.height == 0:
        raise ValueError("data has no rows")

    # nulls in the identifying columns are errors, not silent drops
    for col in [id, t, g]:
        if df[col].null_count():
            raise ValueError(f"column {col!r} has {df[col].null_count()} missing values")

    # dense codes of the periods: position among the sorted distinct periods (few of them)
    periods_raw = df[t].unique().sort().to_numpy()
    periods = _integral(periods_raw, t)
    n_t = int(periods.size)
    t_vals = df[t].to_numpy()
    ordered = _ordered_layout(df[id], t_vals, periods_raw)
    flat: np.ndarray | None
    if ordered is not None:
        # rows sorted by id then period, every unit in every period once: no codes needed
        ids = ordered
        n = int(ids.size)
        flat = None
        i_code = None  # row r is unit r // n_t
    else:
        i_code, ids = _unit_codes(df[id])
        t_code = _period_codes(t_vals, periods_raw)
        n = int(ids.size)
        flat = i_code * n_t + t_code
        # duplicates and balance, in one bincount over the (unit, period) grid
        counts = np.bincount(flat, minlength=n * n_t).reshape(n, n_t)
        if (counts > 1).any():
            dup_units = np.flatnonzero((counts > 1).any(axis=1))
            raise ValueError(
                f"(id, time) pairs must be unique; id(s) {_name_some(ids[dup_units])} appear "
                f"more than once in a period"
            )
        if (counts == 0).any():
            short = np.flatnonzero((counts == 0).any(axis=1))
            missing_periods = np.flatnonzero((counts == 0).any(axis=0))
            example = short[0]
            raise ValueError(
                "the panel must be balanced (every unit observed in every period): "
                f"{short.size} of {n} units are missing periods, e.g. id(s) "
                f"{_name_some(ids[short])}; periods missing for some unit: "
                f"{_name_some(periods[missing_periods])}; id {ids[example]} lacks period(s) "
                f"{_name_some(periods[np.flatnonzero(counts[example] == 0)])}. "
                "Balance the panel first (drop or impute these units)."
            )

    # outcome (and covariates) pivoted once, unit-major: (n, T)
    def pivot_float(col: str) -> np.ndarray:
        vals = df[col].cast(pl.Float64).to_numpy()
        if np.isnan(vals).any():
            rows = np.flatnonzero(np.isnan(vals))
            bad = np.unique(rows // n_t if i_code is None else i_code[rows])
            raise ValueError(
                f"column {col!r} has missing or NaN values for id(s) {_name_some(ids[bad])}"
            )
        if flat is None:
            return vals.reshape(n, n_t)
        out = np.empty(n * n_t)
        out[flat] = vals
        return out.reshape(n, n_t)

    ymat = pivot_float(y)
    xmat = np.stack([pivot_float(c) for c in x], axis=2) if x else None  # (n, T, k)

    g_col = df[g]
    g_raw = g_col.to_numpy() if g_col.dtype.is_integer() else g_col.cast(pl.Float64).to_numpy()
    if (g_raw.dtype.kind == "f" and np.isnan(g_raw).any()) or (g_raw < 0).any():
        raise ValueError(f"column {g!r} must be a first treated period >= 0 (0 = never treated)")
    g_unit = _constant_within_unit(g_raw, flat, n, n_t, g, ids).astype(np.float64)
    if weights:
        w_raw = df[weights].cast(pl.Float64).to_numpy()
        if np.isnan(w_raw).any() or (w_raw < 0).any():
            raise ValueError(f"column {weights!r} must hold non-negative weights without NaN")
        w_unit = _constant_within_unit(w_raw, flat, n, n_t, weights, ids)
        if w_unit.mean() <= 0:
            raise ValueError(f"column {weights!r} must have a positive mean")
    else:
        w_unit = np.ones(n)
    cl_unit = None
    if cluster:
        if df[cluster].null_count():
            raise ValueError(f"column {cluster!r} has missing values")
        cl_codes = df.select(pl.col(cluster).rank("dense").cast(pl.Int64) - 1).to_series()
        cl_unit = _constant_within_unit(cl_codes.to_numpy(), flat, n, n_t, cluster, ids)

    return _apply_sample_rules(
        ids, periods, ymat, xmat, g_unit, w_unit, cl_unit, anticipation, control_group
    )


def _apply_sample_rules(
    ids: np.ndarray,
    periods: np.ndarray,
    ymat: np.ndarray,
    xmat: np.ndarray | None,
    g_unit: np.ndarray,
    w_unit: np.ndarray,
    cl_unit: np.ndarray | None,
    anticipation: int,
    control_group: str,
) -> PanelArrays:
    """R ``did`` (``pre_process_did2``) sample rules, in the same order (``ymat`` is (n, T),
    ``xmat`` (n, T, k))."""
    notes: list[str] = []
    g_unit = np.where(g_unit == 0, np.inf, g_unit)
    # treated only after the window (+ anticipation): never treated within it
    g_unit = np.where(g_unit > periods[-1] + anticipation, np.inf, g_unit)
    keep_t = np.ones(periods.size, dtype=bool)
    drop_latest: float | None = None
    if not np.isinf(g_unit).any():
        latest = float(g_unit.max())
        keep_t = periods < latest - anticipation
        if control_group == "never_treated":
            g_unit = np.where(g_unit == latest, np.inf, g_unit)
            notes.append(
                f"no never-treated units: the last cohort ({latest:g}) is used as the "
                f"never-treated comparison group and periods >= {latest - anticipation:g} "
                "are dropped"
            )
        else:
            drop_latest = latest
            notes.append(
                f"no never-treated units: periods >= {latest - anticipation:g} are dropped and "
                f"the last cohort ({latest:g}) serves only as a comparison group"
            )
        periods = periods[keep_t]
        ymat = ymat[:, keep_t]
        xmat = xmat[:, keep_t] if xmat is not None else None
    if periods.size < 2:
        raise ValueError("fewer than two time periods remain; ATT(g,t) needs at least two")

    early = np.isfinite(g_unit) & (g_unit <= periods[0] + anticipation)
    if early.any():
        notes.append(
            f"dropped {int(early.sum())} units already treated in the first period "
            f"{int(periods[0])}" + (f" (anticipation {anticipation})" if anticipation else "")
        )
        keep = ~early
        ids, g_unit, w_unit = ids[keep], g_unit[keep], w_unit[keep]
        cl_unit = cl_unit[keep] if cl_unit is not None else None
        ymat = ymat[keep]
        xmat = xmat[keep] if xmat is not None else None
    if g_unit.size == 0:
        raise ValueError("no units remain after dropping units treated in the first period")

    groups = np.unique(g_unit[np.isfinite(g_unit)])
    if drop_latest is not None:
        groups = groups[groups < drop_latest]
    if groups.size == 0:
        raise ValueError("no treated cohort with a pre-treatment period remains")
    if control_group == "never_treated" and not np.isinf(g_unit).any():
        raise ValueError("no never-treated units remain for control_group='never_treated'")

    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=4)
    # units ordered by cohort (never treated last), then id: every cohort and every
    # comparison group {g > c} is then a contiguous block, so cells slice instead of mask
    order = np.argsort(g_unit, kind="stable")
    if bool(np.all(order[1:] > order[:-1])):  # already in that order
        y_units = np.ascontiguousarray(ymat)
    else:
        y_units = ymat[order]
        xmat = xmat[order] if xmat is not None else None
    return PanelArrays(
        ids=ids[order],
        periods=periods,
        y_units=y_units,
        x=np.ascontiguousarray(xmat.transpose(1, 0, 2)) if xmat is not None else None,
        g=g_unit[order],
        w=w_unit[order] / w_unit.mean(),
        cluster=cl_unit[order] if cl_unit is not None else None,
        groups=groups,
        notes=tuple(notes),
    )
