"""The landing asset: the deliveries the sources are ingested from.

For a synthetic evaluation (a config with a ``synth`` section) materialising it generates
the synthetic default delivery into ``data.root`` (as ``impact synth``). For real register
data the deliveries are put under ``data.root/landing/`` by the data provider; materialising
the asset then records which complete deliveries (folders with a manifest) are there.
"""

from typing import Any

import dagster as dg

from pipelines.resources import ImpactConfig

LANDING_KEY = dg.AssetKey(["landing"])


@dg.asset(
    key=LANDING_KEY,
    group_name="landing",
    kinds={"python"},
    description=(
        "Register deliveries under data.root/landing/<delivery>/ (extracts + manifest.json). "
        "Synthetic configs generate the synthetic default delivery here (and its ground "
        "truth under truth/, read only by tests); for real data the asset records the "
        "complete deliveries present."
    ),
)
def landing(context: dg.AssetExecutionContext, impact_config: ImpactConfig) -> dg.MaterializeResult:
    from impact.ingest import deliveries_in
    from impact.manifest import DeliveryManifest

    cfg = impact_config.load()
    metadata: dict[str, Any] = {
        "config": dg.MetadataValue.path(str(cfg.source_file)),
        "landing_dir": dg.MetadataValue.path(str(cfg.data.landing)),
    }
    if cfg.synth is not None:
        from impact import synth

        result = synth.generate(cfg.synth.synth_config(), cfg.data.root)
        context.log.info(
            "synthetic delivery: %d tables, %d rows in %.1f s -> %s",
            len(result.row_counts),
            sum(result.row_counts.values()),
            result.seconds,
            result.landing_dir,
        )
        metadata |= {
            "synthetic": True,
            "delivery_dir": dg.MetadataValue.path(str(result.landing_dir)),
            "truth_dir": dg.MetadataValue.path(str(result.truth_dir)),
            "manifest": dg.MetadataValue.path(str(result.manifest_path)),
            "seconds": dg.MetadataValue.float(float(result.seconds)),
            "persons": cfg.synth.persons,
            "seed": cfg.synth.seed,
            "injected_errors": dg.MetadataValue.json(dict(result.injected_errors)),
        }

    deliveries = deliveries_in(cfg.data.landing)
    if not deliveries:
        raise dg.Failure(
            description=f"no complete delivery (a folder with manifest.json) under "
            f"{cfg.data.landing}",
        )
    manifests = [DeliveryManifest.read(d) for d in deliveries]
    if cfg.synth is not None and len(deliveries) > 1:
        context.log.warning(
            "%d deliveries under %s; the sources ingest all of them in order: %s",
            len(deliveries),
            cfg.data.landing,
            [d.name for d in deliveries],
        )
    rows: dict[str, int] = {}
    for m in manifests:
        for table, n in m.rows_by_table().items():
            rows[table] = rows.get(table, 0) + n
    metadata |= {
        "deliveries": dg.MetadataValue.json([d.name for d in deliveries]),
        "files": sum(len(m.files) for m in manifests),
        "rows_by_table": dg.MetadataValue.json(rows),
        "dagster/row_count": sum(rows.values()),
    }
    return dg.MaterializeResult(metadata=metadata)
