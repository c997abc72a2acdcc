#!/usr/bin/env bash
# The GPU check, in one go (about 8 minutes on one H200): the CUDA tests, `mr2 bench loss --device
# cuda`, `mr2 bench train --device cuda`, and the fmnist-gpu study (ResNet-18 on Fashion-MNIST, CE, MR2
# and MR2 with the separation statistic, 3 seeds) followed by `mr2 report`; then a summary of every
# figure beside its target. Everything goes to OUT_DIR (default: $OUT, else ./device-check-out):
#   summary.txt        the summary (also printed at the end)
#   device-check.log   every step's output, in order
#   results.tar.gz     bench/ (CSV + JSON), runs/ (config, log, metrics of every run; no checkpoints),
#                      report/ (report.md, summary.csv, plots), logs/ (one log per step)
#   steps.tsv, study_epochs.txt   each step's exit code and seconds; the study's epochs
# (the folders themselves are removed once archived, so that a handful of files comes back from a
# device machine; --keep-files keeps them)
#
# Usage: scripts/device-check.sh [OUT_DIR] [--epochs N] [--budget SECONDS] [--dry-run] [--keep-files]
#   --epochs N   epochs of the study (default: as many of the preset's 30 as fit the budget, judged
#                from the throughput that `mr2 bench train` measured just before; the summary says so)
#   --budget S   seconds for the whole check (default 480)
#   --dry-run    every step at tiny size on the CPU (digits, 1 epoch, a few repetitions): checks that
#                the script works, in well under a minute; its figures mean nothing
#   --keep-files keep bench/, runs/, report/ and logs/ beside the archive
#
# Runs from any folder (it changes to the repository root) with PYTHONPATH set to the root; installs
# nothing; needs python3 with torch (CUDA), pandas, seaborn, scikit-learn, scipy, sympy, tqdm, pytest
# (PYTHON=... to use another interpreter), and bash, awk, tar. Fashion-MNIST is read through MR2_DATA
# (default ./data): before sending the tree to the GPU machine,
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# (data/ is ignored by git: name it in the device tool's `carry`). Exits non-zero when a step fails.
set -uo pipefail

DRY=0
KEEP=0
EPOCHS=""
BUDGET=480
OUT_DIR=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --keep-files) KEEP=1 ;;
    --epochs) EPOCHS="${2:?--epochs needs a number}"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "device-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT_DIR="$1" ;;
  esac
  shift
done
[[ -n $EPOCHS && ! $EPOCHS =~ ^[1-9][0-9]*$ ]] && { echo "device-check: --epochs=$EPOCHS: expected a positive integer" >&2; exit 2; }
[[ ! $BUDGET =~ ^[1-9][0-9]*$ ]] && { echo "device-check: --budget=$BUDGET: expected seconds (a positive integer)" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${OUT_DIR:-${OUT:-$PWD/device-check-out}}"
mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MR2_DATA="${MR2_DATA:-$ROOT/data}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg
PY="${PYTHON:-python3}"
STEPS="$OUT_DIR/steps.tsv"
LOG="$OUT_DIR/device-check.log"
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/bench"
: > "$STEPS"
: > "$LOG"
START=$(date +%s)

# step NAME CMD...: run CMD with its output in logs/NAME.log and in the main log; record rc and time
step() {
  local name="$1"; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  echo "=== $name: $*" | tee -a "$LOG"
  "$@" > "$OUT_DIR/logs/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  cat "$OUT_DIR/logs/$name.log" >> "$LOG"
  tail -n 15 "$OUT_DIR/logs/$name.log"
  awk -v n="$name" -v rc="$rc" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s\t%s\t%.1f\n", n, rc, b - a }' >> "$STEPS"
  echo "=== $name: exit $rc" | tee -a "$LOG"
  return $rc
}

if [[ $DRY == 1 ]]; then
  DEVICE=cpu
  TEST_ARGS=(-q -m cuda -p no:cacheprovider --collect-only tests/mr2/test_train_fast.py)
  LOSS_ARGS=(--ks 10 --batch 16 --dim 8 --reps 2 --warmup 0)
  TRAIN_ARGS=(--device cpu --models small-cnn --methods ce mr2 --reps 2 --warmup 0 --batch 32
              --dataset digits --train-samples 96)
  # ResNet-18 at width 8 on 100 digits (no last batch of one: batch norm needs two samples at 1x1)
  STUDY_ARGS=(--device cpu --seeds 0 --set dataset=digits --set max_train_samples=100
              --set batch_size=32 --set eval_batch_size=512 --set width=8)
  EPOCHS=${EPOCHS:-1}
else
  DEVICE=cuda
  TEST_ARGS=(-q -m cuda -p no:cacheprovider tests/mr2)
  LOSS_ARGS=(--device cuda --amp)
  TRAIN_ARGS=(--device cuda)
  STUDY_ARGS=(--device cuda)
fi

step environment "$PY" -c "
import os, platform, torch
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda)
print('gpu:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none', '| cpus', os.cpu_count())
if '$DEVICE' == 'cuda' and not torch.cuda.is_available():
    raise SystemExit('device-check: no CUDA GPU here; run with --dry-run on a CPU')
