#!/usr/bin/env bash
# Run the Dagster CLI against this project with the instance config in ./dagster.yaml.
#   bash scripts/dagster.sh dev                          # UI at http://127.0.0.1:3000
#   bash scripts/dagster.sh job execute -j ingest_job    # one run from the command line
#   bash scripts/dagster.sh definitions validate
# DAGSTER_HOME defaults to ./.dagster_home (SQLite run/event storage lives there); an
# existing DAGSTER_HOME is respected.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
if [ -z "${DAGSTER_HOME:-}" ]; then
  # project-local instance: keep its dagster.yaml in step with the repository's
  export DAGSTER_HOME="$ROOT/.dagster_home"
  mkdir -p "$DAGSTER_HOME"
  cmp -s dagster.yaml "$DAGSTER_HOME/dagster.yaml" || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
else
  # your own instance: seed it with ours only if it has no dagster.yaml yet
  mkdir -p "$DAGSTER_HOME"
  [ -e "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
fi
exec "$ROOT/.venv/bin/dagster" "$@"
