"""Great Expectations suites generated from the data contracts: the second engine.

Two engines, one contract
-------------------------
Every contract in ``schemas/`` is checked by two independent implementations:

*polars rules* (:mod:`impact.contracts.rules`)
    Run on **every row** of every delivered file. They decide what is accepted and what
    is quarantined (with the reason), and they are the only engine that can do so at
    national volume: ~90 M monthly report rows validate in minutes with vectorised,
    streaming polars expressions. They also do everything that needs more than one
    table (foreign keys, no event after death, reference-table lookups at full size),
    the personal-code check digit and the per-delivery rules.

*Great Expectations* (this module)
    Runs **after cleaning** on a deterministic random sample of at most 100 k rows per
    table (:func:`sample_frame`), as an independent cross-check of the cleaned output:
    if the polars rules (or the cleaning code) let through something the contract
    forbids, GX says so with an engine that shares no code with them. Its reports are
    kept as JSON (:meth:`GXReport.to_dict`) for auditors. A 100 k-row sample of
    ``vid_monthly_reports`` (32 expectations) validates in 0.3-0.8 s after a one-off
    ~2.5 s import of GX.

Why not GX for everything: (a) GX 1.x has no polars execution engine, so full volume
means materialising the whole table in pandas, in memory, without streaming. Measured
on 1.27 M report rows: 2.2 s single-threaded and +0.5 GiB peak memory (0.2 GiB of it the
pandas frame); linearly, 90 M rows would need ~35 GiB against the 12 GiB budget, and
nullable-integer and non-``ns`` date columns fall back to row-wise Python metrics.
(b) GX reports failures and examples; it does not split a table into accepted and
quarantined rows with a reason per row. (c) The cross-table rules need the referenced
tables at full size anyway. A 100 k-row sample finds a rule broken by >= 0.005 % of the
rows with probability >= 99 % (1 - (1 - 5e-5)^100 000), enough for a cross-check.

Rule names: every expectation's ``meta["rule"]`` names its contract rule exactly as the
polars engine names its quarantine reasons (``"range:gross_income"``,
``"date_order:spell_end_after_start"``, ``"key_conflict:person_code,employer_id,period"``),
so a GX failure points straight at the polars rule that should have caught it.

What the suite checks (per :func:`build_suite`)
-----------------------------------------------
========================  ==========================================================
contract                  expectation
========================  ==========================================================
column list               ``ExpectTableColumnsToMatchSet(exact_match=True)`` over the
                          contract's columns plus ``extra_columns`` (lineage columns
                          of the clean output); order is not a contract property
(not in the contract)     ``ExpectTableRowCountToBeBetween(min_value=min_rows)``: an
                          empty clean table must not pass silently
``type``                  ``ExpectColumnValuesToBeOfType`` on the pandas dtype
                          produced by :func:`sample_frame` (see "Types" below);
                          ``month`` columns also a ``YYYY-MM`` regex (month columns
                          stored as first-of-month dates, as the polars engine
                          writes them, are compared as ``YYYY-MM`` text)
``nullable: false``       ``ExpectColumnValuesToNotBeNull``
``unique``                ``ExpectColumnValuesToBeUnique``
``key``                   ``ExpectCompoundColumnsToBeUnique`` (or ``...ToBeUnique``
                          for a one-column key not already ``unique``): after
                          cleaning, corrections have superseded older rows
``pattern``               ``ExpectColumnValuesToMatchRegex``
``personal_code``         ``ExpectColumnValuesToMatchRegex`` with a *format* regex
                          ``^(?:\\d{6}-?\\d{5})$`` only (see below)
``pseudonymise``          with ``pseudonym_pattern``: the pseudonym's format
                          (:func:`pseudonym_patterns`) instead of the raw formats
``min`` / ``max``         ``ExpectColumnValuesToBeBetween`` (dates: ``YYYYMMDD`` ints
                          become :class:`datetime.datetime` bounds)
``allowed``               ``ExpectColumnValuesToBeInSet``
``allowed_from``          ``ExpectColumnValuesToBeInSet`` with ``references[t.c]``
``within_delivery``       ``ExpectColumnValuesToBeInSet`` with the delivery's months
                          (``months=(first, last)``)
``date_order``            ``ExpectColumnPairValuesAToBeGreaterThanB(A=end, B=start,
                          or_equal=True, ignore_row_if="either_value_is_missing")``
``conditional``           ``then``'s expectation (``not_null``:
                          ``ExpectColumnValuesToNotBeNull``, ``is_null``:
                          ``ExpectColumnValuesToBeNull``, ``in``:
                          ``ExpectColumnValuesToBeInSet``) with
                          ``row_condition=Column(when.column).is_in(when.in)``
========================  ==========================================================

Not checked here, by design (listed in :attr:`GXReport.skipped`):

* ``foreign_keys`` and ``not_after_event``: cross-table rules. On a sample they would
  need the full referenced table in pandas, and the polars engine already runs them on
  every row.
* ``no_overlap``: a cross-row rule (periods of one person); a sample holds only some of a
  person's periods, and GX has no expectation for overlapping intervals.
* The personal-code **check digit** and calendar date: GX only checks the format. The
  check digit is :func:`impact.personal_code.valid_expr`'s job in the polars engine
  (GX would need a custom expectation, i.e. a second copy of that logic).
* ``allowed_from`` without ``references`` and ``within_delivery`` without ``months``.
* Format rules (``personal_code``, ``pattern``) of pseudonymised columns when the frame
  holds pseudonyms (``pseudonym_pattern`` given): the raw format is gone; the
  pseudonym's own format is checked instead.

Types
-----
Values are not cast to the contract's types before validation: the cleaned table is
already typed, and casting would hide exactly the errors a type check should find.
:func:`sample_frame` instead maps each polars dtype to one canonical pandas dtype
(integers -> ``int64``/``Int64``, floats -> ``float64``, booleans -> ``bool``/``boolean``,
dates -> ``datetime64[ns]``, strings/categoricals -> pandas ``str``), and the suite
expects the canonical dtype of the contract type (``int64``, ``float64``, ``bool``,
``datetime64``, ``str``). A column the cleaning left as text where the contract says
``int`` therefore fails its type expectation (and, typically, its range check).

GX 1.24 pitfalls handled here
-----------------------------
* ``ExpectColumnPairValuesAToBeGreaterThanB``: the docstring says ``ignore_row_if``
  defaults to ``"neither"``; the field actually defaults to
  ``"both_values_are_missing"``, so an open spell (null end) would *fail*. We set
  ``"either_value_is_missing"`` explicitly.
* ``ExpectColumnValuesToBeBetween`` on pandas is vectorised only for numpy
  ``int64``/``float64`` and ``datetime64[ns]`` columns; other dtypes (``Int64``,
  ``datetime64[ms]``, which is what polars dates become in pandas 3) go through a
  row-wise Python ``map``. For ``datetime64[ms]`` that compares ``Timestamp`` with the
  bounds, and a :class:`datetime.date` bound makes it raise. Hence ``datetime64[ns]``
  columns and :class:`datetime.datetime` bounds (bounds of mixed date/datetime types
  raise too).
* ``ExpectColumnValuesToBeOfType("Int64")`` never matches (not a numpy dtype name);
  ``"int64"`` matches both ``int64`` and the nullable ``Int64`` (same ``.type``).
* A metric that raises does not raise out of ``run()``: the expectation fails with
  ``exception_info`` keyed by metric id (a dict of dicts) instead of the flat
  ``raised_exception``/``exception_message`` dict; :func:`validate_sample` reads both.
* Unexpected values come back as numpy scalars, ``pd.NA``, ``np.datetime64`` and tuples
  (column pairs); :class:`FailedExpectation` holds them JSON-safe.
* ``ExpectationSuite.add_expectation`` needs a current data context (it asks the
  context's store whether the suite was saved, and saves into it if so), so a suite
  built that way depends on global state. :func:`build_suite` passes the expectations
  to the constructor instead and works without any context. (The constructor, in turn,
  only *logs* invalid expectation configurations; ours are validated objects.)
* ``ExpectTableColumnsToMatchSet`` takes ``column_set``, not ``column_list``.
* ``row_condition`` (``conditional`` rules): a string with ``condition_parser`` is
  deprecated since GX 1.9 (``DeprecationWarning``); we pass a ``Condition`` object
  (``row_conditions.Column(...).is_in(...)``), which also serialises with the suite.
* The pandas regex metric is ``column.astype(str).str.contains(regex)``: a pattern with a
  capturing group makes pandas emit a ``UserWarning`` on every run (our own patterns
  use ``(?:...)``; the warning is filtered for contract patterns), and ``contains``
  searches, so unanchored contract patterns match anywhere, as in polars.
* pandas 3 turns polars dates into ``datetime64[ms]`` and nullable integers into
  ``float64`` by default; :func:`sample_frame` converts explicitly (see "Types").
* ``gx.get_context()`` sets a process-wide "current" context, and the default
  ephemeral config creates temporary docs-site folders. We build a fresh in-memory
  context per validation (about 3 ms) with no docs sites, analytics off and progress
  bars off. Importing GX takes ~2.5 s; this module is therefore not imported by
  :mod:`impact.contracts` itself.
* Analytics: this build of 1.24 contains no analytics client (no ``posthog``), and its
  PyPI version checker is never called; we still set ``GX_ANALYTICS_ENABLED=false``
  (unless set) and ``analytics_enabled=False`` so no network access is attempted on
  any build.

Privacy: the caller guarantees the frame is already pseudonymised, so the (at most
five) unexpected values per expectation may be stored in the report.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (after the environment variable)
import great_expectations.expectations as gxe  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import (  # noqa: E402
    Column as Condition,
)

from impact.contracts.model import Column, Conditional, Contract  # noqa: E402

__all__ = [
    "PERSONAL_CODE_FORMAT",
    "MONTH_FORMAT",
    "SAMPLE_ROWS",
    "FailedExpectation",
    "GXReport",
    "build_suite",
    "pseudonym_patterns",
    "sample_frame",
    "validate_sample",
]

#: Format of a raw Latvian personal code (legacy or new format, optional hyphen). Format
#: only: the check digit and the birth date are checked by the polars engine.
PERSONAL_CODE_FORMAT = r"^(?:\d{6}-?\d{5})$"
#: Format of a ``month`` column.
MONTH_FORMAT = r"^\d{4}-(?:0[1-9]|1[0-2])$"
#: Default sample size per table.
SAMPLE_ROWS = 100_000
#: Unexpected values kept per failed expectation.
MAX_EXAMPLES = 5

#: pandas dtype name expected by ``ExpectColumnValuesToBeOfType`` per contract type (see
#: "Types" in the module docstring; ``sample_frame`` produces exactly these).
PANDAS_TYPE = {
    "string": "str",
    "month": "str",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "date": "datetime64",
}

for _name in ("great_expectations", "great_expectations.core", "great_expectations.validator"):
    logging.getLogger(_name).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- suite


def _meta(rule: str, contract: Contract, **extra: Any) -> dict[str, Any]:
    """``meta`` of an expectation: the contract rule it implements, named as in the
    polars engine's quarantine reasons (``"range:gross_income"``)."""
    return {"rule": rule, "table": contract.table, **extra}


