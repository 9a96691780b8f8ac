"""Dagster code location for `impact` (thin assets over the `impact` library).

Load with `dagster dev` / `dagster definitions validate` from the repository root; the
location is configured in pyproject.toml ([tool.dagster], module `pipelines.definitions`).
"""
