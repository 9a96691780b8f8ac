"""Estimators of treatment effects and their inference.

``staggered``: Callaway & Sant'Anna (2021) group-time ATT(g,t) and their aggregations.
``inference``: influence-function inference shared by the estimators (analytic variance,
multiplier bootstrap with uniform bands, Wald test).

Exports are lazy: importing a submodule (``impact.estimate.did``) does not load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from impact.estimate.staggered import (
        AggregateResults,
        ATTgtResults,
        PreTest,
        StaggeredOptions,
        att_gt,
    )

_STAGGERED = ("AggregateResults", "ATTgtResults", "PreTest", "StaggeredOptions", "att_gt")

__all__ = ["AggregateResults", "ATTgtResults", "PreTest", "StaggeredOptions", "att_gt"]


def __getattr__(name: str) -> object:
    if name in _STAGGERED:
        from impact.estimate import staggered

        return getattr(staggered, name)
    raise AttributeError(f"module 'impact.estimate' has no attribute {name!r}")
