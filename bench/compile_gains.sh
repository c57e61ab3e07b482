#!/usr/bin/env bash
# The measurements behind train.compile=auto (selfsup/train/compile_policy.py, MEASURED): for
# each preset, `selfsup bench` eager and with --compile (inductor, empty caches), 10 timed steps
# after 3. speedup = compiled model-step img/s / eager; compile_s = the compiled bench's first
# call (it also compiles the encoder alone, so it errs high). Quiet machine; ~2 min a preset.
#   bash bench/compile_gains.sh simclr mocov3 byol ...   (default: every Fashion-MNIST preset)
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/selfsup
JSON=${JSON:-bench/compile_gains.jsonl}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(simclr moco mocov3 byol simsiam barlow vicreg swav dino dino_vit mae rotation jigsaw)
for p in "${presets[@]}"; do
  $B bench -c "configs/${p}_fashion_mnist.yaml" --steps 10 --warmup 3 --json "$JSON"
  cache=$(mktemp -d)
  TORCHINDUCTOR_CACHE_DIR=$cache $B bench -c "configs/${p}_fashion_mnist.yaml" --compile \
    --steps 10 --warmup 3 --json "$JSON"
  rm -rf "$cache"
done
