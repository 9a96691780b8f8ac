#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install `impact` with
# its pinned dependencies. Idempotent: when .venv already matches pyproject.toml and
# requirements.lock it returns in well under a second.
#
#   bash scripts/bootstrap.sh           # create if missing, reinstall only if pins changed
#   bash scripts/bootstrap.sh --fresh   # delete .venv and install from scratch (used by .ci/run)
#
# Needs only Python >= 3.11 (`python3.11`, or `python3` if that is 3.11+; override with
# PYTHON=/path/to/python) and access to the package index.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PIP_VERSION="26.3"   # pip itself is pinned as well: same resolver, same result
STAMP="$VENV/.impact-install-stamp"

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bootstrap.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

find_python() {
  local cand
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$cand"
      return 0
    fi
  done
  echo "error: Python >= 3.11 not found (tried \$PYTHON, python3.11, python3)." >&2
  return 1
}

# Fingerprint of everything that decides the installed set.
fingerprint() {
  "$VENV/bin/python" - "$ROOT" "$PIP_VERSION" <<'PY'
import hashlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
h = hashlib.sha256(sys.argv[2].encode())
h.update(sys.version.encode())
for name in ("pyproject.toml", "requirements.lock"):
    h.update((root / name).read_bytes())
print(h.hexdigest())
PY
}

cd "$ROOT"

if [ "$fresh" = 1 ] && [ -e "$VENV" ]; then
  echo "bootstrap: removing $VENV"
  rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)"
  echo "bootstrap: creating $VENV with $PY ($("$PY" --version 2>&1))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

want="$(fingerprint)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0   # already installed with these pins
fi

echo "bootstrap: installing impact[dev] into $VENV (pinned by requirements.lock)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
"$VENV/bin/python" -m pip install --upgrade "pip==$PIP_VERSION"
"$VENV/bin/python" -m pip install -c requirements.lock -e ".[dev]"
echo "$want" > "$STAMP"
echo "bootstrap: done"