def _date_bound(value: float) -> dt.datetime:
    """A contract date bound (``YYYYMMDD`` integer) as a datetime at midnight."""
    v = int(value)
    if v != value:
        raise ValueError(f"date bound {value!r} is not a YYYYMMDD integer")
    return dt.datetime(v // 10_000, v // 100 % 100, v % 100)


def _numeric_bound(value: float | None, col: Column) -> float | int | None:
    if value is None:
        return None
    if col.type == "int" and float(value).is_integer():
        return int(value)
    return float(value)


def _months(first: str, last: str) -> list[str]:
    """All ``YYYY-MM`` months from ``first`` to ``last`` inclusive."""
    for m in (first, last):
        if not re.fullmatch(MONTH_FORMAT, m):
            raise ValueError(f"not a YYYY-MM month: {m!r}")
    y, m = int(first[:4]), int(first[5:])
    y1, m1 = int(last[:4]), int(last[5:])
    out = []
    while (y, m) <= (y1, m1):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    if not out:
        raise ValueError(f"empty delivery period {first}..{last}")
    return out


def _conditional(rule: Conditional, meta: dict[str, Any]) -> gxe.Expectation:
    """The expectation of a ``conditional`` rule, restricted to its rows by a
    ``row_condition`` (a GX ``Condition`` object, not the deprecated string form)."""
    when = Condition(rule.when.column).is_in(list(rule.when.values))
    then = rule.then
    if then.not_null:
        return gxe.ExpectColumnValuesToNotBeNull(column=then.column, row_condition=when,
                                                 meta=meta)
    if then.is_null:
        return gxe.ExpectColumnValuesToBeNull(column=then.column, row_condition=when, meta=meta)
    return gxe.ExpectColumnValuesToBeInSet(column=then.column, value_set=list(then.values or []),
                                           row_condition=when, meta=meta)


def build_suite(
    contract: Contract,
    references: Mapping[str, Collection[str]] | None = None,
    *,
    months: tuple[str, str] | None = None,
    pseudonym_pattern: str | Mapping[str, str] | None = None,
    extra_columns: Sequence[str] = (),
    min_rows: int = 1,
) -> gx.ExpectationSuite:
    """The GX expectation suite of one contract.

    Parameters
    ----------
    contract
        The table's contract.
    references
        Allowed codes of reference columns, keyed ``"table.column"`` (the contract's
        ``allowed_from``). A column whose reference is not given is not checked (it is
        listed in the suite's ``meta["skipped"]``).
    months
        First and last month (``YYYY-MM``) of the delivery, for ``within_delivery``
        columns. Without it only the month format is checked.
    pseudonym_pattern
        ``None`` if the frame holds raw identifiers: ``personal_code`` columns are
        checked against :data:`PERSONAL_CODE_FORMAT` (format only; the check digit is
        the polars engine's job) and ``pattern`` columns against their pattern.
        Otherwise the identifiers (columns with ``pseudonymise`` set) hold pseudonyms,
        whose format is this regular expression (one for all, or one per domain:
        ``{"person": ..., "employer": ...}``, normally :func:`pseudonym_patterns`); it
        replaces the raw-format checks. A domain missing from the mapping gets no
        format check.
    extra_columns
        Columns allowed besides the contract's (e.g. a ``source_file`` lineage column
        of the clean output). The column check is otherwise exact.
    min_rows
        Fewest rows the frame may have (rule ``"rows"``). Not a contract rule but a
        cheap guard: a delivered table whose clean output is empty means the rules
        quarantined everything, which a sample-based check must not pass silently.

    Returns
    -------
    gx.ExpectationSuite
        Named ``contract.<table>``. Every expectation's ``meta["rule"]`` names the
        contract rule as the polars engine does (``"not_null:sex"``,
        ``"date_order:death_after_birth"``); ``suite.meta["skipped"]`` lists the
        contract rules not checked here and why.
    """
    refs = references or {}
    expectations: list[gxe.Expectation] = []
    skipped: list[str] = []
    add = expectations.append

    add(gxe.ExpectTableColumnsToMatchSet(
        column_set=[*contract.names, *extra_columns], exact_match=True,
        meta=_meta("columns", contract)))
    if min_rows > 0:
        add(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, meta=_meta("rows", contract)))

    for col in contract.columns:
        name = col.name
        add(gxe.ExpectColumnValuesToBeOfType(
            column=name, type_=PANDAS_TYPE[col.type],
            meta=_meta(f"type:{name}", contract, contract_type=col.type)))
        if col.type == "month":
            add(gxe.ExpectColumnValuesToMatchRegex(
                column=name, regex=MONTH_FORMAT, meta=_meta(f"type:{name}", contract)))
        if not col.nullable:
            add(gxe.ExpectColumnValuesToNotBeNull(
                column=name, meta=_meta(f"not_null:{name}", contract)))
        if col.unique:
            add(gxe.ExpectColumnValuesToBeUnique(
                column=name, meta=_meta(f"unique:{name}", contract)))

        # formats of identifiers: raw, or pseudonyms
        format_rule = f"personal_code:{name}" if col.personal_code else f"pattern:{name}"
        if col.pseudonymise and pseudonym_pattern is not None:
            regex = (pseudonym_pattern if isinstance(pseudonym_pattern, str)
                     else pseudonym_pattern.get(col.pseudonymise))
            if regex is not None:
                add(gxe.ExpectColumnValuesToMatchRegex(
                    column=name, regex=regex,
                    meta=_meta(format_rule, contract, pseudonym=col.pseudonymise)))
            if col.personal_code or col.pattern:
                skipped.append(f"{format_rule}: raw format (the frame holds pseudonyms)")
        else:
            if col.personal_code:
                add(gxe.ExpectColumnValuesToMatchRegex(
                    column=name, regex=PERSONAL_CODE_FORMAT, meta=_meta(format_rule, contract)))
                skipped.append(f"{format_rule}: check digit and birth date (polars engine)")
            if col.pattern:
                add(gxe.ExpectColumnValuesToMatchRegex(
                    column=name, regex=col.pattern, meta=_meta(f"pattern:{name}", contract)))

        # ranges
        if col.min is not None or col.max is not None:
            if col.type == "date":
                lo = _date_bound(col.min) if col.min is not None else None
                hi = _date_bound(col.max) if col.max is not None else None
            elif col.type in ("int", "float"):
                lo, hi = _numeric_bound(col.min, col), _numeric_bound(col.max, col)
            else:
                raise ValueError(f"{contract.table}.{name}: min/max on a {col.type} column")
            add(gxe.ExpectColumnValuesToBeBetween(
                column=name, min_value=lo, max_value=hi, meta=_meta(f"range:{name}", contract)))

        # code lists
        if col.allowed is not None:
            add(gxe.ExpectColumnValuesToBeInSet(
                column=name, value_set=list(col.allowed),
                meta=_meta(f"allowed:{name}", contract)))
        if col.allowed_from:
            if col.allowed_from in refs:
                add(gxe.ExpectColumnValuesToBeInSet(
                    column=name, value_set=sorted(refs[col.allowed_from]),
                    meta=_meta(f"allowed_from:{name}", contract, reference=col.allowed_from)))
            else:
                skipped.append(f"allowed_from:{name}: no codes of {col.allowed_from} given")
        if col.within_delivery:
            if months is not None:
                add(gxe.ExpectColumnValuesToBeInSet(
                    column=name, value_set=_months(*months),
                    meta=_meta(f"within_delivery:{name}", contract,
                               period=f"{months[0]}..{months[1]}")))
            else:
                skipped.append(f"within_delivery:{name}: no delivery period given")

    # row rules over several columns
    key = list(contract.key)
    if len(key) > 1:
        add(gxe.ExpectCompoundColumnsToBeUnique(
            column_list=key, meta=_meta(f"key_conflict:{','.join(key)}", contract)))
    elif len(key) == 1 and not contract.column(key[0]).unique:
        add(gxe.ExpectColumnValuesToBeUnique(
            column=key[0], meta=_meta(f"key_conflict:{key[0]}", contract)))
    for d in contract.date_order:
        # ignore_row_if must be explicit: the field's default is "both_values_are_missing",
        # which would fail every open spell (null end)
        add(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=d.end, column_B=d.start, or_equal=True,
            ignore_row_if="either_value_is_missing",
            meta=_meta(f"date_order:{d.name}", contract)))
    for r in contract.conditional:
        add(_conditional(r, _meta(f"conditional:{r.name}", contract)))

    skipped += [f"foreign_key:{f.column}->{f.table}: cross-table (polars engine)"
                for f in contract.foreign_keys]
    skipped += [f"not_after_event:{e.name}: cross-table (polars engine)"
                for e in contract.not_after_event]
    skipped += [f"no_overlap:{o.name}: cross-row (polars engine)" for o in contract.no_overlap]
    # The constructor, not ``add_expectation``: the latter needs a current data context
    # (it checks whether the suite is saved there) and would write into it.
    return gx.ExpectationSuite(
        name=f"contract.{contract.table}", expectations=expectations,
        meta={"great_expectations_version": gx.__version__, "contract": contract.table,
              "skipped": skipped})


