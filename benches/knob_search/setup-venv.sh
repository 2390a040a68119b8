#!/usr/bin/env bash
# Creates benches/.venv with Optuna from PyPI for the knob-search benchmark (git-ignored).
# Prints the venv's python on stdout. Re-running is cheap once it exists. With ARUN_BENCH_GP=1 it
# also installs SciPy and PyTorch (a large download), which Optuna's GPSampler needs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import optuna' 2>/dev/null; then
  echo "knob_search: creating benches/$venv with optuna (pip)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check optuna >&2
fi
if [ "${ARUN_BENCH_GP:-0}" = 1 ] && ! "$venv/bin/python" -c 'import scipy, torch' 2>/dev/null; then
  echo "knob_search: installing scipy and torch into benches/$venv for GPSampler (pip)" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check scipy torch >&2
fi
echo "$PWD/$venv/bin/python"
