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
nothing is copied.

Readers and writers
-------------------
The pipeline rewrites these files while researchers query them: a single file (the
episode tables) is replaced atomically (rename); a panel year is swapped in as a whole
folder (``panel.build``: old folder renamed aside to ``.panel.year=YYYY.old``, new one
renamed in, old one removed); a source table is written to ``sources/.<table>.staging``
and replaces ``sources/<table>`` (ingest: old folder renamed aside to
``sources/.<table>.old``, staging renamed in, old one removed). A glob read while that
happens can see a year or a table missing, or fail on a file that vanished between listing
and opening.

:func:`run` (and so ``impact query``) therefore never trusts a single look: it lists the
files of every view the query names, with their inode, size and modification time, runs
the query on exactly those files, and lists them again. The result is returned only if
nothing changed in between and no writer was inside its unsafe step: for ``panel``, a
``.panel.year=YYYY.old`` folder whose ``panel/year=YYYY`` is missing (between the two
renames); for ``src_<table>``, the folder ``sources/.<table>.staging`` (present during
the whole ingest of the table, until the two renames are done). Otherwise the query runs
again after a short pause (10 ms, doubling up to 0.5 s) until ``wait`` seconds have
passed, then :class:`TablesBusy` is raised: the documented "try again", also what a
killed writer's leftovers give until the table is rebuilt. A result therefore always comes
from complete files of one moment.

Limits: a full panel rebuild swaps the years one after another, so a query running
between two swaps sees some years rebuilt and others not (every year complete; the panel
has no version across years, ``panel.build(years=...)`` rebuilds single years by design);
tables written one after another (``episodes`` and ``treatment``) can come from two runs
if the query ran between those writes; and a reader waits while a writer keeps rewriting
more often than a query takes. A :func:`connect` connection reads through globs with none
of these checks (interactive use; re-run a query that failed on a vanished file).
"""

from __future__ import annotations

import difflib
import re
import time
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


#: seconds :func:`run` waits for tables being rewritten before raising :class:`TablesBusy`
WAIT_SECONDS = 60.0


class QueryError(ValueError):
    """A query that cannot run: bad SQL, or a table or column that does not exist."""


class TablesBusy(QueryError):
    """Tables the query reads were being rewritten for longer than the wait: try again.

    Also raised while a killed writer's leftovers say the table may be incomplete (a
    ``.panel.year=YYYY.old`` folder beside the panel without its ``panel/year=YYYY``; a
    ``sources/.<table>.staging`` folder) until the table is rebuilt.
    """


def _glob(folder: Path, rel: str) -> list[Path] | None:
    """``sorted(folder.glob(rel))``; ``None`` if a folder vanished while it was listed."""
    try:
        return sorted(folder.glob(rel))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _globs(root: Path) -> dict[str, tuple[Path, str]]:
    """View name -> (folder, glob of its Parquet files), for the tables present under ``root``
    (or being replaced while they were looked at).

    Hidden folders under ``sources/`` are an ingest's staging area, not tables.
    """
    found: dict[str, tuple[Path, str]] = {}
    for name, rel in RESEARCH.items():
        if _glob(root, rel) != []:
            found[name] = (root, rel)
    sources = root / "sources"
    for folder in _glob(sources, "*") or []:
        if folder.is_dir() and not folder.name.startswith("."):
            if _glob(folder, "**/*.parquet") != []:
                found[f"src_{folder.name}"] = (folder, "**/*.parquet")
    return found


def _available(root: Path) -> dict[str, str]:
    """View name -> Parquet glob, for the tables present under ``root``."""
    return {name: str(folder / rel) for name, (folder, rel) in _globs(root).items()}


def _possible_views(root: Path) -> list[str]:
    """Every view name of ``root``: present, or being written (an ingest's staging folder)."""
    names = list(RESEARCH)
    for p in _glob(root / "sources", "*") or []:
        if p.name.endswith(".old"):  # an ingest's previous table, being removed
            continue
        name = "src_" + p.name.removeprefix(".").removesuffix(".staging")
        if p.is_dir() and name not in names:
            names.append(name)
    return names


def _named(sql: str, names: list[str]) -> list[str]:
    """The views whose name occurs in ``sql`` as a word: a superset of the views it reads."""
    return [n for n in names
            if re.search(rf"(?<![\w$]){re.escape(n)}(?![\w$])", sql, re.IGNORECASE)]


def _busy(root: Path, view: str) -> bool:
    """Is a writer replacing ``view`` right now (or was one killed while it did)?"""
    if view == "panel":
        # impact.panel.build swaps a year in by renaming the old folder aside to
        # ``.panel.year=YYYY.old``, then the new one in, then removing the old one: between
        # the two renames (or after a run killed there) the year is missing
        return any(not (root / "panel" / old.name[len(".panel."):-len(".old")]).is_dir()
                   for old in root.glob(".panel.*.old"))
    if view.startswith("src_"):
        # impact.ingest writes ``sources/.<table>.staging``, renames ``sources/<table>`` aside
        # and the staging folder in: the marker covers the whole rewrite
        return (root / "sources" / f".{view.removeprefix('src_')}.staging").exists()
    return False  # research tables: one file each, replaced by a rename


#: a view's files as (path, inode, size, mtime_ns); "absent": no such view; "vanished": a
#: file disappeared while the view was listed
_Snapshot = dict[str, tuple[tuple[str, int, int, int], ...] | str]


def _snapshot(root: Path, names: list[str]) -> _Snapshot:
    """The files of the views ``names`` now, with the identity of each file."""
    globs = _globs(root)
    snap: _Snapshot = {}
    for name in names:
        if name not in globs:
            snap[name] = "absent"
            continue
        paths = _glob(*globs[name])
        files: list[tuple[str, int, int, int]] | None = [] if paths is not None else None
        for path in paths or []:
            try:
                st = path.stat()
            except FileNotFoundError:
                files = None
                break
            files.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
        snap[name] = "vanished" if files is None else tuple(files)
    return snap


def tables(root: Path | str) -> list[str]:
    """Names of the views :func:`connect` would create for ``root``."""
    return list(_available(Path(root)))


def connect(root: Path | str, *, threads: int | None = None,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table found under ``root``.

    The views read through globs, so every query sees the files as they are when it runs,
    without the checks of :func:`run` (see the module docstring).

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
    con = _connection(threads, memory_limit)
    for name, glob in found.items():
        _create_view(con, name, [glob])
    return con


def _connection(threads: int | None, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    return con


def _create_view(con: duckdb.DuckDBPyConnection, name: str, paths: list[str]) -> None:
    """``name`` reads the Parquet files (or globs) ``paths``."""
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}], "
                "hive_partitioning = false)")


