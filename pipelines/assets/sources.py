"""Source assets: one per data contract (``schemas/<table>.yaml``).

Each asset ingests its table from every complete delivery under ``data.root/landing`` with
:func:`impact.ingest.ingest_source` (validate, pseudonymise, quarantine, reconcile) and
writes ``data.root/sources/<table>/`` (Parquet, zstd). Upstream tables named by the
contract's cross-table rules (``Contract.depends_on``) are upstream assets: their clean
output is what the rules look up.

Ingest is incremental: a group of files (a year of ``vid_monthly_reports``, else the whole
table) whose inputs did not change since the last run is taken from the ingest cache
unread, with the same output as a full re-ingest (see :mod:`impact.ingest`). The metadata
``groups_reused`` / ``groups_validated`` say which groups were read this time; the op config
``full_ingest: true`` (``impact run --full-ingest``) validates every group again.

The contract outcome is the BLOCKING asset check ``contract`` of each asset. It passes iff
the table is usable and every file reconciles (rows in = accepted + quarantined +
duplicates + superseded). When it fails, the asset yields the failed check result (so the
check and its message are recorded) and then raises `dg.Failure` with the same message: the
step fails, no materialization is recorded, and the assets downstream of it do not run.
Independent sources in the same run still materialise. (Returning the failed check inside
`MaterializeResult` instead would record a materialization of the unusable table and fail
the step with a generic "blocking check failed" error; tests/test_pipeline_sources.py pins
this behaviour down.)
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from impact.contracts.model import SCHEMAS_DIR, Contract, load_contracts
from pipelines.assets.landing import LANDING_KEY
from pipelines.resources import ImpactConfig

if TYPE_CHECKING:
    from impact.ingest import TableResult

GROUP = "sources"
CHECK_NAME = "contract"
CHECK_DESCRIPTION = (
    "Blocking. Passes iff the table is usable (every file present and readable, checksum and "
    "row count as in the manifest, required columns present, types parse, keys usable, "
    "upstream tables available) and every file reconciles: rows in = accepted + quarantined "
    "+ duplicates + superseded. On failure the description names file, column, rule and "
    "example values, and the assets downstream do not run."
)


class SourceIngestConfig(dg.Config):
    """Run config of a source asset."""

    full_ingest: bool = False  # validate every group again (no cached group is reused)


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a source table: ``sources/<table>``."""
    return dg.AssetKey([GROUP, table])


def _column_schema(contract: Contract) -> dg.TableSchema:
    columns = []
    for c in contract.columns:
        other = [
            text
            for text, present in (
                (f"pattern {c.pattern}", c.pattern),
                (f"min {c.min:g}" if c.min is not None else "", c.min is not None),
                (f"max {c.max:g}" if c.max is not None else "", c.max is not None),
                (f"allowed {c.allowed}", c.allowed is not None),
                (f"allowed from {c.allowed_from}", c.allowed_from),
                ("valid Latvian personal code", c.personal_code),
                ("month within the delivery", c.within_delivery),
                (f"keyed pseudonym ({c.pseudonymise})", c.pseudonymise),
            )
            if present
        ]
        columns.append(
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=c.description,
                constraints=dg.TableColumnConstraints(
                    nullable=c.nullable, unique=c.unique, other=other
                ),
            )
        )
    table_other = [f"key {contract.key}"] if contract.key else []
    table_other += [f"{fk.column} -> {fk.table}.{fk.ref_column}" for fk in contract.foreign_keys]
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=table_other))


def _reconciliation_md(result: "TableResult") -> str:
    head = (
        "| file | rows in | accepted | quarantined | duplicates | superseded | balanced |\n"
        "|---|---:|---:|---:|---:|---:|:---:|\n"
    )
    rows = "".join(
        f"| {f.file} | {f.rows_in:,} | {f.accepted:,} | {f.quarantined:,} | {f.duplicates:,} "
        f"| {f.superseded:,} | {'yes' if f.balanced else 'NO'} |\n"
        for f in result.files
    )
    return head + (rows or "| (no file reconciled) | | | | | | |\n")


def _metadata(result: "TableResult", deliveries: list[str]) -> dict[str, Any]:
    files = [
        {
            "file": f.file,
            "rows_in": f.rows_in,
            "accepted": f.accepted,
            "quarantined": f.quarantined,
            "duplicates": f.duplicates,
            "superseded": f.superseded,
            "balanced": f.balanced,
        }
        for f in result.files
    ]
    md: dict[str, Any] = {
        "rows_in": result.rows_in,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "duplicates": sum(f.duplicates for f in result.files),
        "superseded": sum(f.superseded for f in result.files),
        "rules_hit": dg.MetadataValue.json(dict(result.rules_hit)),
        "reconciliation": dg.MetadataValue.md(_reconciliation_md(result)),
        "files": dg.MetadataValue.json(files),
        "extra_columns": dg.MetadataValue.json(list(result.extra_columns)),
        # incremental ingest: groups (year=YYYY, or all) taken from the cache unread, and
        # groups whose files were read and validated in this run
        "groups_reused": len(getattr(result, "groups_reused", [])),
        "groups_validated": len(getattr(result, "groups_validated", [])),
        "groups": dg.MetadataValue.json({
            "reused": list(getattr(result, "groups_reused", [])),
            "validated": list(getattr(result, "groups_validated", [])),
        }),
        "deliveries": dg.MetadataValue.json(deliveries),
        "seconds": dg.MetadataValue.float(float(result.seconds)),
    }
    # the Great Expectations cross-check of the clean table (impact.contracts.gx), if it ran;
    # informative only: the contract check is decided by the polars rules and reconciliation
    gx_success = getattr(result, "gx_success", None)
    if gx_success is not None:
        md["gx_success"] = bool(gx_success)
        md["gx_failed_rules"] = dg.MetadataValue.json(list(getattr(result, "gx_failed_rules", [])))
    if result.output:
        md["output"] = dg.MetadataValue.path(result.output)
        md["dagster/row_count"] = result.accepted
    return md


