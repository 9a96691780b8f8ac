"""Matched difference-in-differences with statistical twins: the ``twins_did`` researcher API.

Estimator
---------
For each unit the change score is ``dY = outcome - mean(pre_outcomes)``. Twins are found by
propensity-score nearest-neighbour matching (:func:`impact.twins.match`, logit score, caliper
in SD of the logit, ``k`` twins, exact strata optional) on ``covariates`` *and*
``pre_outcomes``. With ``D_i = dY_i - sum_j w_ij dY_j`` (``w_ij = 1/k'_i`` for the ``k'_i``
twins of treated unit ``i``), the estimate is the mean of ``D_i`` over the ``N1`` matched
treated units: an ATT on the matched (overlap) population. Treated units without a twin within
the caliper are dropped *and reported* (``n_unmatched``, ``matches.unmatched``).

Identifying assumptions: (i) conditional parallel trends: given the matching covariates and
pre-period outcomes, the untreated change ``dY(0)`` does not depend on treatment (selection on
observables for changes); (ii) overlap for the treated units kept; (iii) no anticipation and
no spill-overs; (iv) the covariates and pre-outcomes are measured before treatment.

Variance
--------
Twins reused across treated units make the ``D_i`` dependent, so the naive variance of the
``D_i`` (which is also what a bootstrap over treated units with their twin sets gives) is too
small under replacement. We use the Abadie & Imbens (2006, Econometrica 74(1), eq. for
``V^{t}``) matching-estimator variance, conditional on covariates, generalised to variable
``k'_i``::

    V = ( sum_i (D_i - att)^2  +  sum_j (W_j^2 - Q_j) * s2_j ) / N1^2

with, for each control ``j``, ``W_j = sum_i w_ij`` (its total weight; ``K_M(j)/M`` in AI's
notation) and ``Q_j = sum_i w_ij^2`` (``K_M(j)/M^2``). The first sum is the treated-cluster
("person with its twin set") variance; the second adds the covariance created by each reused
twin (``W_j^2 - Q_j = 0`` for a control used once, so without replacement the formula is the
paired variance). ``s2_j``, the conditional variance of ``dY(0)`` at ``j``, is estimated as
in AI by matching within the controls: ``s2_j = (dY_j - dY_l)^2 / 2`` with ``l`` the control
nearest to ``j`` on the same logit score in the same exact stratum. Why this instead of a
bootstrap: the naive bootstrap is not valid for nearest-neighbour matching estimators
(Abadie & Imbens 2008), while this formula is consistent and costs one sorted search.

Limitations: the variance is conditional on the fitted propensity score (no Abadie-Imbens
2016 correction for its estimation; for the ATT that correction can go either way), the
matching bias is corrected only with ``bias_correction`` (regression on the matching
features, Abadie & Imbens 2011; otherwise the caliper and close twins keep it small), and
the conditional variance is estimated given the score rather than the full covariate vector.

The variance is also available as signed per-unit contributions ``c_u`` (``influence``) with
``se = sqrt(sum c_u^2)``: ``(D_i - att) / N1`` for matched treated units and
``sqrt(W_j^2 - Q_j) * (dY_j - dY_l) / sqrt(2) / N1`` for reused twins; with multipliers ``V_u``,
``sum_u V_u c_u`` is a multiplier-bootstrap draw of ``att* - att`` that keeps twin reuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

VarianceMethod = Literal["abadie_imbens", "treated_clusters"]

_Z975 = 1.959963984540054


@dataclass(frozen=True)
class TwinsDiDResult:
    """Result of :func:`twins_did` (statsmodels-style fixed names).

    Attributes
    ----------
    att : float
        Matched DiD estimate of the ATT (on matched treated units).
    se : float
        Standard error (``variance`` method).
    ci : tuple of float
        95 % normal confidence interval ``(low, high)``.
    n_treated : int
        Matched treated units (those the estimate averages over).
    n_controls : int
        Distinct twins used.
    n_unmatched : int
        Treated units without a twin (dropped from the estimate, listed in
        ``matches.unmatched`` with the reason).
    n_treated_total : int
    control_ess : float
        Kish effective sample size of the twins' weights.
    balance : polars.DataFrame
        :func:`impact.balance.balance_table` of covariates and pre-outcomes, before/after.
    matches : impact.twins.MatchResult
    variance : str
    att_unmatched : float
        Difference in mean change scores over all treated vs all controls (no matching), for
        comparison.
    influence : polars.DataFrame
        Per-unit variance contributions (``id``, ``role``, ``contribution``), see module notes.
    """

    att: float
    se: float
    ci: tuple[float, float]
    n_treated: int
    n_controls: int
    n_unmatched: int
    n_treated_total: int
    control_ess: float
    balance: pl.DataFrame
    matches: Any
    variance: str
    att_unmatched: float
    influence: pl.DataFrame = field(repr=False)

    @property
    def unmatched_share(self) -> float:
        return self.n_unmatched / self.n_treated_total if self.n_treated_total else 0.0

    def summary(self) -> str:
        """A short plain-text report."""
        lo, hi = self.ci
        worst = self.balance.select(pl.col("smd_after").abs().max()).item()
        return (
            "Matched difference-in-differences (statistical twins)\n"
            f"  ATT          {self.att: .4f}  (SE {self.se:.4f}; 95% CI {lo:.4f} to {hi:.4f})\n"
            f"  unmatched    {self.att_unmatched: .4f}  (difference in changes, no matching)\n"
            f"  treated      {self.n_treated} matched of {self.n_treated_total} "
            f"({self.n_unmatched} without twins)\n"
            f"  twins        {self.n_controls} distinct, effective n {self.control_ess:.1f}\n"
            f"  max |SMD|    {worst:.3f} after matching\n"
            f"  variance     {self.variance}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers (JSON-ready)."""
        return {
            "att": self.att,
            "se": self.se,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_unmatched": self.n_unmatched,
            "n_treated_total": self.n_treated_total,
            "control_ess": self.control_ess,
            "att_unmatched": self.att_unmatched,
            "variance": self.variance,
        }


