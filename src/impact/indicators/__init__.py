"""Impact indicators of the report's Table 35 for participants, twins and the net effect.

:func:`compute_indicators` reads the panel (participants and twins only), the twins table
and the treatment table and returns:

- ``table``: one row per indicator x breakdown cell (:data:`~impact.indicators.estimate.
  COLUMNS`), with internal magnitude columns for disclosure control;
- ``income_curves``: mean real earnings by month from leaving, both arms, with bands;
- ``career_step_km``: Kaplan-Meier curves of the time to the next career step;
- ``specs``: the definitions (labels in English and Latvian, population, unit).

Indicators (ids; ``h`` = months after leaving): EECR06 with its four criteria, combined and
the two relative variants (``eecr06_*``); employment, registered unemployment, real
earnings at ``h``; months and days employed, benefit and sickness days and real earnings
summed over ``h`` months; stays with the employer; real income increase; vertical and
horizontal mobility; career step within ``h``; career resilience; over-education and field
mismatch; the composite index; ROI per EUR of public and of total cost and the fiscal
return (``roi_*``, ``fiscal_return_*``). Nothing here reads the generator's ``truth/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impact.indicators.settings import IndicatorSettings

if TYPE_CHECKING:
    from impact.indicators.compute import (
        DIMENSIONS,
        IndicatorResult,
        compute_indicators,
        load_context,
        prepare,
        read_pairs,
    )

__all__ = ["DIMENSIONS", "IndicatorResult", "IndicatorSettings", "compute_indicators",
           "load_context", "prepare", "read_pairs"]


def __getattr__(name: str) -> Any:
    """Lazy exports: ``import impact.indicators`` (for the settings) stays light."""
    if name in __all__:
        from impact.indicators import compute

        return getattr(compute, name)
    raise AttributeError(name)
