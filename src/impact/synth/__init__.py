"""Synthetic Latvian registers with known ground truth.

``generate(SynthConfig(...), out)`` writes one delivery of register extracts to
``out/landing/<delivery_id>/`` (with ``manifest.json``) and the ground truth to
``out/truth/``. Pipeline code must never read ``truth/``; only tests and
benchmarks do. The same configuration gives the same bytes.

Modules
-------
``params``      calibration constants and their sources
``population``  demography, education, residence, latent traits, personal codes
``jobs``        employers and the occupation / employer samplers
``engine``      one vectorised month of labour-market dynamics
``stars``       the STARS catalogue and participation rules
``simulate``    the monthly loop with observed and shadow (untreated) paths
``tables``      register extracts with realistic messiness
``errors``      invalid rows of known kinds (``inject_errors``)
``truth``       true effects: ATT by event time, horizon, subgroup; EECR06
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from impact import __version__, atomic
from impact.manifest import DeliveryManifest, FileEntry, sha256_file
from impact.synth.config import SynthConfig

__all__ = ["SynthConfig", "SynthResult", "generate"]


@dataclass
class SynthResult:
    """Where a generated delivery went and what it holds."""

    landing_dir: Path
    truth_dir: Path
    manifest_path: Path
    row_counts: dict[str, int]
    seconds: float
    injected_errors: dict[str, int] = field(default_factory=dict)


def _write(df: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        atomic.write_csv(df, path, date_format="%Y-%m-%d", null_value="")
    else:
        atomic.write_parquet(df, path, statistics=True)


class _Delivery:
    """Writes extract files and collects their manifest entries."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder, self.fmt = folder, fmt
        self.entries: list[FileEntry] = []

    def add(self, table: str, df: pl.DataFrame, year: int | None = None) -> None:
        name = f"{table}_{year}" if year is not None else table
        path = self.folder / f"{name}.{self.fmt}"
        _write(df, path, self.fmt)
        self.entries.append(FileEntry(
            table=table, path=path.name, format=self.fmt, rows=df.height,  # type: ignore[arg-type]
            bytes=path.stat().st_size, sha256=sha256_file(path), columns=df.columns, year=year))


def generate(config: SynthConfig, out: Path) -> SynthResult:
    """Generate one synthetic delivery and its ground truth.

    Parameters
    ----------
    config
        Generator settings; see :class:`SynthConfig`.
    out
        Output folder; ``landing/`` and ``truth/`` inside it are replaced.

    Returns
    -------
    SynthResult
        Paths, per-table row counts and wall time.
    """
    from impact.synth import errors, simulate, tables, truth

    t0 = time.perf_counter()
    out = Path(out)
    landing = out / "landing" / config.delivery_id
    truth_dir = out / "truth"
    for d in (landing, truth_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    rng_tab = np.random.default_rng(np.random.SeedSequence([config.seed, 7]))
    delivery = _Delivery(landing, config.fmt)
    held: dict[int, dict[str, np.ndarray]] = {}

    def sink(sim: simulate.Simulation, year: int, rows: dict[str, np.ndarray]) -> None:
        # the first year is held back: invalid rows are planted into it at the end
        if not held:
            held[year] = rows
            return
        delivery.add("vid_monthly_reports", tables.reports_table(sim, year, rows, rng_tab), year)

    sim = simulate.run(config, sink)

    frames = {
        "pmlp_persons": tables.population_table(sim, rng_tab),
        "pmlp_residence": tables.residence_table(sim, rng_tab),
        "pmlp_children": tables.children_table(sim),
        "viis_education": tables.education_table(sim),
        "employers": tables.employers_table(sim),
        "nva_unemployment_spells": tables.spells_table(sim, rng_tab),
        "vsaa_benefits": tables.benefits_table(sim),
        "stars_prior_learning": tables.prior_learning_table(sim),
        **tables.stars_tables(sim, rng_tab),
    }
    (year0, rows0), = held.items()
    first_reports = tables.reports_table(sim, year0, rows0, rng_tab)
    injected = errors.Injected([], [], [])
    if config.inject_errors:
        per_kind = max(3, config.persons // 4000)
        frames, first_reports, injected = errors.inject(
            frames, first_reports, per_kind, config.start,
            np.random.default_rng(np.random.SeedSequence([config.seed, 11])))
    delivery.add("vid_monthly_reports", first_reports, year0)
    for name, df in frames.items():
        delivery.add(name, df)
    for name, df in tables.reference_tables(sim).items():
        delivery.add(name, df)
    entries = sorted(delivery.entries, key=lambda e: e.path)
    manifest = DeliveryManifest(
        delivery_id=config.delivery_id,
        producer="impact.synth",
        period_start=config.start,
        period_end=config.end,
        files=entries,
        injected_errors=injected.counts(),
        generator={"version": __version__, "persons": config.persons, "seed": config.seed,
                   "inject_errors": config.inject_errors,
                   "hidden_confounding": config.hidden_confounding},
    )
    manifest_path = manifest.write(landing)

    for name, df in truth.build(sim).items():
        _write(df, truth_dir / f"{name}.parquet", "parquet")
    if config.inject_errors:
        _write(injected.frame(), truth_dir / "injected_errors.parquet", "parquet")
    seconds = time.perf_counter() - t0
    summary = {"config": config.model_dump(), "rows": manifest.rows_by_table(),
               "participants": int(sim.treatment["person"].size),
               "accounts": int((sim.account_t >= 0).sum())}
    (truth_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return SynthResult(landing_dir=landing, truth_dir=truth_dir, manifest_path=manifest_path,
                       row_counts=manifest.rows_by_table(), seconds=seconds,
                       injected_errors=injected.counts())
