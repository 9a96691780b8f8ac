"""SQL access to the research tables with DuckDB (embedded; reads the Parquet in place).

Views
-----
``panel``
    The person-month panel (all year partitions).
``episodes``, ``treatment``, ``near_participants``
    The ILA episode tables.
``src_<table>``
    Every clean source table (e.g. ``src_vid_monthly_reports``), pseudonymised.

From Python::

    from impact.query import connect
    con = connect("data/demo")
    con.sql("SELECT region_code, avg(daily_wage_real) FROM panel GROUP BY 1").pl()

The connection is an in-memory DuckDB database whose views point at the Parquet files, so
nothing is copied and a query sees the files as they are when it starts. Writers replace
files atomically (rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import duckdb
import polars as pl

from impact import atomic

#: Research tables: view name -> path under the data root (glob for partitioned tables).
RESEARCH = {
    "panel": "panel/**/*.parquet",
    "episodes": "research/episodes.parquet",
    "treatment": "research/treatment.parquet",
    "near_participants": "research/near_participants.parquet",
}
#: How to build a research table that is missing.
BUILD_HINT = "impact run --select research"


class QueryError(ValueError):
    """A query that cannot run: bad SQL, or a table or column that does not exist."""


def _available(root: Path) -> dict[str, str]:
    """View name -> Parquet glob, for the tables present under ``root``."""
    found: dict[str, str] = {}
    for name, rel in RESEARCH.items():
        if any(root.glob(rel)):
            found[name] = str(root / rel)
    sources = root / "sources"
    if sources.is_dir():
        for folder in sorted(p for p in sources.iterdir() if p.is_dir()):
            if any(folder.glob("**/*.parquet")):
                found[f"src_{folder.name}"] = str(folder / "**" / "*.parquet")
    return found


def tables(root: Path | str) -> list[str]:
    """Names of the views :func:`connect` would create for ``root``."""
    return list(_available(Path(root)))


def connect(root: Path | str, *, threads: int | None = None,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table found under ``root``.

    Parameters
    ----------
    root
        The evaluation's data root (``data.root`` of the config).
    threads, memory_limit
        DuckDB settings (defaults: DuckDB's own).

    Raises
    ------
    QueryError
        ``root`` holds no table at all.
    """
    root = Path(root)
    found = _available(root)
    if not found:
        raise QueryError(f"no research or source tables under {root}: run the pipeline first "
                         f"({BUILD_HINT})")
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    for name, glob in found.items():
        path = glob.replace("'", "''")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}', "
                    "hive_partitioning = false)")
    return con


_MISSING = re.compile(r"Table with name (\w+) does not exist", re.IGNORECASE)


def run(sql: str, root: Path | str) -> pl.DataFrame:
    """Run one SQL query over the views of ``root`` and return the result.

    Raises
    ------
    QueryError
        Bad SQL (the parser's message), an unknown table (with the available ones and close
        matches, and how to build a research table) or an unknown column.
    """
    root = Path(root)
    con = connect(root)
    try:
        return con.sql(sql).pl()
    except duckdb.CatalogException as exc:
        m = _MISSING.search(str(exc))
        if m:
            name = m.group(1)
            have = tables(root)
            close = difflib.get_close_matches(name, have, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            build = (f" The research table {name!r} has not been built yet: {BUILD_HINT}."
                     if name in RESEARCH else "")
            raise QueryError(f"unknown table {name!r}.{hint}{build} Available: "
                             f"{', '.join(have)}") from None
        raise QueryError(str(exc).splitlines()[0]) from None
    except duckdb.BinderException as exc:
        raise QueryError(" ".join(str(exc).split("\n")[:2])) from None
    except duckdb.ParserException as exc:
        raise QueryError(f"SQL syntax error: {str(exc).splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from None
    finally:
        con.close()


def write(df: pl.DataFrame, path: Path) -> None:
    """Write a query result to ``.csv`` or ``.parquet`` (by suffix)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise QueryError(f"--output {path}: use a .csv or .parquet file name")
    (atomic.write_csv if suffix == ".csv" else atomic.write_parquet)(df, path)
