#!/usr/bin/env bash
# Creates (or reuses) .venv and installs grasp with its dev extras. Idempotent: a stamp file
# keyed on pyproject.toml's hash skips the work when nothing changed.
#   TORCH_SPEC=...         torch requirement to install first (default torch==2.13.0, a CPU
#                          wheel on machines that carry it; PyPI serves it as the CUDA build)
#   TORCH_INDEX_URL=...    the index torch comes from, e.g. https://download.pytorch.org/whl/cu128
#                          for a CUDA 12.8 build (with TORCH_SPEC=torch==2.13.0+cu128)
#   GRASP_SYSTEM_TORCH=1   build the venv with --system-site-packages and keep the torch your
#                          system Python already has (e.g. a GPU cluster's build)
# A changed torch request (TORCH_SPEC, TORCH_INDEX_URL) replaces the venv's torch; a torch
# changed by hand (another version or build) is noticed by the stamp and the install rerun.
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

export PIP_DISABLE_PIP_VERSION_CHECK=1
torch_spec=${TORCH_SPEC:-torch==2.13.0}
request="$torch_spec${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
requested=.venv/.grasp-torch-request
index=()
[ -z "${TORCH_INDEX_URL:-}" ] || index=(--index-url "$TORCH_INDEX_URL")
# the installed torch's version (its local label names the build, e.g. 2.13.0+cu128), read from its
# metadata without importing it
torch_version() { .venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null; }
if ! torch_version >/dev/null; then
    echo "setup: installing $request"
    .venv/bin/python -m pip install -q "${index[@]}" "$torch_spec"
    echo "$request" > "$requested"
elif [ "${GRASP_SYSTEM_TORCH:-0}" != "1" ] && [ -f "$requested" ] && [ "$(cat "$requested")" != "$request" ]; then
    echo "setup: torch request changed ($(cat "$requested") -> $request): reinstalling torch"
    .venv/bin/python -m pip uninstall -q -y torch
    .venv/bin/python -m pip install -q "${index[@]}" "$torch_spec"
    echo "$request" > "$requested"
fi
[ -f "$requested" ] || echo "$request" > "$requested"
# the torch actually there is part of the stamp: a changed torch reruns the install
torch_id=$(torch_version)

lock=requirements.lock
[ "${GRASP_UNLOCKED:-0}" = "1" ] || [ ! -f "$lock" ] || locked=locked
stamp=".venv/.grasp-installed-$( (cat pyproject.toml scripts/setup_venv.sh ${locked:+"$lock"}; echo "$torch_id") | sha1sum | cut -c1-16)-${locked:-unlocked}"
if [ -f "$stamp" ]; then
    exit 0
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
