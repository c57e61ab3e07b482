#!/usr/bin/env bash
# Re-run the recorded benchmarks (after scripts/setup.sh); appends to bench/RESULTS.md.
# Benchmarks, never timed tests, are how selfsup measures speed. Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/selfsup
# Throughput: view pipeline alone, model step alone, end to end (demo config: ResNet-18 x0.25).
$B bench --batch-size 256 --steps 20 --write bench/RESULTS.md
$B bench --batch-size 256 --steps 20 --write bench/RESULTS.md views.size=32
$B bench --batch-size 256 --steps 20 --write bench/RESULTS.md views.size=32 train.precision=fp32
