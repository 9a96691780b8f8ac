"""Incremental ingest: a run after a new delivery redoes only what it affects, exactly.

One small synthetic delivery (2,000 persons, 2021-01..2026-06) is split into two monthly
deliveries: D1 (everything up to 2026-05, without some persons of the population register)
and D2 (the month 2026-06 of the monthly reports, corrections of 2022 reports with a later
submission date, and the persons missing from D1, one of them dead since the second month
of the only year he has reports in, which makes his later reports of that year invalid).
D1 is ingested, then D1+D2 incrementally into the same folder; a full ingest of D1+D2 into
another folder must give the same clean tables, quarantine, reconciliation and rules hit,
and only the years touched by D2 (new files, or reference rows that changed for the persons
and employers a year looks up) may have been validated again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from impact.contracts.model import load_contracts
from impact.ingest import CACHE_DIR, IngestSettings, TableResult, deliveries_in, ingest
from impact.manifest import DeliveryManifest
from impact.privacy_scan import scan_for_codes, scan_for_key
from impact.pseudonym import PseudonymKey
from impact.synth import SynthConfig, generate
from tests.test_ingest import KEY, _rewrite

VID = "vid_monthly_reports"
START, END = "2021-01", "2026-06"
LAST_YEAR, NEW_MONTH = 2026, "2026-06"
CORRECTED_YEAR = 2022
#: report years of the person whose death date arrives with D2 (he has reports in one of them)
DEATH_YEARS = (2023, 2024)
#: reconciliation fields that describe the run rather than the data (``output`` is the
#: absolute path of the clean table: another folder for the full ingest)
RUN_FIELDS = ("seconds", "groups_reused", "groups_validated", "output")


def _years() -> set[str]:
    return {f"year={y}" for y in range(int(START[:4]), LAST_YEAR + 1)}


def _write_delivery(folder: Path, template: DeliveryManifest, frames: dict[str, pl.DataFrame],
                    period: tuple[str, str]) -> None:
    """A delivery of ``frames`` (file name -> rows as text) described like ``template``."""
    folder.mkdir(parents=True)
    for name, df in frames.items():
        df.write_csv(folder / name)
    entries = [f for f in template.files if f.path in frames]
    template.model_copy(update={"delivery_id": folder.name, "period_start": period[0],
                                "period_end": period[1], "files": entries}).refreshed(
        folder, list(frames)).write(folder)


@dataclass
class Split:
    """D1 in ``landing``, D2 waiting in ``pending`` (moved into ``landing`` to deliver it)."""

    root: Path
    landing: Path
    pending: Path
    dead: str  # raw personal code: only for the privacy scan, never written by the pipeline
    death_year: int
    codes: list[str]  # every raw personal code of the population register


def _split(root: Path) -> Split:
    generate(SynthConfig(persons=2_000, seed=7, start=START, end=END), root / "synth")
    (src,) = deliveries_in(root / "synth" / "landing")
    manifest = DeliveryManifest.read(src)
    persons = pl.read_csv(src / "pmlp_persons.csv", infer_schema=False)
    reports = pl.concat([pl.read_csv(src / f.path, infer_schema=False)
                         for f in manifest.files if f.table == VID])
    # the person who dies: alive in the register, reports in exactly one year (one of
    # DEATH_YEARS) and in at least four months of it
    per = reports.group_by("person_code").agg(
        pl.col("period").str.slice(0, 4).n_unique().alias("years"),
        pl.col("period").str.slice(0, 4).first().cast(pl.Int32).alias("year"),
        pl.col("period").n_unique().alias("months"),
        pl.col("period").min().alias("first"))
    alive = persons.filter(pl.col("death_date").is_null() | (pl.col("death_date") == ""))
    dead = per.filter((pl.col("years") == 1) & pl.col("year").is_in(list(DEATH_YEARS))
                      & (pl.col("months") >= 4)
                      & pl.col("person_code").is_in(alive["person_code"].implode())
                      ).sort("person_code").row(0, named=True)
    # died in the month after his first report: the reports after that month become invalid
    y, m = map(int, dead["first"].split("-"))
    death = date(y + m // 12, m % 12 + 1, 15).isoformat()
    # persons new in D2 who have no reports at all
    newcomers = persons.filter(~pl.col("person_code").is_in(reports["person_code"].implode())
                               ).sort("person_code").head(10)["person_code"]
    late = pl.concat([pl.Series([dead["person_code"]]), newcomers])

    d1 = root / "landing" / "2026-05"
    shutil.copytree(src, d1)
    last = f"{VID}_{LAST_YEAR}.csv"
    rows = pl.read_csv(d1 / last, infer_schema=False)
    rows.filter(pl.col("period") != NEW_MONTH).write_csv(d1 / last)
    persons.filter(~pl.col("person_code").is_in(late.implode())).write_csv(
        d1 / "pmlp_persons.csv")
    manifest.model_copy(update={"delivery_id": d1.name, "period_end": "2026-05"}).refreshed(
        d1, [last, "pmlp_persons.csv"]).write(d1)

    corrected = f"{VID}_{CORRECTED_YEAR}.csv"
    fixes = pl.read_csv(d1 / corrected, infer_schema=False).head(30).with_columns(
        pl.lit("12345.67").alias("gross_income"), pl.lit("2026-06-10").alias("submitted_on"),
        (pl.col("report_id") + "X").alias("report_id"))
    arrived = persons.filter(pl.col("person_code").is_in(late.implode())).with_columns(
        pl.when(pl.col("person_code") == dead["person_code"]).then(pl.lit(death))
        .otherwise(pl.col("death_date")).alias("death_date"))
    pending = root / "pending" / "2026-06"
    _write_delivery(pending, manifest, {last: rows.filter(pl.col("period") == NEW_MONTH),
                                        corrected: fixes, "pmlp_persons.csv": arrived},
                    (NEW_MONTH, NEW_MONTH))
    return Split(root, root / "landing", pending, dead["person_code"], int(dead["year"]),
                 persons["person_code"].to_list())


def _deliver(split: Split) -> None:
    shutil.move(split.pending, split.landing / split.pending.name)


def _outputs(out: Path) -> dict[str, object]:
    """Everything an ingest writes, as data: clean files, quarantine, reconciliation."""
    got: dict[str, object] = {}
    for p in sorted((out / "sources").rglob("*.parquet")):
        got[p.relative_to(out).as_posix()] = pl.read_parquet(p, hive_partitioning=False)
    for p in sorted((out / "quarantine").glob("*.parquet")):
        got[p.relative_to(out).as_posix()] = pl.read_parquet(p)
    report = json.loads((out / "reconciliation.json").read_text())
    for r in report.values():
        for f in RUN_FIELDS:
            r.pop(f)
    got["reconciliation.json"] = report
    return got


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert sorted(a) == sorted(b)
    for name, x in a.items():
        y = b[name]
        if isinstance(x, pl.DataFrame):
            assert isinstance(y, pl.DataFrame)
            assert x.schema == y.schema, name
            assert x.equals(y, null_equal=True), name  # row order too, not only sorted
            assert x.sort(x.columns).equals(y.sort(y.columns), null_equal=True), name
        else:
            assert x == y, name


def _ino(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_ino
            for p in sorted((out / "sources").rglob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """D1 then D1+D2 incrementally (and once more without anything new); D1+D2 in full."""
    split = _split(tmp_path_factory.mktemp("incremental"))
    inc = split.root / "out_inc"
    first = ingest(deliveries_in(split.landing), IngestSettings(out=inc, key=KEY))
    before = _outputs(inc)
    _deliver(split)
    second = ingest(deliveries_in(split.landing), IngestSettings(out=inc, key=KEY))
    after_second, inodes = _outputs(inc), _ino(inc)
    gx = {p.name: p.stat().st_mtime_ns for p in (inc / "validation").glob("*.gx.json")}
    third = ingest(deliveries_in(split.landing), IngestSettings(out=inc, key=KEY))
    full_out = split.root / "out_full"
    full = ingest(deliveries_in(split.landing),
                  IngestSettings(out=full_out, key=KEY, incremental=False))
    return {"split": split, "inc": inc, "full_out": full_out, "first": first,
            "second": second, "third": third, "full": full, "before": before,
            "after_second": after_second, "inodes": inodes, "gx": gx}


def _same_results(a: dict[str, TableResult], b: dict[str, TableResult]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        x, y = a[name], b[name]
        assert x.ok and y.ok, (name, x.failure, y.failure)
        assert x.files == y.files, name
        assert x.rules_hit == y.rules_hit, name
        assert x.extra_columns == y.extra_columns, name
        assert (x.gx_success, x.gx_failed_rules) == (y.gx_success, y.gx_failed_rules), name


def test_new_delivery_gives_the_full_ingest_output(runs) -> None:
    _same_results(runs["second"], runs["full"])
    _assert_same(runs["after_second"], _outputs(runs["full_out"]))
    # the scenario bites: the death invalidates reports, the corrections supersede D1 rows
    vid = runs["second"][VID]
    assert vid.rules_hit.get("not_after_event:no_income_after_death", 0) >= 2
    old = {f.file: f for f in runs["first"][VID].files}
    new = {f.file: f for f in vid.files}
    name = f"2026-05/{VID}_{CORRECTED_YEAR}.csv"
    assert new[name].superseded >= old[name].superseded + 30
    assert new[name].accepted <= old[name].accepted - 30
    # the man who died was unknown to D1 (his reports were quarantined), known now
    assert runs["first"][VID].rules_hit.get("foreign_key:person_code->pmlp_persons", 0) >= 4


def test_only_the_years_touched_by_the_new_delivery_are_validated(runs) -> None:
    first, second = runs["first"], runs["second"]
    assert set(first[VID].groups_validated) == _years() and first[VID].groups_reused == []
    touched = {f"year={LAST_YEAR}", f"year={CORRECTED_YEAR}",
               f"year={runs['split'].death_year}"}
    assert set(second[VID].groups_validated) == touched
    assert set(second[VID].groups_reused) == _years() - touched
    assert second["pmlp_persons"].groups_validated == ["all"]  # a new file
    for table in ("ref_isco", "ref_nace_classes", "employers", "ref_cpi"):
        assert second[table].groups_reused == ["all"], table
    # the full ingest validated everything and says so
    assert all(r.groups_reused == [] for r in runs["full"].values())
    report = json.loads((runs["full_out"] / "reconciliation.json").read_text())
    assert sorted(report[VID]["groups_validated"]) == sorted(_years())


def test_a_run_without_a_new_delivery_reuses_everything(runs) -> None:
    third = runs["third"]
    for name, r in third.items():
        assert r.groups_validated == [] and r.groups_reused, name
    _same_results(third, runs["second"])
    _assert_same(_outputs(runs["inc"]), runs["after_second"])
    # reused clean parts are the same files (hard links), not rewritten
    assert _ino(runs["inc"]) == runs["inodes"]
    # nor is the Great Expectations cross-check of an unchanged table repeated
    validation = runs["inc"] / "validation"
    assert {p.name: p.stat().st_mtime_ns for p in validation.glob("*.gx.json")} == runs["gx"]
    assert len(runs["gx"]) == len(third)
    report = json.loads((runs["inc"] / "reconciliation.json").read_text())
    assert report[VID]["groups_validated"] == [] and len(report[VID]["groups_reused"]) == 6


def test_no_raw_personal_code_or_key_in_the_cache(runs) -> None:
    split = runs["split"]
    cache = runs["inc"] / CACHE_DIR
    assert any(cache.rglob("lookup-person_code.parquet"))
    # the scanner sees raw codes where they are
    assert scan_for_codes([split.landing], [split.dead, *split.codes[:100]])
    assert scan_for_codes([cache], split.codes) == []
    assert scan_for_key([cache], KEY) == []


# --------------------------------------------------------------------------- invalidation


def _vid_run(landing: Path, out: Path, contracts: dict | None = None,
             incremental: bool = True) -> TableResult:
    """Ingest vid_monthly_reports (and the tables it needs) without the GX cross-check."""
    return ingest(deliveries_in(landing), IngestSettings(out=out, key=KEY, gx_sample=0,
                                                         incremental=incremental),
                  tables=[VID], contracts=contracts)[VID]


@pytest.fixture
def fresh(runs, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of D1+D2 and its incremental ingest (vid_monthly_reports and its references)."""
    landing = tmp_path / "landing"
    shutil.copytree(runs["split"].landing, landing)
    out = tmp_path / "out"
    assert set(_vid_run(landing, out).groups_validated) == _years()
    return landing, out


