#!/usr/bin/env bash
# One-time, idempotent set-up: a virtual environment in .venv with trainwise installed (editable).
# It never pulls a CUDA build of torch and never upgrades an installed torch: an existing torch
# (system-wide or in .venv) is kept and pinned; otherwise the pinned CPU wheel torch==2.13.0 is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_PIN="${TRAINWISE_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"

# Headless Chromium renders report.html in the tests (Debian's package); skipped where it cannot be installed.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing chromium (for the HTML report test)" >&2
  (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
   { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }) ||
    echo "setup: chromium could not be installed; the HTML rendering test will be skipped" >&2
fi

stamp=.venv/.trainwise-setup
# trainwise's own bytecode, compiled once: where PYTHONDONTWRITEBYTECODE is set (as on these machines) Python
# would otherwise recompile every module at every start (~0.2 s of each command). A changed source file is
# recompiled on import as usual; this only refreshes the cache.
compile_() { .venv/bin/python -m compileall -q trainwise >/dev/null || true; }

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && .venv/bin/python -c "import trainwise, torch" 2>/dev/null; then
  compile_
  exit 0  # already set up
fi

# --system-site-packages: a torch already installed on the machine is reused, not replaced.
[ -x .venv/bin/python ] || "$PY" -m venv --system-site-packages .venv
pip_() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_PIN (CPU wheel)" >&2
  pip_ "$TORCH_PIN"
fi
# Pin whatever torch is now present so no dependency can upgrade it or pull a CUDA build.
.venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > .venv/torch-constraint.txt
echo "setup: installing trainwise with $(cat .venv/torch-constraint.txt) held fixed" >&2
pip_ -c .venv/torch-constraint.txt -e ".[test]"
compile_
touch "$stamp"
