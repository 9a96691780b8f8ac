"""Full-volume contract rules in polars: parse, check, flag every row.

Every rule of a :class:`~impact.contracts.model.Contract` becomes one boolean
*violation* expression; a row violating any of them is quarantined with the
names of all the rules it broke. Table-level failures (the table cannot be
used at all) raise :class:`TableFailure` with the file, column, rule and a
few example values, so an analyst can act without opening the data.

Assumptions
-----------
* CSV files are read with every column as text, so that a value that does not
  parse is a row-level finding rather than a reader crash; empty fields are
  nulls. Parquet files keep their types and are cast the same way.
* Personal codes are checked on the raw value and then pseudonymised before
  any other rule runs; every later rule, every example value and every
  quarantine record sees pseudonyms only.
* Date ``min``/``max`` bounds are written ``YYYYMMDD`` in the contracts.
* The one cross-row rule, ``no_overlap`` (:func:`overlap_rules`), runs last and
  compares only rows that broke no other rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from impact.contracts.model import Column, Contract

ROW = "_row"
FILE = "_file"
DELIVERY = "_delivery"
META = (ROW, FILE, DELIVERY)

_TRUE = {"true", "1", "t", "yes", "y"}
_FALSE = {"false", "0", "f", "no", "n"}


@dataclass(frozen=True)
class TableFailure(Exception):
    """A contract failure that makes a table unusable (blocking)."""

    table: str
    file: str
    column: str | None
    rule: str
    message: str
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        col = f", column {self.column!r}" if self.column else ""
        ex = f"; examples: {', '.join(self.examples)}" if self.examples else ""
        return f"{self.table} ({self.file}{col}): rule {self.rule!r} failed: {self.message}{ex}"


@dataclass
class TypeErrors:
    """Values that did not parse, counted per column over one or more frames of a table.

    :func:`parse_columns` adds each frame it parses; :meth:`check` then decides, over
    everything added, whether a column's share of unparseable values is so high that the
    column has the wrong type (a blocking failure) rather than a few bad rows. A table
    validated in parts (buckets of a year, see :mod:`impact.ingest`) passes one tally to
    every part and checks it once, so the decision is the same as over the whole table.
    """

    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    #: per column, up to three (delivery, row number, value) of the earliest bad values
    examples: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)

    def add(self, raw: pl.DataFrame, flags: pl.DataFrame, contract: Contract) -> None:
        """Count the type flags of ``flags`` (aligned with ``raw``, the values as read)."""
        offset, self.rows = self.rows, self.rows + flags.height
        if not flags.height:
            return
        names = [c.name for c in contract.columns]
        sums = flags.select(pl.col(flag(f"type:{n}")).sum() for n in names).row(0)
        lineage = DELIVERY in raw.columns and ROW in raw.columns
        for name, n in zip(names, sums, strict=True):
            if not n:
                continue
            self.counts[name] = self.counts.get(name, 0) + int(n)
            bad = raw.with_row_index("__i", offset=offset).filter(flags[flag(f"type:{name}")])
            order = [pl.col(DELIVERY), pl.col(ROW)] if lineage else [pl.lit(0), pl.col("__i")]
            first = bad.select(*order, pl.col(name).cast(pl.Utf8)).head(3).rows()
            have = sorted([*self.examples.get(name, []), *first])
            self.examples[name] = have[:3]

    def check(self, contract: Contract, file: str) -> None:
        """Raise :class:`TableFailure` for the first column (contract order) whose share
        of unparseable values exceeds ``contract.max_type_error_share``; the examples are
        the earliest bad values (by delivery and row number)."""
        for c in contract.columns:
            n = self.counts.get(c.name, 0)
            share = n / self.rows if self.rows else 0.0
            if share > contract.max_type_error_share and share > 0:
                raise TableFailure(contract.table, file, c.name, "type",
                                   f"{share:.0%} of values are not {c.type}",
                                   tuple(str(v) for _, _, v in self.examples.get(c.name, ())))


@dataclass
class Checked:
    """A parsed table with one boolean column per violated rule."""

    frame: pl.DataFrame  # typed contract columns + META + violation flags
    rules: list[str] = field(default_factory=list)  # names of the flag columns


def flag(rule: str) -> str:
    """Name of the violation column of ``rule``."""
    return f"__v__{rule}"


def _parse(col: Column, raw: pl.Expr) -> pl.Expr:
    """Typed value of a column (null where it does not parse)."""
    if col.type == "string":  # text is kept as delivered; a quoted "" is missing
        text = raw.cast(pl.Utf8)
        return pl.when(text != "").then(text)
    text = raw.cast(pl.Utf8).str.strip_chars()
    if col.type == "int":
        return text.cast(pl.Float64, strict=False).pipe(
            lambda x: pl.when(x == x.round(0)).then(x.cast(pl.Int64, strict=False)))
    if col.type == "float":
        return text.cast(pl.Float64, strict=False)
    if col.type == "bool":
        low = text.str.to_lowercase()
        return pl.when(low.is_in(list(_TRUE))).then(True).when(low.is_in(list(_FALSE))).then(
            False).otherwise(None)
    if col.type == "date":
        return text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    if col.type == "month":
        ok = text.str.contains(r"^\d{4}-\d{2}$")
        return pl.when(ok).then((text + "-01").str.to_date("%Y-%m-%d", strict=False))
    raise ValueError(f"unknown column type {col.type}")


_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
#: 0001-01-01 and 9999-12-31 as days since 1970-01-01 (the physical value of a Date)
_DAY_1 = (date(1, 1, 1) - date(1970, 1, 1)).days
_DAY_9999 = (date(9999, 12, 31) - date(1970, 1, 1)).days


def _parse_stored(col: Column, values: pl.Series) -> pl.Expr | None:
    """What :func:`_parse` gives for a column already stored with a fitting type
    (Parquet), without the round trip through text; ``None`` where there is no shortcut.

    The same values exactly: integers and ``Float64`` print and parse back to the same
    number (any NaN becomes the canonical NaN, as through text), booleans to themselves,
    dates of the years 1-9999 to themselves (others print in a form the parser rejects,
    so such a column takes the text route).
    """
    raw, dtype = pl.col(col.name), values.dtype
    if col.type in ("int", "float") and (dtype in _INTEGERS or dtype == pl.Float64):
        x = raw.cast(pl.Float64).fill_nan(float("nan")) if dtype == pl.Float64 \
            else raw.cast(pl.Float64)
        if col.type == "float":
            return x
        return pl.when(x == x.round(0)).then(x.cast(pl.Int64, strict=False))
    if col.type == "bool" and dtype == pl.Boolean:
        return raw
    if col.type == "date" and dtype == pl.Date:
        days = values.to_physical()  # days since 1970-01-01 (a Python date stops at year 1)
        lo, hi = days.min(), days.max()
        if lo is None or (_DAY_1 <= lo and hi <= _DAY_9999):  # type: ignore[operator]
            return raw
    return None


def _yyyymmdd(v: float) -> date:
    i = int(v)
    return date(i // 10000, i // 100 % 100, i % 100)


def parse_columns(df: pl.DataFrame, contract: Contract, file: str,
                  type_errors: TypeErrors | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Cast every contract column; flag values that do not parse.

    With ``type_errors``, the unparseable values are added to that tally and the share
    test is left to the caller (:meth:`TypeErrors.check`, once all parts are parsed).

    Raises
    ------
    TableFailure
        Without ``type_errors``: if a column's share of unparseable values exceeds the
        contract's ``max_type_error_share`` (a wrong type, not bad rows).
    """
    present = [c for c in contract.columns]
    exprs, empties, out_cols, flags = [], [], [], []
    for c in present:
        raw = pl.col(c.name)
        stored = _parse_stored(c, df.get_column(c.name)) if c.name in df.columns else None
        if stored is not None:  # a number, boolean or date is never an empty text
            empty, parsed = raw.is_null(), stored
        else:
            # an empty field (null) or a quoted empty string counts as missing
            empty = raw.is_null() | (raw.cast(pl.Utf8) == "")
            parsed = _parse(c, raw)
        # parsed once: the type flag reads the parsed column instead of parsing again
        exprs.append(parsed.alias(c.name))
        empties.append(empty.alias(f"__empty__{c.name}"))
        out_cols += [pl.col(c.name), (~pl.col(f"__empty__{c.name}") & pl.col(c.name).is_null())
                     .alias(flag(f"type:{c.name}"))]
        flags.append(f"type:{c.name}")
    out = df.select(*META, *exprs, *empties).select(*META, *out_cols)
    tally = TypeErrors() if type_errors is None else type_errors
    tally.add(df, out, contract)
    if type_errors is None:
        tally.check(contract, file)
    return out, flags


