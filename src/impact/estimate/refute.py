"""Refutation checks for matched (statistical twins) estimates, built on DoWhy.

Input contract
--------------
A polars or pandas frame with one row per unit of a matched sample: a binary treatment flag
(bool or 0/1), an outcome (for the matched DiD: the change, outcome at the horizon minus the
pre-period baseline), the matching features (numeric, bool, or categorical strings) and the
ATT matching weights (treated 1, each twin the sum of its ``1/k'`` weights). Optionally a
cluster id (the treated person's matched set) used only for the standard error.

Estimator handed to DoWhy
-------------------------
DoWhy's built-in regression estimators take no weights, so :class:`MatchedWeightedEstimator`
(a :class:`dowhy.causal_estimator.CausalEstimator`) implements the weighted ATT on the matched
sample and is passed through DoWhy's functional ``estimate_effect`` and refuters
(``refute_placebo_treatment``, ``refute_random_common_cause``, ``refute_data_subset``)::

    b    = argmin_b  sum_{j: T=0} w_j (y_j - x_j'b)^2          (WLS on the twins)
    att  = sum_{i: T=1} w_i (y_i - x_i'b) / sum_{i: T=1} w_i    (imputation on the treated)

with ``x = (1, common causes)``, categorical features one-hot encoded; equivalently
``att = ybar1 - ybar0 - (xbar1 - xbar0)'beta`` (weighted means per arm, ``beta`` the twins'
slopes). This is regression adjustment on the matched sample ("bias-corrected" matching,
Abadie & Imbens 2011; Ho, Imai, King & Stuart 2007): it equals the matched weighted
difference in means when the twins balance ``x`` exactly, and removes remaining imbalance
linearly otherwise. With ``adjust=False`` only the intercept is used, i.e. the plain matched
(weighted) difference in means, as in :func:`impact.estimate.did.twins_did`; the
random-common-cause refuter is then vacuous (the estimate cannot move) and is reported as
such. A feature constant among the twins gets slope 0 (it cannot be estimated from them);
treated units with feature values absent among their twins are imputed by extrapolation,
which exact matching on categorical features avoids.

Standard error used for the judgements
--------------------------------------
Unless the caller passes ``se`` (e.g. the Abadie-Imbens SE of
:func:`impact.estimate.did.twins_did`, recommended for the headline), the SE is the
influence-function (sandwich) SE of the estimator above with the matching weights held fixed:
treated ``i`` contributes ``w_i (y_i - x_i'b - att) / W1``, twin ``j`` contributes
``-w_j e_j xbar1' A^+ x_j`` (``e_j`` its WLS residual, ``A = sum_j w_j x_j x_j'``, ``xbar1``
the weighted mean design row of the treated). Contributions are summed within clusters when a
cluster id is given (``se = sqrt(G/(G-1) * sum_g psi_g^2)``), otherwise per row. Holding the
weights fixed ignores the uncertainty from estimating the matches; a twin reused across sets
enters with its summed weight (one row per unit) so its reuse is counted, but with a long
(set, member) layout and cluster=set the covariance between sets sharing a twin is ignored.

Refuters and judgement rules (all stated in each result's ``rule``)
------------------------------------------------------------------
* ``placebo_treatment`` (permute): the treatment column is permuted across rows (weights stay
  with rows) and the effect re-estimated ``placebo_reps`` times. Pass iff the mean placebo
  effect is within ``placebo_tolerance_se`` SE of 0 *and* DoWhy's test does not reject that
  0 belongs to the placebo distribution (``p > alpha``). The share of placebo draws at least
  as large in absolute value as the estimate is also reported (a permutation p-value of the
  estimate; informative, not a gate: a true zero effect must not fail a refutation).
* ``random_common_cause``: an independent N(0,1) column is added to the adjustment set. Pass
  iff no replication moves the estimate by more than ``max(rcc_tolerance * |att|, 1 SE)``.
* ``data_subset``: re-estimation on random row subsets of ``subset_fraction``. Pass iff the
  mean subset estimate lies in the (1 - alpha) CI of the full-sample estimate and at least
  ``subset_min_share`` of the subset estimates do. Rows, not matched sets, are sampled (as in
  DoWhy), so sets are broken; the weighted estimator stays defined as long as both arms keep
  rows.

DoWhy's p-values are reported as given: for the placebo it tests whether 0 lies in the
placebo distribution; for the other two whether the original estimate lies in the
distribution of re-estimates. Below 100 replications DoWhy uses a one-sided normal test
(``Phi(-|z|)``, ``z`` the standardised distance to the mean of the re-estimates), from 100 on
a two-sided percentile test.

DoWhy's refuters loop in Python; each replication here is one frame copy, one one-hot
encoding and one weighted least-squares fit (a p x p normal-equation solve), run with a
single BLAS thread (a threaded BLAS on small matrices was 30x slower on a loaded 2-core
machine). Measured: 20,001 matched units, 15 features (36 design columns), 30-40 ms per
replication under load, so the defaults (100 + 50 + 50 replications) take 7-8 s. Replications are
bounded by the arguments and the wall time of each refuter is reported. Identification uses DoWhy's
``maximal-adjustment`` backdoor method (all common causes), because the default exhaustive
backdoor search is exponential in the number of matching features.

Placebo in time
---------------
:func:`placebo_in_time` pretends the treatment started ``shift`` months earlier and computes
the same matched DiD entirely inside the pre-period: outcome ``Y(horizon)`` minus the mean of
the ``baseline_months`` months before the fake start (defaults: ``Y(-1) - mean(Y(-24..-13))``).
Under parallel trends its expectation is 0. Its SE is the influence-function SE above without
covariates, summed within matched sets (cluster = the treated person's set).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import polars as pl
from dowhy import CausalModel
from dowhy.causal_estimator import CausalEstimate, CausalEstimator, estimate_effect
from dowhy.causal_refuters.data_subset_refuter import refute_data_subset
from dowhy.causal_refuters.placebo_treatment_refuter import (
    PlaceboType,
    refute_placebo_treatment,
)
from dowhy.causal_refuters.random_common_cause import refute_random_common_cause
from scipy import stats

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "MatchedWeightedEstimator",
    "PlaceboInTimeResult",
    "RefutationReport",
    "RefuterResult",
    "WeightedATT",
    "placebo_in_time",
    "refute_matched",
    "weighted_att",
]

# --------------------------------------------------------------------------- numerics


@dataclass(frozen=True)
class WeightedATT:
    """Weighted ATT on a matched sample (see the module docstring for the estimator).

    Attributes
    ----------
    att : float
        Estimate.
    se : float
        Influence-function SE with the weights held fixed (``nan`` if not requested).
    n_treated, n_controls : int
        Rows with positive weight in each arm.
    n_clusters : int
        Independent units the SE sums over (clusters, or rows without a cluster id), counting
        only rows with positive weight.
    """

    att: float
    se: float
    n_treated: int
    n_controls: int
    n_clusters: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view."""
        return {
            "att": self.att,
            "se": self.se,
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_clusters": self.n_clusters,
        }