if '$DEVICE' == 'cuda':
    from mr2.data import find_fashion_mnist
    print('fashion-mnist:', find_fashion_mnist(None))
"
ENV_RC=$?
if [[ $ENV_RC != 0 ]]; then
  echo "device-check: the environment step failed (see $OUT_DIR/logs/environment.log); nothing else runs" | tee -a "$LOG"
  echo "For Fashion-MNIST: mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/" | tee -a "$LOG"
  exit 1
fi

step cuda-tests "$PY" -m pytest "${TEST_ARGS[@]}"
step bench-loss "$PY" -m mr2 bench loss --out "$OUT_DIR/bench" "${LOSS_ARGS[@]}"
step bench-train "$PY" -m mr2 bench train --out "$OUT_DIR/bench" "${TRAIN_ARGS[@]}"

# the study's epochs: what fits the rest of the budget at the throughput just measured
ELAPSED=$(( $(date +%s) - START ))
if [[ -z $EPOCHS ]]; then
  EPOCHS=$("$PY" - "$OUT_DIR/bench/train_bench_throughput.csv" "$BUDGET" "$ELAPSED" <<'EOF'
import csv, math, sys
path, budget, elapsed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
RUNS, FULL, N_TRAIN = 9, 30, 54_000  # 3 methods x 3 seeds, the preset's epochs, training images
PER_RUN_S = 20.0  # data, model, final evaluation of three selections: a guess, printed with the rest
RESERVE_S = 45.0  # the report, the summary and a margin
try:
    rows = [r for r in csv.DictReader(open(path)) if r["model"] == "resnet18"]
    rate = min(float(r["images_per_s_epoch"]) for r in rows)
    val_s = max(float(r["validation_s"]) for r in rows)
except (OSError, KeyError, ValueError):
    print(f"no ResNet-18 throughput in {path}: the study runs 3 epochs", file=sys.stderr)
    print(3)
    raise SystemExit
per_epoch = N_TRAIN / rate + val_s + 0.5  # + the checkpoint
left = budget - elapsed - RESERVE_S - RUNS * PER_RUN_S
epochs = max(1, min(FULL, math.floor(left / (RUNS * per_epoch))))
full = RUNS * (PER_RUN_S + FULL * per_epoch)
print(f"throughput {rate:.0f} images/s, validation {val_s:.1f} s: an epoch of one run ~{per_epoch:.1f} s; "
      f"{elapsed:.0f} s used of {budget:.0f}; the full study (30 epochs) would take ~{full:.0f} s; "
      f"running {epochs} epochs", file=sys.stderr)
print(epochs)
EOF
  )
  [[ $EPOCHS =~ ^[0-9]+$ ]] || EPOCHS=3
fi
echo "=== study epochs: $EPOCHS (the preset has 30$([[ $EPOCHS != 30 ]] && echo '; reduced to fit the budget or as asked'))" | tee -a "$LOG"
echo "$EPOCHS" > "$OUT_DIR/study_epochs.txt"

step study "$PY" -m mr2 train --preset fmnist-gpu --jobs 1 --no-progress --out "$OUT_DIR/runs" \
  --epochs "$EPOCHS" "${STUDY_ARGS[@]}"
step report "$PY" -m mr2 report "$OUT_DIR/runs/fmnist-gpu" --out "$OUT_DIR/report"

# the summary: every figure beside its target (Python reads the files the steps wrote)
"$PY" - "$OUT_DIR" "$DRY" "$BUDGET" "$START" <<'EOF' 2>&1 | tee "$OUT_DIR/summary.txt"
import csv, glob, json, os, sys, time
out, dry, budget, start = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), float(sys.argv[4])
TARGET_STUDY_S, TARGET_RATE = 480.0, 30_000.0  # the full study on one H200; training images per second
lines = ["device-check summary" + (" (DRY RUN on a CPU: tiny sizes, the figures mean nothing)" if dry else "")]
steps = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "steps.tsv"))]
for name, rc, secs in steps:
    lines.append(f"  step {name:12s} {'ok' if rc == '0' else 'FAILED (exit ' + rc + ')':16s} {float(secs):7.1f} s")
