"""Command-line interface: the ``impact`` console script.

Commands import their heavy dependencies inside the function bodies, so that
``impact --help`` stays fast and does not pull in polars/numpy.

Commands: ``impact synth`` (synthetic registers), ``impact run`` (materialise the pipeline's
assets in process, without the UI) and ``impact demo`` (the README's main command: synthetic
registers, then the pipeline on them; it grows into the full evaluation). Later issues add
``query`` and ``report``.

``run`` and ``demo`` are the only commands that load the orchestration layer: they import the
Dagster code location ``pipelines/`` of the project checkout lazily, inside the command, so
``import impact`` / ``impact.cli`` never import dagster (tests/test_boundary.py).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from impact import __version__

#: Defaults shared by ``synth`` and ``demo``; configs/demo.yaml documents the same values
#: (a test keeps them in step).
DEFAULT_PERSONS = 100_000
DEFAULT_SEED = 1
DEFAULT_START = "2019-01"
DEFAULT_END = "2028-06"
DEFAULT_FORMAT = "csv"
DEFAULT_DEMO_OUT = "data/demo"

#: The project checkout (``src/impact/cli.py`` -> repository root): configs/, pipelines/.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The demo's evaluation config (data root, public demo key, ingest switches).
DEMO_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"
#: `impact run --config` default when IMPACT_CONFIG is unset (relative to the working dir).
DEFAULT_CONFIG = "configs/demo.yaml"

#: Exit codes of `impact run` / `impact demo`.
EXIT_FAILED = 1  # an asset failed or did not run
EXIT_USAGE = 2  # bad options or config: nothing ran

_YEAR_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class YearMonth(click.ParamType):
    """A calendar month written ``YYYY-MM``; the value stays the string (validated)."""

    name = "YYYY-MM"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not _YEAR_MONTH.match(text):
            self.fail(f"{value!r} is not a month of the form YYYY-MM (e.g. 2019-01).", param, ctx)
        return text


YEAR_MONTH = YearMonth()

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", "-V", prog_name="impact")
def impact() -> None:
    """Counterfactual impact evaluation of Latvia's Individual Learning Accounts (ILA).

    Generates synthetic Latvian registers with known ground truth and (in later releases)
    validates register extracts, links them, matches statistical twins and estimates what
    training changed. Run `impact COMMAND --help` for the options of a command.
    """


# --------------------------------------------------------------------------- synth / demo


def _synth_options(*, out_default: str | None) -> Any:
    """The options shared by ``synth`` and ``demo`` (``demo`` has a default --out)."""

    def decorate(f: Any) -> Any:
        opts = [
            click.option(
                "--persons",
                type=click.IntRange(min=1),
                default=DEFAULT_PERSONS,
                show_default=True,
                help="Size of the synthetic working-age population.",
            ),
            click.option(
                "--seed",
                type=click.IntRange(min=0),
                default=DEFAULT_SEED,
                show_default=True,
                help="Random seed; the same seed gives byte-identical files.",
            ),
            click.option(
                "--out",
                type=click.Path(file_okay=False, dir_okay=True, writable=True, path_type=Path),
                help="Output directory; the delivery goes to OUT/landing/, ground truth to "
                "OUT/truth/.",
                # click >= 8.2 treats an explicit default=None as a default: pass either
                # `required` or `default`, never both
                **(
                    {"required": True}
                    if out_default is None
                    else {"default": out_default, "show_default": True}
                ),
            ),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


@impact.command(context_settings=CONTEXT_SETTINGS)
@_synth_options(out_default=None)
@click.option(
    "--start",
    type=YEAR_MONTH,
    default=DEFAULT_START,
    show_default=True,
    help="First calendar month of the simulated registers.",
)
@click.option(
    "--end",
    type=YEAR_MONTH,
    default=DEFAULT_END,
    show_default=True,
    help="Last calendar month of the simulated registers (inclusive).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"], case_sensitive=False),
    default=DEFAULT_FORMAT,
    show_default=True,
    help="File format of the register extracts (CSV is UTF-8).",
)
@click.option(
    "--inject-errors",
    is_flag=True,
    default=False,
    help="Add invalid rows of known kinds (counted in the manifest) for validation tests.",
)
@click.option(
    "--hidden-confounding",
    type=click.FloatRange(0.0, 3.0),
    default=1.0,
    show_default=True,
    help="Scale of latent motivation's effect on outcomes (0: selection on observables only, "
         "the matched DiD's assumption holds; 1: the realistic default).",
)
def synth(
    persons: int,
    seed: int,
    out: Path,
    start: str,
    end: str,
    fmt: str,
    inject_errors: bool,
    hidden_confounding: float,
) -> None:
    """Generate a synthetic Latvian population and its register extracts.

    Writes one delivery of extracts (population, education, employers, monthly tax reports,
    unemployment, social insurance, STARS learning accounts, reference tables) with a
    manifest of files, row counts and checksums to OUT/landing/, and the ground truth
    (true treatment effects) to OUT/truth/. Pipeline code never reads OUT/truth/.

    \b
    Example:
      impact synth --persons 100000 --seed 1 --out data/demo
    """
    _run_synth(
        persons=persons,
        seed=seed,
        out=out,
        start=start,
        end=end,
        fmt=fmt.lower(),
        inject_errors=inject_errors,
        hidden_confounding=hidden_confounding,
    )


@impact.command(context_settings=CONTEXT_SETTINGS)
@_synth_options(out_default=DEFAULT_DEMO_OUT)
@click.option("--verbose", "-v", is_flag=True, help="Show Dagster's log (stderr) while running.")
def demo(persons: int, seed: int, out: Path, verbose: bool) -> None:
    """Run the project end to end on the embedded synthetic default.

    Generates the synthetic registers (as `impact synth` with the demo settings of
    configs/demo.yaml: 100,000 persons, seed 1, 2019-01..2028-06, CSV) into OUT, replacing an
    earlier demo delivery, then runs `impact run --config configs/demo.yaml --select
    sources,research,evaluation` on it: every source table is validated, pseudonymised with
    the public demo key and written to OUT/sources/ (rejected rows to OUT/quarantine/); the
    person-month panel and the ILA episode tables are built (OUT/panel/, OUT/research/);
    statistical twins are matched and the effects estimated (OUT/twins/, OUT/estimates/);
    the impact indicators are computed (OUT/indicators/), pass disclosure control and are
    published to OUT/publish/<run_id>/ (OUT/publish/latest), whose path is the last line
    printed. Exits non-zero if a step fails.
    """
    click.echo(f"impact demo: synthetic registers -> {out}")
    _run_synth(
        persons=persons,
        seed=seed,
        out=out,
        start=DEFAULT_START,
        end=DEFAULT_END,
        fmt=DEFAULT_FORMAT,
        inject_errors=False,
    )
    click.echo("")
    click.echo(f"impact demo: ingest -> {Path(out) / 'sources'}, panel -> {Path(out) / 'panel'}"
               f", twins and estimates -> {Path(out) / 'estimates'}")
    code = _run_pipeline(DEMO_CONFIG, ("sources", "research", "evaluation", "publication"),
                         data_root=Path(out), verbose=verbose)
    if code:
        sys.exit(code)


# --------------------------------------------------------------------------- run


def _config_option(help_text: str) -> Any:
    """``--config``: the evaluation config, default ``$IMPACT_CONFIG`` or configs/demo.yaml."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("IMPACT_CONFIG") or DEFAULT_CONFIG,
        show_default="$IMPACT_CONFIG, else configs/demo.yaml",
        help=help_text,
    )