def _full_equals(landing: Path, out: Path, tmp: Path, **kw) -> None:
    """The output in ``out`` equals a full ingest of ``landing`` into a new folder."""
    other = tmp / "full"
    ingest(deliveries_in(landing), IngestSettings(out=other, key=kw.pop("key", KEY),
                                                  gx_sample=0, incremental=False),
           tables=[VID], **kw)
    a, b = _outputs(out), _outputs(other)
    _assert_same(a, b)


def test_a_new_key_reuses_nothing(fresh, tmp_path) -> None:
    landing, out = fresh
    other = PseudonymKey(b"another key, 32 bytes or longer!!")
    res = ingest(deliveries_in(landing), IngestSettings(out=out, key=other, gx_sample=0),
                 tables=[VID])
    for name, r in res.items():
        assert r.ok and r.groups_reused == [], name
    _full_equals(landing, out, tmp_path, key=other)


def test_a_changed_contract_validates_that_table_only(fresh, tmp_path) -> None:
    landing, out = fresh
    contracts = dict(load_contracts())
    contracts[VID] = contracts[VID].model_copy(update={"max_type_error_share": 0.07})
    res = ingest(deliveries_in(landing), IngestSettings(out=out, key=KEY, gx_sample=0),
                 tables=[VID], contracts=contracts)
    assert set(res[VID].groups_validated) == _years()
    for name, r in res.items():
        if name != VID:
            assert r.groups_validated == [], name
    assert _vid_run(landing, out, contracts=contracts).groups_validated == []


