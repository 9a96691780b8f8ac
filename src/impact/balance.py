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


def _covariate_matrix(
    df: pl.DataFrame, covariates: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str], list[bool]]:
    """Expand covariates: numeric as is, categoricals one-hot on all levels (sorted)."""
    from impact.twins.design import check_no_nulls, is_categorical

    missing = [c for c in covariates if c not in df.columns]
    if missing:
        raise KeyError(f"covariate columns not in the frame: {missing}")
    check_no_nulls(df, covariates)
    cols: list[np.ndarray] = []
    names: list[str] = []
    sources: list[str] = []
    binary: list[bool] = []
    for c in covariates:
        s = df.get_column(c)
        if is_categorical(s.dtype):
            v = s.cast(pl.String)
            levels = v.unique().sort().to_list()
            codes = v.cast(pl.Enum(levels)).to_physical().to_numpy()
            for i, lv in enumerate(levels):
                cols.append((codes == i).astype(np.float64))
                names.append(f"{c}={lv}")
                sources.append(c)
                binary.append(True)
        elif s.dtype.is_numeric() or s.dtype == pl.Boolean:
            x = s.cast(pl.Float64).to_numpy()
            if not np.isfinite(x).all():
                raise ValueError(f"covariate {c!r} has NaN or infinite values")
            cols.append(x)
            names.append(c)
            sources.append(c)
            binary.append(bool(np.isin(x, (0.0, 1.0)).all()))
        else:
            raise TypeError(f"covariate {c!r} has unsupported dtype {s.dtype}")
    x = np.column_stack(cols) if cols else np.zeros((df.height, 0))
    return x, names, sources, binary


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = w.sum()
    return (w @ x) / sw if sw > 0 else np.full(x.shape[1], np.nan)


def _wvar(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted variance with the reliability-weights bias correction (``n-1`` if w == 1)."""
    sw, sw2 = w.sum(), (w**2).sum()
    denom = sw - sw2 / sw if sw > 0 else 0.0
    if denom <= 0:
        return np.full(x.shape[1], np.nan)
    m = (w @ x) / sw
    return (w @ (x - m) ** 2) / denom


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
    keep = w > 0
    x, w, treated = x[keep], w[keep], treated[keep]
    wt, wc = w[treated].sum(), w[~treated].sum()
    if wt <= 0 or wc <= 0:
        return math.nan
    order = np.argsort(x, kind="stable")
    xs = x[order]
    step = np.where(treated[order], w[order] / wt, -w[order] / wc)
    gap = np.cumsum(step)
    last_of_value = np.append(xs[1:] != xs[:-1], True)  # ECDFs compared after each value
    return float(np.abs(gap[last_of_value]).max())


def _stage(
    x: np.ndarray, w: np.ndarray, treated: np.ndarray, binary: np.ndarray
) -> dict[str, np.ndarray]:
    wt = np.where(treated, w, 0.0)
    wc = np.where(~treated, w, 0.0)
    mt, mc = _wmean(x, wt), _wmean(x, wc)
    vt, vc = _wvar(x, wt), _wvar(x, wc)
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = np.where(binary, np.nan, vt / vc)
    ks = np.array([weighted_ks(x[:, j], w, treated) for j in range(x.shape[1])])
    return {
        "mean_treated": mt,
        "mean_control": mc,
        "var_treated": vt,
        "var_control": vc,
        "vr": vr,
        "ks": ks,
    }


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
    from impact.twins.propensity import treatment_vector

    if binary not in ("std", "raw"):
        raise ValueError(f"binary must be 'std' or 'raw' (got {binary!r})")
    df = _to_polars(frame)
    d = treatment_vector(df, treatment)
    x, names, sources, is_bin = _covariate_matrix(df, covariates)
    is_bin_a = np.array(is_bin, dtype=bool)

    ones = np.ones(df.height)
    stages: dict[str, np.ndarray | None] = {"before": ones, "after": None}
    if weights is not None:
        w = df.get_column(weights).to_numpy() if isinstance(weights, str) else np.asarray(weights)
        w = w.astype(np.float64)
        if w.shape != (df.height,) or not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite, non-negative and one per row")
        stages["after"] = w

    before = _stage(x, ones, d, is_bin_a)
    p_t = before["mean_treated"]
    with np.errstate(invalid="ignore"):
        sd_t = np.where(
            is_bin_a, np.sqrt(np.clip(p_t * (1 - p_t), 0, None)), np.sqrt(before["var_treated"])
        )
        sd_c = np.where(
            is_bin_a,
            np.sqrt(np.clip(before["mean_control"] * (1 - before["mean_control"]), 0, None)),
            np.sqrt(before["var_control"]),
        )
    pooled = np.sqrt((np.nan_to_num(sd_t) ** 2 + np.nan_to_num(sd_c) ** 2) / 2)
    denom = np.where(np.nan_to_num(sd_t) > 0, sd_t, pooled)
    if binary == "raw":
        denom = np.where(is_bin_a, 1.0, denom)

    cols: dict[str, Any] = {
        "covariate": names,
        "variable": sources,
        "type": ["binary" if b else "continuous" for b in is_bin],
        "sd_denom": denom,
    }
    for stage, w in stages.items():
        if w is None:
            for k in ("mean_treated", "mean_control", "smd", "vr", "ks"):
                cols[f"{k}_{stage}"] = np.full(len(names), np.nan)
            cols[f"n_treated_{stage}"] = None
            cols[f"n_control_{stage}"] = None
            cols[f"ess_control_{stage}"] = None
            continue
        st = before if stage == "before" else _stage(x, w, d, is_bin_a)
        diff = st["mean_treated"] - st["mean_control"]
        with np.errstate(divide="ignore", invalid="ignore"):
            smd = np.where(
                denom > 0, diff / denom, np.where(diff == 0, 0.0, np.inf * np.sign(diff))
            )
        cols[f"mean_treated_{stage}"] = st["mean_treated"]
        cols[f"mean_control_{stage}"] = st["mean_control"]
        cols[f"smd_{stage}"] = smd
        cols[f"vr_{stage}"] = st["vr"]
        cols[f"ks_{stage}"] = st["ks"]
        wc = w[~d]
        cols[f"n_treated_{stage}"] = int((w[d] > 0).sum())
        cols[f"n_control_{stage}"] = int((wc > 0).sum())
        cols[f"ess_control_{stage}"] = float(wc.sum() ** 2 / (wc**2).sum()) if wc.any() else 0.0

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
