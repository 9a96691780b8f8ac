#!/usr/bin/env bash
# The README's test command: set up .venv if needed (see bootstrap.sh), then run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `... -n 2`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
exec "$ROOT/.venv/bin/python" -m pytest "$@"
