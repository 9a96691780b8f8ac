"""The catalogue of bad register input: every kind planted into an otherwise valid delivery.

``docs/bad_input_catalogue.md`` lists each kind with an example, its outcome and the test
that plants it (this module or an older one); ``test_catalogue_lists_existing_tests``
keeps the two from drifting apart.

One small synthetic delivery (500 persons, 2023-01..2026-12, CSV; a Parquet twin for the
Parquet kinds) is generated per module. Each test copies it into ``tmp_path``, plants one
kind of bad input and ingests the table concerned (and, automatically, the tables its
rules need). Unless the kind is about the manifest, the manifest is refreshed after the
change (rows, bytes, SHA-256), as a producer would deliver it, so that the outcome under
test is the one of the kind, not a checksum mismatch.

Outcomes
--------
*quarantine*: exactly the planted rows (by file and row number) are quarantined, with the
rule as their only reason, and every file reconciles
(``rows_in = accepted + quarantined + duplicates + superseded``).
*error*: the table fails (blocking) with a message naming the file, the rule and, where
there is one, the column and an example; no clean output of the table is left behind.
*accepted*: the input is valid (or handled by a documented register pattern) and every
row is accounted for.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from impact import personal_code
from impact.ingest import (
    FileReconciliation,
    IngestSettings,
    TableResult,
    deliveries_in,
    ingest,
)
from impact.manifest import DeliveryManifest
from impact.pseudonym import PseudonymKey, pseudonymise
from impact.synth import SynthConfig, generate

KEY = PseudonymKey.demo()
START, END = "2023-01", "2026-12"
REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "bad_input_catalogue.md"
VID = "vid_monthly_reports_2024.csv"
VID_KEY = ["person_code", "employer_id", "period"]

Plant = Callable[[pl.DataFrame, Path], tuple[pl.DataFrame, list[int]]]


# --------------------------------------------------------------------------- fixtures


def _generate(tmp_path_factory: pytest.TempPathFactory, fmt: str) -> Path:
    root = tmp_path_factory.mktemp(f"bad_input_{fmt}")
    generate(SynthConfig(persons=500, seed=5, start=START, end=END, fmt=fmt), root)
    return root / "landing" / END


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untouched CSV delivery (read only: tests mutate copies)."""
    return _generate(tmp_path_factory, "csv")


@pytest.fixture(scope="module")
def base_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same delivery as Parquet."""
    return _generate(tmp_path_factory, "parquet")


@pytest.fixture(scope="module")
def orig_vid(base, tmp_path_factory) -> FileReconciliation:
    """Reconciliation of ``VID`` in the untouched delivery."""
    res, _ = _ingest(base, tmp_path_factory.mktemp("orig"), "vid_monthly_reports")
    (rec,) = [f for f in res.files if f.file.endswith(VID)]
    return rec


def _copy(base: Path, tmp: Path) -> Path:
    dst = tmp / "landing" / base.name
    shutil.copytree(base, dst)
    return dst


def _read(d: Path, file: str) -> pl.DataFrame:
    return pl.read_csv(d / file, infer_schema=False)


def _refresh(d: Path, *files: str) -> None:
    """The producer's manifest for the files now on disk."""
    DeliveryManifest.read(d).refreshed(d, list(files)).write(d)


def _rewrite(d: Path, file: str, df: pl.DataFrame) -> None:
    df.write_csv(d / file, null_value="")
    DeliveryManifest.read(d).refreshed(d, [file], df.columns).write(d)


def _ingest(d: Path, tmp: Path, table: str, **settings) -> tuple[TableResult, Path]:
    out = tmp / "out"
    res = ingest(deliveries_in(d.parent), IngestSettings(out=out, key=KEY, gx_sample=0,
                                                          **settings), tables=[table])
    return res[table], out


def _assert_reconciled(res: TableResult) -> None:
    assert res.files, res.failure
    for f in res.files:
        assert f.balanced, f