def pseudonym_patterns() -> dict[str, str]:
    """Per-domain format of the project's pseudonyms (:mod:`impact.pseudonym`), for
    ``pseudonym_pattern``: ``{"person": "^P[0-9a-f]{32}$", "employer": "^E..."}``.

    Per domain, so a pseudonym of the wrong domain in a column is caught too.
    """
    from impact.pseudonym import DIGEST_BYTES, DOMAINS

    return {d: rf"^{letter}[0-9a-f]{{{2 * DIGEST_BYTES}}}$" for d, letter in DOMAINS.items()}


# ----------------------------------------------------------------------------- sample


def _to_pandas(s: pl.Series) -> pd.Series:
    """One polars column as the canonical pandas dtype of its kind (see "Types")."""
    dtype = s.dtype
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
        dtype = pl.String
    has_nulls = s.null_count() > 0
    if dtype.is_integer():
        out = s.to_pandas()
        return out.astype("Int64") if has_nulls else out.astype("int64")
    if dtype.is_float():
        return s.cast(pl.Float64).to_pandas()
    if dtype == pl.Boolean:
        out = s.to_pandas()
        return out.astype("boolean") if has_nulls else out.astype("bool")
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            s = s.dt.replace_time_zone(None)
        out = s.to_pandas()
        try:
            return out.astype("datetime64[ns]")
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            # outside 1677..2262: stays in its unit; GX then compares row by row
            return out
    if dtype == pl.String:
        return s.to_pandas().astype("str")
    return s.to_pandas()


