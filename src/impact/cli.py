"""Command-line interface: the ``impact`` console script.

Commands import their heavy dependencies inside the function bodies, so that
``impact --help`` stays fast and does not pull in polars/numpy.

This issue adds ``impact synth`` and ``impact demo``; later issues add ``run``, ``query`` and
``report``. ``impact demo`` is the README's main command: for now it generates the synthetic
registers; it grows into the full evaluation on the embedded synthetic default.
"""

from __future__ import annotations

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
DEFAULT_PERSONS = 20_000
DEFAULT_SEED = 1
DEFAULT_START = "2019-01"
DEFAULT_END = "2028-06"
DEFAULT_FORMAT = "csv"
DEFAULT_DEMO_OUT = "data/demo"

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
def synth(
    persons: int,
    seed: int,
    out: Path,
    start: str,
    end: str,
    fmt: str,
    inject_errors: bool,
) -> None:
    """Generate a synthetic Latvian population and its register extracts.

    Writes one delivery of extracts (population, education, employers, monthly tax reports,
    unemployment, social insurance, STARS learning accounts, reference tables) with a
    manifest of files, row counts and checksums to OUT/landing/, and the ground truth
    (true treatment effects) to OUT/truth/. Pipeline code never reads OUT/truth/.

    \b
    Example:
      impact synth --persons 20000 --seed 1 --out data/demo
    """
    _run_synth(
        persons=persons,
        seed=seed,
        out=out,
        start=start,
        end=end,
        fmt=fmt.lower(),
        inject_errors=inject_errors,
    )


@impact.command(context_settings=CONTEXT_SETTINGS)
@_synth_options(out_default=DEFAULT_DEMO_OUT)
def demo(persons: int, seed: int, out: Path) -> None:
    """Run the project end to end on the embedded synthetic default.

    For now this generates the synthetic registers (as `impact synth` with the demo
    settings of configs/demo.yaml: 20,000 persons, seed 1, 2019-01..2028-06, CSV) into OUT
    and prints what it wrote. Later releases extend it to the full evaluation.
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


def _run_synth(
    *,
    persons: int,
    seed: int,
    out: Path,
    start: str,
    end: str,
    fmt: str,
    inject_errors: bool,
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
