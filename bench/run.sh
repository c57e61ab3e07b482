#!/usr/bin/env bash
# Re-run the recorded benchmarks (after scripts/setup.sh); appends to bench/RESULTS.md.
# Benchmarks, never timed tests, are how selfsup measures speed. Run on a quiet machine (nothing
# else running): roughly 15 minutes on the 2-core reference machine, torch.compile included.
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/selfsup
OUT=${OUT:-bench/RESULTS.md}
JSON=${JSON:-bench/results.jsonl}
# Issue #6 setting: CPU-sized ResNet-18 x0.25 (MAE: vit_micro) at 32x32, global batch 256.
COMMON=(--batch-size 256 --steps 20 --write "$OUT" --json "$JSON")

# Each method: views, loader, model step, backbone fwd+bwd, end to end, FLOPs, peak memory.
for method in simclr moco mocov3 byol dino mae; do
  $B bench -c "configs/${method}_fashion_mnist.yaml" "${COMMON[@]}" views.size=32
done

# RGB images (CIFAR-like noise) with the full colour recipe, against per-sample
# torchvision.transforms.v2 views in a 2-worker DataLoader on the same images.
$B bench --synthetic 3x32x32 --compare-torchvision "${COMMON[@]}" views.size=32
$B bench -c configs/byol_fashion_mnist.yaml --synthetic 3x32x32 --compare-torchvision \
  "${COMMON[@]}" views.size=32

# A folder of image files decoded by 2 DataLoader workers, views batched on the device.
$B bench --as-files "${COMMON[@]}" views.size=32 data.num_workers=2

# Precision and torch.compile on this CPU (the demo config; compare with the first line).
$B bench "${COMMON[@]}" views.size=32 train.precision=fp32
$B bench --compile "${COMMON[@]}" views.size=32

# Step cost against the global batch size (NT-Xent's [2B, 2B] logits), and MoCo v3's loss.
$B bench --scaling 64,128,256,512 --steps 5 --write "$OUT" --json "$JSON" views.size=32
$B bench -c configs/mocov3_fashion_mnist.yaml --scaling 64,128,256,512 --steps 5 \
  --write "$OUT" --json "$JSON" views.size=32

# k-NN cost against the bank size: 60k x 10k (Fashion-MNIST) up to a 1M-row bank.
$B bench --knn --bank 60000,250000,1000000 --queries 10000 --dim 128 --write "$OUT" --json "$JSON"
