"""Statistical twins: nearest-neighbour matching within exact strata (MatchIt vocabulary).

Public API: :func:`match`, :class:`MatchOptions`, :class:`MatchResult`,
:class:`PropensityModel` (fit once, e.g. pooled over cohorts, then pass the logit as a
precomputed score).
"""

from impact.twins.matching import MatchResult, match, tie_order
from impact.twins.options import Distance, Estimand, MatchOptions, MatchOrder, PsModel
from impact.twins.propensity import PropensityModel

__all__ = [
    "Distance",
    "Estimand",
    "MatchOptions",
    "MatchOrder",
    "MatchResult",
    "PropensityModel",
    "PsModel",
    "match",
    "tie_order",
]
