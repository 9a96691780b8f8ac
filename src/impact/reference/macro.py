"""Price and wage series for Latvia: monthly HICP index and annual wage levels.

Both tables span 2015-2030. Observed years come from the packaged CSVs (approximate
published figures, see ``SOURCES.md``); later years are projections with the fixed rates
below and are flagged by a ``projected`` column so that no analysis mistakes them for data.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from impact.reference._io import FIRST_YEAR, LAST_YEAR, read_table

__all__ = [
    "CPI_PROJECTED_INFLATION",
    "CPI_SCHEMA",
    "MINIMUM_WAGE_PROJECTED_GROWTH",
    "WAGES_SCHEMA",
    "WAGE_PROJECTED_GROWTH",
    "cpi_monthly",
    "wages_annual",
]

#: Annual average inflation assumed after the last observed year.
CPI_PROJECTED_INFLATION = 0.025
#: Annual growth of the average gross wage assumed after the last observed year.
WAGE_PROJECTED_GROWTH = 0.07
#: Annual growth of the minimum wage after the last legislated year (rounded to EUR 10).
MINIMUM_WAGE_PROJECTED_GROWTH = 0.05

CPI_SCHEMA = pl.Schema({"month": pl.Date, "cpi": pl.Float64, "projected": pl.Boolean})
WAGES_SCHEMA = pl.Schema(
    {
        "year": pl.Int32,
        "avg_gross_wage": pl.Float64,
        "minimum_wage": pl.Float64,
        "projected": pl.Boolean,
        "minimum_wage_projected": pl.Boolean,
    }
)
_HICP_CSV = pl.Schema({"year": pl.Int32, "inflation_pct": pl.Float64})
_WAGES_CSV = pl.Schema({"year": pl.Int32, "avg_gross_wage": pl.Float64, "minimum_wage": pl.Float64})


def _annual_index() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Years, annual-average index and projected flags, from FIRST_YEAR - 1.

    The extra leading year (index ``100 / (1 + inflation[FIRST_YEAR])``) only anchors the
    start of the smooth monthly path; it is dropped from the output. FIRST_YEAR = 100.
    """
    obs = read_table("hicp_annual.csv", _HICP_CSV).sort("year")
    years = np.arange(FIRST_YEAR, LAST_YEAR + 1)
    last_obs = int(obs["year"].max())
    known = dict(zip(obs["year"].to_list(), (obs["inflation_pct"] / 100).to_list(), strict=True))
    if FIRST_YEAR not in known:
        raise ValueError(f"hicp_annual.csv must contain {FIRST_YEAR}")
    rate = np.array([known.get(int(y), CPI_PROJECTED_INFLATION) for y in years])
    level = 100.0 * np.concatenate([[1.0 / (1.0 + rate[0]), 1.0], np.cumprod(1.0 + rate[1:])])
    years = np.concatenate([[FIRST_YEAR - 1], years])
    return years, level, years > last_obs


def _smooth_monthly(annual_level: np.ndarray) -> np.ndarray:
    """Smoothest monthly path whose calendar-year means equal ``annual_level`` exactly.

    Minimises the sum of squared second differences of the monthly levels subject to the
    linear constraints "mean of the 12 months of year k = annual_level[k]" (a quadratic
    programme solved through its KKT system; second differences vanish only on straight
    lines, and a line is pinned down by two annual means, so the system is non-singular).
    """
    n_years = annual_level.size
    n = 12 * n_years
    d2 = np.diff(np.eye(n), n=2, axis=0)
    a = np.kron(np.eye(n_years), np.full((1, 12), 1 / 12))
    kkt = np.block([[2 * d2.T @ d2, a.T], [a, np.zeros((n_years, n_years))]])
    rhs = np.concatenate([np.zeros(n), annual_level])
    return np.linalg.solve(kkt, rhs)[:n]


def cpi_monthly() -> pl.DataFrame:
    """Monthly consumer price index for Latvia (HICP, annual average 2015 = 100).

    Returns
    -------
    polars.DataFrame
        ``month`` (first day of month, 2015-01 .. 2030-12), ``cpi`` (index),
        ``projected`` (True for months of years after the last observed one).

    Notes
    -----
    Built from annual average inflation rates (2015 0.2 %, 2016 0.1 %, 2017 2.9 %, 2018
    2.6 %, 2019 2.7 %, 2020 0.1 %, 2021 3.2 %, 2022 17.2 %, 2023 9.1 %, 2024 1.3 %,
    2025 ~3.7 %), approximating Eurostat/CSP HICP figures for Latvia, then 2.5 % a year
    (:data:`CPI_PROJECTED_INFLATION`). The monthly path is the smoothest one (least
    squared second differences) whose annual means reproduce those rates exactly, solved
    with one extra year before 2015 (at the 2015 rate) so the start has no end effect. It
    has no seasonality; it dips slightly (< 0.2 % a month) in 2015-16 and 2020, as the
    published index did, and levels off after the 2022-23 peak. It is **not** the published monthly
    HICP: good for deflating synthetic wages, not for citing.
    """
    _, level, projected = _annual_index()
    monthly = _smooth_monthly(level)[12:]  # drop the anchoring year
    projected = projected[1:]
    months = pl.date_range(
        date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 1), interval="1mo", eager=True
    )
    return pl.DataFrame(
        {
            "month": months,
            "cpi": monthly,
            "projected": np.repeat(projected, 12),
        },
        schema=CPI_SCHEMA,
    )


def wages_annual() -> pl.DataFrame:
    """Average gross monthly wage and minimum monthly wage in Latvia, 2015-2030 (EUR).

    Returns
    -------
    polars.DataFrame
        ``year``; ``avg_gross_wage`` (CSP average gross monthly wage, full-time
        equivalent, approximate published values 2015-2025, then +7 % a year,
        :data:`WAGE_PROJECTED_GROWTH`); ``minimum_wage`` (statutory monthly minimum wage
        as legislated through 2026, then +5 % a year rounded to EUR 10,
        :data:`MINIMUM_WAGE_PROJECTED_GROWTH`); ``projected`` (the average wage is a
        projection); ``minimum_wage_projected`` (the minimum wage is a projection).
    """
    obs = read_table("wages_annual.csv", _WAGES_CSV).sort("year")
    years = np.arange(FIRST_YEAR, LAST_YEAR + 1)
    by_year = {int(r["year"]): r for r in obs.iter_rows(named=True)}
    avg = np.full(years.size, np.nan)
    mini = np.full(years.size, np.nan)
    for i, y in enumerate(years):
        row = by_year.get(int(y))
        if row is not None:
            avg[i] = np.nan if row["avg_gross_wage"] is None else row["avg_gross_wage"]
            mini[i] = np.nan if row["minimum_wage"] is None else row["minimum_wage"]
    avg_proj = np.isnan(avg)
    min_proj = np.isnan(mini)
    for i in range(1, years.size):  # 16 years: a loop over years, not rows
        if avg_proj[i]:
            avg[i] = round(avg[i - 1] * (1 + WAGE_PROJECTED_GROWTH), 2)
        if min_proj[i]:
            mini[i] = round(mini[i - 1] * (1 + MINIMUM_WAGE_PROJECTED_GROWTH), -1)
    if avg_proj[0] or min_proj[0]:
        raise ValueError(f"wages_annual.csv must contain {FIRST_YEAR}")
    return pl.DataFrame(
        {
            "year": years,
            "avg_gross_wage": avg,
            "minimum_wage": mini,
            "projected": avg_proj,
            "minimum_wage_projected": min_proj,
        },
        schema=WAGES_SCHEMA,
    )
