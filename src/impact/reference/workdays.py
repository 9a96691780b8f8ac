"""Latvian public holidays and working days per month.

Working days are Monday-Friday minus the public holidays of the Latvian law "Par svētku,
atceres un atzīmējamām dienām" that fall on a weekday:

* 1 January (New Year), Good Friday, Easter Monday, 1 May (Labour Day and Convocation of
  the Constituent Assembly), 4 May (Restoration of Independence), 23 June (Līgo),
  24 June (Jāņi), 18 November (Proclamation of the Republic), 24, 25, 26 and 31 December.
  Easter Sunday, Whit Sunday and Mother's Day always fall on a Sunday.

Deliberately ignored (documented simplifications): the rule that moves 4 May and
18 November to the next Monday when they fall on a weekend, one-off holidays (e.g. the
Song and Dance Festival closing days in 2018 and 2023, 29 May 2023 after the ice-hockey
bronze), working-day transfers by Cabinet order, and shortened pre-holiday days.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from impact.reference._io import FIRST_YEAR, LAST_YEAR

__all__ = ["WORKING_DAYS_SCHEMA", "easter_sunday", "public_holidays", "working_days_monthly"]

WORKING_DAYS_SCHEMA = pl.Schema({"month": pl.Date, "working_days": pl.Int8})

_FIXED = (
    (1, 1, "New Year's Day"),
    (5, 1, "Labour Day; Convocation of the Constituent Assembly"),
    (5, 4, "Restoration of Independence Day"),
    (6, 23, "Midsummer Eve (Līgo)"),
    (6, 24, "Midsummer Day (Jāņi)"),
    (11, 18, "Proclamation Day of the Republic of Latvia"),
    (12, 24, "Christmas Eve"),
    (12, 25, "Christmas Day"),
    (12, 26, "Second Day of Christmas"),
    (12, 31, "New Year's Eve"),
)


def easter_sunday(years: np.ndarray | list[int]) -> np.ndarray:
    """Gregorian (Western) Easter Sunday for each year, vectorised.

    Uses the anonymous Gregorian algorithm (Meeus/Jones/Butcher), valid for all years of
    the Gregorian calendar.

    Returns
    -------
    numpy.ndarray
        ``datetime64[D]`` dates.
    """
    y = np.asarray(years, dtype=np.int64)
    a = y % 19
    b, c = y // 100, y % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    first_of_month = (y - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    return first_of_month.astype("datetime64[D]") + (day - 1)


def public_holidays(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> pl.DataFrame:
    """Latvian public holidays (rest days) between two years, inclusive.

    Returns
    -------
    polars.DataFrame
        ``date`` (pl.Date) and ``name`` (English), sorted by date, weekend days included
        (they simply do not reduce the working-day count).
    """
    years = np.arange(first_year, last_year + 1)
    easter = easter_sunday(years)
    dates = [easter - 2, easter + 1]
    names = [["Good Friday"] * years.size, ["Easter Monday"] * years.size]
    for month, day, name in _FIXED:
        first = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
        dates.append(first.astype("datetime64[D]") + (day - 1))
        names.append([name] * years.size)
    return pl.DataFrame(
        {"date": np.concatenate(dates), "name": [n for block in names for n in block]},
        schema={"date": pl.Date, "name": pl.String},
    ).sort("date")


def working_days_monthly() -> pl.DataFrame:
    """Working days (Mon-Fri minus weekday public holidays) per month, 2015-01 .. 2030-12.

    Returns
    -------
    polars.DataFrame
        ``month`` (first day of month, pl.Date) and ``working_days`` (Int8), typically
        18-23. See the module docstring for the holidays counted and those ignored.
    """
    hol = public_holidays()["date"].to_numpy().astype("datetime64[D]")
    months = np.arange(
        np.datetime64(f"{FIRST_YEAR}-01", "M"), np.datetime64(f"{LAST_YEAR + 1}-01", "M")
    )
    begin = months.astype("datetime64[D]")
    end = (months + 1).astype("datetime64[D]")
    counts = np.busday_count(begin, end, weekmask="1111100", holidays=hol)
    return pl.DataFrame(
        {
            "month": pl.date_range(
                date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 1), interval="1mo", eager=True
            ),
            "working_days": counts,
        },
        schema=WORKING_DAYS_SCHEMA,
    )
