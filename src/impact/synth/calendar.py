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


def days_in_month(start: date, n_months: int) -> np.ndarray:
    """Calendar days of each month of the window (int64)."""
    first = month64(start) + np.arange(n_months + 1)
    return np.diff(first.astype("datetime64[D]")).astype(np.int64)


def age_years(birth: np.ndarray, on: np.datetime64) -> np.ndarray:
    """Completed years of age on a day, for ``datetime64[D]`` birth dates."""
    b = birth.astype("datetime64[D]")
    by = b.astype("datetime64[Y]").astype(np.int64) + 1970
    oy = int(np.datetime64(on, "Y").astype(np.int64)) + 1970
    b_md = (b - b.astype("datetime64[Y]")).astype(np.int64)
    on_d = np.datetime64(on, "D")
    o_md = int((on_d - on_d.astype("datetime64[Y]")).astype(np.int64))
    return oy - by - (o_md < b_md).astype(np.int64)
