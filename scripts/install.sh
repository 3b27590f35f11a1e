#!/usr/bin/env bash
# Install catbuilder and everything its full test suite needs, on Debian 12
# with Python 3.11, as root. Idempotent: running it again only fills in what
# is missing.
#
#   1. system packages: SLURM and munge (for the dask-jobqueue tests), a C++
#      toolchain and cmake (to build Horovod), Chromium (the report's test opens
#      report.html in it, headless);
#   2. a virtual environment in .venv;
#   3. catbuilder, its plugins and extras, resolved in ONE pip call so that
#      TensorFlow's numpy bound holds for every package;
#   4. Horovod 0.28.1 built over Gloo (no MPI) against that TensorFlow.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export DEBIAN_FRONTEND=noninteractive

need_apt=()
for cmd in slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge cmake:cmake g++:g++ make:make \
           chromium:chromium; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd##*:}")
done
"$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${need_apt[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip setuptools wheel

packages=(-e ".[keras,hats,umap,test,docs]")
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
done
"$PY" -m pip install -q "${packages[@]}"

if ! "$PY" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    echo "install.sh: building horovod 0.28.1 over Gloo (a few minutes)"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 CMAKE_POLICY_VERSION_MINIMUM=3.5 \
        "$PY" -m pip install -q --no-build-isolation --no-deps --no-cache-dir horovod==0.28.1
fi
"$PY" - <<'PYEOF'
import horovod.tensorflow as hvd, tensorflow as tf, numpy
assert hvd.gloo_built(), "horovod was built without Gloo"
print(f"install.sh: ok (tensorflow {tf.__version__}, numpy {numpy.__version__}, horovod over gloo)")
PYEOF
