"""The `impact` console script: help on every command, option wiring, entry point."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import impact
from impact import cli

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["synth", "run", "demo"]
SYNTH_OPTIONS = [
    "--persons",
    "--seed",
    "--out",
    "--start",
    "--end",
    "--format",
    "--inject-errors",
    "--hidden-confounding",
]


@pytest.fixture
def runner():
    return CliRunner()


# --------------------------------------------------------------------------- help


def test_group_help_lists_every_command(runner):
    result = runner.invoke(cli.impact, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Individual Learning Accounts" in result.output
    for command in COMMANDS:
        assert command in result.output


def test_version(runner):
    result = runner.invoke(cli.impact, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"impact, version {impact.__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner, command):
    result = runner.invoke(cli.impact, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: impact {command}" in result.output
    # a real description, not just the usage line
    assert len(result.output.split("Options:")[0].strip().splitlines()) >= 3


def test_synth_help_documents_all_options(runner):
    result = runner.invoke(cli.impact, ["synth", "--help"])
    for option in SYNTH_OPTIONS:
        assert option in result.output
    assert "[csv|parquet]" in result.output
    assert "[required]" in result.output  # --out


def test_demo_help_shows_defaults(runner):
    result = runner.invoke(cli.impact, ["demo", "--help"])
    assert "data/demo" in result.output
    assert "100000" in result.output


def test_help_is_lazy():
    """`impact --help` must not import the synthetic generator or the numeric stack."""
    code = (
        "import json, sys\n"
        "from impact import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ['impact.synth', 'polars', 'numpy', 'pandas', 'dagster']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _console_script() -> str | None:
    beside = Path(sys.executable).with_name("impact")
    if beside.exists():
        return str(beside)
    return shutil.which("impact")


@pytest.mark.parametrize("args", [["--help"], ["synth", "--help"], ["demo", "--help"]])
def test_installed_console_script(args):
    exe = _console_script()
    if exe is None:
        pytest.skip("the `impact` console script is not installed")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: impact")


# --------------------------------------------------------------------------- option checks
# These fail during argument parsing, before the generator is imported.


@pytest.mark.parametrize(
    "args, message",
    [
        (["synth"], "Missing option '--out'"),
        (["synth", "--out", "x", "--start", "2019-13"], "YYYY-MM"),
        (["synth", "--out", "x", "--end", "2019/06"], "YYYY-MM"),
        (["synth", "--out", "x", "--format", "xlsx"], "'xlsx' is not one of"),
        (["synth", "--out", "x", "--persons", "0"], "--persons"),
        (["synth", "--out", "x", "--seed", "-1"], "--seed"),
        (["synth", "--out", "x", "--start", "2024-01", "--end", "2023-12"], "is after --end"),
    ],
)
def test_bad_options_are_usage_errors(runner, args, message):
    result = runner.invoke(cli.impact, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


# --------------------------------------------------------------------------- wiring


@pytest.fixture
def fake_generate(monkeypatch):
    """Replace impact.synth.generate by a recorder; SynthConfig stays the real one."""
    import impact.synth

    calls = []

    def generate(config, out):
        calls.append((config, out))
        return SimpleNamespace(
            landing_dir=out / "landing",
            truth_dir=out / "truth",
            manifest_path=out / "landing" / "manifest.json",
            row_counts={"pmlp_persons.csv": 2_000, "vid_monthly_reports.csv": 1_234_567},
            seconds=0.25,
        )

    monkeypatch.setattr(impact.synth, "generate", generate)
    return calls


def _fields(config):
    return {
        "persons": config.persons,
        "seed": config.seed,
        "start": str(config.start)[:7],
        "end": str(config.end)[:7],
        "fmt": str(getattr(config.fmt, "value", config.fmt)),
        "inject_errors": config.inject_errors,
    }


def test_synth_passes_every_option(runner, fake_generate, tmp_path):
    out = tmp_path / "delivery"
    result = runner.invoke(
        cli.impact,
        [
            "synth",
            "--persons", "2000",
            "--seed", "7",
            "--out", str(out),
            "--start", "2020-03",
            "--end", "2027-12",
            "--format", "parquet",
            "--inject-errors",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(fake_generate) == 1
    config, passed_out = fake_generate[0]
    assert passed_out == out and isinstance(passed_out, Path)
    assert _fields(config) == {
        "persons": 2000,
        "seed": 7,
        "start": "2020-03",
        "end": "2027-12",
        "fmt": "parquet",
        "inject_errors": True,
    }
    # the summary: file -> rows, total, where it went, wall time
    assert "pmlp_persons.csv" in result.output
    assert "1,234,567" in result.output
    assert "1,236,567" in result.output  # total
    assert str(out / "landing" / "manifest.json") in result.output
    assert "wall time" in result.output


def test_rejected_config_is_a_usage_error(runner, fake_generate, monkeypatch, tmp_path):
    import impact.synth.config

    def reject(**kwargs):
        raise ValueError("window too short")

    monkeypatch.setattr(impact.synth.config, "SynthConfig", reject)
    result = runner.invoke(cli.impact, ["synth", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "invalid synthetic settings: window too short" in result.output
    assert fake_generate == []


def test_synth_defaults(runner, fake_generate, tmp_path):
    result = runner.invoke(cli.impact, ["synth", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config, _ = fake_generate[0]
    assert _fields(config) == {
        "persons": 100_000,
        "seed": 1,
        "start": "2019-01",
        "end": "2028-06",
        "fmt": "csv",
        "inject_errors": False,
    }


@pytest.fixture
def fake_pipeline(monkeypatch):
    """Replace the in-process pipeline run of `demo` by a recorder."""
    calls = []

    def run_pipeline(config_path, select, *, data_root, verbose):
        calls.append((config_path, tuple(select), data_root, verbose))
        return 0

    monkeypatch.setattr(cli, "_run_pipeline", run_pipeline)
    return calls


def test_demo_wiring(runner, fake_generate, fake_pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.impact, ["demo"])
    assert result.exit_code == 0, result.output
    config, out = fake_generate[0]
    assert out == Path("data/demo")
    assert _fields(config)["persons"] == 100_000 and _fields(config)["fmt"] == "csv"
    assert "pmlp_persons.csv" in result.output
    # then the sources, with the demo config, on the delivery just generated
    assert fake_pipeline[0] == (cli.DEMO_CONFIG, ("sources", "research", "evaluation",
                                                 "publication"),
                                Path("data/demo"), False)
    assert cli.DEMO_CONFIG == REPO / "configs" / "demo.yaml"

    result = runner.invoke(cli.impact, ["demo", "--persons", "3000", "--seed", "5", "--out", "x"])
    assert result.exit_code == 0, result.output
    config, out = fake_generate[1]
    assert (config.persons, config.seed, out) == (3000, 5, Path("x"))
    assert fake_pipeline[1][2] == Path("x")


def test_demo_exits_non_zero_when_a_source_fails(runner, fake_generate, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_run_pipeline", lambda *a, **k: cli.EXIT_FAILED)
    result = runner.invoke(cli.impact, ["demo"])
    assert result.exit_code == cli.EXIT_FAILED


def test_demo_config_matches_cli_defaults():
    """configs/demo.yaml documents the demo settings; it must not drift from the CLI."""
    from impact.config import DemoKey, load_config

    demo = load_config(REPO / "configs" / "demo.yaml")
    s = demo.synth
    assert (s.persons, s.seed, s.start, s.end, s.format, str(demo.data.root)) == (
        cli.DEFAULT_PERSONS,
        cli.DEFAULT_SEED,
        cli.DEFAULT_START,
        cli.DEFAULT_END,
        cli.DEFAULT_FORMAT,
        cli.DEFAULT_DEMO_OUT,
    )
    assert s.inject_errors is False
    assert s.hidden_confounding == 1.0  # `impact demo` generates with the CLI default
    assert isinstance(demo.ingest.key, DemoKey)  # the public key: synthetic data only
    assert "NOT SECRET" in (REPO / "configs" / "demo.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--config", "no/such.yaml"], "no/such.yaml: config file not found"),
        (["run", "--select", "employer"], "Did you mean employers?"),
    ],
)
def test_run_usage_errors(runner, args, message, monkeypatch):
    monkeypatch.chdir(REPO)
    result = runner.invoke(cli.impact, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_run_summary_format():
    ok = SimpleNamespace(
        key="sources/pmlp_persons",
        name="pmlp_persons",
        status="ok",
        message=None,
        metadata={
            "rows_in": 20_000,
            "accepted": 19_990,
            "quarantined": 10,
            "duplicates": 0,
            "superseded": 0,
            "seconds": 0.25,
            "files": [{}],
        },
    )
    bad = SimpleNamespace(
        key="sources/employers",
        name="employers",
        status="failed",
        metadata={"files": []},
        message="employers (employers.csv, column 'sector'): rule 'columns' failed",
    )
    skipped = SimpleNamespace(
        key="sources/vid_monthly_reports",
        name="vid_monthly_reports",
        status="not run",
        metadata={},
        message="not run: upstream employers did not materialise",
    )
    report = SimpleNamespace(
        outcomes=[ok, bad, skipped], seconds=3.21, run_id="abcdef123456", instance="ephemeral"
    )
    text = cli.format_run_summary(report)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("pmlp_persons"))
    assert row.split()[1:5] == ["ok", "20,000", "19,990", "10"]
    assert next(line for line in lines if line.startswith("employers")).split()[1] == "FAILED"
    assert "  employers: employers (employers.csv, column 'sector')" in text
    assert "  vid_monthly_reports: upstream employers did not materialise" in text
    assert lines[-1].startswith("1 ok, 1 failed, 1 not run in 3.2 s (run abcdef12")


def test_summary_table_alignment():
    text = cli.format_summary(
        row_counts={"a.csv": 5, "much_longer_name.parquet": 12_345},
        landing_dir=Path("o/landing"),
        truth_dir=Path("o/truth"),
        manifest_path=Path("o/landing/manifest.json"),
        seconds=1.234,
    )
    rows = [line for line in text.splitlines() if line.startswith(("a.csv", "much_", "total"))]
    assert len(rows) == 3
    assert len({len(r) for r in rows}) == 1  # right-aligned counts, same width
    assert rows[-1].endswith("12,350")
    assert "wall time: 1.2 s" in text


def test_main_entry_point(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "Usage: impact" in capsys.readouterr().out
