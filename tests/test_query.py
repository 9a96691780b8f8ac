"""Researcher access: `impact query` and impact.query over the panel and episode tables."""

from __future__ import annotations

import collections
import shutil
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from impact import cli, query


def test_views_cover_research_tables_and_sources(research) -> None:
    names = query.tables(research.root)
    assert names[:4] == ["panel", "episodes", "treatment", "near_participants"]
    assert "src_vid_monthly_reports" in names and "src_pmlp_persons" in names


def test_results_equal_the_same_computation_in_polars(research) -> None:
    got = query.run(
        "SELECT region_code, avg(daily_wage_real) AS wage, count(*) AS n FROM panel "
        "JOIN treatment USING (person_code) WHERE daily_wage_real IS NOT NULL "
        "GROUP BY ALL ORDER BY region_code", research.root)
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    want = (research.panel.join(tr.select("person_code"), on="person_code")
            .filter(pl.col("daily_wage_real").is_not_null())
            .group_by("region_code").agg(pl.col("daily_wage_real").mean().alias("wage"),
                                         pl.len().alias("n"))
            .sort("region_code"))
    assert got["region_code"].to_list() == want["region_code"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    assert (got["wage"] - want["wage"]).abs().max() < 1e-9
    n = query.run("SELECT count(*) AS n FROM panel", research.root)["n"][0]
    assert n == research.panel.height


@pytest.mark.parametrize(("sql", "message"), [
    ("SELEC 1", "SQL syntax error"),
    ("SELECT * FROM panl", "Did you mean panel"),
    ("SELECT no_such_column FROM panel", "no_such_column"),
])
def test_bad_queries_give_clear_errors(research, sql: str, message: str) -> None:
    with pytest.raises(query.QueryError, match=message):
        query.run(sql, research.root)


def test_missing_research_table_says_how_to_build_it(research, tmp_path: Path) -> None:
    shutil.copytree(research.root / "sources" / "employers", tmp_path / "sources" / "employers")
    with pytest.raises(query.QueryError, match="impact run --select research"):
        query.run("SELECT * FROM panel", tmp_path)
    with pytest.raises(query.QueryError, match="run the pipeline first"):
        query.run("SELECT 1", tmp_path / "empty")


def test_cli_prints_and_writes_csv_and_parquet(research, tmp_path: Path) -> None:
    runner = CliRunner()
    sql = "SELECT outcome, count(*) AS n FROM treatment GROUP BY ALL ORDER BY outcome"
    res = runner.invoke(cli.impact, ["query", "--root", str(research.root), sql])
    assert res.exit_code == 0, res.output
    assert "completed" in res.output and "rows" in res.output
    want = pl.read_parquet(research.root / "research" / "treatment.parquet")["outcome"]
    for name in ("out.csv", "out.parquet"):
        res = runner.invoke(cli.impact, ["query", "--root", str(research.root), sql, "-o",
                                         str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        df = (pl.read_csv if name.endswith("csv") else pl.read_parquet)(tmp_path / name)
        assert df["n"].sum() == want.len()
    res = runner.invoke(cli.impact, ["query", "--root", str(research.root), sql, "-o",
                                     str(tmp_path / "out.xlsx")])
    assert res.exit_code == 1 and ".csv or .parquet" in res.output
    res = runner.invoke(cli.impact, ["query", "--root", str(research.root), "SELEC"])
    assert res.exit_code == 1 and "SQL syntax error" in res.output


# --------------------------------------------------------------------------- readers/writers
def _copy_research(research, dest: Path, parts=("sources", "panel", "research")) -> Path:
    for part in parts:
        shutil.copytree(research.root / part, dest / part)
    return dest


def test_staging_folder_of_a_running_ingest_is_not_a_table(research, tmp_path: Path) -> None:
    """An ingest writes ``sources/.<table>.staging`` first: it is no view, and it must not
    break queries of other tables (it used to become an invalid view name, failing them all)."""
    root = _copy_research(research, tmp_path)
    staging = root / "sources" / ".employers.staging"
    shutil.copytree(root / "sources" / "employers", staging)
    assert not any(name.startswith("src_.") for name in query.tables(root))
    n = query.run("SELECT count(*) AS n FROM panel", root)["n"][0]
    assert n == research.panel.height


def test_a_year_swapped_out_of_the_panel_is_never_read_as_a_short_panel(research,
                                                                         tmp_path: Path) -> None:
    """Between panel.build's two renames a year folder is missing: no partial count, the
    query waits (here: gives up with TablesBusy); once the year is back it is complete."""
    root = _copy_research(research, tmp_path)
    year = sorted(p.name for p in (root / "panel").iterdir())[1]
    aside = root / f".panel.{year}.old"  # exactly where impact.panel.build puts it
    (root / "panel" / year).rename(aside)
    with pytest.raises(query.TablesBusy, match="panel"):
        query.run("SELECT count(*) AS n FROM panel", root, wait=0.3)
    # tables the query does not name are not held up by the panel's rewrite
    assert query.run("SELECT count(*) AS n FROM treatment", root, wait=0)["n"][0] > 0
    shutil.copytree(aside, root / "panel" / year)  # new year in, old one not yet removed
    assert query.run("SELECT count(*) AS n FROM panel", root, wait=0)["n"][0] == \
        research.panel.height


def test_a_source_table_being_replaced_is_never_read_half_deleted(research,
                                                                 tmp_path: Path) -> None:
    """ingest removes ``sources/<table>`` file by file before renaming its staging folder
    in: while the staging folder exists, ``src_<table>`` is not read."""
    root = _copy_research(research, tmp_path)
    table = root / "sources" / "vid_monthly_reports"
    full = query.run("SELECT count(*) AS n FROM src_vid_monthly_reports", root)["n"][0]
    shutil.copytree(table, root / "sources" / ".vid_monthly_reports.staging")
    for year in sorted(p for p in table.iterdir() if p.is_dir())[:3]:  # half deleted
        shutil.rmtree(year)
    with pytest.raises(query.TablesBusy, match="src_vid_monthly_reports"):
        query.run("SELECT count(*) AS n FROM src_vid_monthly_reports", root, wait=0.3)
    shutil.rmtree(table)
    with pytest.raises(query.TablesBusy):  # folder gone: not "unknown table" either
        query.run("SELECT count(*) AS n FROM src_vid_monthly_reports", root, wait=0.3)
    (root / "sources" / ".vid_monthly_reports.staging").rename(table)
    assert query.run("SELECT count(*) AS n FROM src_vid_monthly_reports", root)["n"][0] == full


def test_concurrent_readers_see_only_complete_data(research, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Four reader threads query while three writers keep replacing what they read, with the
    pipeline's own writers: panel.build (alternating two populations, every year folder
    swapped in), ingest_source (alternating two deliveries of vid_monthly_reports: staging
    folder, old table deleted, staging renamed in) and atomic.write_parquet (alternating two
    versions of the treatment table).

    Every result must be complete: the panel count of every year equals that year's count in
    one of the two builds and no year is missing; src_vid_monthly_reports and treatment
    counts equal one of the two versions; and no query fails. (A *full* rebuild swaps the
    years one after another, so the panel as a whole can mix years of both builds while
    it runs: impact.panel.build promises complete years, not one build across years.)

    The writers' two unsafe moments are stretched so that readers do meet them: ingest's
    deletion of the old table (30 ms per file) and the gap between panel.build's two renames
    (100 ms). Without impact.query.run's checks, readers then get partial counts, "No files
    found" errors and (before the staging folder was skipped) failures of every query.
    """
    from impact import atomic, panel
    from impact.ingest import IngestSettings, ingest_source
    from impact.manifest import DeliveryManifest
    from impact.pseudonym import PseudonymKey

    root = _copy_research(research, tmp_path / "root", ("sources", "panel", "research"))
    # panel versions: A = the fixture's, B = 90 % of the population
    src_a = _copy_research(research, tmp_path / "a", ("sources",)) / "sources"
    src_b = _copy_research(research, tmp_path / "b", ("sources",)) / "sources"
    persons = pl.read_parquet(src_b / "pmlp_persons" / "*.parquet")
    shutil.rmtree(src_b / "pmlp_persons")
    atomic.write_parquet(persons.head(persons.height * 9 // 10),
                         src_b / "pmlp_persons" / "part-0.parquet")
    years_a = research.result.rows_by_year
    rebuilt = sorted(years_a)[:4]  # the writer rebuilds these years (faster than all ten)
    years_b = years_a | panel.build(src_b, tmp_path / "panel_b", years=rebuilt).rows_by_year
    assert all(years_a[y] != years_b[y] for y in rebuilt)
    # source versions: delivery A = the fixture's, B = half of the 2019 employer reports
    (delivery_a,) = [p for p in (research.root / "landing").iterdir() if p.is_dir()]
    delivery_b = tmp_path / "landing_b" / delivery_a.name
    shutil.copytree(delivery_a, delivery_b)
    reports = delivery_b / "vid_monthly_reports_2019.csv"
    lines = reports.read_bytes().splitlines(keepends=True)
    reports.write_bytes(b"".join(lines[: len(lines) // 2]))
    DeliveryManifest.read(delivery_b).refreshed(delivery_b, [reports.name]).write(delivery_b)
    settings = IngestSettings(out=root, key=PseudonymKey.demo(), gx_sample=0)
    count_src = "SELECT count(*) AS n FROM src_vid_monthly_reports"
    src_a_n = query.run(count_src, root)["n"][0]
    assert ingest_source("vid_monthly_reports", [delivery_b], settings).ok
    src_b_n = query.run(count_src, root)["n"][0]
    assert src_b_n < src_a_n
    # treatment versions
    treatment = pl.read_parquet(root / "research" / "treatment.parquet")
    versions = [treatment, treatment.head(treatment.height // 2)]
    treatment_n = {v.height for v in versions}

    real_rmtree, real_rename = shutil.rmtree, Path.rename

    def slow_rmtree(path, *args, **kwargs):
        path = Path(path)
        if path.parent == root / "sources" and not path.name.startswith("."):  # ingest
            for part in sorted(path.rglob("*.parquet")):
                part.unlink()
                time.sleep(0.03)
        real_rmtree(path, *args, **kwargs)

    def slow_rename(self, target):
        moved = real_rename(self, target)
        if Path(target).name.startswith(".panel.") and Path(target).name.endswith(".old"):
            time.sleep(0.1)  # panel.build: the year is aside, the new one not yet in
        return moved

    monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
    monkeypatch.setattr(Path, "rename", slow_rename)
    stop = threading.Event()
    rewrites: collections.Counter[str] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    problems: list[str] = []

    def guarded(fn):
        def loop() -> None:
            try:
                fn()
            except Exception as exc:  # reported by the assertion below
                problems.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
                stop.set()
        return loop

    def build_panel() -> None:
        while not stop.is_set():
            panel.build(src_a if rewrites["panel"] % 2 else src_b, root / "panel",
                        years=rebuilt)
            rewrites["panel"] += 1

    def ingest_reports() -> None:
        while not stop.is_set():
            delivery = delivery_b if rewrites["src"] % 2 else delivery_a  # B is in place
            assert ingest_source("vid_monthly_reports", [delivery], settings).ok
            rewrites["src"] += 1
            time.sleep(0.2)  # ingest holds its staging folder nearly all the time

    def write_treatment() -> None:
        while not stop.is_set():
            atomic.write_parquet(versions[rewrites["treatment"] % 2],
                                 root / "research" / "treatment.parquet")
            rewrites["treatment"] += 1
            time.sleep(0.5)  # a reader needs a moment without a write to get a result

    def read(kind: str) -> None:
        while not stop.is_set():
            try:
                if kind == "panel":
                    got = dict(query.run("SELECT year(month) AS y, count(*) AS n FROM panel "
                                         "GROUP BY ALL", root, wait=30).iter_rows())
                    ok = got.keys() == years_a.keys() and all(
                        n in (years_a[y], years_b[y]) for y, n in got.items())
                elif kind == "src":
                    got = query.run(count_src, root, wait=30)["n"][0]
                    ok = got in (src_a_n, src_b_n)
                else:
                    got = query.run("SELECT count(*) AS n FROM treatment", root,
                                    wait=30)["n"][0]
                    ok = got in treatment_n
            except query.TablesBusy:  # the documented retry; not expected within 30 s
                seen["busy"] += 1
                continue
            except Exception as exc:
                problems.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            seen[kind] += 1
            if not ok:
                problems.append(f"{kind}: partial result {got}")
            time.sleep(0.01)

    writers = [build_panel, ingest_reports, write_treatment]
    threads = [threading.Thread(target=guarded(w)) for w in writers]
    threads += [threading.Thread(target=read, args=(kind,))
                for kind in ("panel", "src", "treatment", "panel")]
    for t in threads:
        t.start()
    t0 = time.monotonic()  # >= 5 s, a rebuild, an ingest, 3 reads of each kind (<= 60 s)
    while time.monotonic() - t0 < 60 and not stop.is_set() and (
            time.monotonic() - t0 < 5 or rewrites["panel"] < 1 or rewrites["src"] < 1
            or min(seen["panel"], seen["src"], seen["treatment"]) < 3):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert problems == [], problems[:10]
    assert rewrites["panel"] >= 1 and rewrites["src"] >= 1 and rewrites["treatment"] >= 5, \
        rewrites
    assert min(seen["panel"], seen["src"], seen["treatment"]) >= 3, seen
    assert seen["busy"] == 0, seen
