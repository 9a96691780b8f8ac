"""Configuration of the synthetic register generator.

The generator is driven by one frozen, validated :class:`SynthConfig`. Everything
that changes the bytes written is in here, so that a configuration plus the
package version reproduces a delivery exactly.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

#: First month in which the STARS learning-account platform creates accounts
#: (the pilot opened in September 2024, public launch 5 December 2024).
STARS_FIRST_MONTH = "2024-09"
#: Last month in which an ILA course can start in the pilot (project end 30.06.2026).
STARS_LAST_START_MONTH = "2026-05"


def parse_month(value: str) -> date:
    """Parse ``YYYY-MM`` into the first day of that month.

    Raises
    ------
    ValueError
        If the string is not a valid ``YYYY-MM`` month.
    """
    m = _MONTH.match(value)
    if not m:
        raise ValueError(f"month must look like YYYY-MM, got {value!r}")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range in {value!r}")
    return date(year, month, 1)


class SynthConfig(BaseModel):
    """Settings of one synthetic delivery.

    Parameters
    ----------
    persons
        Size of the simulated resident population (ages 8-70 at ``start``; the
        working-age population of Latvia is about 1.2 M).
    seed
        Seed of all random draws. Same configuration, same bytes.
    start, end
        First and last calendar month covered by the register extracts
        (``YYYY-MM``). The window must contain the STARS pilot
        (2024-09..2026-05) so that participants exist.
    fmt
        ``"csv"`` (UTF-8, comma separated, header row) or ``"parquet"`` (zstd).
    inject_errors
        Add invalid rows of known kinds (counted in the manifest and listed in
        ``truth/injected_errors``) for the contract tests of the ingest layer.
    hidden_confounding
        Scale of latent motivation's effect on labour-market outcomes: the
        permanent wage, employment at the first month, job finding and loss,
        and the wage drift. Motivation drives participation (accounts, grants,
        starts, prior learning) whatever this is. ``1`` (the default) is the
        realistic scenario: motivated people do better whether or not they
        train, and only part of that shows in the registers, so a comparison on
        observables stays biased. ``0`` removes motivation from every outcome:
        selection is then on observables and on time-invariant differences
        only, the assumptions under which matched DiD is unbiased. Values in
        between (or above 1) scale the bias for sensitivity studies. The persons
        drawn (birth, sex, education, motivation) do not depend on it; their
        jobs and participation do, because participation depends on
        employment history.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    persons: int = Field(100_000, ge=500, le=50_000_000)
    seed: int = Field(1, ge=0)
    start: str = "2019-01"
    end: str = "2028-06"
    fmt: Literal["csv", "parquet"] = "csv"
    inject_errors: bool = False
    hidden_confounding: float = Field(1.0, ge=0.0, le=3.0)

    @field_validator("start", "end")
    @classmethod
    def _valid_month(cls, v: str) -> str:
        parse_month(v)
        return v

    @model_validator(mode="after")
    def _window(self) -> SynthConfig:
        s, e = parse_month(self.start), parse_month(self.end)
        if s > parse_month("2023-12"):
            raise ValueError("start must be 2023-12 or earlier: matching needs pre-period history")
        if e < parse_month("2026-06"):
            raise ValueError("end must be 2026-06 or later: the STARS pilot runs to 2026-06")
        return self

    @property
    def start_date(self) -> date:
        """First day of the first month."""
        return parse_month(self.start)

    @property
    def end_date(self) -> date:
        """First day of the last month."""
        return parse_month(self.end)

    @property
    def n_months(self) -> int:
        """Number of calendar months in the window, both ends included."""
        s, e = self.start_date, self.end_date
        return (e.year - s.year) * 12 + (e.month - s.month) + 1

    @property
    def delivery_id(self) -> str:
        """Identifier of the delivery: the last month covered, e.g. ``2028-06``."""
        return self.end
