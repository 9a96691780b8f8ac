"""Data contracts: one YAML file per source table in ``schemas/``.

A contract states what a delivered table must look like. It is the single
source of both validation engines: the full-volume polars rules
(:mod:`impact.contracts.rules`), which decide what is accepted and what is
quarantined, and the Great Expectations suite (:mod:`impact.contracts.gx`),
which re-checks a sample with an independent engine and renders results for
auditors.

Rule levels
-----------
*Table level* (blocking: the table is unusable): a file missing or not
readable, a required column missing, a column whose values mostly fail to
parse as its type (``max_type_error_share``), rows or checksum disagreeing
with the manifest, a key column that is entirely null. Enforced by
:mod:`impact.ingest` for every table: a CSV file not UTF-8, not comma
separated, cut off (no line break at its end) or naming a column twice; a
data file of the table missing from its manifest; a Parquet column whose type
changes between files; a table without any data row.

*Row level* (the row is quarantined with its reason): null in a
non-nullable column, a value that does not parse as the column's type,
out-of-range values, codes outside the allowed lists or reference tables,
invalid personal codes, months outside the delivery, broken date order,
foreign keys that point nowhere, events after death, a value that contradicts
another column of the row (``conditional``: a COMPLETED application without a
start date), a period overlapping an earlier one of the same person
(``no_overlap``), duplicate keys that are not exact duplicates or corrections
(including rows of one key tied on the version in one delivery), and (in
:mod:`impact.ingest`) a CSV row with more or fewer fields than its header.

``docs/bad_input_catalogue.md`` lists every kind of bad input with its outcome.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

ColumnType = Literal["string", "int", "float", "bool", "date", "month"]
Domain = Literal["person", "employer"]

#: Folder of the contract files shipped with the project.
SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"


class Column(BaseModel):
    """One column of a contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: ColumnType
    description: str
    nullable: bool = False
    unique: bool = False
    pattern: str | None = Field(None, description="Regular expression the text must match.")
    min: float | None = None
    max: float | None = None
    allowed: list[str] | list[int] | None = None
    allowed_from: str | None = Field(
        None, description="'table.column' of a reference table in the same delivery.")
    personal_code: bool = Field(False, description="Valid Latvian personal code (format, "
                                                   "date, check digit).")
    within_delivery: bool = Field(False, description="Month within the delivery period.")
    pseudonymise: Domain | None = Field(None, description="Replace by a keyed pseudonym.")


class ForeignKey(BaseModel):
    """Every non-null value of ``column`` exists in ``table.ref_column``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    table: str
    ref_column: str


class DateOrder(BaseModel):
    """``end`` is not before ``start`` (a null ``end`` is an open spell)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    start: str
    end: str


class NotAfterEvent(BaseModel):
    """The row's month is not after the month of an event of the person.

    Example: no employer report for a month after the person's death.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    column: str
    key: str
    table: str
    ref_key: str
    event_column: str


class When(BaseModel):
    """The rows a conditional rule applies to: ``column`` holds one of ``in``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    column: str
    values: list[str] | list[int] = Field(alias="in", min_length=1)


class Then(BaseModel):
    """What those rows must satisfy: exactly one of ``not_null``, ``is_null`` or ``in``.

    ``in`` constrains non-null values only (as ``allowed`` does); a required value is
    ``not_null``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    column: str
    not_null: bool = False
    is_null: bool = False
    values: list[str] | list[int] | None = Field(None, alias="in", min_length=1)

    @model_validator(mode="after")
    def _one_requirement(self) -> Then:
        if self.not_null + self.is_null + (self.values is not None) != 1:
            raise ValueError(f"then ({self.column}): give exactly one of not_null: true, "
                             "is_null: true or in: [...]")
        return self


class Conditional(BaseModel):
    """When ``when.column`` is in ``when.in``, ``then.column`` meets ``then``'s requirement.

    Example: a COMPLETED application has a start date.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    when: When
    then: Then


