#!/usr/bin/env bash
# Creates benches/.venv with Optuna from PyPI for the knob-search benchmark (git-ignored).
# Prints the venv's python on stdout. Re-running is cheap once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import optuna' 2>/dev/null; then
  echo "knob_search: creating benches/$venv with optuna (pip)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check optuna >&2
fi
echo "$PWD/$venv/bin/python"
