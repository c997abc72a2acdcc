#!/usr/bin/env bash
# Sets up a fresh machine: a venv in the repo (.venv) with the project, its test, notebook and docs extras,
# and Fashion-MNIST from Debian where we are root. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
set -o pipefail
# pip on these machines warns once per package about an empty local index folder: drop that noise only
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# torch first and pinned: a bare 'torch' requirement with no torch present pulls a CUDA build of
# several GB; 2.13.0 is the CPU build these machines keep on disk.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch 2.13.0 (CPU)"
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet
fi
echo "[setup] installing the project with its dev, notebook, docs and dask extras"
.venv/bin/python -m pip install -q -e ".[dev,notebooks,docs,dask]" 2>&1 | quiet
.venv/bin/python -c "import theory, sims, mr2, torch" || { echo "[setup] the install failed" >&2; exit 1; }

FMNIST=/usr/share/datasets/fashion-mnist
if [[ ! -f $FMNIST/train-images-idx3-ubyte.gz ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[setup] installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
      || echo "[setup] notice: could not install dataset-fashion-mnist; runs fall back to scikit-learn digits"
  else
    echo "[setup] notice: Fashion-MNIST not found; as root run: apt-get install -y dataset-fashion-mnist"
  fi
fi
echo "[setup] done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