def _ingest(
    contract: Contract, impact_config: ImpactConfig, full_ingest: bool = False
) -> tuple["TableResult", list[str]]:
    """Run the library's ingest of one table; configuration problems become `dg.Failure`.

    ``full_ingest`` validates every group of files again (no cached group is reused).
    """
    from impact.config import ConfigError
    from impact.ingest import deliveries_in, ingest_source

    cfg = impact_config.load()
    try:
        settings = cfg.ingest_settings(full=full_ingest)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    deliveries = deliveries_in(cfg.data.landing)
    if not deliveries:
        raise dg.Failure(
            description=(
                f"{contract.table}: no complete delivery (a folder with manifest.json) under "
                f"{cfg.data.landing}; materialise the landing asset or put a delivery there"
            )
        )
    crash: str | None = None
    try:
        result = ingest_source(contract.table, deliveries, settings)
    except Exception as exc:
        if cfg.is_synthetic:  # synthetic registers: the full error is safe to show
            raise
        # real registers: an unexpected library error may quote raw values; name it only
        crash = type(exc).__name__
    if crash is not None:
        raise dg.Failure(
            description=(
                f"{contract.table}: ingest stopped by an internal error ({crash}); its text is "
                "withheld because it may quote register values. Reproduce on synthetic data."
            )
        )
    return result, [d.name for d in deliveries]


def build_source_asset(contract: Contract, tables: set[str]) -> dg.AssetsDefinition:
    """The asset ``sources/<table>`` of one contract, with its blocking ``contract`` check.

    ``tables`` are all contract tables: dependencies outside them are not assets.
    """
    key = source_key(contract.table)
    upstream = sorted(t for t in contract.depends_on if t in tables)

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"polars", "parquet"},
        description=f"{contract.description}\n\nSource: {contract.source}.",
        deps=[LANDING_KEY, *(source_key(t) for t in upstream)],
        check_specs=[
            dg.AssetCheckSpec(CHECK_NAME, asset=key, blocking=True, description=CHECK_DESCRIPTION)
        ],
        metadata={
            "contract": dg.MetadataValue.path(str(SCHEMAS_DIR / f"{contract.table}.yaml")),
            "source": contract.source,
            "dagster/column_schema": _column_schema(contract),
        },
    )
    def _source(
        context: dg.AssetExecutionContext, impact_config: ImpactConfig,
        config: SourceIngestConfig,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        result, deliveries = _ingest(contract, impact_config, config.full_ingest)
        metadata = _metadata(result, deliveries)
        unbalanced = [f.file for f in result.files if not f.balanced]
        if result.ok and result.files and not unbalanced:
            context.log.info(
                "%s: %d rows in, %d accepted, %d quarantined in %.1f s "
                "(groups reused %d, validated %d)",
                contract.table,
                result.rows_in,
                result.accepted,
                result.quarantined,
                result.seconds,
                len(result.groups_reused),
                len(result.groups_validated),
            )
            yield dg.MaterializeResult(
                metadata=metadata,
                check_results=[
                    dg.AssetCheckResult(
                        check_name=CHECK_NAME,
                        passed=True,
                        metadata={
                            "files": len(result.files),
                            "rows_in": result.rows_in,
                            "quarantined": result.quarantined,
                        },
                    )
                ],
            )
            return
        if result.failure:
            message = result.failure
        elif unbalanced:
            message = (
                f"{contract.table} ({unbalanced[0]}): rule 'reconciliation' failed: "
                "rows in != accepted + quarantined + duplicates + superseded"
            )
        else:
            message = f"{contract.table}: the ingest reported no usable file"
        # record the failed blocking check first, then fail the step (see module docstring)
        yield dg.AssetCheckResult(
            check_name=CHECK_NAME, passed=False, description=message, metadata=metadata
        )
        raise dg.Failure(description=message, metadata=metadata)

    return _source


def build_source_assets() -> list[dg.AssetsDefinition]:
    """One source asset per contract in ``schemas/`` (dependency order)."""
    from impact.contracts.model import dependency_order

    contracts = load_contracts()
    return [build_source_asset(contracts[t], set(contracts)) for t in dependency_order(contracts)]


SOURCE_ASSETS = build_source_assets()
SOURCE_TABLES = [a.key.path[-1] for a in SOURCE_ASSETS]