def row_rules(contract: Contract, period: tuple[date, date],
              references: dict[str, pl.DataFrame]) -> list[tuple[str, pl.Expr]]:
    """Violation expressions of every single-row and cross-table rule.

    Parameters
    ----------
    contract
        The table's contract.
    period
        First and last month (first days) of the delivery.
    references
        Accepted, pseudonymised tables this contract's rules refer to.
    """
    rules: list[tuple[str, pl.Expr]] = []
    for c in contract.columns:
        v = pl.col(c.name)
        if not c.nullable:  # a value that did not parse is a type finding, not a null
            rules.append((f"not_null:{c.name}", v.is_null() & ~pl.col(flag(f"type:{c.name}"))))
        if c.pattern and not c.pseudonymise:  # identifiers: checked before hashing
            rules.append((f"pattern:{c.name}", v.is_not_null() & ~v.str.contains(c.pattern)))
        if c.min is not None or c.max is not None:
            lo = _yyyymmdd(c.min) if (c.type == "date" and c.min is not None) else c.min
            hi = _yyyymmdd(c.max) if (c.type == "date" and c.max is not None) else c.max
            bad = pl.lit(False)
            if lo is not None:
                bad = bad | (v < pl.lit(lo))
            if hi is not None:
                bad = bad | (v > pl.lit(hi))
            rules.append((f"range:{c.name}", v.is_not_null() & bad))
        if c.allowed is not None:
            rules.append((f"allowed:{c.name}", v.is_not_null() & ~v.is_in(c.allowed)))
        if c.allowed_from:
            table, col = c.allowed_from.split(".")
            ref = references.get(table)
            if ref is None:
                raise TableFailure(contract.table, "-", c.name, "reference",
                                   f"reference table {table!r} is not available")
            rules.append((f"allowed_from:{c.name}",
                          v.is_not_null() & ~v.is_in(ref[col].implode())))
        if c.within_delivery:
            rules.append((f"within_delivery:{c.name}",
                          v.is_not_null() & ((v < period[0]) | (v > period[1]))))
    for d in contract.date_order:
        rules.append((f"date_order:{d.name}", pl.col(d.end) < pl.col(d.start)))
    for r in contract.conditional:
        v = pl.col(r.then.column)
        if r.then.not_null:  # a value that did not parse is a type finding, not a null
            broken = v.is_null() & ~pl.col(flag(f"type:{r.then.column}"))
        elif r.then.is_null:
            broken = v.is_not_null()
        else:
            broken = v.is_not_null() & ~v.is_in(r.then.values)
        rules.append((f"conditional:{r.name}", pl.col(r.when.column).is_in(r.when.values)
                      & broken))
    for fk in contract.foreign_keys:
        ref = references.get(fk.table)
        if ref is None:
            raise TableFailure(contract.table, "-", fk.column, "foreign_key",
                               f"table {fk.table!r} failed or is missing, so the key cannot "
                               "be checked")
        rules.append((f"foreign_key:{fk.column}->{fk.table}",
                      pl.col(fk.column).is_not_null()
                      & ~pl.col(fk.column).is_in(ref[fk.ref_column].implode())))
    return rules