def _quarantine(out: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(out / "quarantine" / f"{table}.parquet")


def _plain(df: pl.DataFrame, key: list[str], n: int = 2, where: pl.Expr | None = None
           ) -> list[int]:
    """Indices of the first ``n`` rows whose key is not repeated (no duplicate, no
    correction), optionally among rows matching ``where``."""
    idx = df.with_row_index("__i").filter(~pl.struct(key).is_duplicated())
    if where is not None:
        idx = idx.filter(where)
    rows = idx["__i"].head(n).to_list()
    assert len(rows) == n
    return rows


def _set(key: list[str], where: pl.Expr | None = None, n: int = 2,
         **values: str | pl.Expr) -> Plant:
    """Overwrite columns of ``n`` plain rows (a text value or an expression)."""

    def plant(df: pl.DataFrame, d: Path) -> tuple[pl.DataFrame, list[int]]:
        rows = _plain(df, key, n, where)
        hit = pl.int_range(0, pl.len()).is_in(rows)
        df = df.with_columns(
            pl.when(hit).then(v if isinstance(v, pl.Expr) else pl.lit(v)).otherwise(pl.col(c))
            .cast(pl.Utf8).alias(c) for c, v in values.items())
        return df, [r + 1 for r in rows]

    return plant


def _days(column: str, days: int) -> pl.Expr:
    return (pl.col(column).str.to_date() + pl.duration(days=days)).dt.strftime("%Y-%m-%d")


def _unknown_person(df: pl.DataFrame, d: Path) -> tuple[pl.DataFrame, list[int]]:
    known = _read(d, "pmlp_persons.csv")["person_code"].to_numpy()
    code = str(personal_code.generate_new(1, np.random.default_rng(0), exclude=known)[0])
    return _set(VID_KEY, person_code=code)(df, d)


def _after_death(df: pl.DataFrame, d: Path) -> tuple[pl.DataFrame, list[int]]:
    """Reports in December 2024 for persons who died before it."""
    dead = _read(d, "pmlp_persons.csv").filter(
        pl.col("death_date").is_between(pl.lit(f"{START}-01"), pl.lit("2024-11-30")))
    codes = dead["person_code"].head(2).to_list()
    assert len(codes) == 2
    rows = _plain(df, VID_KEY, 2)
    for row, code in zip(rows, codes, strict=True):
        hit = pl.int_range(0, pl.len()) == row
        df = df.with_columns(pl.when(hit).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
                             for c, v in {"person_code": code, "period": "2024-12"}.items())
    return df, [r + 1 for r in rows]


def _overlapping_residence(df: pl.DataFrame, d: Path) -> tuple[pl.DataFrame, list[int]]:
    """A person's second period moved to start 10 days before the first one ends (the
    file is sorted by person and start, so the previous row is the earlier period)."""
    prev_start, prev_end = (pl.col(c).shift(1).over("person_code").str.to_date()
                            for c in ("valid_from", "valid_to"))
    moved = prev_end - prev_start > pl.duration(days=10)
    start = (prev_end - pl.duration(days=10)).dt.strftime("%Y-%m-%d")
    return _set(["person_code", "valid_from"], moved, valid_from=start)(df, d)


def _wrong_check_digit(df: pl.DataFrame, d: Path) -> tuple[pl.DataFrame, list[int]]:
    legacy = ~pl.col("person_code").str.starts_with("32")
    flip = pl.col("person_code").str.slice(0, 11) + (
        (pl.col("person_code").str.slice(11, 1).cast(pl.Int32) + 1) % 10).cast(pl.Utf8)
    return _set(["person_code"], legacy, person_code=flip)(df, d)


# --------------------------------------------------------------------------- quarantine


@dataclass(frozen=True)
class Rows:
    """A row-level kind: the planted rows are quarantined with ``rule``."""

    kind: str
    file: str
    table: str
    plant: Plant
    rule: str


ROWS = [
    Rows("unparseable_number", VID, "vid_monthly_reports",
         _set(VID_KEY, gross_income="1 2O4,50"), "type:gross_income"),
    Rows("non_integer_in_integer_column", VID, "vid_monthly_reports",
         _set(VID_KEY, days_worked="21.5"), "type:days_worked"),
    Rows("unparseable_date", "nva_unemployment_spells.csv", "nva_unemployment_spells",
         _set(["spell_id"], registered_on="20.02.2023"), "type:registered_on"),
    Rows("impossible_date", VID, "vid_monthly_reports",
         _set(VID_KEY, submitted_on="2025-02-30"), "type:submitted_on"),
    Rows("impossible_month", VID, "vid_monthly_reports",
         _set(VID_KEY, period="2024-13"), "type:period"),
    Rows("month_outside_delivery", VID, "vid_monthly_reports",
         _set(VID_KEY, period="2022-11"), "within_delivery:period"),
    Rows("negative_wage", VID, "vid_monthly_reports",
         _set(VID_KEY, gross_income="-250.00"), "range:gross_income"),
    Rows("absurd_wage", VID, "vid_monthly_reports",
         _set(VID_KEY, gross_income="2500000"), "range:gross_income"),
    Rows("days_out_of_range", VID, "vid_monthly_reports",
         _set(VID_KEY, days_worked="45"), "range:days_worked"),
    Rows("null_in_required_column", VID, "vid_monthly_reports",
         _set(VID_KEY, person_code=pl.lit(None, pl.Utf8)), "not_null:person_code"),
    Rows("value_outside_closed_list", VID, "vid_monthly_reports",
         _set(VID_KEY, contract_type="TEMPORARY"), "allowed:contract_type"),
    Rows("unknown_isco_code", VID, "vid_monthly_reports",
         _set(VID_KEY, occupation_code="9999"), "allowed_from:occupation_code"),
    Rows("unknown_nace_code", "employers.csv", "employers",
         _set(["employer_id"], nace_code="99.99"), "allowed_from:nace_code"),
    Rows("malformed_nace_code", "employers.csv", "employers",
         _set(["employer_id"], nace_code="6201"), "pattern:nace_code;allowed_from:nace_code"),
    Rows("unknown_municipality_code", "pmlp_residence.csv", "pmlp_residence",
         _set(["person_code", "valid_from"], municipality_code="0999999"),
         "allowed_from:municipality_code"),
    Rows("invalid_personal_code_format", "pmlp_persons.csv", "pmlp_persons",
         _set(["person_code"], person_code="12345-678"), "personal_code:person_code"),
    Rows("wrong_check_digit", "pmlp_persons.csv", "pmlp_persons", _wrong_check_digit,
         "personal_code:person_code"),
    Rows("person_not_in_population_register", VID, "vid_monthly_reports", _unknown_person,
         "foreign_key:person_code->pmlp_persons"),
    Rows("employer_not_in_company_register", VID, "vid_monthly_reports",
         _set(VID_KEY, employer_id="40009999999"), "foreign_key:employer_id->employers"),
    Rows("inverted_spell", "nva_unemployment_spells.csv", "nva_unemployment_spells",
         _set(["spell_id"], pl.col("deregistered_on").is_not_null(),
              deregistered_on=_days("registered_on", -20)),
         "date_order:spell_end_after_start"),
    Rows("completed_before_started", "stars_applications.csv", "stars_applications",
         _set(["application_id"], pl.col("status") == "COMPLETED",
              ended_on=_days("started_on", -15)), "date_order:ended_after_started"),
    Rows("completed_without_start_date", "stars_applications.csv", "stars_applications",
         _set(["application_id"], pl.col("status") == "COMPLETED",
              started_on=pl.lit(None, pl.Utf8)), "conditional:started_has_start_date"),
    Rows("rejected_decision_with_completed_status", "stars_applications.csv",
         "stars_applications",
         _set(["application_id"], pl.col("status") == "COMPLETED", decision="REJECTED"),
         "conditional:rejected_decision_has_rejected_status"),
    Rows("overlapping_residence_periods", "pmlp_residence.csv", "pmlp_residence",
         _overlapping_residence, "no_overlap:one_residence_at_a_time"),
    Rows("decided_before_submitted", "stars_applications.csv", "stars_applications",
         _set(["application_id"], decided_on=_days("submitted_on", -3)),
         "date_order:decided_after_submitted"),
    Rows("death_before_birth", "pmlp_persons.csv", "pmlp_persons",
         _set(["person_code"], death_date=_days("birth_date", -400)),
         "date_order:death_after_birth"),
    Rows("income_after_death", VID, "vid_monthly_reports", _after_death,
         "not_after_event:no_income_after_death"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in ROWS])
def test_planted_rows_are_quarantined_by_their_rule(base, tmp_path, case: Rows) -> None:
    d = _copy(base, tmp_path)
    df, rows = case.plant(_read(d, case.file), d)
    _rewrite(d, case.file, df)
    res, out = _ingest(d, tmp_path, case.table)
    assert res.ok, res.failure
    _assert_reconciled(res)
    q = _quarantine(out, case.table)
    label = f"{d.name}/{case.file}"
    assert q["source_file"].unique().to_list() == [label], q
    assert sorted(q["row_number"].to_list()) == rows
    assert q["rules"].unique().to_list() == [case.rule]
    (rec,) = [f for f in res.files if f.file == label]
    assert rec.rows_in == df.height and rec.quarantined == len(rows)
    assert res.rules_hit == {r: len(rows) for r in case.rule.split(";")}


# --------------------------------------------------------------------------- ragged rows


@dataclass(frozen=True)
class Ragged:
    """A row-level kind planted in the bytes of a CSV file (rule ``field_count``)."""

    kind: str
    change: Callable[[list[bytes]], list[bytes]]  # the file's lines (header first)
    rows: list[int]  # data rows quarantined (1-based)


def _line(i: int, f: Callable[[bytes], bytes]) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: [f(x) if n == i else x for n, x in enumerate(lines)]


RAGGED = [
    Ragged("too_many_fields", _line(3, lambda x: x + b",extra"), [3]),
    Ragged("too_few_fields", _line(5, lambda x: x.rsplit(b",", 2)[0]), [5]),
    Ragged("unquoted_comma_in_text", _line(2, lambda x: x.replace(b",", b",Riga, ", 1)), [2]),
    Ragged("blank_line", lambda lines: [*lines[:4], b"", *lines[4:]], [4]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in RAGGED])
def test_rows_with_the_wrong_number_of_fields_are_quarantined(base, tmp_path, case) -> None:
    d = _copy(base, tmp_path)
    file, table = "ref_municipalities.csv", "ref_municipalities"
    lines = (d / file).read_bytes().split(b"\n")[:-1]
    (d / file).write_bytes(b"\n".join(case.change(lines)) + b"\n")
    _refresh(d, file)
    res, out = _ingest(d, tmp_path, table)
    assert res.ok, res.failure
    _assert_reconciled(res)
    q = _quarantine(out, table)
    assert q["row_number"].to_list() == case.rows
    assert q["rules"].to_list() == ["field_count"] * len(case.rows)
    assert res.rules_hit == {"field_count": len(case.rows)}


# --------------------------------------------------------------------------- accepted


def test_bom_prefixed_file_is_accepted(base, tmp_path) -> None:
    """Decision: a UTF-8 byte order mark (Excel's "CSV UTF-8") is accepted and dropped."""
    d = _copy(base, tmp_path)
    path = d / "ref_municipalities.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    _refresh(d, path.name)
    res, out = _ingest(d, tmp_path, "ref_municipalities")
    assert res.ok and res.quarantined == 0 and res.extra_columns == [], res.failure
    _assert_reconciled(res)
    clean = pl.read_parquet(out / "sources" / "ref_municipalities" / "*.parquet")
    assert clean["municipality_code"].to_list() == _read(base, path.name)["municipality_code"
                                                                            ].to_list()


def test_crlf_line_endings_are_accepted(base, tmp_path) -> None:
    d = _copy(base, tmp_path)
    path = d / "stars_programmes.csv"  # last column is a closed list: a stray \r would fail
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    _refresh(d, path.name)
    res, out = _ingest(d, tmp_path, "stars_programmes")
    assert res.ok and res.quarantined == 0, (res.failure, res.rules_hit)
    _assert_reconciled(res)
    clean = pl.read_parquet(out / "sources" / "stars_programmes" / "*.parquet")
    assert set(clean["delivery_mode"]) <= {"in_person", "remote", "hybrid"}


def test_quoted_newline_inside_a_field_is_parsed(base, tmp_path) -> None:
    """Valid CSV: a quoted field with a line break, a comma and an escaped quote."""
    d = _copy(base, tmp_path)
    df = _read(d, "stars_programmes.csv")
    title = 'Data analysis,\nlevel 2 ("advanced")'
    df = df.with_columns(pl.when(pl.int_range(0, pl.len()) == 4).then(pl.lit(title))
                         .otherwise(pl.col("title")).alias("title"))
    _rewrite(d, "stars_programmes.csv", df)
    assert b'"Data analysis,\nlevel 2 (""advanced"")"' in (d / "stars_programmes.csv").read_bytes()
    res, out = _ingest(d, tmp_path, "stars_programmes")
    assert res.ok and res.quarantined == 0, (res.failure, res.rules_hit)
    _assert_reconciled(res)
    assert res.rows_in == df.height == res.accepted
    clean = pl.read_parquet(out / "sources" / "stars_programmes" / "*.parquet")
    assert clean.filter(pl.col("programme_id") == df["programme_id"][4])["title"].item() == title


def test_extra_column_is_dropped_and_reported(base, tmp_path) -> None:
    d = _copy(base, tmp_path)
    df = _read(d, "employers.csv").with_columns(pl.lit("note").alias("comment"))
    _rewrite(d, "employers.csv", df)
    res, out = _ingest(d, tmp_path, "employers")
    assert res.ok and res.quarantined == 0, res.failure
    assert res.extra_columns == ["comment"]
    _assert_reconciled(res)
    clean = pl.read_parquet(out / "sources" / "employers" / "*.parquet")
    assert "comment" not in clean.columns


def test_columns_in_another_order_are_accepted(base, tmp_path) -> None:
    d = _copy(base, tmp_path)
    df = _read(d, "employers.csv")
    _rewrite(d, "employers.csv", df.select(reversed(df.columns)))
    res, _ = _ingest(d, tmp_path, "employers")
    assert res.ok and res.quarantined == 0 and res.accepted == df.height, res.failure


def test_personal_code_without_hyphen_links_to_the_register(base, tmp_path) -> None:
    """``081288-11213`` and ``08128811213`` are one person (one pseudonym)."""
    d = _copy(base, tmp_path)
    df = _read(d, VID)
    rows = _plain(df, VID_KEY, 5)
    hit = pl.int_range(0, pl.len()).is_in(rows)
    df = df.with_columns(pl.when(hit).then(pl.col("person_code").str.replace("-", ""))
                         .otherwise(pl.col("person_code")).alias("person_code"))
    _rewrite(d, VID, df)
    res, out = _ingest(d, tmp_path, "vid_monthly_reports")
    assert res.ok and res.quarantined == 0, (res.failure, res.rules_hit)
    _assert_reconciled(res)
    clean = pl.read_parquet(out / "sources" / "vid_monthly_reports" / "year=2024" / "*.parquet")
    raw = df[rows]["person_code"]
    assert not raw.str.contains("-").any()
    assert set(pseudonymise(raw, KEY, "person")) <= set(clean["person_code"])


def test_overlapping_spells_are_kept(base, tmp_path) -> None:
    """The contract keeps overlapping unemployment spells (the panel takes their union)."""
    d = _copy(base, tmp_path)
    df = _read(d, "nva_unemployment_spells.csv")
    first = df.filter(pl.col("deregistered_on").is_not_null()).head(3)
    overlap = first.with_columns((pl.col("spell_id") + "B").alias("spell_id"),
                                 _days("registered_on", 10).alias("registered_on"))
    _rewrite(d, "nva_unemployment_spells.csv", pl.concat([df, overlap]))
    res, _ = _ingest(d, tmp_path, "nva_unemployment_spells")
    assert res.ok and res.quarantined == 0, (res.failure, res.rules_hit)
    assert res.accepted == df.height + 3
    _assert_reconciled(res)


def test_exact_duplicate_lines_are_collapsed(base, tmp_path, orig_vid) -> None:
    d = _copy(base, tmp_path)
    df = _read(d, VID)
    before = _read(base, VID)
    _rewrite(d, VID, pl.concat([df, df[_plain(df, VID_KEY, 4)]]))
    res, _ = _ingest(d, tmp_path, "vid_monthly_reports")
    assert res.ok and res.quarantined == 0, res.failure
    _assert_reconciled(res)
    (rec,) = [f for f in res.files if f.file.endswith(VID)]
    assert rec.rows_in == before.height + 4
    assert rec.duplicates == orig_vid.duplicates + 4 and rec.accepted == orig_vid.accepted


def test_header_only_year_file_is_accepted(base, tmp_path) -> None:
    """One empty file of a table split by year: nothing to ingest from it, no failure."""
    d = _copy(base, tmp_path)
    file = "vid_monthly_reports_2026.csv"
    _rewrite(d, file, _read(d, file).clear())
    res, _ = _ingest(d, tmp_path, "vid_monthly_reports")
    assert res.ok, res.failure
    _assert_reconciled(res)
    (rec,) = [f for f in res.files if f.file.endswith(file)]
    assert (rec.rows_in, rec.accepted) == (0, 0)


# --------------------------------------------------------------------------- key conflicts


def _second_delivery(first: Path, rows: pl.DataFrame, file: str = VID) -> Path:
    """A later delivery (named after a later month) carrying ``rows`` of one file."""
    second = first.parent / "2027-01"
    second.mkdir()
    rows.write_csv(second / file, null_value="")
    m = DeliveryManifest.read(first)
    entry = next(f for f in m.files if f.path == file)
    m.model_copy(update={"delivery_id": second.name, "files": [entry]}).refreshed(
        second, [file]).write(second)
    return second


def _clean_income(out: Path, row: pl.DataFrame) -> list[float]:
    clean = pl.read_parquet(out / "sources" / "vid_monthly_reports" / "year=2024" / "*.parquet")
    key = row.select(pseudonymise(row["person_code"], KEY, "person").alias("person_code"),
                     pseudonymise(row["employer_id"], KEY, "employer").alias("employer_id"),
                     pl.col("period").str.to_date("%Y-%m"))
    return key.join(clean, on=VID_KEY)["gross_income"].to_list()


@pytest.mark.parametrize("version", ["older_version", "same_version"])
def test_conflicting_corrections_between_deliveries(base, tmp_path, orig_vid, version
                                                    ) -> None:
    """A later delivery re-sends a report with other values: the larger ``submitted_on``
    wins, then the later delivery; the loser is counted as superseded in its file."""
    first = _copy(base, tmp_path)
    df = _read(first, VID)
    row = df[_plain(df, VID_KEY, 1)]
    days = -10 if version == "older_version" else 0
    resent = row.with_columns(pl.lit("99999.00").alias("gross_income"),
                              _days("submitted_on", days).alias("submitted_on"),
                              (pl.col("report_id") + "R").alias("report_id"))
    second = _second_delivery(first, resent)
    res, out = _ingest(first, tmp_path, "vid_monthly_reports")
    assert res.ok and res.quarantined == 0, res.failure
    _assert_reconciled(res)
    loser = f"{second.name}/{VID}" if version == "older_version" else f"{first.name}/{VID}"
    winner = float(row["gross_income"][0]) if version == "older_version" else 99999.0
    (rec,) = [f for f in res.files if f.file == loser]
    assert rec.superseded == (1 if loser.startswith(second.name) else orig_vid.superseded + 1)
    assert _clean_income(out, row) == [winner]


def test_identical_file_resent_in_a_later_delivery(base, tmp_path, orig_vid) -> None:
    """Every row of the re-sent file is an exact duplicate of an accepted one: collapsed,
    and the file still reconciles (all its rows are duplicates)."""
    first = _copy(base, tmp_path)
    df = _read(first, VID)
    second = _second_delivery(first, df)
    res, _ = _ingest(first, tmp_path, "vid_monthly_reports")
    assert res.ok and res.quarantined == 0, res.failure
    _assert_reconciled(res)
    (rec,) = [f for f in res.files if f.file == f"{second.name}/{VID}"]
    assert (rec.rows_in, rec.accepted, rec.duplicates) == (df.height, 0, df.height)
    (old,) = [f for f in res.files if f.file == f"{first.name}/{VID}"]
    assert old == orig_vid


def test_conflicting_rows_of_one_key_and_version_in_one_delivery(base, tmp_path) -> None:
    """Same person, employer, month and submission date, other income, one delivery: not a
    correction (nothing says which is right): the first is kept, the other quarantined."""
    d = _copy(base, tmp_path)
    df = _read(d, VID)
    row = df[_plain(df, VID_KEY, 1)]
    other = row.with_columns(pl.lit("4321.00").alias("gross_income"),
                             (pl.col("report_id") + "Z").alias("report_id"))
    _rewrite(d, VID, pl.concat([df, other]))
    res, out = _ingest(d, tmp_path, "vid_monthly_reports")
    assert res.ok, res.failure
    _assert_reconciled(res)
    q = _quarantine(out, "vid_monthly_reports")
    assert q["row_number"].to_list() == [df.height + 1]
    assert q["rules"].to_list() == ["key_conflict:person_code,employer_id,period"]
    assert _clean_income(out, row) == [float(row["gross_income"][0])]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Fails:
    """A blocking kind: the table fails with a message containing ``expect``."""

    kind: str
    table: str
    change: Callable[[Path], None]  # mutates the copied delivery in place
    expect: list[str]
    settings: dict = field(default_factory=dict)


def _bytes(file: str, f: Callable[[bytes], bytes], refresh: bool = True
           ) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        (d / file).write_bytes(f((d / file).read_bytes()))
        if refresh:
            _refresh(d, file)
    return change


def _frame(file: str, f: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        _rewrite(d, file, f(_read(d, file)))
    return change


def _manifest(f: Callable[[str], str]) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        path = d / "manifest.json"
        path.write_text(f(path.read_text()))
    return change


def _rows_plus_one(file: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        m = DeliveryManifest.read(d)
        m.model_copy(update={"files": [f.model_copy(update={"rows": f.rows + 1})
                                       if f.path == file else f for f in m.files]}).write(d)
    return change


def _unlisted(d: Path) -> None:
    shutil.copy(d / "vid_monthly_reports_2026.csv", d / "vid_monthly_reports_2027.csv")


def _drop_source(table: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        m = DeliveryManifest.read(d)
        for f in m.files:
            if f.table == table:
                (d / f.path).unlink()
        m.model_copy(update={"files": [f for f in m.files if f.table != table]}).write(d)
    return change


def _swap_line(file: str, i: int, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def f(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[i] = lines[i].replace(old, new, 1)
        return b"\n".join(lines)
    return f


M = "ref_municipalities.csv"
FAILS = [
    Fails("renamed_column", "employers",
          _frame("employers.csv", lambda df: df.rename({"nace_code": "nace"})),
          ["employers.csv", "column 'nace_code'", "rule 'columns'", "['nace']"]),
    Fails("duplicate_column_name", "employers",
          _bytes("employers.csv", _swap_line("employers.csv", 0, b"size_class", b"sector")),
          ["employers.csv", "column 'sector'", "rule 'columns'", "more than once"]),
    Fails("non_utf8_file", "ref_municipalities",
          _bytes(M, lambda b: b.decode("utf-8").encode("cp1257")),
          [M, "rule 'encoding'", "byte 0xEE on line 2"]),
    Fails("wrong_delimiter", "ref_municipalities", _bytes(M, lambda b: b.replace(b",", b";")),
          [M, "rule 'delimiter'", "separated by ';'", "municipality_code;name"]),
    Fails("unbalanced_quote", "ref_municipalities",
          _bytes(M, _swap_line(M, 3, b",", b',"')),
          [M, "rule 'readable'", "cannot be parsed as CSV", "line 4 of the file opens a quote"]),
    Fails("truncated_csv_last_line", "ref_municipalities", _bytes(M, lambda b: b[:-7]),
          [M, "rule 'truncated'", "data row 43", "line break"]),
    Fails("header_only_file", "ref_municipalities", _bytes(M, lambda b: b.split(b"\n")[0] + b"\n"),
          [M, "rule 'empty'", "no data row"]),
    Fails("zero_byte_file", "ref_municipalities", _bytes(M, lambda b: b""),
          [M, "rule 'empty'", "0 bytes"]),
    Fails("manifest_checksum_mismatch", "ref_municipalities",
          _bytes(M, lambda b: b.replace(b"Daugavpils", b"Daugavpilz"), refresh=False),
          [M, "rule 'manifest'", "SHA-256 differs"]),
    Fails("manifest_row_count_mismatch", "ref_municipalities", _rows_plus_one(M),
          [M, "rule 'manifest'", "43 rows read, manifest says 44"]),
    Fails("manifest_lists_a_missing_file", "ref_municipalities", lambda d: (d / M).unlink(),
          [M, "rule 'present'", "listed in the manifest is missing"]),
    Fails("file_not_in_manifest", "vid_monthly_reports", _unlisted,
          ["vid_monthly_reports_2027.csv", "rule 'manifest'", "not in its manifest"]),
    Fails("invalid_manifest", "ref_municipalities",
          _manifest(lambda t: t.replace('"rows": 43', '"rows": "43 rows"')),
          ["manifest.json", "rule 'manifest'", f"rows ({M})", "valid integer"]),
    Fails("whole_source_missing", "stars_programmes", _drop_source("stars_programmes"),
          ["stars_programmes", "rule 'present'", "no file of this table"]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in FAILS])
def test_blocking_kinds_fail_the_table_with_a_clear_message(base, tmp_path, case) -> None:
    d = _copy(base, tmp_path)
    case.change(d)
    res, out = _ingest(d, tmp_path, case.table, **case.settings)
    assert not res.ok
    for text in case.expect:
        assert text in res.failure, (text, res.failure)
    assert "Traceback" not in res.failure
    assert not (out / "sources" / case.table).exists()


def test_whole_source_missing_fails_its_dependents_only(base, tmp_path) -> None:
    d = _copy(base, tmp_path)
    _drop_source("stars_programmes")(d)
    res = ingest([d], IngestSettings(out=tmp_path / "out", key=KEY, gx_sample=0),
                 tables=["stars_applications", "ref_cpi"])
    assert "rule 'foreign_key'" in res["stars_applications"].failure
    assert "'stars_programmes' failed or is missing" in res["stars_applications"].failure
    assert res["ref_cpi"].ok and res["stars_accounts"].ok


def test_truncated_parquet(base_parquet, tmp_path) -> None:
    d = _copy(base_parquet, tmp_path)
    path = d / "pmlp_persons.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    res, _ = _ingest(d, tmp_path, "pmlp_persons")
    assert "pmlp_persons.parquet" in res.failure and "SHA-256 differs" in res.failure
    res, _ = _ingest(d, tmp_path / "nocheck", "pmlp_persons", verify_checksums=False)
    assert "pmlp_persons.parquet" in res.failure and "rule 'readable'" in res.failure
    assert "not a readable Parquet file (truncated or corrupt" in res.failure


def test_parquet_column_of_the_wrong_type(base_parquet, tmp_path) -> None:
    d = _copy(base_parquet, tmp_path)
    path = d / "pmlp_persons.parquet"
    df = pl.read_parquet(path).with_columns(
        pl.col("birth_date").dt.strftime("%Y%m%d").cast(pl.Int64))
    df.write_parquet(path)
    _refresh(d, path.name)
    res, _ = _ingest(d, tmp_path, "pmlp_persons")
    msg = res.failure
    assert "pmlp_persons.parquet" in msg and "column 'birth_date'" in msg
    assert "rule 'type'" in msg and "100% of values are not date" in msg
    assert str(df["birth_date"][0]) in msg  # an example value


def test_parquet_schema_drift_between_deliveries(base_parquet, tmp_path) -> None:
    """Income as float in one delivery, as integer cents in the next: every value still
    parses, so only the schema shows the change."""
    first = _copy(base_parquet, tmp_path)
    file = "vid_monthly_reports_2024.parquet"
    rows = pl.read_parquet(first / file).head(5).with_columns(
        (pl.col("gross_income") * 100).round(0).cast(pl.Int64),
        (pl.col("report_id") + "X").alias("report_id"))
    second = first.parent / "2027-01"
    second.mkdir()
    rows.write_parquet(second / file)
    m = DeliveryManifest.read(first)
    entry = next(f for f in m.files if f.path == file)
    m.model_copy(update={"delivery_id": second.name, "files": [entry]}).refreshed(
        second, [file]).write(second)
    res, out = _ingest(first, tmp_path, "vid_monthly_reports")
    msg = res.failure
    assert msg and "rule 'schema_drift'" in msg and "column 'gross_income'" in msg
    assert f"{second.name}/{file}" in msg and "Int64" in msg and "Float64" in msg
    assert not (out / "sources" / "vid_monthly_reports").exists()


def test_income_after_death_reaches_the_rule_through_the_register(base, tmp_path) -> None:
    """The death is the register's: a report after it is quarantined even though the
    report itself is valid (see ROWS income_after_death); without the death date, the
    same report is accepted."""
    d = _copy(base, tmp_path)
    df, rows = _after_death(_read(d, VID), d)
    _rewrite(d, VID, df)
    persons = _read(d, "pmlp_persons.csv").with_columns(pl.lit(None, pl.Utf8).alias("death_date"))
    _rewrite(d, "pmlp_persons.csv", persons)
    res, _ = _ingest(d, tmp_path, "vid_monthly_reports")
    assert res.ok and res.quarantined == 0, (res.failure, res.rules_hit)
    assert len(rows) == 2


# --------------------------------------------------------------------------- the catalogue


_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([^\]]+)\])?`")


def _catalogue() -> list[dict[str, str]]:
    """Rows of the markdown table ``kind | example | outcome | test``."""
    rows = []
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not line.startswith("|") or set(cells[0]) <= {"-", " ", ":"}:
            continue
        if cells[0].lower() == "kind":
            continue
        rows.append(dict(zip(["kind", "example", "outcome", "test"], cells, strict=True)))
    return rows


def _param_ids(path: Path, func: str) -> set[str]:
    """Ids of a parametrised test function (``pytest.param(id=...)`` or ``ids=[...]``)."""
    name = f"_catalogue_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    ids: set[str] = set()
    for mark in getattr(getattr(module, func), "pytestmark", []):
        if mark.name != "parametrize":
            continue
        values = mark.args[1]
        given = mark.kwargs.get("ids")
        if isinstance(given, list | tuple):
            ids |= set(given)
        else:
            ids |= {v.id for v in values if getattr(v, "id", None)}
            ids |= {str(v) for v in values if isinstance(v, str)}
    return ids


def test_catalogue_lists_existing_tests() -> None:
    rows = _catalogue()
    kinds = [r["kind"] for r in rows]
    assert len(kinds) == len(set(kinds)), "a kind is listed twice"
    assert len(kinds) >= 30
    seen: set[tuple[str, str, str | None]] = set()
    for r in rows:
        refs = _TEST_REF.findall(r["test"])
        assert refs, f"{r['kind']}: no `tests/...py::test` reference"
        assert r["outcome"].split()[0].strip("*") in {"error", "quarantine", "accepted"}, r
        for file, func, pid in refs:
            path = REPO / file
            assert path.is_file(), (r["kind"], file)
            defined = {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                       if isinstance(n, ast.FunctionDef)}
            assert func in defined, (r["kind"], file, func)
            if pid:
                assert pid in _param_ids(path, func), (r["kind"], file, func, pid)
            seen.add((file, func, pid or None))
    # and every case of this module is in the catalogue
    me = "tests/test_bad_input_catalogue.py"
    for func, cases in [("test_planted_rows_are_quarantined_by_their_rule", ROWS),
                        ("test_rows_with_the_wrong_number_of_fields_are_quarantined", RAGGED),
                        ("test_blocking_kinds_fail_the_table_with_a_clear_message", FAILS)]:
        for c in cases:
            assert (me, func, c.kind) in seen, f"{c.kind} missing from {CATALOGUE.name}"
    # the rule named in the catalogue is the one the test expects
    rules = {c.kind: c.rule for c in ROWS} | {c.kind: "field_count" for c in RAGGED}
    rules |= {c.kind: re.search(r"rule '(\w+)'", " ".join(c.expect)).group(1) for c in FAILS}
    for r in rows:
        for file, _func, pid in _TEST_REF.findall(r["test"]):
            if file == me and pid in rules:
                assert f"`{rules[pid]}`" in r["outcome"], (r["kind"], r["outcome"])