def weighted_att(
    y: np.ndarray,
    treated: np.ndarray,
    w: np.ndarray,
    x: np.ndarray | None = None,
    *,
    cluster: np.ndarray | None = None,
    with_se: bool = True,
) -> WeightedATT:
    """Regression-imputation ATT on a weighted matched sample, with influence-function SE.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Outcome (for DiD: the change score).
    treated : ndarray of bool, shape (n,)
        Treatment flag.
    w : ndarray, shape (n,)
        Non-negative matching weights (rows with weight 0 do not count).
    x : ndarray, shape (n, p), optional
        Covariates *without* intercept (added here). ``None``: weighted difference in means.
    cluster : ndarray, shape (n,), optional
        Cluster codes for the SE (matched set of the treated person). ``None``: per row.
    with_se : bool
        Skip the SE (faster) when False.

    Returns
    -------
    WeightedATT

    Notes
    -----
    Assumes the weights are fixed (conditional on the matching); the twin outcome model is
    linear in ``x`` (only used to remove residual imbalance); the design may be rank
    deficient (a minimum-norm least-squares solution is used).
    """
    y = np.asarray(y, dtype=float).ravel()
    t = np.asarray(treated, dtype=bool).ravel()
    w = np.asarray(w, dtype=float).ravel()
    n = y.shape[0]
    pos = w > 0
    tr, c = t & pos, ~t & pos
    w1, w0 = float(w[tr].sum()), float(w[c].sum())
    if w1 <= 0 or w0 <= 0:
        raise ValueError("both arms need rows with positive weight")
    wc = w[c]
    ybar0 = float(wc @ y[c]) / w0
    resid = y - ybar0
    if x is not None:
        x = np.asarray(x, dtype=float).reshape(n, -1)
    if x is not None and x.shape[1] > 0:
        # Twin regression centred at the twins' weighted means: the intercept is the twin
        # mean and the slopes come from a scaled p x p normal-equation system (min-norm; a
        # column constant among the twins cannot be estimated and gets slope 0).
        xbar0 = (wc @ x[c]) / w0
        xc = x[c] - xbar0
        xtw = xc.T * wc
        s = xtw @ xc
        scale = np.sqrt(np.diag(s))
        scale[scale <= 0] = 1.0
        s_scaled = s / np.outer(scale, scale)
        beta = np.linalg.lstsq(s_scaled, (xtw @ resid[c]) / scale, rcond=1e-12)[0] / scale
        resid = resid - (x - xbar0) @ beta
    att = float(w[tr] @ resid[tr]) / w1
    se = math.nan
    if cluster is None:
        codes, n_clusters = None, int(pos.sum())
    else:
        codes = pd.factorize(np.asarray(cluster).ravel())[0]
        n_clusters = len(np.unique(codes[pos]))
    if with_se:
        # influence function, weights held fixed (module docstring)
        psi = np.zeros(n)
        psi[tr] = w[tr] * (resid[tr] - att) / w1
        h = np.full(int(c.sum()), 1.0 / w0)
        if x is not None and x.shape[1] > 0:
            imbalance = (w[tr] @ x[tr]) / w1 - xbar0
            g = np.linalg.lstsq(s_scaled, imbalance / scale, rcond=1e-12)[0] / scale
            h = h + xc @ g
        psi[c] = -wc * resid[c] * h
        if codes is not None:
            psi = np.bincount(codes, weights=psi)
        factor = n_clusters / (n_clusters - 1) if n_clusters > 1 else math.nan
        se = float(math.sqrt(factor * float(psi @ psi)))
    return WeightedATT(att, se, int(tr.sum()), int(c.sum()), n_clusters)


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """The fits are (n x p)'(n x p) with small p: memory-bound, and a threaded BLAS only adds
    synchronisation (30x slower measured on a loaded 2-core machine). One BLAS thread while
    the replications run, when threadpoolctl (a scikit-learn dependency) is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _single_threaded_blas_during(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run ``fn`` under :func:`_single_threaded_blas`."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper


def _design(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray | None:
    """Numeric design (no intercept): numeric and bool columns as is, others one-hot."""
    if not columns:
        return None
    encoded = pd.get_dummies(frame[list(columns)], drop_first=True, dtype=float)
    return encoded.to_numpy(dtype=float)


# --------------------------------------------------------------------------- DoWhy estimator


class MatchedWeightedEstimator(CausalEstimator):
    """DoWhy estimator: weighted regression-imputation ATT on a matched sample.

    Reads the treatment and the adjustment set from the identified estimand at ``fit`` (so
    DoWhy's refuters can swap in a placebo treatment or add a random common cause) and the
    matching weights from the column ``weights_column``. The estimate is computed on the data
    passed to ``fit`` (as DoWhy's regression estimators do); effect modifiers are not
    supported. Treatment must be binary (``treatment_value`` / ``control_value`` are ignored
    beyond that: non-zero means treated).

    Parameters
    ----------
    identified_estimand : IdentifiedEstimand
        From ``CausalModel.identify_effect``.
    weights_column : str
        Column of ATT matching weights.
    adjust : bool
        Regression adjustment on the adjustment set (True) or weighted difference in means.
    cluster_column : str, optional
        Cluster id for the SE (only used by :meth:`fit` when ``with_se``).
    """

    def __init__(
        self,
        identified_estimand: Any,
        *,
        weights_column: str,
        adjust: bool = True,
        cluster_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(identified_estimand=identified_estimand, **kwargs)
        self.weights_column = weights_column
        self.adjust = adjust
        self.cluster_column = cluster_column
        self.with_se = False
        self.recorder: list[float] | None = None
        self.result_: WeightedATT | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> MatchedWeightedEstimator:
        # DoWhy's refuters deep-copy the estimator for every replication; the recorder list is
        # shared (not copied) so the caller sees each replication's estimate.
        if self.recorder is not None:
            memo[id(self.recorder)] = self.recorder
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def fit(
        self,
        data: pd.DataFrame,
        effect_modifier_names: list[str] | None = None,
    ) -> MatchedWeightedEstimator:
        """Fit on ``data`` (all rows with positive weight form the matched sample)."""
        if effect_modifier_names:
            raise ValueError("MatchedWeightedEstimator does not support effect modifiers")
        self._set_effect_modifiers(data, None)
        self.symbolic_estimator = self.construct_symbolic_estimator(self._target_estimand)
        treatment = self._target_estimand.treatment_variable[0]
        outcome = self._target_estimand.outcome_variable[0]
        # sorted: DoWhy returns a set, whose order depends on the process's hash seed
        adjustment = sorted(self._target_estimand.get_adjustment_set() or []) if self.adjust \
            else []
        t = np.asarray(data[treatment]).reshape(-1).astype(float) != 0
        cluster = None
        if self.cluster_column is not None and self.with_se:
            cluster = data[self.cluster_column].to_numpy()
        self.result_ = weighted_att(
            data[outcome].to_numpy(dtype=float),
            t,
            data[self.weights_column].to_numpy(dtype=float),
            _design(data, adjustment),
            cluster=cluster,
            with_se=self.with_se,
        )
        if self.recorder is not None:
            self.recorder.append(self.result_.att)
        return self

    def estimate_effect(
        self,
        data: pd.DataFrame,
        treatment_value: Any = 1,
        control_value: Any = 0,
        target_units: Any = None,
        **_: Any,
    ) -> CausalEstimate:
        """Return the ATT fitted on the data passed to :meth:`fit` as a CausalEstimate."""
        if self.result_ is None:
            raise RuntimeError("call fit() first")
        self._target_units = target_units
        self._treatment_value = treatment_value
        self._control_value = control_value
        estimate = CausalEstimate(
            data=data,
            treatment_name=self._target_estimand.treatment_variable,
            outcome_name=self._target_estimand.outcome_variable,
            estimate=self.result_.att,
            control_value=control_value,
            treatment_value=treatment_value,
            target_estimand=self._target_estimand,
            realized_estimand_expr=self.symbolic_estimator,
        )
        estimate.add_estimator(self)
        return estimate

    def construct_symbolic_estimator(self, estimand: Any) -> str:
        """Human-readable description of the estimator."""
        outcome = estimand.outcome_variable[0]
        treatment = estimand.treatment_variable[0]
        adjustment = sorted(estimand.get_adjustment_set() or []) if self.adjust else []
        model = "+".join(["1", *adjustment])
        return (
            f"sum_{{{treatment}=1}} w*({outcome} - WLS_{{{treatment}=0}}[{outcome}~{model}]) "
            f"/ sum_{{{treatment}=1}} w   (w = {self.weights_column})"
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RefuterResult:
    """One DoWhy refuter run on the matched estimate.

    Attributes
    ----------
    name : str
        ``placebo_treatment``, ``random_common_cause`` or ``data_subset``.
    estimate : float
        Original estimate.
    new_effect : float
        Mean of the refuted estimates (DoWhy's ``new_effect``).
    new_effect_sd : float
        SD of the refuted estimates over replications.
    p_value : float or None
        DoWhy's significance test (see module docstring for its meaning per refuter).
    passed : bool
        Judgement under ``rule``.
    rule : str
        The pass rule, with its numbers filled in.
    reps : int
        Replications run.
    seconds : float
        Wall time of this refuter.
    details : mapping
        Refuter-specific figures (thresholds, shares, permutation p-value).
    draws : tuple of float
        The refuted estimates, in replication order.
    """

    name: str
    estimate: float
    new_effect: float
    new_effect_sd: float
    p_value: float | None
    passed: bool
    rule: str
    reps: int
    seconds: float
    details: Mapping[str, float] = field(default_factory=dict)
    draws: tuple[float, ...] = ()

    def to_dict(self, *, include_draws: bool = False) -> dict[str, Any]:
        """Plain-dict view (draws only on request)."""
        out: dict[str, Any] = {
            "name": self.name,
            "estimate": self.estimate,
            "new_effect": self.new_effect,
            "new_effect_sd": self.new_effect_sd,
            "p_value": self.p_value,
            "passed": self.passed,
            "rule": self.rule,
            "reps": self.reps,
            "seconds": self.seconds,
            "details": dict(self.details),
        }
        if include_draws:
            out["draws"] = list(self.draws)
        return out


@dataclass(frozen=True)
class RefutationReport:
    """Result of :func:`refute_matched`.

    Attributes
    ----------
    estimate : float
        Matched ATT from :class:`MatchedWeightedEstimator` (through DoWhy).
    se : float
        SE used in the judgements.
    se_source : str
        ``"user"``, ``"influence_function_clustered"`` or ``"influence_function_rows"``.
    ci : tuple of float
        Normal (1 - alpha) confidence interval from ``estimate`` and ``se``.
    alpha : float
        Level of the CI and of the tests.
    adjust : bool
        Regression adjustment on the common causes (else weighted difference in means).
    n_treated, n_controls, n_clusters : int
        Rows with positive weight per arm; clusters (or rows) of the SE.
    refutations : tuple of RefuterResult
        In the order placebo, random common cause, data subset.
    seed : int
        Seed of the replications.
    seconds_setup : float
        Model, identification and first estimate.
    seconds_total : float
        Everything.
    """

    estimate: float
    se: float
    se_source: str
    ci: tuple[float, float]
    alpha: float
    adjust: bool
    n_treated: int
    n_controls: int
    n_clusters: int
    refutations: tuple[RefuterResult, ...]
    seed: int
    seconds_setup: float
    seconds_total: float

    @property
    def passed(self) -> bool:
        """True when every refuter passed."""
        return all(r.passed for r in self.refutations)

    def __getitem__(self, name: str) -> RefuterResult:
        for r in self.refutations:
            if r.name == name:
                return r
        raise KeyError(name)

    def table(self) -> pl.DataFrame:
        """One row per refuter: estimate, new effect, SD, p-value, pass, reps, seconds, rule."""
        return pl.DataFrame(
            [
                {
                    "refuter": r.name,
                    "estimate": r.estimate,
                    "new_effect": r.new_effect,
                    "new_effect_sd": r.new_effect_sd,
                    "p_value": r.p_value,
                    "passed": r.passed,
                    "reps": r.reps,
                    "seconds": r.seconds,
                    "rule": r.rule,
                }
                for r in self.refutations
            ],
            schema_overrides={"p_value": pl.Float64},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable)."""
        return {
            "estimate": self.estimate,
            "se": self.se,
            "se_source": self.se_source,
            "ci": list(self.ci),
            "alpha": self.alpha,
            "adjust": self.adjust,
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_clusters": self.n_clusters,
            "passed": self.passed,
            "refutations": [r.to_dict() for r in self.refutations],
            "seed": self.seed,
            "seconds_setup": self.seconds_setup,
            "seconds_total": self.seconds_total,
        }


# --------------------------------------------------------------------------- input handling


def _to_pandas(frame: Any, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in frame: {missing}")
    if isinstance(frame, pl.LazyFrame):
        frame = frame.select(columns).collect()
    if isinstance(frame, pl.DataFrame):
        out = frame.select(columns).to_pandas()
    elif isinstance(frame, pd.DataFrame):
        out = frame.loc[:, list(columns)].reset_index(drop=True)
    else:
        raise TypeError(f"expected a polars or pandas frame, got {type(frame).__name__}")
    return out


def _check_numeric(df: pd.DataFrame, names: Sequence[str]) -> None:
    for name in names:
        values = df[name].to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"column {name!r} has missing or non-finite values")


def _check_binary(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype == bool:
        return v
    vf = v.astype(float)
    if not np.all(np.isin(vf, (0.0, 1.0))):
        raise ValueError(f"treatment {name!r} must be bool or 0/1")
    return vf == 1.0


def _p_value(refutation: Any) -> float | None:
    res = getattr(refutation, "refutation_result", None)
    if not res or res.get("p_value") is None:
        return None
    p = float(res["p_value"])
    return p if math.isfinite(p) else None


# --------------------------------------------------------------------------- main entry


@_single_threaded_blas_during
def refute_matched(
    frame: Any,
    *,
    treatment: str,
    outcome: str,
    common_causes: Sequence[str],
    weights: str,
    cluster: str | None = None,
    seed: int = 0,
    adjust: bool = True,
    placebo_reps: int = 100,
    subset_fraction: float = 0.8,
    subset_reps: int = 50,
    random_common_cause_reps: int = 50,
    alpha: float = 0.05,
    se: float | None = None,
    placebo_tolerance_se: float = 0.5,
    rcc_tolerance: float = 0.1,
    subset_min_share: float = 0.9,
) -> RefutationReport:
    """Refute a matched ATT with DoWhy's placebo, random-common-cause and subset refuters.

    Model -> identify -> estimate -> refute: ``CausalModel(common_causes=...)``, backdoor
    identification (maximal adjustment set), estimation with :class:`MatchedWeightedEstimator`
    (weighted regression-imputation ATT on the matched sample), then the three refuters. The
    estimator, SE and pass rules are documented in the module docstring.

    Parameters
    ----------
    frame : polars.DataFrame, polars.LazyFrame or pandas.DataFrame
        Matched sample, one row per unit (see the module's input contract).
    treatment : str
        Binary treatment column (bool or 0/1).
    outcome : str
        Outcome column (the change score for DiD).
    common_causes : sequence of str
        Matching features (numeric, bool or categorical strings).
    weights : str
        ATT matching weights (treated 1; twins their summed ``1/k'``).
    cluster : str, optional
        Matched-set id for the influence-function SE (ignored when ``se`` is given).
    seed : int
        Seed; each refuter gets its own ``numpy.random.RandomState`` derived from it, so the
        report is reproducible.
    adjust : bool
        Regression adjustment on ``common_causes`` (default) or plain weighted difference.
    placebo_reps, subset_reps, random_common_cause_reps : int
        Replications per refuter (each is one WLS fit plus a frame copy).
    subset_fraction : float
        Row fraction of each subset.
    alpha : float
        Level of the CI and of the tests.
    se : float, optional
        SE of the estimate to judge against (e.g. Abadie-Imbens from ``twins_did``).
    placebo_tolerance_se, rcc_tolerance, subset_min_share : float
        Thresholds of the pass rules (module docstring).

    Returns
    -------
    RefutationReport

    Notes
    -----
    Assumes the matched sample is given (matching is not redone inside the refuters), a
    binary treatment, no missing values in the used columns, and that the common causes are
    pre-treatment. Replications run sequentially (``n_jobs=1``) to keep the seed meaningful.
    """
    t_start = time.perf_counter()
    if not 0 < subset_fraction < 1:
        raise ValueError("subset_fraction must be in (0, 1)")
    if min(placebo_reps, subset_reps, random_common_cause_reps) < 2:
        raise ValueError("each refuter needs at least 2 replications")
    common_causes = list(common_causes)
    reserved = {treatment, outcome, weights, cluster, "placebo", "w_random"}
    clash = reserved.intersection(common_causes)
    if clash:
        raise ValueError(f"common_causes overlap treatment/outcome/weights/cluster: {clash}")
    if {"placebo", "w_random"} & {treatment, outcome, weights, cluster}:
        raise ValueError("'placebo' and 'w_random' are reserved column names (DoWhy refuters)")
    columns = [treatment, outcome, weights, *common_causes] + ([cluster] if cluster else [])
    df = _to_pandas(frame, list(dict.fromkeys(columns)))
    df[treatment] = _check_binary(df[treatment].to_numpy(), treatment)
    _check_numeric(df, [outcome, weights])
    if (df[weights] < 0).any():
        raise ValueError("weights must be non-negative")
    for name in common_causes:
        if df[name].isna().any():
            raise ValueError(f"common cause {name!r} has missing values")

    # ---- model -> identify -> estimate
    model = CausalModel(data=df, treatment=treatment, outcome=outcome, common_causes=common_causes)
    estimand = model.identify_effect(
        method_name="maximal-adjustment", proceed_when_unidentifiable=True
    )
    estimator = MatchedWeightedEstimator(
        estimand, weights_column=weights, adjust=adjust, cluster_column=cluster
    )
    estimator.with_se = True
    estimate = estimate_effect(
        df,
        treatment,
        outcome,
        "backdoor",
        estimator,
        target_units="att",
        method_params={},
    )
    base = estimator.result_
    assert base is not None
    estimator.with_se = False
    att = float(estimate.value)
    if se is None:
        se_used, se_source = (
            base.se,
            ("influence_function_clustered" if cluster else "influence_function_rows"),
        )
    else:
        if not se > 0:
            raise ValueError("se must be positive")
        se_used, se_source = float(se), "user"
    z = float(stats.norm.ppf(1 - alpha / 2))
    ci = (att - z * se_used, att + z * se_used)
    seconds_setup = time.perf_counter() - t_start

    def run(refute_fn: Any, **kwargs: Any) -> tuple[Any, np.ndarray, float]:
        recorder: list[float] = []
        estimator.recorder = recorder
        try:
            t0 = time.perf_counter()
            # DoWhy divides by the SD of the re-estimates, 0 when they cannot move (adjust=False)
            with np.errstate(divide="ignore", invalid="ignore"):
                refutation = refute_fn(
                    data=df, target_estimand=estimand, estimate=estimate, n_jobs=1, **kwargs
                )
            seconds = time.perf_counter() - t0
        finally:
            estimator.recorder = None
        return refutation, np.asarray(recorder, dtype=float), seconds

    results: list[RefuterResult] = []

    # ---- placebo treatment (permute)
    ref, draws, secs = run(
        refute_placebo_treatment,
        treatment_names=[treatment],
        num_simulations=placebo_reps,
        placebo_type=PlaceboType.PERMUTE,
        random_state=np.random.RandomState(seed),
    )
    mean, sd = float(ref.new_effect), float(np.std(draws, ddof=1))
    p = _p_value(ref)
    tol = placebo_tolerance_se * se_used
    perm_p = float((1 + np.sum(np.abs(draws) >= abs(att))) / (1 + draws.size))
    passed = abs(mean) <= tol and (p is None or p > alpha)
    results.append(
        RefuterResult(
            name="placebo_treatment",
            estimate=att,
            new_effect=mean,
            new_effect_sd=sd,
            p_value=p,
            passed=bool(passed),
            rule=(
                f"|mean placebo effect| = {abs(mean):.4g} <= {placebo_tolerance_se:g} SE "
                f"= {tol:.4g} and DoWhy p (0 within placebo distribution) > {alpha:g}"
            ),
            reps=int(draws.size),
            seconds=secs,
            details={"tolerance": tol, "permutation_p_value_of_estimate": perm_p},
            draws=tuple(draws.tolist()),
        )
    )

    # ---- random common cause
    ref, draws, secs = run(
        refute_random_common_cause,
        num_simulations=random_common_cause_reps,
        random_state=np.random.RandomState(seed + 1),
    )
    max_move = float(np.max(np.abs(draws - att)))
    tol = max(rcc_tolerance * abs(att), se_used)
    rule = (
        f"max |re-estimate - estimate| = {max_move:.4g} <= max({rcc_tolerance:.0%} of "
        f"|estimate|, 1 SE) = {tol:.4g}"
    )
    if not adjust:
        rule += " (vacuous: adjust=False, the estimator ignores common causes)"
    results.append(
        RefuterResult(
            name="random_common_cause",
            estimate=att,
            new_effect=float(ref.new_effect),
            new_effect_sd=float(np.std(draws, ddof=1)),
            p_value=_p_value(ref),
            passed=bool(max_move <= tol),
            rule=rule,
            reps=int(draws.size),
            seconds=secs,
            details={"max_abs_move": max_move, "tolerance": tol},
            draws=tuple(draws.tolist()),
        )
    )

    # ---- data subset (a RandomState *object*: DoWhy passes it to DataFrame.sample, and an
    # int would draw the same subset in every replication)
    ref, draws, secs = run(
        refute_data_subset,
        subset_fraction=subset_fraction,
        num_simulations=subset_reps,
        random_state=np.random.RandomState(seed + 2),
    )
    mean = float(ref.new_effect)
    inside = (draws >= ci[0]) & (draws <= ci[1])
    share = float(inside.mean())
    passed = ci[0] <= mean <= ci[1] and share >= subset_min_share
    results.append(
        RefuterResult(
            name="data_subset",
            estimate=att,
            new_effect=mean,
            new_effect_sd=float(np.std(draws, ddof=1)),
            p_value=_p_value(ref),
            passed=bool(passed),
            rule=(
                f"mean subset estimate {mean:.4g} in {1 - alpha:.0%} CI "
                f"[{ci[0]:.4g}, {ci[1]:.4g}] and share of subset estimates in CI "
                f"{share:.0%} >= {subset_min_share:.0%} (fraction {subset_fraction:g})"
            ),
            reps=int(draws.size),
            seconds=secs,
            details={"share_in_ci": share, "ci_low": ci[0], "ci_high": ci[1]},
            draws=tuple(draws.tolist()),
        )
    )

    return RefutationReport(
        estimate=att,
        se=se_used,
        se_source=se_source,
        ci=ci,
        alpha=alpha,
        adjust=adjust,
        n_treated=base.n_treated,
        n_controls=base.n_controls,
        n_clusters=base.n_clusters,
        refutations=tuple(results),
        seed=seed,
        seconds_setup=seconds_setup,
        seconds_total=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------- placebo in time


@dataclass(frozen=True)
class PlaceboInTimeResult:
    """Result of :func:`placebo_in_time`.

    Attributes
    ----------
    estimate, se : float
        Placebo matched DiD and its influence-function SE (clustered on matched sets when a
        cluster id is given, else per row).
    ci : tuple of float
        Normal (1 - alpha) interval.
    z, p_value : float
        Two-sided test of a zero placebo effect.
    passed : bool
        ``p_value > alpha`` (the placebo is not significant).
    rule : str
        The pass rule.
    shift, baseline_months, horizon : int
        Fake start ``-shift``; outcome ``Y(horizon) - mean(Y(-shift-baseline_months..-shift-1))``.
    columns_post : str
        Column used as the fake post-period outcome.
    columns_baseline : tuple of str
        Columns averaged for the fake baseline.
    n_treated, n_controls, n_clusters : int
        Sample sizes.
    """

    estimate: float
    se: float
    ci: tuple[float, float]
    z: float
    p_value: float
    passed: bool
    rule: str
    shift: int
    baseline_months: int
    horizon: int
    columns_post: str
    columns_baseline: tuple[str, ...]
    n_treated: int
    n_controls: int
    n_clusters: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view."""
        return {
            "estimate": self.estimate,
            "se": self.se,
            "ci": list(self.ci),
            "z": self.z,
            "p_value": self.p_value,
            "passed": self.passed,
            "rule": self.rule,
            "shift": self.shift,
            "baseline_months": self.baseline_months,
            "horizon": self.horizon,
            "columns_post": self.columns_post,
            "columns_baseline": list(self.columns_baseline),
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_clusters": self.n_clusters,
        }


@_single_threaded_blas_during
def placebo_in_time(
    frame: Any,
    *,
    treatment: str,
    pre_outcomes: Mapping[int, str],
    weights: str,
    cluster: str | None = None,
    shift: int = 12,
    baseline_months: int = 12,
    horizon: int = -1,
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
) -> PlaceboInTimeResult:
    """Matched DiD with a fake treatment start ``shift`` months early (a pre-period placebo).

    The fake change is ``Y(horizon) - mean(Y(-shift-baseline_months), ..., Y(-shift-1))``
    (defaults: ``Y(-1) - mean(Y(-24..-13))``), and the estimate is the weighted matched
    difference of that change between treated and twins (with ``covariates``: the regression
    imputation of :func:`weighted_att`). The SE is the influence-function SE of
    :func:`weighted_att` summed within matched sets (``cluster``: the treated person's set) or
    per row without it; weights are held fixed.

    Parameters
    ----------
    frame : polars or pandas frame
        Matched sample with the pre-period outcome columns.
    treatment : str
        Binary treatment column.
    pre_outcomes : mapping int -> str
        Event month (negative, relative to the true start at 0) to outcome column, e.g.
        ``{-24: "y_m24", ..., -1: "y_m1"}``; must cover the months used.
    weights : str
        ATT matching weights.
    cluster : str, optional
        Matched-set id.
    shift : int
        Months the fake start precedes the true start (fake start at ``-shift``).
    baseline_months : int
        Months before the fake start averaged as its baseline.
    horizon : int
        Fake post month, ``-shift <= horizon <= -1`` (stays before the true start).
    covariates : sequence of str
        Optional regression adjustment (default none: the plain matched DiD).
    alpha : float
        Test level.

    Returns
    -------
    PlaceboInTimeResult

    Notes
    -----
    Assumes no anticipation before ``horizon``. If the matching used the very pre-period
    outcomes that enter the placebo (e.g. the last 12 months' income), the placebo is
    partly balanced by construction and is a weaker test; the months before the matching
    window are the informative part. With very large samples a tiny but real pre-trend is
    significant: read the estimate next to the p-value.
    """
    if shift < 1 or baseline_months < 1:
        raise ValueError("shift and baseline_months must be >= 1")
    if not -shift <= horizon <= -1:
        raise ValueError(f"horizon must be in [-shift, -1] = [{-shift}, -1], got {horizon}")
    base_months = list(range(-shift - baseline_months, -shift))
    needed = [*base_months, horizon]
    missing = [m for m in needed if m not in pre_outcomes]
    if missing:
        raise KeyError(f"pre_outcomes lacks months {missing}")
    post_col = pre_outcomes[horizon]
    base_cols = tuple(pre_outcomes[m] for m in base_months)
    columns = [treatment, weights, post_col, *base_cols, *covariates]
    if cluster:
        columns.append(cluster)
    df = _to_pandas(frame, list(dict.fromkeys(columns)))
    t = _check_binary(df[treatment].to_numpy(), treatment)
    _check_numeric(df, [weights, post_col, *base_cols])
    dy = df[post_col].to_numpy(dtype=float) - df[list(base_cols)].to_numpy(dtype=float).mean(axis=1)
    res = weighted_att(
        dy,
        t,
        df[weights].to_numpy(dtype=float),
        _design(df, list(covariates)),
        cluster=df[cluster].to_numpy() if cluster else None,
    )
    z = res.att / res.se if res.se > 0 else math.nan
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan
    crit = float(stats.norm.ppf(1 - alpha / 2))
    return PlaceboInTimeResult(
        estimate=res.att,
        se=res.se,
        ci=(res.att - crit * res.se, res.att + crit * res.se),
        z=float(z),
        p_value=p,
        passed=bool(p > alpha),
        rule=f"placebo not significant: two-sided p = {p:.3g} > {alpha:g}",
        shift=shift,
        baseline_months=baseline_months,
        horizon=horizon,
        columns_post=post_col,
        columns_baseline=base_cols,
        n_treated=res.n_treated,
        n_controls=res.n_controls,
        n_clusters=res.n_clusters,
    )
