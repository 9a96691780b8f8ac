"""Shared by the benchmark scripts: keep one record per configuration in a results file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def record_run(path: Path, record: dict[str, Any], keys: Sequence[str]) -> None:
    """Add ``record`` to ``path``'s ``runs``, replacing a run with the same ``keys`` values."""
    existing = json.loads(path.read_text()) if path.exists() else {"runs": []}
    existing["runs"] = [r for r in existing["runs"]
                        if any(r.get(k) != record.get(k) for k in keys)]
    existing["runs"].append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2) + "\n")


def fingerprint_in_child(script: str, path: Path) -> Any:
    """Run ``script --fingerprint PATH`` in a child process and return the JSON it prints.

    Benchmarks that spawn one child per variant compare the outputs in yet another child:
    on Linux a process's peak RSS survives ``fork`` and ``exec``, so a parent that had read
    a whole output would raise the peak recorded by every later child.
    """
    proc = subprocess.run([sys.executable, script, "--fingerprint", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])
