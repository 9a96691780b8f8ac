"""Two-group, two-period (2x2) DiD estimators of the ATT with panel data, with influence functions.

Numerical ports of R ``DRDID`` (Sant'Anna & Zhao 2020), the building blocks of the staggered
ATT(g,t) estimator:

* :func:`reg_did_panel` -- outcome regression (Heckman, Ichimura & Todd 1997), DRDID
  ``reg_did_panel``;
* :func:`std_ipw_did_panel` -- normalised (Hajek) inverse probability weighting (Abadie 2005),
  DRDID ``std_ipw_did_panel``;
* :func:`drdid_panel` -- locally efficient doubly robust estimator, logit propensity score by
  maximum likelihood and OLS outcome regression, DRDID ``drdid_panel`` (what R
  ``did::att_gt(est_method = "dr")`` calls);
* :func:`drdid_imp_panel` -- *improved* locally efficient doubly robust estimator: propensity
  score by inverse probability tilting (Graham, Pinto & Egel 2012) and outcome regression by
  weighted least squares with odds weights, so that the estimation of the nuisance functions
  does not enter the influence function; DRDID ``drdid_imp_panel``.

Every function takes one row per unit: ``dy = Y_post - Y_pre``, ``d`` (1 treated, 0 comparison),
the covariate matrix ``x`` *including* the intercept column, and sampling weights ``w``
(normalised here to mean one, as DRDID does). It returns the point estimate and the influence
function scaled so that ``att_hat - att = mean(inf) + o_p(n^-1/2)``.

A 2x2 cell that cannot be estimated (singular regression design, propensity score at the
boundary) raises :class:`CellFailure`; the caller records the reason and reports a missing
ATT(g,t), as R ``did`` does with a warning.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

_EPS = float(np.finfo(float).eps)
#: DRDID trims comparison units whose propensity score is at or above this level.
TRIM_LEVEL = 0.995
#: R ``did`` declares the overlap condition violated when a fitted score reaches this value.
OVERLAP_MAX_PSCORE = 0.999


class CellFailure(Exception):
    """A 2x2 cell whose ATT cannot be estimated; ``str(exc)`` says why."""


class TwoByTwo(NamedTuple):
    att: float
    inf: np.ndarray


# ----------------------------------------------------------------------------- helpers


def _rcond1(a: np.ndarray) -> float:
    """Reciprocal 1-norm condition number (R ``rcond``); 0 for a singular matrix."""
    if a.shape == (1, 1):  # the common intercept-only case, without LAPACK overhead
        return 1.0 if a[0, 0] != 0.0 and np.isfinite(a[0, 0]) else 0.0
    try:
        return float(1.0 / np.linalg.cond(a, 1))
    except np.linalg.LinAlgError:
        return 0.0


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` (a is k x k, already checked non-singular); scalar fast path."""
    if a.shape == (1, 1):
        return b / a[0, 0]
    return np.linalg.solve(a, b)


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares coefficients; raises CellFailure on a singular design."""
    xw = x * w[:, None]
    xtx = xw.T @ x
    if _rcond1(xtx) < _EPS:
        raise CellFailure("singular outcome-regression design among comparison units")
    return _solve(xtx, xw.T @ y)


def logit_fit(
    x: np.ndarray, d: np.ndarray, w: np.ndarray, *, tol: float = 1e-10, max_iter: int = 100
) -> tuple[np.ndarray, bool]:
    """Weighted logit maximum likelihood by Newton-Raphson with step halving.

    Returns ``(coefficients, converged)``. Same estimator as R ``glm(binomial)`` /
    ``fastglm``; convergence is declared when the largest Newton step is below ``tol``. A step
    that lowers the log-likelihood is halved (as ``glm.fit`` does with the deviance).
    """
    k = x.shape[1]
    beta = np.zeros(k)
    if np.all(x[:, 0] == 1.0):  # start at the intercept-only MLE: logit of the weighted share
        pbar = float(np.clip(np.sum(w * d) / np.sum(w), 1e-10, 1.0 - 1e-10))
        beta[0] = np.log(pbar / (1.0 - pbar))
    prev_beta: np.ndarray | None = None
    prev_ll = -np.inf
    halvings = 0
    for _ in range(max_iter):
        eta = x @ beta
        p = expit(eta)
        grad = (w * (d - p)) @ x
        hess = (x * (w * p * (1.0 - p))[:, None]).T @ x
        if _rcond1(hess) < _EPS:
            return beta, False
        step = _solve(hess, grad)
        if np.max(np.abs(step)) < tol:
            return beta + step, True
        # log L = sum w [d eta - log(1 + e^eta)]; only needed once a step is to be taken
        ll = float(w @ (d * eta - np.logaddexp(0.0, eta)))
        if prev_beta is not None and (
            not np.isfinite(ll) or ll < prev_ll - 1e-12 * (1.0 + abs(prev_ll))
        ):
            if halvings >= 40:
                return beta, False
            beta = (beta + prev_beta) / 2.0
            halvings += 1
            continue
        halvings = 0
        prev_beta, prev_ll = beta, ll
        beta = beta + step
    return beta, False


def _logit_pscore(x: np.ndarray, d: np.ndarray, w: np.ndarray) -> np.ndarray:
    beta, converged = logit_fit(x, d, w)
    if not converged:
        raise CellFailure("propensity-score logit did not converge (separation or collinearity)")
    ps = expit(x @ beta)
    if ps.max() >= OVERLAP_MAX_PSCORE:
        raise CellFailure(
            f"overlap condition violated (a propensity score >= {OVERLAP_MAX_PSCORE})"
        )
    return ps


def ipt_pscore(
    x: np.ndarray, d: np.ndarray, w: np.ndarray, *, tol: float = 1e-10, max_iter: int = 200
) -> np.ndarray:
    """Propensity score by inverse probability tilting (DRDID ``pscore.cal`` / ``loss.ps.cal``).

    Minimises the convex loss ``-mean(w [d x'g - (1 - d) exp(x'g)])`` (Graham, Pinto & Egel
    2012; Tan 2020) by damped Newton from the logit estimate. Its first-order condition
    balances the odds-weighted covariate means of the comparison units with those of the
    treated: ``mean(w d x) = mean(w (1 - d) exp(x'g) x)``. Falls back to the logit score (DRDID's
    flag 2) when Newton does not converge; raises CellFailure if that fails too.
    """
    n = x.shape[0]
    gamma, logit_ok = logit_fit(x, d, w)
    c = w * (1.0 - d)

    def loss(g: np.ndarray) -> float:
        idx = x @ g
        return float(-np.mean(w * np.where(d > 0, idx, -np.exp(np.minimum(idx, 700.0)))))

    val = loss(gamma)
    converged = False
    for _ in range(max_iter):
        e = np.exp(np.minimum(x @ gamma, 700.0))
        grad = -(x.T @ (w * d - c * e)) / n
        hess = (x * (c * e)[:, None]).T @ x / n
        if _rcond1(hess) < _EPS:
            break
        step = _solve(hess, grad)
        if np.max(np.abs(step)) < tol:
            gamma = gamma - step
            converged = True
            break
        t = 1.0
        while True:
            cand = gamma - t * step
            new = loss(cand)
            if new <= val + 1e-12 * (1.0 + abs(val)) or t < 1e-8:
                break
            t *= 0.5
        gamma, val = cand, new
    if not converged:
        if not logit_ok:
            raise CellFailure("inverse-probability-tilting and logit propensity scores failed")
        gamma, _ = logit_fit(x, d, w)
    ps = expit(x @ gamma)
    if ps.max() >= OVERLAP_MAX_PSCORE:
        raise CellFailure(
            f"overlap condition violated (a propensity score >= {OVERLAP_MAX_PSCORE})"
        )
    return ps


def _check_groups(d: np.ndarray) -> None:
    if not (d > 0).any():
        raise CellFailure("no treated units")
    if not (d == 0).any():
        raise CellFailure("no comparison units")


# ----------------------------------------------------------------------------- estimators


def reg_did_panel(dy: np.ndarray, d: np.ndarray, x: np.ndarray, w: np.ndarray) -> TwoByTwo:
    """Outcome-regression DiD (DRDID ``reg_did_panel``).

    ``ATT = mean_w(dy | D=1) - mean_w(x'beta | D=1)``, with ``beta`` from the weighted OLS of
    ``dy`` on ``x`` among comparison units. Identification: conditional parallel trends
    ``E[dY(0) | X, D=1] = E[dY(0) | X, D=0]`` and a correctly specified linear model for it.
    """
    _check_groups(d)
    n = d.size
    w = w / w.mean()
    ctrl = d == 0
    beta = _wls(x[ctrl], dy[ctrl], w[ctrl])
    out_delta = x @ beta
    w_treat = w * d
    w_cont = w * d  # the treated units' covariates give the counterfactual evolution
    mean_wt = w_treat.mean()
    eta_treat = np.mean(w_treat * dy) / mean_wt
    eta_cont = np.mean(w_cont * out_delta) / mean_wt
    att = eta_treat - eta_cont

    # asymptotic linear representation of the OLS coefficients (controls only)
    w_ols = w * (1.0 - d)
    xpx = (x * w_ols[:, None]).T @ x / n
    m1 = (w_cont @ x) / n
    inf_cont_2 = w_ols * (dy - out_delta) * (x @ _solve(xpx, m1))
    inf_treat = (w_treat * dy - w_treat * eta_treat) / mean_wt
    inf_cont_1 = w_cont * out_delta - w_cont * eta_cont
    inf_control = (inf_cont_1 + inf_cont_2) / mean_wt
    return TwoByTwo(float(att), inf_treat - inf_control)


def std_ipw_did_panel(dy: np.ndarray, d: np.ndarray, x: np.ndarray, w: np.ndarray) -> TwoByTwo:
    """Normalised inverse-probability-weighted DiD (DRDID ``std_ipw_did_panel``).

    ``ATT = mean_w(dy | D=1) - sum(w p/(1-p) dy | D=0) / sum(w p/(1-p) | D=0)`` with a logit
    propensity score ``p(x)``; comparison units with ``p >= 0.995`` are trimmed. Identification:
    conditional parallel trends, overlap ``p(x) < 1``, correctly specified propensity score.
    """
    _check_groups(d)
    n = d.size
    w = w / w.mean()
    ps = np.minimum(_logit_pscore(x, d, w), 1.0 - 1e-6)
    trim = np.where(d == 0, ps < TRIM_LEVEL, True)
    w_treat = trim * w * d
    w_cont = trim * w * ps * (1.0 - d) / (1.0 - ps)
    if w_cont.sum() <= 0:
        raise CellFailure("all comparison units trimmed (propensity score >= 0.995)")
    mean_wt, mean_wc = w_treat.mean(), w_cont.mean()
    eta_treat = np.mean(w_treat * dy) / mean_wt
    eta_cont = np.mean(w_cont * dy) / mean_wc
    att = eta_treat - eta_cont

    # asymptotic linear representation of the logit coefficients
    hw = ps * (1.0 - ps) * w
    xtwx = (x * hw[:, None]).T @ x
    if _rcond1(xtwx) < _EPS:
        raise CellFailure("singular propensity-score design")
    m2 = ((w_cont * (dy - eta_cont)) @ x) / n
    inf_cont_2 = w * (d - ps) * (x @ (n * _solve(xtwx, m2)))
    inf_treat = (w_treat * dy - w_treat * eta_treat) / mean_wt
    inf_cont_1 = w_cont * dy - w_cont * eta_cont
    inf_control = (inf_cont_1 + inf_cont_2) / mean_wc
    return TwoByTwo(float(att), inf_treat - inf_control)


def drdid_panel(dy: np.ndarray, d: np.ndarray, x: np.ndarray, w: np.ndarray) -> TwoByTwo:
    """Locally efficient doubly robust DiD (Sant'Anna & Zhao 2020, eq. 3.1; DRDID ``drdid_panel``).

    Logit propensity score by maximum likelihood, linear outcome regression of ``dy`` among
    comparison units by OLS; Hajek-normalised weights; comparison units with ``p >= 0.995``
    trimmed. Consistent if either the propensity score or the outcome regression is correctly
    specified (plus conditional parallel trends and overlap).
    """
    _check_groups(d)
    n = d.size
    w = w / w.mean()
    ps = np.minimum(_logit_pscore(x, d, w), 1.0 - 1e-6)
    trim = np.where(d == 0, ps < TRIM_LEVEL, True)
    ctrl = d == 0
    beta = _wls(x[ctrl], dy[ctrl], w[ctrl])
    out_delta = x @ beta
    w_treat = trim * w * d
    w_cont = trim * w * ps * (1.0 - d) / (1.0 - ps)
    if w_cont.sum() <= 0:
        raise CellFailure("all comparison units trimmed (propensity score >= 0.995)")
    resid = dy - out_delta
    dr_treat = w_treat * resid
    dr_cont = w_cont * resid
    mean_wt, mean_wc = w_treat.mean(), w_cont.mean()
    eta_treat = dr_treat.mean() / mean_wt
    eta_cont = dr_cont.mean() / mean_wc
    att = eta_treat - eta_cont

    # OLS (controls) asymptotic linear representation: (w (1-D) resid x) @ inv(X'WX / n)
    w_ols = w * (1.0 - d)
    xpx = (x * w_ols[:, None]).T @ x / n
    if _rcond1(xpx) < _EPS:
        raise CellFailure("singular outcome-regression design among comparison units")
    e_ols = w_ols * resid
    # logit asymptotic linear representation: (w (D - p) x) @ inv(X'WX) * n
    hw = ps * (1.0 - ps) * w
    xtwx = (x * hw[:, None]).T @ x
    if _rcond1(xtwx) < _EPS:
        raise CellFailure("singular propensity-score design")
    e_ps = w * (d - ps)

    inf_treat_1 = dr_treat - w_treat * eta_treat
    m1 = (w_treat @ x) / n
    inf_treat_2 = e_ols * (x @ _solve(xpx, m1))
    inf_cont_1 = dr_cont - w_cont * eta_cont
    m2 = ((w_cont * (resid - eta_cont)) @ x) / n
    inf_cont_2 = e_ps * (x @ (n * _solve(xtwx, m2)))
    m3 = (w_cont @ x) / n
    inf_cont_3 = e_ols * (x @ _solve(xpx, m3))
    inf_treat = (inf_treat_1 - inf_treat_2) / mean_wt
    inf_control = (inf_cont_1 + inf_cont_2 - inf_cont_3) / mean_wc
    return TwoByTwo(float(att), inf_treat - inf_control)


def drdid_imp_panel(dy: np.ndarray, d: np.ndarray, x: np.ndarray, w: np.ndarray) -> TwoByTwo:
    """Improved locally efficient doubly robust DiD (Sant'Anna & Zhao 2020, section 3.1;
    DRDID ``drdid_imp_panel``).

    Propensity score by inverse probability tilting, outcome regression by WLS among
    comparison units with weights ``w p/(1-p)``. With these nuisance estimators the influence
    function has no estimation-effect terms (the estimator is doubly robust for inference too):
    ``inf = w [(1 - (1-D)/(1-p)) (dy - x'beta) - D ATT] / mean(w D)``.
    """
    _check_groups(d)
    w = w / w.mean()
    ps = np.minimum(ipt_pscore(x, d, w), 1.0 - 1e-6)
    ctrl = d == 0
    beta = _wls(x[ctrl], dy[ctrl], (w * ps / (1.0 - ps))[ctrl])
    out_delta = x @ beta
    summand = (1.0 - (1.0 - d) / (1.0 - ps)) * (dy - out_delta)
    mean_wd = np.mean(w * d)
    att = np.mean(w * summand) / mean_wd
    inf = w * (summand - d * att) / mean_wd
    return TwoByTwo(float(att), inf)


ESTIMATORS = {
    "reg": reg_did_panel,
    "ipw": std_ipw_did_panel,
    "dr": drdid_panel,
    "dr_imp": drdid_imp_panel,
}
