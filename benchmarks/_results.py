"""Shared by the benchmark scripts: keep one record per configuration in a results file."""

from __future__ import annotations

import json
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
