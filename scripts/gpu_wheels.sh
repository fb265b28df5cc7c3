#!/usr/bin/env bash
# Fills .whl/ with the wheels scripts/gpu_check.sh needs on a GPU machine that has Python and a
# CUDA torch but neither the rest of grasp's run-time dependencies nor network access: the
# packages a run imports (at requirements.lock's versions) that such an image (PyTorch with the
# scientific stack: numpy, pandas, matplotlib, tqdm, yaml, tabulate) lacks. Run it here, where pip
# reaches an index; .whl/ is git-ignored and travels with the command (e.g. the device tool's carry).
#   GPU_PYTHON_VERSION=3.12   the GPU machine's Python (wheels are picked for it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
version=${GPU_PYTHON_VERSION:-3.12}
packages=(hydra-core omegaconf gymnasium Farama-Notifications mujoco PyOpenGL wcwidth)
pinned=()
for name in "${packages[@]}" antlr4-python3-runtime; do
    pin=$(grep -i "^$name==" requirements.lock || true)
    [ -n "$pin" ] || { echo "gpu_wheels: $name is not in requirements.lock" >&2; exit 1; }
    pinned+=("$pin")
done
mkdir -p .whl
rm -f .whl/*.whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" -d .whl "${pinned[@]:0:${#packages[@]}}"
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) is published as a source archive only:
# it is pure Python, so a wheel built here installs anywhere
"$PY" -m pip wheel -q --no-deps -w .whl "${pinned[-1]}"
ls -1 .whl
du -sh .whl
