"""Dagster definitions for `impact`.

Assets are thin: read config/resources, call one `impact` function, return the result with
metadata. No numerics here (design.md, section 3). The library `impact` never imports dagster.

Settings come from the `SynthSettings` resource. Each field can be overridden in the
launchpad or, without touching code, through environment variables:

    IMPACT_DATA_DIR        output directory (default: data/demo, relative to the cwd of the run)
    IMPACT_SYNTH_PERSONS   population size (default: 20000)
    IMPACT_SYNTH_SEED      random seed (default: 1)
"""

import os
from pathlib import Path
from typing import Literal

import dagster as dg

DEMO_PERSONS = 20_000
DEMO_SEED = 1
DEMO_START = "2019-01"
DEMO_END = "2028-06"
DEMO_OUT_DIR = "data/demo"


class SynthSettings(dg.ConfigurableResource):
    """Settings of one synthetic register delivery (see `impact synth --help`)."""

    persons: int = DEMO_PERSONS
    seed: int = DEMO_SEED
    start: str = DEMO_START
    end: str = DEMO_END
    fmt: Literal["csv", "parquet"] = "csv"
    inject_errors: bool = False
    out_dir: str = DEMO_OUT_DIR

    def synth_config(self):  # -> impact.synth.config.SynthConfig
        from impact.synth.config import SynthConfig

        return SynthConfig(
            persons=self.persons,
            seed=self.seed,
            start=self.start,
            end=self.end,
            fmt=self.fmt,
            inject_errors=self.inject_errors,
        )


@dg.asset(
    group_name="landing",
    kinds={"python"},
    description=(
        "One synthetic delivery of Latvian register extracts (landing/ with manifest) and its "
        "ground truth (truth/, read only by tests and benchmarks)."
    ),
)
def synthetic_delivery(
    context: dg.AssetExecutionContext, synth_settings: SynthSettings
) -> dg.MaterializeResult:
    from impact import synth

    result = synth.generate(synth_settings.synth_config(), Path(synth_settings.out_dir))
    context.log.info(
        "synthetic delivery: %d files, %d rows in %.1f s -> %s",
        len(result.row_counts),
        sum(result.row_counts.values()),
        result.seconds,
        result.landing_dir,
    )
    return dg.MaterializeResult(
        metadata={
            "landing_dir": dg.MetadataValue.path(str(result.landing_dir)),
            "truth_dir": dg.MetadataValue.path(str(result.truth_dir)),
            "manifest": dg.MetadataValue.path(str(result.manifest_path)),
            "seconds": dg.MetadataValue.float(float(result.seconds)),
            "files": dg.MetadataValue.int(len(result.row_counts)),
            "rows_total": dg.MetadataValue.int(int(sum(result.row_counts.values()))),
            "row_counts": dg.MetadataValue.json({k: int(v) for k, v in result.row_counts.items()}),
            "persons": dg.MetadataValue.int(synth_settings.persons),
            "seed": dg.MetadataValue.int(synth_settings.seed),
        }
    )


synth_job = dg.define_asset_job(
    name="synth_job",
    selection=dg.AssetSelection.assets(synthetic_delivery),
    description="Generate the synthetic register delivery (impact synth).",
)


def _synth_settings_from_env() -> SynthSettings:
    """Defaults, overridden by IMPACT_* environment variables when they are set.

    `EnvVar` (not `os.environ[...]`) keeps the value out of the stored run config and shows
    its source in the UI; it is used only when the variable exists, so an unset variable
    falls back to the demo default instead of failing the run.
    """
    overrides: dict[str, object] = {}
    if "IMPACT_DATA_DIR" in os.environ:
        overrides["out_dir"] = dg.EnvVar("IMPACT_DATA_DIR")
    if "IMPACT_SYNTH_PERSONS" in os.environ:
        overrides["persons"] = dg.EnvVar.int("IMPACT_SYNTH_PERSONS")
    if "IMPACT_SYNTH_SEED" in os.environ:
        overrides["seed"] = dg.EnvVar.int("IMPACT_SYNTH_SEED")
    return SynthSettings(**overrides)


defs = dg.Definitions(
    assets=[synthetic_delivery],
    jobs=[synth_job],
    resources={"synth_settings": _synth_settings_from_env()},
)