def _neighbour_residuals(
    score: np.ndarray, stratum: np.ndarray, y: np.ndarray, key: np.ndarray
) -> np.ndarray:
    """``(y_j - y_l) / sqrt(2)`` with ``l`` the nearest other unit on ``score`` in the same
    stratum (ties: the left neighbour in ``(stratum, score, key)`` order); NaN if alone."""
    n = score.size
    order = np.lexsort((key, score, stratum))
    s, g, yy = score[order], stratum[order], y[order]
    prev_ok = np.r_[False, g[1:] == g[:-1]]
    next_ok = np.r_[g[:-1] == g[1:], False]
    d_prev = np.where(prev_ok, s - np.r_[s[:1], s[:-1]], np.inf)
    d_next = np.where(next_ok, np.r_[s[1:], s[-1:]] - s, np.inf)
    take_prev = d_prev <= d_next
    y_prev = np.r_[yy[:1], yy[:-1]]
    y_next = np.r_[yy[1:], yy[-1:]]
    nb = np.where(take_prev, y_prev, y_next)
    res = np.where(prev_ok | next_ok, (yy - nb) / math.sqrt(2.0), np.nan)
    out = np.empty(n)
    out[order] = res
    return out


def _bias_corrected_pairs(df: pl.DataFrame, pairs: pl.DataFrame, id_col: str,
                          features: list[str], exact: list[str]) -> pl.DataFrame:
    """``pairs`` with each control's change ``_dy_c`` regression-corrected for its covariate
    gap to the treated unit
    (:func:`impact.estimate.bias_correction.bias_corrected_twin_changes`)."""
    from impact.estimate.bias_correction import MIN_ROWS_PER_COEF, bias_corrected_twin_changes
    from impact.twins.design import DesignSpec

    cols = list(dict.fromkeys([*features, *exact]))
    spec = DesignSpec.fit(df, cols)
    x = df.select(pl.col(id_col).alias("_id"), *cols)
    xt = spec.transform(pairs.select("treated_id").join(
        x.rename({"_id": "treated_id"}), on="treated_id", how="left", maintain_order="left"))
    xc = spec.transform(pairs.select("control_id").join(
        x.rename({"_id": "control_id"}), on="control_id", how="left", maintain_order="left"))
    rows = pairs.get_column("treated_id").rank("dense").to_numpy().astype(np.int64) - 1
    n_t = int(rows.max()) + 1 if rows.size else 0
    d_t = np.full(n_t, np.nan)
    d_t[rows] = pairs.get_column("_dy_t").to_numpy()
    x_t = np.zeros((n_t, xt.shape[1]))
    x_t[rows] = xt
    bc = bias_corrected_twin_changes(d_t, pairs.get_column("_dy_c").to_numpy(), x_t, xc, rows,
                                     pairs.get_column("weight").to_numpy())
    if not bc.corrected[0]:
        raise ValueError(
            f"bias_correction needs at least {MIN_ROWS_PER_COEF} twin rows per regression "
            f"coefficient ({MIN_ROWS_PER_COEF * (xt.shape[1] + 1)} for {xt.shape[1]} "
            f"covariate columns); "
            f"the match has {pairs.height} pairs")
    return pairs.with_columns(pl.Series("_dy_c", bc.d_twins[:, 0]))


