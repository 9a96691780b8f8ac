"""Propensity score model: logistic regression on prepared features (scikit-learn).

The score used for matching is the *logit* (linear predictor) of the fitted probability, as
in MatchIt with ``link = "linear.logit"``; nearest neighbours on the logit are less crowded in
the tails than on the probability scale.

Regularisation: by default ``C = inf``, i.e. scikit-learn's unpenalised maximum-likelihood
fit, the same model as R's ``glm(family = binomial)`` that MatchIt uses for
``distance = "glm"``. Under (quasi-)complete separation the unpenalised coefficients
diverge and the solver stops at ``max_iter`` (scikit-learn warns); pass a finite ``C`` (an L2
penalty on the standardised features) to get finite scores in that case.

Solver: scikit-learn's ``newton-cholesky``, a Newton (IRLS-type) method like ``glm()``'s
Fisher scoring, converging in a handful of iterations to the same maximum; it is also much
faster than lbfgs on the few-feature problems of one cohort.

Fitting a model pooled over cohorts: ``PropensityModel().fit(stacked, ...)`` once, then
``model.logit(cohort_frame)`` per cohort and ``match(..., score="ps_logit")`` with
``MatchOptions(ps_model="precomputed")``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

import numpy as np
import polars as pl

from impact.twins.design import DesignSpec


def treatment_vector(frame: pl.DataFrame, treatment: str) -> np.ndarray:
    """The treatment column as a boolean array; it must be boolean or 0/1 without nulls."""
    if treatment not in frame.columns:
        raise KeyError(f"treatment column {treatment!r} not in the frame")
    s = frame.get_column(treatment)
    if s.null_count():
        raise ValueError(f"treatment column {treatment!r} has nulls")
    if s.dtype == pl.Boolean:
        return s.to_numpy().astype(bool)
    if not s.dtype.is_numeric():
        raise TypeError(f"treatment column {treatment!r} must be boolean or 0/1 (got {s.dtype})")
    x = s.to_numpy()
    if not np.isin(x, (0, 1)).all():
        raise ValueError(f"treatment column {treatment!r} must hold only 0 and 1")
    return x.astype(bool)


def independent_columns(x: np.ndarray, tol: float = 1e-9) -> list[int]:
    """Columns of ``x`` kept in order, dropping those (nearly) in the span of the intercept and
    the columns kept before them, like the pivoting QR of R's ``glm`` (aliased terms).

    Works on the centred Gram matrix (``p x p``), so ``x`` is not copied: column ``j`` is kept
    if the share of its centred sum of squares not explained by the kept columns exceeds
    ``tol``.
    """
    n, p = x.shape
    if p == 0 or n == 0:
        return []
    mean = x.mean(axis=0)
    gram = x.T @ x - n * np.outer(mean, mean)
    keep: list[int] = []
    for j in range(p):
        ss = gram[j, j]
        if not ss > 0:
            continue
        if keep:
            g_kk = gram[np.ix_(keep, keep)]
            g_kj = gram[keep, j]
            resid = ss - g_kj @ np.linalg.solve(g_kk, g_kj)
        else:
            resid = ss
        if resid > tol * ss:
            keep.append(j)
    return keep


class PropensityModel:
    """Logistic-regression propensity score on standardised numerics and one-hot categoricals.

    Parameters
    ----------
    C
        Inverse L2 penalty strength on the standardised features; ``inf`` (default) fits the
        unpenalised GLM.
    max_iter, tol
        Solver settings (``tol`` tighter than scikit-learn's default, to reach the glm()
        optimum).
    blas_threads
        BLAS threads during the fit (threadpoolctl); ``None`` leaves the library default.
        The fit's cost is the Newton Hessian ``X' W X``; on a 2-core machine one thread
        was 4-8x faster than OpenBLAS's two (which compete with each other and with polars'
        pool), hence the default 1.

    Attributes
    ----------
    spec_ : DesignSpec
        Feature preparation learnt at fit time (means, SDs, category levels).
    coef_ : numpy.ndarray
        Coefficients on the prepared features (names in ``feature_names_``).
    intercept_ : float
    feature_names_ : list[str]
    aliased_ : list[str]
        Prepared features left out because they are constant or a linear combination of
        earlier ones (R's ``glm`` reports them as ``NA`` coefficients); their coefficient is 0.
    """

    def __init__(
        self,
        *,
        C: float = math.inf,
        max_iter: int = 100,
        tol: float = 1e-8,
        blas_threads: int | None = 1,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.blas_threads = blas_threads

    def fit(self, frame: pl.DataFrame, *, treatment: str, features: Sequence[str]) -> Self:
        """Fit on the rows of ``frame`` (treated and controls)."""
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        if not features:
            raise ValueError("the propensity model needs at least one feature")
        d = treatment_vector(frame, treatment)
        if d.all() or not d.any():
            raise ValueError("the propensity model needs both treated and control rows")
        self.spec_ = DesignSpec.fit(frame, features, drop_first=True, standardise=True)
        x = self.spec_.transform(frame)
        lr = LogisticRegression(
            C=self.C, solver="newton-cholesky", max_iter=self.max_iter, tol=self.tol
        )
        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            keep = independent_columns(x)
        self.feature_names_ = self.spec_.names
        kept = set(keep)
        self.aliased_ = [n for j, n in enumerate(self.feature_names_) if j not in kept]
        self.coef_ = np.zeros(x.shape[1])
        if keep:
            with threadpool_limits(limits=self.blas_threads, user_api="blas"):
                lr.fit(x if len(keep) == x.shape[1] else x[:, keep], d.astype(np.int8))
            self.coef_[keep] = lr.coef_.ravel()
            self.intercept_ = float(lr.intercept_[0])
            self.n_iter_ = int(np.max(lr.n_iter_))
        else:  # every feature constant: the score is the log-odds of the treated share
            self.intercept_ = float(np.log(d.mean() / (1 - d.mean())))
            self.n_iter_ = 0
        return self

    def logit(self, frame: pl.DataFrame) -> np.ndarray:
        """Linear predictor ``log(p / (1 - p))`` for the rows of ``frame`` (float64)."""
        return self.spec_.linear(frame, self.coef_) + self.intercept_

    def probability(self, frame: pl.DataFrame) -> np.ndarray:
        """Fitted propensity score ``p`` for the rows of ``frame``."""
        from scipy.special import expit

        return expit(self.logit(frame))
