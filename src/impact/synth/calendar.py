"""Month arithmetic on numpy ``datetime64`` arrays.

The generator counts time in month indices ``t = 0 .. n_months - 1`` from the
configuration's first month; these helpers convert between indices, months and
days without Python loops.
"""

from __future__ import annotations

from datetime import date

import numpy as np


def month64(d: date | str) -> np.datetime64:
    """The ``datetime64[M]`` of a date or a ``YYYY-MM[-DD]`` string."""
    return np.datetime64(str(d)[:7], "M")


def month_index(d: date | str, start: date) -> int:
    """Index of the month containing ``d`` relative to ``start``'s month."""
    return int((month64(d) - month64(start)).astype(int))


def months_between(a: np.ndarray, b: np.datetime64) -> np.ndarray:
    """Whole calendar months from ``b`` to the months of the dates ``a``."""
    return (a.astype("datetime64[M]") - b).astype(np.int64)


def month_start_days(start: date, n_months: int) -> np.ndarray:
    """First day (``datetime64[D]``) of each month of the window."""
    return (month64(start) + np.arange(n_months)).astype("datetime64[D]")


def days_in_month(start: date, n_months: int) -> np.ndarray:
    """Calendar days of each month of the window (int64)."""
    first = month64(start) + np.arange(n_months + 1)
    return np.diff(first.astype("datetime64[D]")).astype(np.int64)


def day_in_month(t: np.ndarray, u: np.ndarray, start: date, n_months: int) -> np.ndarray:
    """A date in month ``t`` chosen by the uniform ``u`` in [0, 1).

    Parameters
    ----------
    t
        Month indices (within the window, or beyond it: months are extrapolated).
    u
        Uniform draws of the same length.
    """
    t = np.asarray(t, dtype=np.int64)
    first = (month64(start) + t).astype("datetime64[D]")
    nxt = (month64(start) + t + 1).astype("datetime64[D]")
    length = (nxt - first).astype(np.int64)
    offset = np.minimum((u * length).astype(np.int64), length - 1)
    return first + offset


def age_years(birth: np.ndarray, on: np.datetime64) -> np.ndarray:
    """Completed years of age on a day, for ``datetime64[D]`` birth dates."""
    b = birth.astype("datetime64[D]")
    by = b.astype("datetime64[Y]").astype(np.int64) + 1970
    oy = int(np.datetime64(on, "Y").astype(np.int64)) + 1970
    b_md = (b - b.astype("datetime64[Y]")).astype(np.int64)
    on_d = np.datetime64(on, "D")
    o_md = int((on_d - on_d.astype("datetime64[Y]")).astype(np.int64))
    return oy - by - (o_md < b_md).astype(np.int64)