def test_a_changed_file_validates_its_year_only(fresh, tmp_path) -> None:
    landing, out = fresh
    d1 = landing / "2026-05"
    name = f"{VID}_2021.csv"
    df = pl.read_csv(d1 / name, infer_schema=False)
    _rewrite(d1, name, df.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("-5"))
                                       .otherwise(pl.col("gross_income")).alias("gross_income")))
    res = _vid_run(landing, out)
    assert res.ok and res.groups_validated == ["year=2021"]
    assert res.rules_hit["range:gross_income"] == 3
    _full_equals(landing, out, tmp_path)


def test_a_file_changed_behind_its_manifest_is_read_again(fresh) -> None:
    landing, out = fresh
    path = landing / "2026-05" / f"{VID}_2023.csv"
    data = bytearray(path.read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")  # same size, other checksum
    path.write_bytes(bytes(data))
    res = _vid_run(landing, out)
    assert not res.ok and "SHA-256" in res.failure and f"{VID}_2023.csv" in res.failure


def test_a_year_that_disappears_leaves_no_cache_record(fresh, tmp_path) -> None:
    landing, out = fresh
    d1 = landing / "2026-05"
    name = f"{VID}_2021.csv"
    (d1 / name).unlink()
    m = DeliveryManifest.read(d1)
    m.model_copy(update={"files": [f for f in m.files if f.path != name]}).write(d1)
    res = _vid_run(landing, out)
    assert res.ok and res.groups_validated == [] and "year=2021" not in res.groups_reused
    assert not (out / CACHE_DIR / VID / "year=2021").exists()
    assert not (out / "sources" / VID / "year=2021").exists()
    _full_equals(landing, out, tmp_path)


def test_full_ingest_switch_validates_everything(fresh) -> None:
    landing, out = fresh
    res = _vid_run(landing, out, incremental=False)
    assert set(res.groups_validated) == _years() and res.groups_reused == []
    assert set(_vid_run(landing, out).groups_reused) == _years()


def test_a_longer_period_revalidates_years_with_months_outside_the_old_one(fresh, tmp_path
                                                                            ) -> None:
    """Reports of 2026-07 in D2 are outside its period (quarantined); D3 extends the period
    to 2026-07: the year with those reports is validated again (they are accepted now),
    years whose every month was inside both periods are reused."""
    landing, out = fresh
    d2 = landing / "2026-06"
    name = f"{VID}_{LAST_YEAR}.csv"
    rows = pl.read_csv(d2 / name, infer_schema=False)
    early = rows.head(4).with_columns(pl.lit("2026-07").alias("period"),
                                      (pl.col("report_id") + "L").alias("report_id"))
    _rewrite(d2, name, pl.concat([rows, early]))
    before = _vid_run(landing, out)
    assert before.groups_validated == [f"year={LAST_YEAR}"]
    assert before.rules_hit["within_delivery:period"] == 4
    d3 = landing / "2026-07"
    fix = pl.read_csv(landing / "2026-05" / f"{VID}_2025.csv", infer_schema=False).head(1)
    _write_delivery(d3, DeliveryManifest.read(landing / "2026-05"),
                    {f"{VID}_2025.csv": fix.with_columns(pl.lit("2026-07-02").alias(
                        "submitted_on"))}, ("2026-07", "2026-07"))
    after = _vid_run(landing, out)
    assert set(after.groups_validated) == {f"year={LAST_YEAR}", "year=2025"}
    assert set(after.groups_reused) == _years() - {f"year={LAST_YEAR}", "year=2025"}
    assert "within_delivery:period" not in after.rules_hit
    _full_equals(landing, out, tmp_path)


def test_dagster_asset_reports_groups_and_full_ingest_flag(runs, tmp_path) -> None:
    """`impact run`'s engine: the asset metadata say which groups were reused; the
    full-ingest switch (`impact run --full-ingest`) validates them all again."""
    import yaml

    from pipelines.run import run

    shutil.copytree(runs["split"].landing, tmp_path / "landing")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(tmp_path)},
                                      "synth": {"persons": 2_000, "seed": 7},
                                      "ingest": {"key": {"source": "demo"}}}))

    def groups(**kw) -> dict[str, object]:
        report = run(config, ["ref_isco"], **kw)
        assert report.success, [o.message for o in report.failed]
        (o,) = report.outcomes
        return {k: o.metadata[k] for k in ("groups_reused", "groups_validated", "groups")}

    assert groups() == {"groups_reused": 0, "groups_validated": 1,
                        "groups": {"reused": [], "validated": ["all"]}}
    assert groups()["groups"] == {"reused": ["all"], "validated": []}
    assert groups(full_ingest=True)["groups"] == {"reused": [], "validated": ["all"]}
