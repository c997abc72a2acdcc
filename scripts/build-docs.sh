#!/usr/bin/env bash
# Builds the HTML documentation site into site/ (or OUT): the pages of docs/, the notebooks with
# their outputs (executed now with MR2_NB_QUICK=1, the tests' small parameters), and an API reference
# generated from the docstrings. Warnings are errors (mkdocs --strict).
#
#   bash scripts/build-docs.sh            # -> site/index.html
#   bash scripts/build-docs.sh OUT        # -> OUT/index.html
#
# Needs the `docs` extra (pip install -e ".[docs,notebooks]"; scripts/setup.sh installs both).
# MR2_NB_QUICK=0 bash scripts/build-docs.sh executes the notebooks with their full parameters (slow).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${1:-site}
STAGE=build/docs-src  # mkdocs.yml's docs_dir; git ignores build/

# mkdocs reads one folder: lay out docs/ and notebooks/ side by side in it, as in the repository, so
# that the pages' relative links (docs/x.md -> ../notebooks/README.md) resolve in the site too.
rm -rf "$STAGE"
mkdir -p "$STAGE/notebooks" "$STAGE/api"
cp -R docs "$STAGE/docs"
cp notebooks/README.md notebooks/*.ipynb "$STAGE/notebooks/"
for pkg in mr2_core theory sims mr2 paper_figs mr2_cli; do
  printf '# `%s`\n\n::: %s\n' "$pkg" "$pkg" > "$STAGE/api/$pkg.md"
done
cat > "$STAGE/index.md" <<'MD'
# mr2-margins

Class-sensitive margin theory after MR² (Zhu et al., ICLR 2026): the bound and its optimal margins
derived in SymPy (`theory`), Gaussian-mixture simulations (`sims`), torch losses and training (`mr2`),
the paper's figures (`paper_figs`) and the `mr2` command (`mr2_cli`).

- **Guides**: [setup](docs/setup.md), [the method](docs/method.md), [the theory](docs/theory.md),
  [simulations](docs/sims.md), [losses](docs/losses.md), [training](docs/training.md),
  [figures](docs/figures.md).
- **Notebooks**, executed with their quick parameters when this site was built:
  [how they are built](notebooks/README.md).
- **API reference**, from the docstrings: [mr2_core](api/mr2_core.md), [theory](api/theory.md),
  [sims](api/sims.md), [mr2](api/mr2.md), [paper_figs](api/paper_figs.md), [mr2_cli](api/mr2_cli.md).
MD

export NO_MKDOCS_2_WARNING=1  # the theme prints a notice about its successor on every build
export MR2_NB_QUICK=${MR2_NB_QUICK:-1}
export MPLBACKEND=${MPLBACKEND:-Agg}
# the notebooks' kernels and mkdocstrings import the packages of this checkout
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# notebooks run from the staged folder, so their runs (results/notebook_runs) land under build/
"$PY" -m mkdocs build --strict --clean -f mkdocs.yml -d "$OUT"
echo "[docs] built $OUT/index.html"
