#!/usr/bin/env bash
# Creates (or reuses) .venv and installs grasp with its dev extras. Idempotent: a stamp file
# keyed on pyproject.toml's hash skips the work when nothing changed.
#   TORCH_SPEC=...         torch requirement to install first (default torch==2.13.0, a CPU
#                          wheel on machines that carry it; PyPI serves it as the CUDA build)
#   GRASP_SYSTEM_TORCH=1   build the venv with --system-site-packages and keep the torch your
#                          system Python already has (e.g. a GPU cluster's build)
#   GRASP_UNLOCKED=1       resolve the dependencies afresh instead of installing the versions
#                          the suite was tested with (requirements.lock; `make lock` rewrites it)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for cand in python3.11 python3 python; do
        if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
    done
fi
[ -n "$PY" ] || { echo "setup: no python3 found on PATH" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "setup: $PY is older than Python 3.10" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    flags=()
    [ "${GRASP_SYSTEM_TORCH:-0}" = "1" ] && flags+=(--system-site-packages)
    echo "setup: creating .venv with $("$PY" --version)"
    "$PY" -m venv "${flags[@]}" .venv
fi

lock=requirements.lock
[ "${GRASP_UNLOCKED:-0}" = "1" ] || [ ! -f "$lock" ] || locked=locked
stamp=".venv/.grasp-installed-$(cat pyproject.toml scripts/setup_venv.sh ${locked:+"$lock"} | sha1sum | cut -c1-16)-${locked:-unlocked}"
if [ -f "$stamp" ]; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
    echo "setup: installing ${TORCH_SPEC:-torch==2.13.0}"
    .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
# the distribution was called `grasp` before it became grasp-wm: drop that editable install
if .venv/bin/python -m pip show -q grasp >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall -q -y grasp
fi
constraints=()
[ -z "${locked:-}" ] || constraints=(-c "$lock")
echo "setup: installing grasp (editable) and its dependencies${constraints:+ at the versions of requirements.lock}"
.venv/bin/python -m pip install -q "${constraints[@]}" -e ".[dev]"
rm -f .venv/.grasp-installed-*
touch "$stamp"
echo "setup: done"
