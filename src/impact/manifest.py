"""The delivery manifest: what a register delivery claims to contain.

A delivery is a folder ``landing/<delivery_id>/`` with extract files and a
``manifest.json`` listing every file with its table, row count, byte size and
SHA-256. The ingest layer trusts nothing it cannot reconcile with this file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A delivery's ``manifest.json`` is missing, not JSON or not a valid manifest."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class FileEntry(BaseModel):
    """One extract file of a delivery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str = Field(description="Logical table, e.g. 'vid_monthly_reports'.")
    path: str = Field(description="File name relative to the delivery folder.")
    format: Literal["csv", "parquet"]
    rows: int = Field(ge=0, description="Data rows (CSV header excluded).")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    columns: list[str]
    year: int | None = Field(None, description="Calendar year for yearly split tables.")


class DeliveryManifest(BaseModel):
    """Manifest of one delivery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivery_id: str
    producer: str
    period_start: str = Field(pattern=r"^\d{4}-\d{2}$")
    period_end: str = Field(pattern=r"^\d{4}-\d{2}$")
    files: list[FileEntry]
    injected_errors: dict[str, int] = Field(default_factory=dict)
    generator: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def rows_by_table(self) -> dict[str, int]:
        """Total rows per logical table."""
        out: dict[str, int] = {}
        for f in self.files:
            out[f.table] = out.get(f.table, 0) + f.rows
        return out

    def write(self, folder: Path) -> Path:
        """Write ``manifest.json`` into ``folder`` (stable key order, no timestamps)."""
        path = folder / MANIFEST_NAME
        text = json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    def refreshed(self, folder: Path, names: list[str], columns: list[str] | None = None
                  ) -> DeliveryManifest:
        """A copy whose entries for ``names`` describe the files now on disk.

        Row counts are taken from the files (CSV: lines after the header;
        Parquet: metadata), bytes and SHA-256 recomputed; ``columns`` replaces
        the column list when given. For a delivery corrected by its producer.
        """
        import polars as pl

        def current(f: FileEntry) -> FileEntry:
            path = folder / f.path
            if path.stat().st_size == 0:  # no header at all: nothing to count
                rows = 0
            elif f.format == "csv":
                rows = pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item()
            else:
                rows = pl.scan_parquet(path).select(pl.len()).collect().item()
            update: dict[str, object] = {"rows": rows, "bytes": path.stat().st_size,
                                         "sha256": sha256_file(path)}
            if columns is not None:
                update["columns"] = columns
            return f.model_copy(update=update)

        return self.model_copy(update={"files": [current(f) if f.path in names else f
                                                 for f in self.files]})

    @classmethod
    def read(cls, folder: Path) -> DeliveryManifest:
        """Read and validate ``folder/manifest.json``.

        Raises
        ------
        ManifestError
            The file is missing, not UTF-8 JSON or not a valid manifest; the message
            names the file and, for an invalid manifest, the offending fields.
        """
        path = folder / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(path, "the delivery has no manifest") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(path, f"cannot be read ({type(exc).__name__})") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:  # names the fields; a manifest holds no register data
            problems = "; ".join(f"{_where(text, e['loc'])}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            raise ManifestError(path, f"not a valid delivery manifest: {problems}") from None


def _where(text: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location, with the file name for an entry of ``files``."""
    where = ".".join(map(str, loc)) or "(document)"
    if len(loc) >= 2 and loc[0] == "files" and isinstance(loc[1], int):
        try:
            name = json.loads(text)["files"][loc[1]]["path"]
        except (ValueError, LookupError, TypeError):
            return where
        where += f" ({name})"
    return where


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