def sample_frame(df: pl.DataFrame, n: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """A deterministic random sample of ``df`` as a pandas frame for :func:`validate_sample`.

    At most ``n`` rows drawn without replacement (all rows if the table is smaller),
    in their original order; the same ``df``, ``n`` and ``seed`` give the same rows.
    Columns get canonical pandas dtypes (module docstring, "Types"): dates become
    ``datetime64[ns]`` so GX compares them vectorised.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    if df.height > n:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(df.height, size=n, replace=False))
        df = df.select(pl.all().gather(pl.Series(idx, dtype=pl.UInt64)))
    return pd.DataFrame({c: _to_pandas(df.get_column(c)) for c in df.columns},
                        index=pd.RangeIndex(df.height))


# ----------------------------------------------------------------------------- validate


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that failed on the sample.

    ``rule`` is the contract rule, named as by the polars engine. ``unexpected_percent``
    is GX's: a share of the non-null values (of the rows not ignored, for column pairs).
    ``examples`` are up to five unexpected values (pairs as lists, dates as ISO
    strings), JSON-safe. ``observed`` is the observed value of table and type
    expectations (the actual dtype, the actual columns); ``details`` GX's details (for
    the column list ``{"mismatched": {"missing": [...], "unexpected": [...]}}``);
    ``error`` the message if GX raised while evaluating the expectation.
    """

    expectation: str
    rule: str | None
    columns: list[str]
    unexpected_count: int | None
    unexpected_percent: float | None
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    details: Any = None
    error: str | None = None


@dataclass(frozen=True)
class GXReport:
    """Result of validating one table's sample with its GX suite."""

    table: str
    success: bool
    evaluated: int
    failed: list[FailedExpectation]
    statistics: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (kept for auditors)."""
        return asdict(self)

    def failed_rules(self) -> list[str]:
        """``rule`` of every failed expectation (e.g. ``"range:gross_income"``)."""
        return [f.rule or f.expectation for f in self.failed]


def _json_safe(value: Any) -> Any:
    """Numpy/pandas scalars, NA, timestamps and tuples as plain JSON values."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value) if not np.isnat(value) else None
        if value is None:
            return None
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        if value.hour == value.minute == value.second == value.microsecond == 0:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _columns(kwargs: dict[str, Any]) -> list[str]:
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs:
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list") or [])


def _error(exception_info: Any) -> str | None:
    """The exception message in either of GX's ``exception_info`` shapes."""
    if not exception_info:
        return None
    if "raised_exception" in exception_info:
        infos = [exception_info]
    else:  # {metric_configuration_id: {...}} when a metric raised
        infos = [v for v in exception_info.values() if isinstance(v, dict)]
    msgs = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(msgs) or None


def _failed(r: Any) -> FailedExpectation:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs or {})
    result = dict(r.result or {})
    meta = dict(cfg.meta or {})
    count = result.get("unexpected_count")
    pct = result.get("unexpected_percent")
    examples = result.get("partial_unexpected_list") or []
    return FailedExpectation(
        expectation=cfg.type,
        rule=meta.get("rule"),
        columns=_columns(kwargs),
        unexpected_count=int(count) if count is not None else None,
        unexpected_percent=float(pct) if pct is not None else None,
        examples=[_json_safe(v) for v in examples[:MAX_EXAMPLES]],
        observed=_json_safe(result.get("observed_value")),
        details=_json_safe(result.get("details")),
        error=_error(r.exception_info),
    )