_MISSING = re.compile(r"Table with name (\w+) does not exist", re.IGNORECASE)


def run(sql: str, root: Path | str, *, wait: float = WAIT_SECONDS) -> pl.DataFrame:
    """Run one SQL query over the views of ``root`` and return the result.

    The result comes from complete files of one moment, also while the pipeline rewrites
    the tables: a query that overlapped a rewrite runs again (see the module docstring).

    Parameters
    ----------
    sql
        One DuckDB SQL statement.
    root
        The evaluation's data root.
    wait
        Seconds to keep retrying while tables the query names are being rewritten.

    Raises
    ------
    TablesBusy
        Tables the query names were still being rewritten after ``wait`` seconds.
    QueryError
        Bad SQL (the parser's message), an unknown table (with the available ones and close
        matches, and how to build a research table) or an unknown column.
    """
    root = Path(root)
    deadline = time.monotonic() + wait
    pause = 0.01
    while True:
        names = _named(sql, _possible_views(root))
        before = _snapshot(root, names)
        busy = {n for n in names if _busy(root, n)}
        if not _globs(root) and not busy:
            raise QueryError(f"no research or source tables under {root}: run the pipeline "
                             f"first ({BUILD_HINT})")
        result: pl.DataFrame | None = None
        failure: duckdb.Error | None = None
        con = _connection(None, None)
        try:  # the views read exactly the files listed (a glob would list them again)
            for name, files in before.items():
                if isinstance(files, tuple) and files:
                    _create_view(con, name, [f[0] for f in files])
            result = con.sql(sql).pl()
        except duckdb.Error as exc:  # possibly a file that vanished: decided below
            failure = exc
        finally:
            con.close()
        after = _snapshot(root, names)
        busy |= {n for n in names if _busy(root, n)}
        unstable = busy | {n for n in names if before[n] != after[n] or before[n] == "vanished"}
        if not unstable:
            if failure is not None:
                _raise(failure, root)
            assert result is not None
            return result
        if time.monotonic() >= deadline:
            raise TablesBusy(
                f"{', '.join(sorted(unstable))} under {root} kept being rewritten for "
                f"{wait:g} s (an ingest or panel build is running, or a killed one left a "
                f"table incomplete: rerun it). No result rather than a partial one: try "
                f"again.")
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


def _raise(exc: duckdb.Error, root: Path) -> None:
    """Raise ``exc`` (from a query over stable files) as a :class:`QueryError`."""
    try:
        raise exc
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


def write(df: pl.DataFrame, path: Path) -> None:
    """Write a query result to ``.csv`` or ``.parquet`` (by suffix)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise QueryError(f"--output {path}: use a .csv or .parquet file name")
    (atomic.write_csv if suffix == ".csv" else atomic.write_parquet)(df, path)