def event_rules(df: pl.DataFrame, contract: Contract,
                references: dict[str, pl.DataFrame],
                events: dict[str, pl.Series] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Flag rows dated after an event of the same person (e.g. income after death).

    ``events`` may give, by rule name, each row's event date already looked up (null
    where the person has none), as the join with the reference table would.
    """
    names = []
    for e in contract.not_after_event:
        if events and e.name in events:
            joined = df.select(pl.col(e.column).alias("__t"),
                               pl.lit(events[e.name]).alias("__event"))
        else:
            ref = references[e.table].select(
                pl.col(e.ref_key).alias("__k"), pl.col(e.event_column).alias("__event")
            ).filter(pl.col("__event").is_not_null())  # only persons with the event matter
            joined = df.select(pl.col(e.key).alias("__k"), pl.col(e.column).alias("__t")
                               ).join(ref, on="__k", how="left", maintain_order="left")
        bad = joined.select(
            (pl.col("__event").is_not_null()
             & (pl.col("__t").dt.month_start() > pl.col("__event").dt.month_start()))
            .fill_null(False).alias(flag(f"not_after_event:{e.name}"))).to_series()
        df = df.with_columns(bad)
        names.append(f"not_after_event:{e.name}")
    return df, names


def overlap_rules(df: pl.DataFrame, contract: Contract, flags: list[str]
                  ) -> tuple[pl.DataFrame, list[str]]:
    """Flag periods that start on or before the end of an earlier period of the same key.

    Only rows that broke none of ``flags`` take part. Rows repeating the contract key
    (exact duplicates, key conflicts: resolved later by the ingest) are one period,
    represented by the first of them, and share its flag, so the row that the ingest
    keeps never overlaps an accepted period.

    Parameters
    ----------
    df
        Typed rows with the violation columns of ``flags``.
    contract
        The table's contract (its ``no_overlap`` rules).
    flags
        Rules already checked.

    Returns
    -------
    tuple[polars.DataFrame, list[str]]
        ``df`` with one violation column per ``no_overlap`` rule, and the rule names
        (``no_overlap:<name>``).
    """
    names = []
    ok = ~pl.any_horizontal([pl.col(flag(r)) for r in flags]) if flags else pl.lit(True)
    ident = contract.key or contract.names
    df = df.with_row_index("__i")
    for o in contract.no_overlap:
        name = f"no_overlap:{o.name}"
        rows = df.filter(ok & pl.col(o.key).is_not_null() & pl.col(o.start).is_not_null()
                         ).select("__i", pl.col("__i").first().over(ident).alias("__rep"),
                                  o.key, o.start, pl.col(o.end).fill_null(date.max).alias("__end"))
        # sorted by start: the latest end among the key's earlier periods
        reach = pl.col("__end").cum_max().shift(1).over(o.key)
        bad = rows.filter(pl.col("__i") == pl.col("__rep")).sort(o.key, o.start, "__i").filter(
            pl.col(o.start) <= reach)["__i"]
        bad_rows = rows.filter(pl.col("__rep").is_in(bad.implode()))["__i"]
        df = df.with_columns(pl.col("__i").is_in(bad_rows.implode()).alias(flag(name)))
        names.append(name)
    return df.drop("__i"), names


def check(df: pl.DataFrame, contract: Contract, file: str, period: tuple[date, date],
          references: dict[str, pl.DataFrame], extra_flags: dict[str, pl.Series] | None = None,
          precomputed: dict[str, pl.Series] | None = None,
          events: dict[str, pl.Series] | None = None,
          type_errors: TypeErrors | None = None) -> Checked:
    """Parse and flag a raw table (all files of one table or one partition).

    ``extra_flags`` carries violation columns computed before pseudonymisation
    (the personal-code rule), aligned with ``df``'s rows. ``precomputed`` may replace
    the expression of a row rule (by rule name) with its violation column already
    computed the same way (the ingest checks foreign keys on distinct pseudonyms), and
    ``events`` gives :func:`event_rules` the event dates already looked up.
    ``type_errors``: see :func:`parse_columns`.
    """
    typed, flags = parse_columns(df, contract, file, type_errors)
    if extra_flags:
        typed = typed.with_columns(pl.Series(flag(k), v) for k, v in extra_flags.items())
        flags += list(extra_flags)
    rules = row_rules(contract, period, references)
    known = precomputed or {}
    typed = typed.with_columns(
        (pl.lit(known[name]) if name in known else expr).fill_null(False).alias(flag(name))
        for name, expr in rules)
    flags += [name for name, _ in rules]
    typed, ev = event_rules(typed, contract, references, events)
    flags += ev
    typed, ov = overlap_rules(typed, contract, flags)
    flags += ov
    return Checked(frame=typed, rules=flags)
