"""Settings of the disclosure control (thresholds, dominance, rounding, audit)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_ADDITIVE_COLUMNS", "DEFAULT_VALUE_COLUMNS", "DisclosureSettings"]

#: value columns nulled in a suppressed cell when ``value_columns`` is not given (those present)
DEFAULT_VALUE_COLUMNS: tuple[str, ...] = (
    "participants", "twins", "net", "se", "ci_low", "ci_high", "p_value",
)
#: value columns the attacker treats as additive after multiplying by ``n_participants``
DEFAULT_ADDITIVE_COLUMNS: tuple[str, ...] = ("participants", "twins", "net")


class DisclosureSettings(BaseModel):
    """Rules of primary and secondary suppression, rounding and the intruder audit.

    Assumptions
    -----------
    * ``dominance_n`` top contributions are available as ``_top1_<arm>`` ...
      ``_top<n>_<arm>`` columns (``<arm>`` = ``participants`` / ``twins``) next to
      ``_total_<arm>``; the p%-rule needs ``_top1``, ``_top2`` and ``_total``.
    * ``additive_columns`` are value columns whose product with ``n_participants`` adds up
      over a partition (for ``kind`` "rate" and "mean"): the participant arm always; the
      twin arm and ``net`` only when the twin value is a per-participant (matching
      weighted) counterfactual, as in an ATT table. Set it to ``("participants",)`` if the
      twin value is a plain mean over distinct twins. Only the audit uses it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_persons: int = Field(
        10, ge=1, description="Both arms need at least this many distinct persons.")
    dominance_n: int = Field(2, ge=1, description="n of the (n,k) dominance rule.")
    dominance_k: float | None = Field(
        0.85, gt=0, le=1, description="k of the (n,k) rule as a share; None switches it off.")
    p_percent: float | None = Field(
        10.0, ge=0, description="p of the p%-rule in percent; None switches it off.")
    round_base: int | None = Field(
        None, ge=2, description="Round published n_participants/n_twins to this base; None = off.")
    secondary: bool = Field(
        True, description="Complementary suppression (margins, populations, audit-driven).")
    value_columns: tuple[str, ...] | None = Field(
        None, description="Columns nulled in a suppressed cell; None = the default ones present.")
    additive_columns: tuple[str, ...] = Field(
        DEFAULT_ADDITIVE_COLUMNS, description="Value columns the attacker treats as additive.")
    protection_persons: float = Field(
        1.0, gt=0, description="Minimum feasible-interval width of a hidden n or count.")
    protection_pct: float = Field(
        10.0, gt=0, description="Minimum width of a hidden total, in percent of its true value.")
    max_audit_rounds: int = Field(
        20, ge=0, description="Rounds of audit-driven extra suppression before giving up.")
