#!/usr/bin/env bash
# Issue #12: what pre-training buys with few labels, on Fashion-MNIST, for the demo's SimCLR and
# BYOL: k-NN and linear probe (1% / 10% / 100% labels), fine-tuning (1% / 10% / 100%) beside the
# same network trained from scratch, and transfer to scikit-learn's digits, every number beside
# its baselines. Run after scripts/setup.sh on a quiet machine; about 45 minutes on 2 CPU cores.
# Fine-tuning is scaled down for CPUs (recorded in each run's eval.json under "settings").
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/selfsup
ROOT=${ROOT:-runs/issue12}
FT_1=(eval.finetune_epochs=60)                            # SimCLR's 1% recipe length
FT_10=(eval.finetune_epochs=10)                           # 30 in the recipe
FT_100=(eval.finetune_epochs=2 "eval.finetune_lrs=[0.05]") # one lr: nothing chosen, stated

for method in simclr byol; do
  run=$ROOT/$method
  if [ "$method" = simclr ]; then cfg=(--demo); else cfg=(-c configs/byol_fashion_mnist.yaml); fi
  [ -f "$run/encoder.safetensors" ] || /usr/bin/time -f "pretrain $method: %e s" \
    $S pretrain "${cfg[@]}" --run-dir "$run"
  /usr/bin/time -f "eval all $method: %e s" $S eval all "$run" --labels 1%,10%,100%
  # key=value overrides go before the flags (argparse)
  /usr/bin/time -f "finetune 1pct $method: %e s" $S eval finetune "$run" "${FT_1[@]}" --labels 1%
  /usr/bin/time -f "finetune 10pct $method: %e s" \
    $S eval finetune "$run" "${FT_10[@]}" --labels 10%
  /usr/bin/time -f "finetune 100pct $method: %e s" \
    $S eval finetune "$run" "${FT_100[@]}" --labels 100%
  /usr/bin/time -f "transfer $method: %e s" $S eval all "$run" --data digits
  /usr/bin/time -f "transfer finetune $method: %e s" \
    $S eval finetune "$run" eval.finetune_epochs=20 --data digits --labels 10%,100%
done