def _months_as_text(contract: Contract, df: pd.DataFrame) -> pd.DataFrame:
    """``month`` columns held as dates -> ``YYYY-MM`` text (other days: ``YYYY-MM-DD``)."""
    cols = [c.name for c in contract.columns if c.type == "month" and c.name in df.columns
            and pd.api.types.is_datetime64_any_dtype(df[c.name])]
    if not cols:
        return df
    df = df.copy(deep=False)
    for name in cols:
        v = df[name]
        text = v.dt.strftime("%Y-%m").where(v.dt.day == 1, v.dt.strftime("%Y-%m-%d"))
        df[name] = text.where(v.notna()).astype("str")
    return df


def _context() -> Any:
    """A fresh in-memory GX context: no docs sites, no analytics, no progress bars."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate_sample(
    contract: Contract,
    df: pd.DataFrame,
    references: Mapping[str, Collection[str]] | None = None,
    *,
    months: tuple[str, str] | None = None,
    pseudonym_pattern: str | Mapping[str, str] | None = None,
    extra_columns: Sequence[str] = (),
    min_rows: int = 1,
) -> GXReport:
    """Validate a (pseudonymised) pandas sample of one table with its contract's suite.

    ``df`` normally comes from :func:`sample_frame`; the keyword arguments are those of
    :func:`build_suite`. The validation runs in a fresh in-memory GX context (so calls
    are independent of each other) through a ``ValidationDefinition`` on a
    whole-dataframe batch, with result format ``BASIC``: counts and up to five
    unexpected values per expectation. An expectation whose evaluation raised is
    reported as failed with its ``error``; nothing is raised to the caller for a bad
    frame.

    ``month`` columns stored as dates (the first day of the month, as the polars
    engine writes them) are compared as ``YYYY-MM`` text; a date on another day
    becomes ``YYYY-MM-DD`` and fails the month format (``type:<column>``).
    """
    suite = build_suite(contract, references, months=months, pseudonym_pattern=pseudonym_pattern,
                        extra_columns=extra_columns, min_rows=min_rows)
    df = _months_as_text(contract, df)
    context = _context()
    asset = context.data_sources.add_pandas(name="impact").add_dataframe_asset(
        name=contract.table)
    batch_definition = asset.add_batch_definition_whole_dataframe("sample")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(
        name=f"{contract.table}.sample", data=batch_definition, suite=suite))
    with warnings.catch_warnings():
        # pandas warns on every str.contains with a capturing group (GX's regex metric)
        warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular "
                                "expression, and has match groups", category=UserWarning)
        result = definition.run(
            batch_parameters={"dataframe": df},
            result_format={"result_format": "BASIC", "partial_unexpected_count": MAX_EXAMPLES},
        )
    failed = sorted((_failed(r) for r in result.results if not r.success),
                    key=lambda f: (f.rule or "", f.columns, f.expectation))
    stats = {k: _json_safe(v) for k, v in dict(result.statistics).items()}
    stats["rows"] = int(len(df))
    return GXReport(
        table=contract.table,
        success=bool(result.success),
        evaluated=int(stats.get("evaluated_expectations", len(result.results))),
        failed=failed,
        statistics=stats,
        skipped=list((suite.meta or {}).get("skipped", [])),
    )