@impact.command(context_settings=CONTEXT_SETTINGS)
@_config_option("Evaluation config (YAML); validated before anything runs.")
@click.option(
    "--select",
    "select",
    multiple=True,
    default=("all",),
    show_default=True,
    metavar="SELECTION",
    help="What to materialise (repeat or comma-separate): 'sources' (every source table), "
    "'research' (the person-month panel and the ILA episode tables, from ingested sources), "
    "'evaluation' (statistical twins and effect estimates, from the research tables), "
    "'publication' (indicators, disclosure control and the release files), "
    "'landing' (synthetic configs: generate the delivery), 'all' (everything), a table "
    "name (that table only: its upstream tables must be ingested already) or +TABLE (the "
    "table and its upstream tables).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show Dagster's log (stderr) while running.")
@click.option(
    "--rematch",
    is_flag=True,
    help="Make a new twins plan and match every cohort again, even if the stored plan is "
    "current (by default only cohorts not yet matched with the current plan are matched).",
)
@click.option(
    "--full-ingest",
    is_flag=True,
    help="Read and validate every file of the selected source tables again (by default "
    "ingest is incremental: a year or table whose files, contract, key and looked-up "
    "reference rows did not change is reused from the ingest cache; the output is the same).",
)
def run(config_path: Path, select: tuple[str, ...], verbose: bool, rematch: bool,
        full_ingest: bool) -> None:
    """Materialise pipeline assets in this process, without the Dagster UI.

    Runs the selected assets of the Dagster code location (pipelines/) with the given
    evaluation config (by default all of them: for a synthetic config that first generates
    the delivery), prints one line per asset (rows in, accepted, quarantined) and the
    failures with their messages, and exits with 1 if any selected asset failed or could not
    run because an upstream table failed (2 for a bad config or selection). When the
    publication was made, the last line is its folder. The run is recorded in the instance
    of $DAGSTER_HOME when that is set, else in a throw-away one.

    \b
    Examples:
      impact run --config configs/demo.yaml
      impact run --config configs/demo.yaml --select sources
      impact run --config configs/demo.yaml --select evaluation,publication
      impact run --select +vid_monthly_reports
      impact run --select sources --full-ingest
    """
    code = _run_pipeline(config_path, select, data_root=None, verbose=verbose, rematch=rematch,
                         full_ingest=full_ingest)
    if code:
        sys.exit(code)


