"""Researcher access: `impact query` and impact.query over the panel and episode tables."""

from __future__ import annotations

import shutil
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
