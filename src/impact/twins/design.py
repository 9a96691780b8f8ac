"""Numeric design matrices from frame columns: standardised numerics, one-hot categoricals.

Assumptions
-----------
- Feature columns have no nulls (the caller imputes or drops; a null raises ``ValueError``
  naming the column), and numeric columns have no NaN or infinity.
- Numeric and boolean columns are numeric features, standardised with the mean and SD
  learnt at fit time (``standardise=True``). String, ``Categorical`` and ``Enum``
  columns are categorical: one 0/1 column per level, levels in sorted order; with
  ``drop_first`` the first (sorted) level is the reference and is left out, which keeps an
  intercept model identified.
- The spec learnt by :meth:`DesignSpec.fit` (means, SDs, levels) is applied unchanged by
  :meth:`DesignSpec.transform`, so a propensity model pooled over cohorts scores each cohort
  on the same scale. A level unseen at fit time raises instead of being silently mapped to
  the reference level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


def is_categorical(dtype: pl.DataType) -> bool:
    """Whether a polars dtype is treated as categorical (one-hot encoded)."""
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def check_no_nulls(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the columns of ``frame`` that hold nulls."""
    if not columns:
        return
    counts = frame.select(pl.col(list(columns)).null_count()).row(0)
    bad = [c for c, n in zip(columns, counts, strict=True) if n]
    if bad:
        raise ValueError(f"columns with nulls (impute or drop them first): {bad}")


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # "numeric" | "categorical"
    mean: float = 0.0
    sd: float = 1.0
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesignSpec:
    """How features become a float64 matrix (learnt once by :meth:`fit`)."""

    columns: tuple[_Column, ...]
    drop_first: bool
    standardise: bool

    @classmethod
    def fit(
        cls,
        frame: pl.DataFrame,
        features: Sequence[str],
        *,
        drop_first: bool = True,
        standardise: bool = True,
    ) -> DesignSpec:
        """Learn means/SDs of numeric features and the levels of categorical ones."""
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise KeyError(f"feature columns not in the frame: {missing}")
        check_no_nulls(frame, features)
        cols: list[_Column] = []
        for name in features:
            dtype = frame.schema[name]
            if is_categorical(dtype):
                levels = _levels_present(frame.get_column(name))
                cols.append(_Column(name, "categorical", levels=tuple(levels)))
            elif dtype.is_numeric() or dtype == pl.Boolean:
                x = frame.get_column(name).cast(pl.Float64).to_numpy()
                if not np.isfinite(x).all():
                    raise ValueError(f"feature {name!r} has NaN or infinite values")
                mean = float(x.mean()) if x.size else 0.0
                sd = float(x.std()) if x.size else 1.0
                cols.append(_Column(name, "numeric", mean=mean, sd=sd if sd > 0 else 1.0))
            else:
                raise TypeError(f"feature {name!r} has unsupported dtype {dtype}")
        return cls(tuple(cols), drop_first, standardise)

    @property
    def names(self) -> list[str]:
        """Column names of the matrix (``col=level`` for one-hot columns)."""
        out: list[str] = []
        for c in self.columns:
            if c.kind == "numeric":
                out.append(c.name)
            else:
                levels = c.levels[1:] if self.drop_first else c.levels
                out.extend(f"{c.name}={lv}" for lv in levels)
        return out

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        """The ``(n_rows, len(names))`` float64 design matrix of ``frame``."""
        check_no_nulls(frame, [c.name for c in self.columns])
        out = np.zeros((frame.height, len(self.names)))  # filled in place: no hstack copies
        j = 0
        for c in self.columns:
            s = frame.get_column(c.name)
            if c.kind == "numeric":
                x = s.cast(pl.Float64).to_numpy()
                out[:, j] = (x - c.mean) / c.sd if self.standardise else x
                j += 1
                continue
            codes = _level_codes(s, c.levels)
            # dummies are 0/1, already on a good scale for the solver (not standardised)
            width = len(c.levels) - 1 if self.drop_first else len(c.levels)
            col = codes - 1 if self.drop_first else codes
            hit = col >= 0
            out[np.flatnonzero(hit), j + col[hit]] = 1.0
            j += width
        return out

    def linear(self, frame: pl.DataFrame, coef: np.ndarray) -> np.ndarray:
        """``transform(frame) @ coef`` column by column, without building the matrix.

        Memory ``O(n_rows)`` instead of ``O(n_rows x n_columns)``; the sum is accumulated in
        column order, so it may differ from the matrix product in the last bits.
        """
        coef = np.asarray(coef, dtype=np.float64)
        if coef.shape != (len(self.names),):
            raise ValueError(f"coef must have {len(self.names)} entries")
        check_no_nulls(frame, [c.name for c in self.columns])
        acc = np.zeros(frame.height)
        j = 0
        for c in self.columns:
            s = frame.get_column(c.name)
            if c.kind == "numeric":
                if coef[j] != 0:
                    x = s.cast(pl.Float64).to_numpy()
                    acc += ((x - c.mean) / c.sd if self.standardise else x) * coef[j]
                j += 1
                continue
            width = len(c.levels) - 1 if self.drop_first else len(c.levels)
            lut = coef[j : j + width]
            if self.drop_first:
                lut = np.r_[0.0, lut]
            acc += lut[_level_codes(s, c.levels)]
            j += width
        return acc


def _levels_present(s: pl.Series) -> list[str]:
    """Sorted distinct values of a categorical column (as strings)."""
    if isinstance(s.dtype, pl.Enum):
        cats = np.array(s.dtype.categories.to_list(), dtype=object)
        used = np.flatnonzero(np.bincount(s.to_physical().to_numpy(), minlength=cats.size))
        return sorted(cats[used].tolist())
    return s.cast(pl.String).unique().sort().to_list()


def _level_codes(s: pl.Series, levels: Sequence[str]) -> np.ndarray:
    """Position of every value of ``s`` among ``levels``; a level not listed raises."""
    levels = list(levels)
    if isinstance(s.dtype, pl.Enum):  # map the physical codes through a lookup table
        cats = s.dtype.categories.to_list()
        pos = {lv: i for i, lv in enumerate(levels)}
        lut = np.array([pos.get(x, -1) for x in cats], dtype=np.int64)
        codes = lut[s.to_physical().to_numpy()]
        if (codes < 0).any():
            unseen = sorted({cats[i] for i in np.unique(s.to_physical().to_numpy()[codes < 0])})
            raise ValueError(f"feature {s.name!r} has levels unseen at fit time: {unseen}")
        return codes
    values = s.cast(pl.String)
    unseen = values.filter(~values.is_in(levels)).unique().to_list()
    if unseen:
        raise ValueError(f"feature {s.name!r} has levels unseen at fit time: {unseen}")
    return values.cast(pl.Enum(levels)).to_physical().to_numpy().astype(np.int64)
