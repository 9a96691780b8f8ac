"""Options of the statistical-twin matching engine, in R MatchIt vocabulary.

The options object is frozen and validated when it is built, so a bad value fails before any
data are touched (pyfixest style). Names follow ``MatchIt::matchit(method = "nearest")``:
``distance``, ``exact``, ``mahvars``, ``caliper``, ``std.caliper`` (here ``std_caliper``),
``ratio``, ``replace``, ``m.order`` (here ``m_order``) and ``estimand``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Distance = Literal["glm", "mahalanobis"]
"""``"glm"``: logistic-regression propensity score, matched on its logit (linear predictor).
``"mahalanobis"``: Mahalanobis distance on the (one-hot, standardised) features."""

MatchOrder = Literal["largest", "smallest", "random"]
"""Order in which treated units pick controls when matching without replacement."""

PsModel = Literal["per_call", "precomputed"]
"""``"per_call"``: fit the propensity model on the rows of this call (one cohort).
``"precomputed"``: use a logit score column supplied by the caller (e.g. a model pooled over
cohorts, see :class:`impact.twins.PropensityModel`)."""

Estimand = Literal["ATT"]


@dataclass(frozen=True, kw_only=True)
class MatchOptions:
    """Nearest-neighbour matching options (one matching problem = one cohort).

    Parameters
    ----------
    distance
        ``"glm"`` (default): propensity score from an (unpenalised by default) logistic
        regression; units are matched on the *logit* of the score, as MatchIt does with
        ``link = "linear.logit"``. ``"mahalanobis"``: Mahalanobis distance on the features,
        whitened by the pooled within-group covariance matrix of the call (MatchIt's choice).
    exact
        Columns whose values must agree exactly between a treated unit and its twins (exact
        strata). ``None``: one stratum. Exact columns are *not* added to the propensity model
        automatically; list them in ``features`` too if they should enter it.
    exact_fallback
        Coarser exact strata for treated units left without a twin, tried in order (a
        multi-pass or hierarchical exact match). Each entry must be a strict subset of the
        one before (the first of ``exact``); ``()`` is a single stratum. A treated unit
        unmatched in one pass (no control in its stratum, none within the caliper, or, without
        replacement, none left) is matched again in the next pass, against every control (with
        replacement) or the controls no earlier pass used (without), with the same distance
        and caliper. Twins found in a later pass still agree on the coarser keys; each pair
        records its ``match_pass`` (0 = ``exact``). ``None`` (default): one pass.
    mahvars
        MatchIt's ``mahvars``: with ``distance="glm"``, the propensity score only defines the
        caliper, and among the controls within it each treated unit takes the ``ratio``
        nearest in Mahalanobis distance on these columns (numeric standardised, categorical
        one-hot; whitened by the pooled within-group covariance of the call, as for
        ``distance="mahalanobis"``). The pairs' ``distance`` is then the Mahalanobis
        distance. Needs a caliper and ``replace=True``. The search is not all-pairs: the
        Mahalanobis-nearest are chosen among the ``mahvars_candidates`` controls nearest in
        the score (those within the caliper), which is MatchIt's rule whenever the caliper
        holds no more controls than that; a treated unit is matched exactly when the
        score-only match would match it.
    mahvars_candidates
        See ``mahvars`` (default 200).
    caliper
        Maximum distance between a treated unit and a twin; ``None`` disables it. With
        ``distance="glm"`` and ``std_caliper=True`` it is in standard deviations of the logit
        score over all rows of the call (treated and controls, ``ddof=1``; MatchIt's
        ``sd(distance)``), default 0.2 (Austin 2011). With ``distance="mahalanobis"`` the
        caliper is a bound on the Mahalanobis distance itself, which is already in
        standard-deviation units of the whitened features, so ``std_caliper`` does not rescale
        it. Note that the typical Mahalanobis distance between neighbours grows with the
        number of features (about ``sqrt(p)`` times the per-feature gap): use a larger value
        or ``None`` there.
    std_caliper
        Whether ``caliper`` is in SD units of the logit score (``True``) or raw logit units.
    ratio
        ``k``, the number of twins per treated unit. Fewer are kept when fewer controls lie
        within the caliper (the treated unit's weights are then ``1/k'``).
    replace
        With replacement (default), each treated unit takes its ``k`` nearest controls
        independently of the others; a control may serve several treated units. Without
        replacement, matching is greedy: in ``m_order`` order each treated unit takes its
        nearest *available* control, in ``ratio`` rounds (first twin for everybody, then the
        second, ...; MatchIt's scheme), and a used control is removed.
    m_order
        Greedy order without replacement. ``"largest"`` (MatchIt's default for ATT): descending
        score, so the hardest-to-match treated units choose first. ``"smallest"``: ascending.
        ``"random"``: a seeded permutation (the only choice for ``distance="mahalanobis"``,
        which is also its default). MatchIt's ``"data"`` order is not offered: it would make
        the result depend on the row order of the input.
    seed
        Seeds the tie-breaking key of controls (and the ``"random"`` order). Same seed, same
        data (in any row order) -> same twins.
    ps_model
        ``"per_call"`` or ``"precomputed"`` (then pass ``score=`` to :func:`match`).
    ps_C
        Inverse regularisation strength of the logistic regression. Default ``inf``: no
        penalty, i.e. the maximum-likelihood GLM that MatchIt fits with ``glm()``.
    estimand
        Only ``"ATT"``: twins are found for treated units.
    """

    distance: Distance = "glm"
    exact: tuple[str, ...] | None = None
    exact_fallback: tuple[tuple[str, ...], ...] | None = None
    mahvars: tuple[str, ...] | None = None
    mahvars_candidates: int = 200
    caliper: float | None = 0.2
    std_caliper: bool = True
    ratio: int = 5
    replace: bool = True
    m_order: MatchOrder | None = None
    seed: int = 0
    ps_model: PsModel = "per_call"
    ps_C: float = field(default=math.inf)
    estimand: Estimand = "ATT"

    def __post_init__(self) -> None:
        if self.distance not in ("glm", "mahalanobis"):
            raise ValueError(f"distance must be 'glm' or 'mahalanobis' (got {self.distance!r})")
        if self.exact is not None:
            if isinstance(self.exact, str) or not isinstance(self.exact, Sequence):
                raise TypeError("exact must be a list of column names or None")
            exact = tuple(self.exact)
            if not exact:
                exact = None
            elif len(set(exact)) != len(exact):
                raise ValueError(f"exact lists a column twice: {list(exact)}")
            object.__setattr__(self, "exact", exact)
        if self.exact_fallback is not None:
            object.__setattr__(self, "exact_fallback", self._fallback_levels())
        if self.mahvars is not None:
            if isinstance(self.mahvars, str) or not isinstance(self.mahvars, Sequence):
                raise TypeError("mahvars must be a list of column names or None")
            mahvars = tuple(self.mahvars) or None
            object.__setattr__(self, "mahvars", mahvars)
            if mahvars is not None:
                if self.distance != "glm":
                    raise ValueError("mahvars needs distance='glm' (the score gives the caliper)")
                if self.caliper is None:
                    raise ValueError("mahvars needs a caliper on the propensity score")
                if not self.replace:
                    raise ValueError("mahvars is implemented for replace=True only")
        m_c = self.mahvars_candidates
        if isinstance(m_c, bool) or not isinstance(m_c, int) or m_c < 1:
            raise ValueError(f"mahvars_candidates must be a positive integer (got {m_c!r})")
        if self.caliper is not None and not (self.caliper > 0 and math.isfinite(self.caliper)):
            raise ValueError(f"caliper must be a positive number or None (got {self.caliper!r})")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, int) or self.ratio < 1:
            raise ValueError(f"ratio must be a positive integer (got {self.ratio!r})")
        if self.m_order is None:
            object.__setattr__(self, "m_order", "largest" if self.distance == "glm" else "random")
        if self.m_order not in ("largest", "smallest", "random"):
            raise ValueError(
                f"m_order must be 'largest', 'smallest' or 'random' (got {self.m_order!r})"
            )
        if self.distance == "mahalanobis" and self.m_order != "random":
            raise ValueError(
                "distance='mahalanobis' has no score to order by: use m_order='random'"
            )
        if self.ps_model not in ("per_call", "precomputed"):
            raise ValueError(
                f"ps_model must be 'per_call' or 'precomputed' (got {self.ps_model!r})"
            )
        if self.distance == "mahalanobis" and self.ps_model == "precomputed":
            raise ValueError("ps_model='precomputed' needs distance='glm'")
        if not self.ps_C > 0:
            raise ValueError(f"ps_C must be positive (got {self.ps_C!r})")
        if self.estimand != "ATT":
            raise ValueError(f"only estimand='ATT' is implemented (got {self.estimand!r})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int (got {self.seed!r})")

    def _fallback_levels(self) -> tuple[tuple[str, ...], ...] | None:
        """``exact_fallback`` validated: tuples, each a strict subset of the level before."""
        levels = self.exact_fallback
        if isinstance(levels, str) or not isinstance(levels, Sequence):
            raise TypeError("exact_fallback must be a list of lists of column names or None")
        out: list[tuple[str, ...]] = []
        previous = tuple(self.exact or ())
        if levels and not previous:
            raise ValueError("exact_fallback needs exact strata to coarsen")
        for level in levels:
            if isinstance(level, str) or not isinstance(level, Sequence):
                raise TypeError(
                    f"exact_fallback entries must be lists of column names (got {level!r})"
                )
            cols = tuple(level)
            if len(set(cols)) != len(cols):
                raise ValueError(f"exact_fallback lists a column twice: {list(cols)}")
            if not set(cols) < set(previous):
                raise ValueError(
                    f"exact_fallback level {list(cols)} is not a strict subset of the level "
                    f"before it {list(previous)}: each pass must coarsen the strata"
                )
            out.append(cols)
            previous = cols
        return tuple(out) or None

    @property
    def exact_levels(self) -> tuple[tuple[str, ...], ...]:
        """The exact strata of every pass: ``exact`` (``()`` for one stratum), then the
        ``exact_fallback`` levels."""
        return (tuple(self.exact or ()), *(self.exact_fallback or ()))
