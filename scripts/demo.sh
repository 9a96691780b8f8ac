#!/usr/bin/env bash
# The README's main command: set up .venv if needed (see bootstrap.sh), then run
# `impact demo` on the embedded synthetic default. Extra arguments go to `impact demo`
# (see `impact demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
exec "$ROOT/.venv/bin/impact" demo "$@"
