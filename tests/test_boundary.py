"""The one boundary that matters (design.md, section 3): `src/impact` never imports dagster.

Checked twice: at run time (importing the library leaves `dagster` out of sys.modules) and
statically (no import statement for dagster anywhere under src/impact; ruff's banned-api
rule TID251 enforces the same in the editor).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "impact"

LIBRARY_MODULES = [
    "impact",
    "impact.cli",
    "impact.config",
    "impact.personal_code",
    "impact.reference",
    "impact.synth",
    "impact.ingest",
    "impact.panel",
    "impact.episodes",
    "impact.query",
    "impact.twins",
    "impact.twins.riskset",
    "impact.balance",
]


def test_importing_the_library_does_not_import_dagster():
    code = (
        "import importlib, json, sys\n"
        f"for m in {LIBRARY_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'dagster' "
        "or m.startswith('dagster.') or m.startswith('dagster_'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    leaked = json.loads(proc.stdout.strip().splitlines()[-1])
    assert leaked == [], f"importing the library pulled in dagster modules: {leaked}"


def _python_files() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert files, f"no Python files found under {SRC}"
    return files


def _dagster_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "dagster" or top.startswith("dagster_"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    return found


def test_no_dagster_import_statement_under_src_impact():
    offenders = [hit for path in _python_files() for hit in _dagster_imports(path)]
    assert offenders == [], "dagster imported inside the library:\n" + "\n".join(offenders)


def test_no_dynamic_dagster_import_under_src_impact():
    # importlib.import_module("dagster") / __import__("dagster") would dodge the AST check above
    offenders = [
        f"{path.relative_to(REPO)}"
        for path in _python_files()
        if any(
            s in path.read_text(encoding="utf-8")
            for s in (
                'import_module("dagster',
                "import_module('dagster",
                '__import__("dagster',
                "__import__('dagster",
            )
        )
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import dagster as dg\n", 1),
        ("from dagster import asset\n", 1),
        ("import dagster_webserver\n", 1),
        ("import os\nfrom . import dagster_like\n", 0),
        ("import polars as pl\n", 0),
    ],
)
def test_static_check_detects_dagster_imports(tmp_path, source, expected, monkeypatch):
    # the checker itself must be able to fail
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    f = tmp_path / "mod.py"
    f.write_text(source, encoding="utf-8")
    assert len(_dagster_imports(f)) == expected