def read_json(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None
for name in ("loss_bench_cuda.json", "loss_bench.json", "train_bench.json"):
    manifest = read_json(os.path.join(out, "bench", name))
    if manifest:
        lines.append(f"  {name} ({manifest.get('device')}, torch {manifest.get('torch')}):")
        lines += [f"    {v}" for v in manifest.get("verdicts", [])]
try:
    parts = list(csv.DictReader(open(os.path.join(out, "bench", "train_bench_breakdown.csv"))))
    for r in parts:
        if r["phase"].startswith("syncs"):
            n = float(r["ms_median"])
            lines.append(f"    {r['model']} {r['method']}: {n:.0f} host syncs per steady-state step as the loop "
                         f"configures a GPU (target 0): {'met' if n == 0 else 'NOT met'}")
except OSError:
    pass
runs = [read_json(p) for p in sorted(glob.glob(os.path.join(out, "runs", "fmnist-gpu", "*", "seed*", "metrics.json")))]
runs = [r for r in runs if r]
if runs:
    epochs = runs[0]["epochs"]
    train_s = sum(r["train_time_s"] for r in runs)
    images = sum(r["n_train"] * r["epochs"] for r in runs)
    study = [s for s in steps if s[0] == "study"]
    wall = float(study[0][2]) if study else float("nan")
    rate = images / train_s
    full = (wall - train_s) + train_s * 30 / epochs
    lines.append(f"  study fmnist-gpu: {len(runs)} runs x {epochs} epochs in {wall:.0f} s wall "
                 f"({train_s:.0f} s training and validation)")
    lines.append(f"    training throughput {rate:,.0f} images/s incl. validation (target ~{TARGET_RATE:,.0f}): "
                 f"{'met' if rate >= TARGET_RATE else 'NOT met'}")
    tag = "measured" if epochs == 30 else f"projected from {epochs} epochs"
    lines.append(f"    full study (30 epochs) {full:.0f} s, {tag} (target <= {TARGET_STUDY_S:.0f} s): "
                 f"{'met' if full <= TARGET_STUDY_S else 'NOT met'}")
    by = {}
    for r in runs:
        by.setdefault(r["loss"], []).append(r)
    for loss, rs in by.items():
        acc = sum(r["accuracy"] for r in rs) / len(rs)
        worst = sum(r["worst_class_accuracy"] for r in rs) / len(rs)
        lines.append(f"    {loss:15s} {len(rs)} seeds: test accuracy {acc:.4f}, worst class {worst:.4f}")
report = os.path.join(out, "report", "report.md")
lines.append(f"  report: {'written' if os.path.exists(report) else 'MISSING'} ({report})")
lines.append(f"  total {time.time() - start:.0f} s (budget {budget:.0f} s)")
print("\n".join(lines))
EOF
SUMMARY_RC=${PIPESTATUS[0]}
if [[ $SUMMARY_RC != 0 ]]; then  # no Python summary: at least the steps
  { echo "device-check summary (the Python summary failed)"; cat "$STEPS"; } | tee "$OUT_DIR/summary.txt"
fi

# what comes back: the summary, the log and one archive (checkpoints and weights left out: ~90 MB a run)
find "$OUT_DIR/runs" \( -name checkpoint.pt -o -name model.pt \) -delete 2>/dev/null
tar -czf "$OUT_DIR/results.tar.gz" -C "$OUT_DIR" $(cd "$OUT_DIR" && ls -d bench runs report logs steps.tsv study_epochs.txt 2>/dev/null) \
  && [[ $KEEP == 0 ]] && rm -rf "$OUT_DIR/bench" "$OUT_DIR/runs" "$OUT_DIR/report" "$OUT_DIR/logs"

FAILED=$(awk -F'\t' '$2 != 0' "$STEPS" | wc -l)
if [[ $FAILED != 0 || $SUMMARY_RC != 0 ]]; then
  echo "device-check: $FAILED step(s) failed (see summary.txt, device-check.log and logs/ in results.tar.gz under $OUT_DIR)" >&2
  exit 1
fi
echo "device-check: every step passed; results in $OUT_DIR"
