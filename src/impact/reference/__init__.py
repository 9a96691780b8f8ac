"""Reference tables for the synthetic generator and the research panel.

Small, versioned tables shipped with the package (``impact/reference/tables_csv/*.csv``) and
loaded as polars DataFrames with explicit dtypes:

* geography: :func:`municipalities` (43 local governments after the 2021 reform),
  :func:`regions` (6 statistical regions, NUTS-3);
* classifications: :func:`isco_major_groups`, :func:`isco_occupations` (ISCO-08),
  :func:`nace_sections`, :func:`nace_classes` (NACE Rev. 2), :func:`isced_levels`
  (ISCED 2011), :func:`isced_fields` (ISCED-F 2013);
* macro series: :func:`cpi_monthly` (HICP, 2015 = 100), :func:`wages_annual`;
* calendar: :func:`working_days_monthly`, :func:`public_holidays`, :func:`easter_sunday`.

Classification codes and titles are exact; wage ratios, employment weights, populations,
urbanisation classes and the novadi codes are approximations or synthetic. ``SOURCES.md``
in this package says which is which for every column. Nothing here is official
statistics: the tables exist to make synthetic registers plausible and to give the panel
deflators and calendars.
"""

from impact.reference._io import FIRST_YEAR, LAST_YEAR
from impact.reference.macro import (
    CPI_PROJECTED_INFLATION,
    MINIMUM_WAGE_PROJECTED_GROWTH,
    WAGE_PROJECTED_GROWTH,
    cpi_monthly,
    wages_annual,
)
from impact.reference.tables import (
    isced_fields,
    isced_levels,
    isco_major_groups,
    isco_occupations,
    municipalities,
    nace_classes,
    nace_sections,
    regions,
)
from impact.reference.workdays import easter_sunday, public_holidays, working_days_monthly

__all__ = [
    "CPI_PROJECTED_INFLATION",
    "FIRST_YEAR",
    "LAST_YEAR",
    "MINIMUM_WAGE_PROJECTED_GROWTH",
    "WAGE_PROJECTED_GROWTH",
    "cpi_monthly",
    "easter_sunday",
    "isced_fields",
    "isced_levels",
    "isco_major_groups",
    "isco_occupations",
    "municipalities",
    "nace_classes",
    "nace_sections",
    "public_holidays",
    "regions",
    "wages_annual",
    "working_days_monthly",
]