def twins_did(
    frame: Any,
    *,
    treatment: str,
    outcome: str,
    pre_outcomes: Sequence[str],
    covariates: Sequence[str],
    exact: Sequence[str] | None = None,
    k: int = 1,
    caliper: float | None = 0.2,
    replace: bool = True,
    seed: int = 0,
    id: str | None = None,
    variance: VarianceMethod = "abadie_imbens",
    bias_correction: bool = False,
) -> TwinsDiDResult:
    """Matched difference-in-differences with statistical twins (one row per person).

    Parameters
    ----------
    frame
        polars or pandas DataFrame, one row per person (treated and candidate controls).
    treatment
        Boolean or 0/1 column.
    outcome
        Post-period outcome column.
    pre_outcomes
        Pre-period outcome columns; their row mean is the baseline, and they are matching
        features too.
    covariates
        Further matching features (numeric, boolean or categorical), measured pre-treatment.
    exact
        Exact-strata columns (twins share their values).
    k
        Twins per treated person.
    caliper
        In SD of the logit propensity score; ``None`` for none.
    replace
        Twins may serve several treated persons (default) or not (greedy, largest score first).
    seed
        Tie-breaking seed (results do not depend on the row order when ``id`` is given).
    id
        Unique person id column; default: the row number.
    variance
        ``"abadie_imbens"`` (default; accounts for twin reuse) or ``"treated_clusters"``
        (treated person with its twin set as the only unit of resampling; ignores the
        covariance created by reused twins, too small under replacement: for comparison).
    bias_correction
        Correct each twin's change score for its remaining gap to the treated person in
        ``covariates`` and ``pre_outcomes`` (and ``exact``) by a weighted regression on the
        twins (Abadie & Imbens 2011; :mod:`impact.estimate.bias_correction`). Needs at least
        5 twin rows per regression coefficient.

    Returns
    -------
    TwinsDiDResult
        ``att``, ``se``, ``ci``, ``n_treated``, ``n_controls``, ``balance``, ...

    Examples
    --------
    >>> res = impact.twins_did(df, treatment="ila", outcome="wage_2024",
    ...                        pre_outcomes=["wage_2021", "wage_2022"],
    ...                        covariates=["age", "sex", "region"], k=3)  # doctest: +SKIP
    >>> res.att, res.se, res.ci  # doctest: +SKIP
    """
    from impact.balance import balance_table
    from impact.twins import MatchOptions, match
    from impact.twins.matching import tie_order, to_polars
    from impact.twins.propensity import treatment_vector

    if variance not in ("abadie_imbens", "treated_clusters"):
        raise ValueError(
            f"variance must be 'abadie_imbens' or 'treated_clusters' (got {variance!r})"
        )
    pre = list(pre_outcomes)
    if not pre:
        raise ValueError("pre_outcomes must name at least one pre-period outcome column")
    df = to_polars(frame)
    id_col = id
    if id_col is None:
        if "_row" in df.columns:
            raise ValueError("pass id=...: the frame already has a '_row' column")
        df = df.with_row_index("_row")
        id_col = "_row"
    missing = [c for c in [treatment, outcome, *pre, *covariates] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}")
    for c in [outcome, *pre]:
        if not df.schema[c].is_numeric():
            raise TypeError(f"outcome column {c!r} must be numeric")
        if df.get_column(c).null_count():
            raise ValueError(f"outcome column {c!r} has nulls")
    df = df.with_columns(
        (pl.col(outcome).cast(pl.Float64) - pl.mean_horizontal([pl.col(c) for c in pre])).alias(
            "_dy"
        )
    )
    if not df.get_column("_dy").is_finite().all():
        raise ValueError("outcome or pre_outcomes have NaN or infinite values")
    features = list(dict.fromkeys([*covariates, *pre]))
    opts = MatchOptions(
        distance="glm",
        exact=list(exact) if exact else None,
        caliper=caliper,
        ratio=k,
        replace=replace,
        seed=seed,
    )
    m = match(df, treatment=treatment, features=features, id=id_col, options=opts)

    # change scores by id, aligned with the match tables
    dy = df.select(pl.col(id_col).alias("id"), "_dy")
    units = m.units.join(dy, on="id", how="left")
    pairs = m.pairs.join(
        dy.rename({"id": "control_id", "_dy": "_dy_c"}), on="control_id", how="left"
    ).join(dy.rename({"id": "treated_id", "_dy": "_dy_t"}), on="treated_id", how="left")
    d_all = treatment_vector(df, treatment)
    dy_all = df.get_column("_dy").to_numpy()
    att_unmatched = float(dy_all[d_all].mean() - dy_all[~d_all].mean()) if d_all.any() else math.nan
    if pairs.height == 0:
        raise ValueError(
            f"no treated unit has a twin within the caliper ({m.n_unmatched} unmatched): "
            "widen the caliper or check overlap"
        )
    if bias_correction:
        pairs = _bias_corrected_pairs(df, pairs, id_col, features, list(exact or []))
    per_treated = (
        pairs.group_by("treated_id")
        .agg(
            pl.col("_dy_t").first(),
            (pl.col("weight") * pl.col("_dy_c")).sum().alias("_y0"),
        )
        .sort("treated_id")
    )
    n1 = per_treated.height
    diff = (per_treated["_dy_t"] - per_treated["_y0"]).to_numpy()
    att = float(diff.mean())
    contrib_t = (diff - att) / n1

    ctrl = (
        pairs.group_by("control_id")
        .agg(pl.col("weight").sum().alias("W"), (pl.col("weight") ** 2).sum().alias("Q"))
        .sort("control_id")
    )
    contrib_c = np.zeros(ctrl.height)
    if variance == "abadie_imbens" and ctrl.height:
        controls = units.filter(~pl.col("treated"))
        key_order = tie_order(controls.get_column("id"), seed)
        key = np.empty(controls.height, np.int64)
        key[key_order] = np.arange(controls.height)
        resid = _neighbour_residuals(
            controls.get_column("score").to_numpy(),
            controls.get_column("stratum").to_numpy(),
            controls.get_column("_dy").to_numpy(),
            key,
        )
        res_tab = pl.DataFrame({"control_id": controls.get_column("id"), "_e": resid})
        ctrl = ctrl.join(res_tab, on="control_id", how="left", maintain_order="left")
        e = ctrl.get_column("_e").to_numpy().astype(np.float64)
        if np.isnan(e).any():  # a control alone in its stratum: use the mean s2 of the others
            fill = math.sqrt(np.nanmean(e**2)) if np.isfinite(e).any() else 0.0
            e = np.where(np.isnan(e), fill, e)
        extra = np.clip(ctrl["W"].to_numpy() ** 2 - ctrl["Q"].to_numpy(), 0.0, None)
        contrib_c = np.sqrt(extra) * e / n1
    se = float(math.sqrt((contrib_t**2).sum() + (contrib_c**2).sum()))
    influence = pl.concat(
        [
            pl.DataFrame(
                {"id": per_treated["treated_id"], "role": "treated", "contribution": contrib_t}
            ),
            pl.DataFrame({"id": ctrl["control_id"], "role": "control", "contribution": contrib_c}),
        ]
    )
    weighted = m.attach_weights(df, name="_w")
    balance = balance_table(weighted, treatment=treatment, covariates=features, weights="_w")
    summ = m.summary()
    return TwinsDiDResult(
        att=att,
        se=se,
        ci=(att - _Z975 * se, att + _Z975 * se),
        n_treated=n1,
        n_controls=m.n_controls_used,
        n_unmatched=m.n_unmatched,
        n_treated_total=m.n_treated,
        control_ess=float(summ["control_ess"]),
        balance=balance,
        matches=m,
        variance=variance,
        att_unmatched=att_unmatched,
        influence=influence,
    )
