"""Dense month arrays of the few persons an indicator run needs: participants and twins.

The indicators are computed for matched participants and their twins only (at national
scale about 15,000 + 60,000 persons out of 1.2 million), so instead of holding the whole
panel in memory (:class:`impact.twins.features.PanelArrays`) the panel's year partitions
are scanned once with a filter on ``pid`` and the wanted columns are scattered into
``[person, month]`` arrays over every month of the panel.

Conventions
-----------
- Numeric columns are float64 with NaN where the person has no panel row that month
  (not yet resident, dead or emigrated): missing, never zero.
- Text columns (employer, occupation, contract, ...) are int32 codes into sorted levels,
  ``-1`` where missing or out of panel.
- Month index ``m`` counts months from the panel's first month; indexes outside
  ``0..n_months-1`` read as missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

__all__ = ["NUMERIC", "TEXT", "SubPanel", "month_index"]

#: Numeric panel columns loaded (booleans become 0/1).
NUMERIC: tuple[str, ...] = (
    "employed",
    "days_worked",
    "earnings_real",
    "daily_wage_real",
    "skill_level",
    "part_time",
    "registered_unemployed",
    "ub_days",
    "ub_amount",
    "sick_benefit_days",
    "isced_level",
    "age",
    "urbanisation",
)
#: Text panel columns loaded as codes.
TEXT: tuple[str, ...] = (
    "employer_id",
    "nace_section",
    "occupation_code",
    "contract_type",
    "sector",
    "region_code",
    "sex",
)


def month_index(d: date | Sequence[date] | pl.Series, first: date) -> np.ndarray:
    """Months from ``first`` to each date's month (vectorised; nulls give ``-1``)."""
    s = pl.Series(d if not isinstance(d, date) else [d]).cast(pl.Date)
    out = (s.dt.year().cast(pl.Int64) - first.year) * 12 + s.dt.month().cast(pl.Int64) - (
        first.month
    )
    return out.fill_null(-1).to_numpy().astype(np.int64)


@dataclass(frozen=True)
class SubPanel:
    """Panel columns of selected persons as dense ``[person, month]`` arrays.

    Attributes
    ----------
    pid : ndarray of int64, shape (n,)
        Sorted panel ``pid`` of each row.
    months : list of date
        First day of every panel month (column ``m``).
    numeric : dict of ndarray, shape (n, n_months), float64
    codes : dict of ndarray, shape (n, n_months), int32
    levels : dict of list of str
        Sorted levels of each text column.
    in_panel : ndarray of bool, shape (n, n_months)
    first_start : ndarray of int64, shape (n,)
        Month index of the person's first ILA course start (``-1``: none in the data;
        a start before the first panel month would be negative too, but ILA starts lie
        years after the panel's first month).
    """

    pid: np.ndarray
    months: list[date]
    numeric: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    levels: dict[str, list[str]]
    in_panel: np.ndarray
    first_start: np.ndarray

    @property
    def n_months(self) -> int:
        return len(self.months)

    def rows(self, pids: np.ndarray) -> np.ndarray:
        """Row of each ``pid`` (``KeyError`` if one was not loaded)."""
        from impact.twins.features import pid_rows

        return pid_rows(self.pid, pids, "sub-panel")

    def code_of(self, column: str, value: str) -> int:
        """Code of ``value`` in a text column (``-2``, matching nothing, if absent)."""
        lv = self.levels[column]
        i = int(np.searchsorted(lv, value))
        return i if i < len(lv) and lv[i] == value else -2

    @classmethod
    def load(
        cls,
        panel_dir: Path,
        pids: np.ndarray,
        *,
        numeric: Sequence[str] = NUMERIC,
        text: Sequence[str] = TEXT,
    ) -> SubPanel:
        """Scan ``panel_dir`` (``year=YYYY/*.parquet``) for the persons ``pids``.

        Parameters
        ----------
        panel_dir
            The panel written by :func:`impact.panel.build`.
        pids
            Panel person indexes (any order, duplicates allowed).
        numeric, text
            Columns to load (defaults :data:`NUMERIC`, :data:`TEXT`).
        """
        files = sorted(Path(panel_dir).glob("year=*/*.parquet"))
        if not files:
            raise FileNotFoundError(f"no panel parquet files under {panel_dir}")
        pid = np.unique(np.asarray(pids, dtype=np.int64))
        scan = pl.scan_parquet(files, hive_partitioning=False)
        bounds = scan.select(pl.col("month").min().alias("a"), pl.col("month").max().alias("b"))
        a, b = bounds.collect().row(0)
        months = pl.date_range(a, b, "1mo", eager=True).to_list()
        n, t = pid.size, len(months)
        cols = ["pid", "month", "ila_first_start", *numeric, *text]
        df = (
            scan.join(pl.LazyFrame({"pid": pid.astype(np.int32)}), on="pid", how="semi")
            .select(cols)
            .collect()
        )
        row = np.searchsorted(pid, df["pid"].to_numpy().astype(np.int64))
        col = month_index(df["month"], months[0])
        flat = row * t + col
        in_panel = np.zeros(n * t, dtype=bool)
        in_panel[flat] = True
        num: dict[str, np.ndarray] = {}
        for c in numeric:
            a_ = np.full(n * t, np.nan)
            a_[flat] = df[c].cast(pl.Float64).to_numpy()
            num[c] = a_.reshape(n, t)
        codes: dict[str, np.ndarray] = {}
        levels: dict[str, list[str]] = {}
        for c in text:
            s = df[c].cast(pl.String)
            lv = s.drop_nulls().unique().sort().to_list()
            code = s.cast(pl.Enum(lv)).to_physical().cast(pl.Int32).fill_null(-1).to_numpy()
            a_ = np.full(n * t, -1, dtype=np.int32)
            a_[flat] = code
            codes[c] = a_.reshape(n, t)
            levels[c] = lv
        fs = np.full(n, -1, dtype=np.int64)
        firsts = df.select("pid", "ila_first_start").unique("pid")
        has = firsts["ila_first_start"].is_not_null().to_numpy()
        r = np.searchsorted(pid, firsts["pid"].to_numpy().astype(np.int64))
        fs[r[has]] = month_index(firsts["ila_first_start"].filter(pl.Series(has)), months[0])
        return cls(pid=pid, months=months, numeric=num, codes=codes, levels=levels,
                   in_panel=in_panel.reshape(n, t), first_start=fs)