class _RunError(click.ClickException):
    """A problem found before the run started (printed as ``Error: ...``)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _pipelines_run() -> Any:
    """Import ``pipelines.run`` from the working directory or the project checkout."""
    try:
        return importlib.import_module("pipelines.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("pipelines", "pipelines.run"):
            raise
    for root in (Path.cwd(), PROJECT_ROOT):
        if (root / "pipelines" / "definitions.py").is_file():
            sys.path.insert(0, str(root))
            return importlib.import_module("pipelines.run")
    raise _RunError(
        "the Dagster code location pipelines/ was not found (looked in the working directory "
        f"and in {PROJECT_ROOT}); run impact from the repository root."
    )


def _run_pipeline(
    config_path: Path,
    select: Sequence[str],
    *,
    data_root: Path | None,
    verbose: bool,
    rematch: bool = False,
    full_ingest: bool = False,
) -> int:
    """Check config, key and landing, run the selected assets, print the summary.

    Returns the exit code (0 if every selected asset materialised).
    """
    from impact.config import ConfigError, load_config

    try:  # 1. the config: before anything is imported or run
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise _RunError(str(exc)) from None
    if data_root is not None:
        cfg = cfg.with_data_root(data_root)

    pipelines_run = _pipelines_run()
    try:  # 2. the selection
        keys = pipelines_run.resolve_selection(select)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--select'") from None
    names = [k.to_user_string() for k in keys]
    sources = [n for n in names if n != "landing"]

    if sources:  # 3. what the sources need: the key and (unless generated now) a delivery
        try:
            cfg.pseudonym_key()
        except ConfigError as exc:
            raise _RunError(str(exc)) from None
        from impact.ingest import deliveries_in

        if "landing" not in names and not deliveries_in(cfg.data.landing):
            hint = (
                "`impact run --select all` generates the synthetic delivery first"
                if cfg.is_synthetic
                else "put the register deliveries there"
            )
            raise _RunError(
                f"no complete delivery (a folder with manifest.json) under "
                f"{cfg.data.landing}: {hint}.",
                EXIT_FAILED,
            )

    click.echo(f"config: {config_path}   data: {cfg.data.root}   selected: {len(names)} asset(s)")
    report = pipelines_run.run(
        config_path,
        select,
        data_root=data_root,
        log_level="INFO" if verbose else "CRITICAL",
        rematch=rematch,
        full_ingest=full_ingest,
    )
    click.echo(format_run_summary(report))
    if report.success and "publication" in names:
        from impact.publish import latest_publication

        path = latest_publication(cfg.data.publish)
        if path is not None:  # the last line: where the publication is
            click.echo(f"publication: {path}")
    return 0 if report.success else EXIT_FAILED


def format_run_summary(report: Any) -> str:
    """Plain-text report of a run: one line per selected asset, then the failures.

    ``report`` is a ``pipelines.run.RunReport`` (plain values only).
    """
    header = (
        "asset",
        "status",
        "rows in",
        "accepted",
        "quarantined",
        "duplicates",
        "superseded",
        "seconds",
    )
    rows = []
    for o in report.outcomes:
        md = o.metadata
        status = {"ok": "ok", "failed": "FAILED", "not run": "NOT RUN"}[o.status]
        if not o.key.startswith("sources/"):  # landing, research tables: rows written
            counts = [md.get("dagster/row_count"), None, None, None, None, md.get("seconds")]
        else:
            counts = [
                md.get("rows_in"),
                md.get("accepted"),
                md.get("quarantined"),
                md.get("duplicates"),
                md.get("superseded"),
                md.get("seconds"),
            ]
        cells = [
            f"{c:,}"
            if isinstance(c, int) and not isinstance(c, bool)
            else f"{c:.2f}"
            if isinstance(c, float)
            else ""
            for c in counts
        ]
        if o.status != "ok" and not md.get("files"):  # nothing reconciled: no counts to show
            cells = ["-"] * len(cells)
        rows.append((o.name, status, *cells))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        first = f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}"
        return "  ".join([first, *(f"{c:>{w}}" for c, w in zip(r[2:], widths[2:], strict=True))])

    out = ["", line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    failed = [o for o in report.outcomes if o.status == "failed"]
    not_run = [o for o in report.outcomes if o.status == "not run"]
    warned = [o for o in report.outcomes if getattr(o, "warnings", None)]
    if warned:
        out += ["", "checks that did not pass (not blocking):"]
        out += [f"  {o.name}: {w[:300]}{'...' if len(w) > 300 else ''}" for o in warned
                for w in o.warnings]
    if failed:
        out += ["", "failures:"]
        out += [f"  {o.name}: {o.message or 'failed (no message)'}" for o in failed]
    if not_run:
        out += ["", "not run:"]
        out += [
            f"  {o.name}: {(o.message or 'not run').removeprefix('not run: ')}" for o in not_run
        ]
    ok = len(report.outcomes) - len(failed) - len(not_run)
    out += [
        "",
        f"{ok} ok, {len(failed)} failed, {len(not_run)} not run in "
        f"{report.seconds:.1f} s (run {report.run_id[:8]}, instance: {report.instance})",
    ]
    return "\n".join(out)



# --------------------------------------------------------------------------- query


@impact.command(context_settings=CONTEXT_SETTINGS)
@click.argument("sql")
@_config_option("Evaluation config whose data.root holds the tables.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data root to query instead of the config's data.root.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the whole result to this .csv or .parquet file.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows printed to the terminal.",
)
def query(sql: str, config_path: Path, root: Path | None, output: Path | None,
          max_rows: int) -> None:
    """Run SQL over the research panel, episode tables and clean sources (DuckDB).

    Views: panel, episodes, treatment, near_participants, and src_<table> for every clean
    source table. Prints the result (or writes it with --output). Columns are documented in
    docs/data_dictionary.md.

    \b
    Examples:
      impact query "SELECT count(*) FROM panel"
      impact query "SELECT region_code, month, avg(daily_wage_real) AS wage
                    FROM panel WHERE ila_first_start IS NOT NULL GROUP BY ALL ORDER BY ALL"
                   --output wages.csv
    """
    import polars as pl

    from impact import query as q
    from impact.config import ConfigError, load_config

    if root is None:
        try:
            root = load_config(config_path).data.root
        except ConfigError as exc:
            raise _RunError(str(exc)) from None
    try:
        df = q.run(sql, root)
        if output is not None:
            q.write(df, output)
    except q.QueryError as exc:
        raise _RunError(str(exc), EXIT_FAILED) from None
    if output is not None:
        click.echo(f"{df.height:,} rows x {df.width} columns -> {output}")
        return
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, tbl_width_chars=160,
                   fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
        click.echo(str(df))
    click.echo(f"{df.height:,} rows")


# --------------------------------------------------------------------------- report


@impact.command(context_settings=CONTEXT_SETTINGS)
@_config_option("Evaluation config whose data.publish holds the publications.")
@click.option(
    "--publication",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Publication folder to report on [default: DATA.PUBLISH/latest of the config].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write [default: DATA.ROOT/reports/<run_id>/report.html].",
)
def report(config_path: Path, publication: Path | None, out: Path | None) -> None:
    """Write the evaluator report of a publication: one self-contained HTML file.

    The report (English and Latvian, switched by a button; English without JavaScript)
    reads only the publication folder, so it shows only numbers that passed disclosure
    control; suppressed cells appear as a dash with a footnote. It needs no network: styles,
    script and figures are inside the file. The same publication gives the same bytes.
    The last line printed is the path of the report.

    \b
    Examples:
      impact report --config configs/demo.yaml
      impact report --publication data/demo/publish/latest --out report.html
    """
    from impact.report import ReportError, write_report

    if publication is None or out is None:
        from impact.config import ConfigError, load_config

        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            raise _RunError(str(exc)) from None
        if publication is None:
            from impact.publish import latest_publication

            publication = latest_publication(cfg.data.publish)
            if publication is None:
                raise _RunError(
                    f"no publication under {cfg.data.publish}: run `impact run --config "
                    f"{config_path} --select publication` first, or pass --publication.",
                    EXIT_FAILED)
    if not (publication / "manifest.json").is_file():
        raise _RunError(f"{publication}: not a publication folder (no manifest.json).",
                        EXIT_FAILED)
    if out is None:
        import json

        rid = json.loads((publication / "manifest.json").read_text(encoding="utf-8")).get(
            "run_id") or publication.resolve().name
        out = cfg.data.reports / str(rid) / "report.html"
    try:
        path = write_report(publication, out)
    except ReportError as exc:
        raise _RunError(str(exc), EXIT_FAILED) from None
    click.echo(f"publication: {publication}")
    click.echo(f"report: {path.stat().st_size:,} bytes")
    click.echo(str(path))

def _run_synth(
    *,
    persons: int,
    seed: int,
    out: Path,
    start: str,
    end: str,
    fmt: str,
    inject_errors: bool,
    hidden_confounding: float = 1.0,
) -> None:
    if start > end:  # YYYY-MM strings order like the months they name
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start")

    # Deferred: keeps `impact --help` fast and free of numpy/polars imports.
    from impact import synth as synth_pkg
    from impact.synth.config import SynthConfig

    try:
        config = SynthConfig(
            persons=persons,
            seed=seed,
            start=start,
            end=end,
            fmt=fmt,
            inject_errors=inject_errors,
            hidden_confounding=hidden_confounding,
        )
    except ValueError as exc:  # includes pydantic.ValidationError
        raise click.UsageError(f"invalid synthetic settings: {_error_text(exc)}") from exc

    t0 = time.perf_counter()
    result = synth_pkg.generate(config, Path(out))
    wall = time.perf_counter() - t0

    click.echo(
        format_summary(
            row_counts=result.row_counts,
            landing_dir=result.landing_dir,
            truth_dir=result.truth_dir,
            manifest_path=result.manifest_path,
            seconds=wall,
        )
    )


def _error_text(exc: ValueError) -> str:
    """The messages of a pydantic ValidationError without its noise; str() otherwise."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            msgs = [
                ": ".join(
                    part
                    for part in (
                        ".".join(str(x) for x in e.get("loc", ())),
                        str(e.get("msg", e)).removeprefix("Value error, "),
                    )
                    if part
                )
                for e in errors()
            ]
        except Exception:  # not a pydantic error after all
            msgs = []
        if msgs:
            return "; ".join(msgs)
    return str(exc)


def format_summary(
    *,
    row_counts: Mapping[str, int],
    landing_dir: Path,
    truth_dir: Path,
    manifest_path: Path,
    seconds: float,
) -> str:
    """A short plain-text report of one synthetic delivery: where it went, file -> rows."""
    names = list(row_counts)
    width = max([len("file"), len("total"), *(len(n) for n in names)])
    counts = [f"{int(row_counts[n]):,}" for n in names]
    total = f"{sum(int(v) for v in row_counts.values()):,}"
    cwidth = max([len("rows"), len(total), *(len(c) for c in counts)])
    lines = [
        f"landing:  {landing_dir}",
        f"truth:    {truth_dir}",
        f"manifest: {manifest_path}",
        "",
        f"{'file':<{width}}  {'rows':>{cwidth}}",
        f"{'-' * width}  {'-' * cwidth}",
        *(f"{n:<{width}}  {c:>{cwidth}}" for n, c in zip(names, counts, strict=True)),
        f"{'-' * width}  {'-' * cwidth}",
        f"{'total':<{width}}  {total:>{cwidth}}",
        "",
        f"wall time: {seconds:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``impact = impact.cli:main``)."""
    impact.main(args=list(argv) if argv is not None else None, prog_name="impact")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
