"""Curves over time: income curves by event month and Kaplan-Meier time to a career step."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from impact.estimate.matched_did import matched_att
from impact.indicators.rules import Context, career_step_times
from impact.indicators.sample import MatchedSample

__all__ = ["career_step_km", "income_curves", "weighted_km"]


def income_curves(sample: MatchedSample, window: tuple[int, int] = (-36, 36), *,
                  alpha: float = 0.05) -> pl.DataFrame:
    """Mean real monthly earnings by month from leaving, participants vs twins.

    For every event time ``e`` (month ``L + e``) the participants observed then and their
    twins observed then (weights renormalised per participant) give the two curves; the
    ``net`` column is their difference (a level difference, not the DiD of the event
    study) with the matched estimator's Abadie-Imbens standard error. Pointwise
    ``1 - alpha`` bands for each arm use the arm's own standard error (twins: weighted).

    Columns: ``event_time``, ``n_participants``, ``n_twins``, ``participants``,
    ``participants_ci_low/high``, ``twins``, ``twins_ci_low/high``, ``net``, ``se``,
    ``ci_low``, ``ci_high`` and internal magnitude columns for disclosure control.
    """
    z = stats.norm.ppf(1 - alpha / 2)
    ev = np.arange(window[0], window[1] + 1)
    T, P = sample.treated, sample.twins
    yt = np.column_stack([T.num("earnings_real", T.leave + e) for e in ev])
    yp = np.column_stack([P.num("earnings_real", P.leave + e) for e in ev])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = matched_att(yt, yp, sample.pair_treated, sample.weight, sample.twin_pid)
    valid = np.isfinite(fit.unit_effect)
    n = valid.sum(axis=0)
    nn = np.maximum(n, 1)
    part = np.where(valid, yt, 0.0).sum(axis=0) / nn
    twin = part - fit.att
    sd_t = np.sqrt(np.where(valid, (yt - part) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1))
    y0 = np.where(valid, yt - fit.unit_effect, np.nan)  # twins' mean per participant
    sd_0 = np.sqrt(np.nansum((y0 - twin) ** 2, axis=0) / np.maximum(n - 1, 1))
    se_t, se_0 = sd_t / np.sqrt(nn), sd_0 / np.sqrt(nn)
    se = fit.se_analytic
    rows = {
        "event_time": ev, "n_participants": n.astype(np.int64),
        "n_twins": fit.n_twins.astype(np.int64),
        "participants": part, "participants_ci_low": part - z * se_t,
        "participants_ci_high": part + z * se_t, "twins": twin,
        "twins_ci_low": twin - z * se_0, "twins_ci_high": twin + z * se_0,
        "net": fit.att, "se": se, "ci_low": fit.att - z * se, "ci_high": fit.att + z * se,
    }
    df = pl.DataFrame(rows).with_columns(pl.col(pl.Float64).fill_nan(None))
    # magnitude contributions (dominance / p% rules) per event time
    mags = []
    for k in range(ev.size):
        a = np.sort(np.abs(yt[valid[:, k], k]))[::-1]
        ok = np.isfinite(yp[:, k]) & valid[sample.pair_treated, k]
        ids, inv = np.unique(sample.twin_pid[ok], return_inverse=True)
        b = np.sort(np.bincount(inv, np.abs(yp[ok, k]) * sample.weight[ok], ids.size))[::-1]
        mags.append({
            "_top1_participants": float(a[0]) if a.size else None,
            "_top2_participants": float(a[1]) if a.size > 1 else 0.0,
            "_total_participants": float(a.sum()),
            "_top1_twins": float(b[0]) if b.size else None,
            "_top2_twins": float(b[1]) if b.size > 1 else 0.0,
            "_total_twins": float(b.sum()),
        })
    return pl.concat([df, pl.DataFrame(mags)], how="horizontal")


def career_step_km(sample: MatchedSample, ctx: Context, max_months: int = 36
                   ) -> pl.DataFrame:
    """Kaplan-Meier curves of the months from leaving to the first career step.

    A career step is an occupation upgrade or a pay jump over the entry month (the EECR06
    criteria (a) and (b), see :func:`impact.indicators.rules.career_step_times`);
    participants and twins employed at entry; censoring at the end of the data, an exit
    from the panel, or (twins) their own ILA start. Twins are weighted by their matching
    weight renormalised within the participant (:func:`weighted_km`).

    Returns one row per arm and month ``0..max_months``: ``arm``, ``month``,
    ``survival`` (share without a step yet), ``ci_low``, ``ci_high``, ``at_risk``.
    """
    out = []
    for arm_name, arm, w in (("participants", sample.treated, None),
                             ("twins", sample.twins, sample.weight)):
        dur, event, pop = career_step_times(arm, ctx, max_months)
        ok = pop & np.isfinite(dur)
        if w is not None:
            owner = sample.pair_treated
            tot = np.bincount(owner, np.where(ok, w, 0.0), sample.n_treated)
            wt = np.where(ok, w / np.maximum(tot[owner], 1e-300), 0.0)
        else:
            wt = np.ones(arm.n)
        d, e, ww = dur[ok], event[ok], wt[ok]
        if d.size == 0:
            continue
        km = weighted_km(d, e, ww, max_months)
        out.append(km.with_columns(pl.lit(arm_name).alias("arm")).select(
            "arm", pl.exclude("arm")))
    return pl.concat(out) if out else pl.DataFrame()


def weighted_km(duration: np.ndarray, event: np.ndarray, weight: np.ndarray,
                max_months: int, *, alpha: float = 0.05) -> pl.DataFrame:
    """Kaplan-Meier product-limit estimate on integer months with case weights.

    ``S(k) = prod_{m <= k} (1 - d_m / n_m)`` with ``n_m`` the weight at risk at month
    ``m`` (duration >= m) and ``d_m`` the weight of events at ``m``. Greenwood's variance
    uses the Kish effective number at risk ``(sum w)^2 / sum w^2`` in place of the count, so
    that unit weights give the textbook estimate (checked against ``statsmodels``
    ``SurvfuncRight``) and unequal weights are not treated as frequencies.

    Returns ``month``, ``survival``, ``ci_low``, ``ci_high`` (pointwise, clipped to [0, 1]),
    ``at_risk`` (persons with positive weight at risk).
    """
    z = stats.norm.ppf(1 - alpha / 2)
    d = np.asarray(duration, dtype=float)
    e = np.asarray(event, dtype=bool)
    w = np.asarray(weight, dtype=float)
    months = np.arange(max_months + 1)
    surv = np.ones(months.size)
    var_sum = np.zeros(months.size)
    at_risk = np.zeros(months.size, dtype=np.int64)
    s, acc = 1.0, 0.0
    for i, m in enumerate(months):
        risk = (d >= m) & (w > 0)
        at_risk[i] = int(risk.sum())
        if m > 0 and risk.any():
            n_w = w[risk].sum()
            d_w = w[risk & e & (d == m)].sum()
            n_eff = n_w**2 / (w[risk] ** 2).sum()
            q = d_w / n_w
            s *= 1.0 - q
            if q < 1:
                acc += q / (n_eff * (1.0 - q))
        surv[i] = s
        var_sum[i] = acc
    se = surv * np.sqrt(var_sum)
    return pl.DataFrame({"month": months, "survival": surv,
                         "ci_low": np.clip(surv - z * se, 0, 1),
                         "ci_high": np.clip(surv + z * se, 0, 1), "at_risk": at_risk})
