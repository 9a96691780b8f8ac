"""Write files atomically: to a temporary name beside the target, then rename.

A reader (or a run killed half-way) never sees a half-written file at a final path: the
rename is atomic on one file system. Parent folders are created.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from impact.faults import checkpoint


def _tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".tmp")


def write_parquet(df: pl.DataFrame, path: Path, **options: Any) -> None:
    """``df.write_parquet`` (zstd unless ``compression`` is given), atomically."""
    tmp = _tmp(path)
    df.write_parquet(tmp, **({"compression": "zstd"} | options))
    checkpoint(path)
    tmp.replace(path)


def write_csv(df: pl.DataFrame, path: Path, **options: Any) -> None:
    """``df.write_csv``, atomically."""
    tmp = _tmp(path)
    df.write_csv(tmp, **options)
    checkpoint(path)
    tmp.replace(path)


def write_json(obj: Any, path: Path, *, sort_keys: bool = False) -> None:
    """Indented UTF-8 JSON (``default=str`` for dates and paths), atomically."""
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, default=str, sort_keys=sort_keys) + "\n",
                   encoding="utf-8")
    checkpoint(path)
    tmp.replace(path)


def replace_folder(new: Path, folder: Path, aside: Path) -> None:
    """Put the finished folder ``new`` in place of ``folder``.

    The old ``folder`` is renamed to ``aside`` first and removed only after ``new`` is in
    place, so a reader sees the old folder or the new one (or, for the instant between the
    two renames, none), never a half-deleted one. ``aside`` must be on the same file system
    and outside any glob that readers use (a hidden name); leftovers of a killed run there
    are removed first.
    """
    if aside.exists():
        shutil.rmtree(aside)
    if folder.exists():
        folder.replace(aside)
    new.replace(folder)
    if aside.exists():
        shutil.rmtree(aside)
