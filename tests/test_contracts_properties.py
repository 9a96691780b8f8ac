"""Property-based tests of the contracts layer: rows generated from the contract definitions.

For a few tables (monthly employer reports, unemployment spells, persons, employers, STARS
applications) hypothesis draws small tables of *valid* rows straight from the YAML
contracts (types, bounds, closed lists, reference codes, patterns, personal codes with
a correct check digit, date order, conditional rules, nullability, unique keys) and
validates them with :func:`impact.ingest.validate_frame`, the same code path
:func:`impact.ingest.ingest` runs on a delivered file (personal-code check,
pseudonymisation, rules, register patterns). Properties:

* valid rows are never quarantined, and all of them are accepted;
* one corrupted field (out-of-range value, unknown or malformed code, null in a
  required column, inverted dates, a value contradicting a conditional rule, month
  outside the delivery, wrong check digit, unknown person or employer, unparseable
  value) is always caught: exactly that row is
  quarantined and the expected rule is among its reasons; an unparseable value in a
  table so small that it exceeds the contract's ``max_type_error_share`` is a blocking
  ``type`` failure instead.

The reference tables are a small fixed universe (pseudonymised like accepted tables).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impact import personal_code
from impact.contracts.model import Column, Conditional, Contract, Then, load_contracts
from impact.contracts.rules import TableFailure
from impact.ingest import IngestSettings, validate_frame
from impact.pseudonym import PseudonymKey, pseudonymise

KEY = PseudonymKey.demo()
INGEST = IngestSettings(out=Path("unused"), key=KEY, gx_sample=0)
PERIOD = (date(2023, 1, 1), date(2026, 12, 1))
CONTRACTS = load_contracts()
TABLES = ["vid_monthly_reports", "nva_unemployment_spells", "pmlp_persons", "employers",
          "stars_applications"]
PROPERTY = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EARLIEST, LATEST = date(1900, 1, 1), date(2030, 12, 31)

# --------------------------------------------------------------------------- references

_rng = np.random.default_rng(7)
PERSONS = [str(c) for c in personal_code.generate_legacy(
    np.array(["1958-03-01", "1971-07-15", "1984-12-31", "1990-02-28", "1999-09-09",
              "2001-01-01"], dtype="datetime64[D]"), _rng)]
PERSONS += [str(c) for c in personal_code.generate_new(2, _rng)]
EMPLOYERS = [f"4000{n:07d}" for n in range(1, 7)]
#: raw values of every referenced key: (table, column) -> values
UNIVERSE: dict[tuple[str, str], list[str]] = {
    ("pmlp_persons", "person_code"): PERSONS,
    ("employers", "employer_id"): EMPLOYERS,
    ("ref_isco", "isco_code"): ["1111", "2511", "7131"],
    ("ref_nace_classes", "nace_code"): ["01.11", "62.01", "85.59"],
    ("ref_municipalities", "municipality_code"): ["0001000", "0050000", "0054000"],
    ("stars_accounts", "account_id"): ["A00000001", "A00000002"],
    ("stars_programmes", "programme_id"): ["P0001", "P0002"],
    ("stars_grants", "grant_id"): ["G00000001", "G00000002"],
}
#: a value of the right form that is not in the reference
UNKNOWN = {
    ("pmlp_persons", "person_code"): str(personal_code.generate_new(
        1, np.random.default_rng(8), exclude=PERSONS)[0]),
    ("employers", "employer_id"): "40009999999",
    ("ref_isco", "isco_code"): "9999",
    ("ref_nace_classes", "nace_code"): "99.99",
    ("ref_municipalities", "municipality_code"): "0999999",
    ("stars_accounts", "account_id"): "A99999999",
    ("stars_programmes", "programme_id"): "P9999",
    ("stars_grants", "grant_id"): "G99999999",
}
REFERENCES = {
    "pmlp_persons": pl.DataFrame({
        "person_code": pseudonymise(pl.Series(PERSONS), KEY, "person"),
        "death_date": pl.Series([None] * len(PERSONS), dtype=pl.Date)}),
    "employers": pl.DataFrame({
        "employer_id": pseudonymise(pl.Series(EMPLOYERS), KEY, "employer")}),
    **{t: pl.DataFrame({c: v}) for (t, c), v in UNIVERSE.items()
       if t not in ("pmlp_persons", "employers")},
}


def _reference(contract: Contract, column: str) -> tuple[str, str] | None:
    for fk in contract.foreign_keys:
        if fk.column == column:
            return fk.table, fk.ref_column
    col = contract.column(column)
    if col.allowed_from:
        t, c = col.allowed_from.split(".")
        return t, c
    return None


# --------------------------------------------------------------------------- valid values

_ASCII = st.characters(codec="ascii", categories=["L", "N", "P", "Zs"])
_TRUE_FALSE = ["true", "false", "TRUE", "False", "1", "0", "t", "f", "yes", "no", "Y", "N"]


def _date_bounds(col: Column) -> tuple[date, date]:
    def d(v: float | None, default: date) -> date:
        return default if v is None else date(int(v) // 10000, int(v) // 100 % 100, int(v) % 100)
    return d(col.min, EARLIEST), d(col.max, LATEST)


def _months(lo: date, hi: date) -> list[str]:
    out, y, m = [], lo.year, lo.month
    while (y, m) <= (hi.year, hi.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


@st.composite
def _personal_codes(draw) -> str:
    """A valid code: legacy (date, century, serial, check digit) or new format."""
    if draw(st.booleans()):
        code = "32" + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=9,
                                            max_size=9)))
    else:
        born = draw(st.dates(date(1900, 1, 1), date(2016, 12, 31)))
        century = (born.year - 1800) // 100
        serial = draw(st.integers(0, 999))
        while True:
            first10 = f"{born:%d%m}{born.year % 100:02d}{century}{serial:03d}"
            check = personal_code.check_value(np.array([[int(x) for x in first10]]))[0]
            if check != 10:
                break
            serial = (serial + 1) % 1000
        code = first10 + str(check)
    return code[:6] + "-" + code[6:] if draw(st.booleans()) else code


def _variants(code: str) -> st.SearchStrategy[str]:
    """A personal code as delivered: with or without the hyphen."""
    plain = code.replace("-", "")
    return st.sampled_from([plain, plain[:6] + "-" + plain[6:]])


def _valid(contract: Contract, col: Column) -> st.SearchStrategy[str | None]:
    ref = _reference(contract, col.name)
    if ref is not None:
        values = st.sampled_from(UNIVERSE[ref])
        value = values.flatmap(_variants) if col.personal_code else values
    elif col.personal_code:
        value = _personal_codes()
    elif col.allowed is not None:
        value = st.sampled_from([str(a) for a in col.allowed])
    elif col.pattern:
        value = st.from_regex(col.pattern, fullmatch=True, alphabet=_ASCII)
    elif col.type == "string":
        value = st.text(_ASCII, min_size=1, max_size=12).filter(lambda s: s.strip() != "")
    elif col.type == "int":
        lo = -10**6 if col.min is None else int(col.min)
        hi = 10**6 if col.max is None else int(col.max)
        value = st.integers(lo, hi).flatmap(lambda i: st.sampled_from([str(i), f"{i}.0",
                                                                       f" {i}"]))
    elif col.type == "float":
        lo = -1e9 if col.min is None else col.min
        hi = 1e9 if col.max is None else col.max
        value = st.floats(lo, hi, allow_nan=False, allow_infinity=False).flatmap(
            lambda x: st.sampled_from([repr(x), f"{x:.2f}" if lo <= round(x, 2) <= hi
                                       else repr(x)]))
    elif col.type == "date":
        value = st.dates(*_date_bounds(col)).flatmap(
            lambda d: st.sampled_from([d.isoformat(), f"{d.isoformat()} 00:00:00"]))
    elif col.type == "month":
        lo, hi = PERIOD if col.within_delivery else (date(2000, 1, 1), date(2030, 12, 1))
        value = st.sampled_from(_months(lo, hi))
    elif col.type == "bool":
        value = st.sampled_from(_TRUE_FALSE)
    else:  # pragma: no cover - the model allows no other type
        raise AssertionError(col.type)
    return st.one_of(st.none(), value) if col.nullable else value


def _holds(row: dict[str, str | None], rule: Conditional) -> bool:
    """Whether ``row`` satisfies a conditional rule."""
    if row[rule.when.column] not in map(str, rule.when.values):
        return True
    value, then = row[rule.then.column], rule.then
    if then.not_null:
        return value is not None
    if then.is_null:
        return value is None
    return value is None or value in map(str, then.values)


def _satisfying(contract: Contract, then: Then) -> st.SearchStrategy[str | None]:
    """A value of ``then.column`` that meets ``then``."""
    if then.is_null:
        return st.none()
    if then.values is not None:
        return st.sampled_from([str(v) for v in then.values])
    return _valid(contract, contract.column(then.column)).filter(lambda v: v is not None)


@st.composite
def valid_row(draw, contract: Contract) -> dict[str, str | None]:
    row = {c.name: draw(_valid(contract, c)) for c in contract.columns}
    for _ in contract.conditional:  # a pass per rule: a fix may make another rule apply
        for rule in contract.conditional:
            if not _holds(row, rule):
                row[rule.then.column] = draw(_satisfying(contract, rule.then))
    assert all(_holds(row, rule) for rule in contract.conditional)
    for rule in contract.date_order:  # the end is drawn after the start
        start, end = row[rule.start], row[rule.end]
        if start is not None and end is not None:
            first = date.fromisoformat(start[:10])
            last = min(first + timedelta(days=draw(st.integers(0, 4000))),
                       _date_bounds(contract.column(rule.end))[1])
            row[rule.end] = max(first, last).isoformat()
    return row


def _norm(value: str | None) -> str | None:
    return None if value is None else value.replace("-", "").strip()


def valid_rows(contract: Contract, max_size: int = 6) -> st.SearchStrategy[list[dict]]:
    """Rows with distinct keys and distinct values of unique columns (so no key
    conflict, duplicate or correction is drawn by chance)."""
    unique = [tuple(contract.key)] if contract.key else []
    unique += [(c.name,) for c in contract.columns if c.unique and [c.name] != contract.key]
    by = tuple((lambda r, cols=cols: tuple(_norm(r[c]) for c in cols)) for cols in unique)
    return st.lists(valid_row(contract), min_size=1, max_size=max_size,
                    unique_by=by or None)


def _frame(contract: Contract, rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame({c: [r[c] for r in rows] for c in contract.names},
                        schema={c: pl.Utf8 for c in contract.names})


@pytest.mark.parametrize("table", TABLES)
@PROPERTY
@given(data=st.data())
def test_valid_rows_are_never_quarantined(table: str, data: st.DataObject) -> None:
    contract = CONTRACTS[table]
    rows = data.draw(valid_rows(contract), label="rows")
    accepted, quarantine = validate_frame(_frame(contract, rows), contract, PERIOD,
                                          REFERENCES, INGEST)
    assert quarantine.height == 0, quarantine.select("row_number", "rules").to_dicts()
    assert accepted.height == len(rows)


# --------------------------------------------------------------------------- corruptions


def _shift(value: str, days: int) -> str:
    return (date.fromisoformat(value[:10]) + timedelta(days=days)).isoformat()


@st.composite
def corruption(draw, contract: Contract, row: dict[str, str | None]
               ) -> tuple[dict[str, str | None], str]:
    """One corrupted field (two for inverted dates): (changes, expected rule)."""
    options: list[tuple[str, str]] = []
    for c in contract.columns:
        if not c.nullable:
            options.append(("null", c.name))
        if c.min is not None or c.max is not None:
            options.append(("range", c.name))
        if c.allowed is not None:
            options.append(("allowed", c.name))
        if _reference(contract, c.name) is not None:
            options.append(("reference", c.name))
        if c.pattern and _reference(contract, c.name) is None:
            options.append(("pattern", c.name))
        if c.personal_code:
            options.append(("check_digit", c.name))
        if c.within_delivery:
            options.append(("within_delivery", c.name))
        if c.type != "string":
            options.append(("type", c.name))
    options += [("date_order", d.name) for d in contract.date_order]
    options += [("conditional", r.name) for r in contract.conditional]
    kind, name = draw(st.sampled_from(options))
    if kind == "conditional":
        rule = next(r for r in contract.conditional if r.name == name)
        when = draw(st.sampled_from([str(v) for v in rule.when.values]))
        then = rule.then  # not_null: a null; is_null: any value; in: a value not listed
        value = None if then.not_null else draw(
            _valid(contract, contract.column(then.column)).filter(
                lambda v: v is not None and (then.is_null or v not in map(str, then.values))))
        return {rule.when.column: when, then.column: value}, f"conditional:{name}"
    if kind == "null":
        return {name: None}, f"not_null:{name}"
    if kind == "date_order":
        rule = next(d for d in contract.date_order if d.name == name)
        start = row[rule.start] or draw(_valid(contract, contract.column(rule.start)).filter(
            lambda v: v is not None))
        end = _shift(start, -draw(st.integers(1, 400)))
        return {rule.start: start, rule.end: end}, f"date_order:{name}"
    col = contract.column(name)
    if kind == "range":
        step = draw(st.integers(1, 1000))
        above = col.max is not None and (col.min is None or draw(st.booleans()))
        if col.type == "date":
            lo, hi = _date_bounds(col)
            value = (hi + timedelta(days=step) if above else lo - timedelta(days=step))
            return {name: value.isoformat()}, f"range:{name}"
        bound = col.max if above else col.min
        value = bound + step if above else bound - step
        return {name: str(int(value)) if col.type == "int" else f"{value:.2f}"}, f"range:{name}"
    if kind == "allowed":
        return {name: draw(st.sampled_from(["OTHER_VALUE", "x", "0"]).filter(
            lambda v: v not in map(str, col.allowed)))}, f"allowed:{name}"
    if kind == "reference":
        table, ref_col = _reference(contract, name)
        rule = (f"foreign_key:{name}->{table}"
                if any(fk.column == name for fk in contract.foreign_keys)
                else f"allowed_from:{name}")
        return {name: UNKNOWN[(table, ref_col)]}, rule
    if kind == "pattern":
        return {name: draw(st.sampled_from(["4000A12", "", "123"]).filter(bool))
                }, f"pattern:{name}"
    if kind == "check_digit":
        legacy = draw(_personal_codes().filter(lambda v: not v.startswith("32")))
        plain = legacy.replace("-", "")
        wrong = plain[:10] + str((int(plain[10]) + draw(st.integers(1, 9))) % 10)
        return {name: wrong}, f"personal_code:{name}"
    if kind == "within_delivery":
        before = PERIOD[0] - timedelta(days=31 * draw(st.integers(1, 60)))
        after = PERIOD[1] + timedelta(days=31 * draw(st.integers(1, 60)))
        month = draw(st.sampled_from([before, after]))
        return {name: f"{month:%Y-%m}"}, f"within_delivery:{name}"
    assert kind == "type"
    bad = {"int": ["seven", "1,5", "2.5"], "float": ["12,5O", "n/a", "1.2.3"],
           "date": ["2025-02-30", "30.01.2025", "yesterday"], "month": ["2025-13", "2025/01"],
           "bool": ["maybe", "2"]}[col.type]
    return {name: draw(st.sampled_from(bad))}, f"type:{name}"


@pytest.mark.parametrize("table", TABLES)
@PROPERTY
@given(data=st.data())
def test_one_corrupted_field_is_always_caught(table: str, data: st.DataObject) -> None:
    contract = CONTRACTS[table]
    rows = data.draw(valid_rows(contract, max_size=25), label="rows")
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    changes, rule = data.draw(corruption(contract, rows[i]), label="corruption")
    rows[i] = {**rows[i], **changes}
    frame = _frame(contract, rows)
    column = rule.split(":", 1)[1]
    if rule.startswith("type:") and 1 / len(rows) > contract.max_type_error_share:
        with pytest.raises(TableFailure) as failure:
            validate_frame(frame, contract, PERIOD, REFERENCES, INGEST)
        assert (failure.value.rule, failure.value.column) == ("type", column)
        assert changes[column] in failure.value.examples
        return
    accepted, quarantine = validate_frame(frame, contract, PERIOD, REFERENCES, INGEST)
    assert quarantine["row_number"].to_list() == [i + 1], quarantine.to_dicts()
    assert rule in quarantine["rules"][0].split(";"), (rule, quarantine["rules"][0])
    assert accepted.height == len(rows) - 1
