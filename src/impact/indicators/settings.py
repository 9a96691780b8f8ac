"""Configurable parts of the indicator definitions (the ``indicators:`` config section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_FIELD_OCCUPATIONS", "EECR06Settings", "FiscalSettings", "IndicatorSettings"]

#: Programme field -> ISCO-08 code prefixes of the occupations that count as "working in
#: the field" (horizontal skills match). ICT: ICT service managers (133), ICT professionals
#: (25), ICT technicians (35), electronics and telecom engineers (2152, 2153), graphic and
#: multimedia designers (2166), ICT installers (742). Business, finance and administration:
#: administrative and commercial managers (12), business and administration professionals
#: (24) and associate professionals (33), clerical support workers (41-44).
DEFAULT_FIELD_OCCUPATIONS: dict[str, list[str]] = {
    "ICT": ["133", "25", "35", "2152", "2153", "2166", "742"],
    "BUSINESS_FINANCE_ADMIN": ["12", "24", "33", "41", "42", "43", "44"],
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EECR06Settings(_Model):
    """The national register-based definition of EECR06 (ESF+).

    Reference population: participants employed in the month they started. Improvement in
    month ``horizon`` after leaving versus the entry month if any criterion holds (each
    requires employment at the horizon).
    """

    horizon: int = Field(6, ge=1, le=36, description="Months after leaving.")
    pay_threshold: float = Field(
        0.05, ge=0, lt=1,
        description="Pay rise criterion: real daily wage (monthly earnings where days are "
        "missing) above entry by more than this share.")
    occupation_rank: dict[str, float] | None = Field(
        None,
        description="ISCO-08 major group (first digit) -> rank for the occupation-upgrade "
        "criterion; default: the ISCO-08 skill level of the occupation.")


class FiscalSettings(_Model):
    """Latvian tax rates for the fiscal return (defaults: rates in force in 2025)."""

    pit_rate: float = Field(0.255, ge=0, lt=1, description="Personal income tax rate.")
    ssc_employee: float = Field(0.105, ge=0, lt=1, description="Employee social contribution.")
    ssc_employer: float = Field(0.2359, ge=0, lt=1, description="Employer social contribution.")

    @property
    def revenue_rate(self) -> float:
        """Tax and contributions per EUR of extra gross earnings: employer and employee
        contributions plus income tax on earnings net of the employee contribution
        (the non-taxable minimum and tax brackets are ignored: an upper bound)."""
        return self.ssc_employer + self.ssc_employee + self.pit_rate * (1 - self.ssc_employee)


class IndicatorSettings(_Model):
    """Settings of the indicator layer (config section ``indicators``)."""

    horizons: tuple[int, ...] = Field((6, 12, 24), description="Months after leaving.")
    eecr06: EECR06Settings = Field(default_factory=EECR06Settings)
    sector_rank: dict[str, float] | None = Field(
        None,
        description="NACE section -> rank for horizontal mobility; default: the relative "
        "average wage of the section (reference table ref_nace_sections.rel_wage).")
    field_occupations: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FIELD_OCCUPATIONS.items()},
        description="Programme field -> ISCO-08 prefixes counted as working in the field.")
    fiscal: FiscalSettings = Field(default_factory=FiscalSettings)
    composite_weights: dict[str, float] = Field(
        default_factory=lambda: {"earnings": 0.4, "employment": 0.3, "mobility": 0.3},
        description="Weights of the composite impact index components.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence level.")

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(h < 1 or h > 60 for h in v):
            raise ValueError("horizons must be 1..60 months")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _weights(self) -> IndicatorSettings:
        unknown = set(self.composite_weights) - {"earnings", "employment", "mobility"}
        if unknown:
            raise ValueError(f"unknown composite components {sorted(unknown)}; use earnings, "
                             "employment, mobility")
        if any(w < 0 for w in self.composite_weights.values()) or not sum(
                self.composite_weights.values()) > 0:
            raise ValueError("composite weights must be >= 0 and not all 0")
        return self
