#!/usr/bin/env bash
# The one prepared GPU check: run as is on a machine with a GPU (under 8 minutes), it verifies the
# CUDA path and measures it (grasp/cli/gpu_check.py says what each section does), writing a
# Markdown report and its CSVs under outputs/gpu_check/<date-time>/ (or --out DIR).
#
#   bash scripts/gpu_check.sh                 # on the GPU machine
#   bash scripts/gpu_check.sh --out "$OUT"    # the files where the caller collects them
#   bash scripts/gpu_check.sh --cpu           # tiny sizes on the CPU: what tests/ runs
#
# Python: .venv/bin/python when the checkout has one (make setup), else python3 with torch. A
# machine without the other dependencies (Hydra, MuJoCo, gymnasium, ...) and without network gets
# them as wheels in .whl/ (scripts/gpu_wheels.sh fills it on a machine that has pip access; when
# the Python lacks them, the wheels go into a temporary folder on PYTHONPATH, nothing else changes).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c 'import hydra, omegaconf, mujoco, gymnasium' >/dev/null 2>&1 && ls .whl/*.whl >/dev/null 2>&1; then
    site=$(mktemp -d /tmp/grasp-site.XXXXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}
# one process at a time uses the CPU cores the GPU machine has; a CPU run keeps to the rules of this
# project's 2-core machines
if [[ " $* " == *" --cpu "* ]]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi
exec "$PY" -m grasp.cli.gpu_check "$@"