class NoOverlap(BaseModel):
    """Periods ``start``..``end`` (both days included, a null ``end`` is open) of one
    ``key`` (e.g. a person) do not overlap.

    A period starting on or before the end of an earlier-starting period of the same
    ``key`` breaks the rule (the earlier one is kept). Rows repeating the contract key
    are one period (duplicates and key conflicts are resolved at ingest), and rows that
    broke another rule are left out of the comparison.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    key: str
    start: str
    end: str


class Contract(BaseModel):
    """The contract of one source table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    source: str
    description: str
    columns: list[Column]
    key: list[str] = Field(default_factory=list, description="Logical key of a row.")
    version_column: str | None = Field(
        None, description="Among rows with the same key, the largest value (then the later "
                          "delivery) supersedes the others: a correction.")
    foreign_keys: list[ForeignKey] = Field(default_factory=list)
    date_order: list[DateOrder] = Field(default_factory=list)
    not_after_event: list[NotAfterEvent] = Field(default_factory=list)
    conditional: list[Conditional] = Field(default_factory=list)
    no_overlap: list[NoOverlap] = Field(default_factory=list)
    max_type_error_share: float = Field(
        0.05, ge=0, le=1, description="Share of unparseable values above which the column "
                                      "is a wrong type (table level) rather than bad rows.")
    partition_by_year: str | None = Field(None, description="Month column used to partition "
                                                            "the clean output by year.")

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.table}: duplicate column names")
        refs = set(self.key) | {f.column for f in self.foreign_keys}
        refs |= {d.start for d in self.date_order} | {d.end for d in self.date_order}
        refs |= {e.column for e in self.not_after_event} | {e.key for e in self.not_after_event}
        refs |= {c for r in self.conditional for c in (r.when.column, r.then.column)}
        refs |= {c for o in self.no_overlap for c in (o.key, o.start, o.end)}
        if self.version_column:
            refs.add(self.version_column)
        if self.partition_by_year:
            refs.add(self.partition_by_year)
        missing = refs - set(names)
        if missing:
            raise ValueError(f"{self.table}: rules name unknown columns {sorted(missing)}")
        if self.no_overlap and self.partition_by_year:
            raise ValueError(f"{self.table}: no_overlap compares all rows of a key at once; "
                             "it cannot be checked a year at a time (partition_by_year)")
        for r in self.conditional:
            self._check_values(r.name, r.when.column, r.when.values)
            if r.then.values is not None:
                self._check_values(r.name, r.then.column, r.then.values)
        return self

    def _check_values(self, rule: str, column: str, values: list[str] | list[int]) -> None:
        """Values of a conditional rule suit the column (a misspelt one would silently
        switch the rule off)."""
        col = self.column(column)
        if col.type not in ("string", "int"):
            raise ValueError(f"{self.table}: conditional {rule!r}: 'in' on {col.type} column "
                             f"{column}")
        if col.allowed is not None:
            unknown = sorted(set(map(str, values)) - set(map(str, col.allowed)))
            if unknown:
                raise ValueError(f"{self.table}: conditional {rule!r}: {unknown} not allowed "
                                 f"in {column}")

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.table} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        """Column names in contract order."""
        return [c.name for c in self.columns]

    @property
    def depends_on(self) -> set[str]:
        """Tables this contract's rules refer to."""
        deps = {f.table for f in self.foreign_keys} | {e.table for e in self.not_after_event}
        deps |= {c.allowed_from.split(".")[0] for c in self.columns if c.allowed_from}
        return deps - {self.table}


def load_contract(path: Path) -> Contract:
    """Read and validate one contract file."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    try:
        return Contract.model_validate(data)
    except Exception as exc:  # pydantic's message is precise; add the file
        raise ValueError(f"invalid contract {path}: {exc}") from exc


@cache
def load_contracts(folder: Path = SCHEMAS_DIR) -> dict[str, Contract]:
    """All contracts in ``folder``, keyed by table name."""
    out: dict[str, Contract] = {}
    for path in sorted(folder.glob("*.yaml")):
        c = load_contract(path)
        if c.table in out:
            raise ValueError(f"two contracts for table {c.table!r} in {folder}")
        out[c.table] = c
    return out


def dependency_order(contracts: dict[str, Contract]) -> list[str]:
    """Tables ordered so that every table comes after the tables its rules use."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in stack:
            raise ValueError(f"cyclic contract dependencies: {' -> '.join(stack + (name,))}")
        for dep in sorted(contracts[name].depends_on):
            if dep in contracts:
                visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in sorted(contracts):
        visit(name, ())
    return order
