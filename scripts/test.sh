#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, tests (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff check";  .venv/bin/ruff check selfsup tests bench conftest.py
echo "== ruff format"; .venv/bin/ruff format --check selfsup tests bench conftest.py
echo "== mypy";        .venv/bin/mypy
# One pytest-xdist worker per core, at most 4 (each holds its own torch; conftest.py gives each
# worker its share of the threads): on the 2-core AVX2 EPYC (fp32)
# 16 min in one process, 8-9 min with two workers.
workers=$(nproc); [ "$workers" -gt 4 ] && workers=4
echo "== pytest";      .venv/bin/python -m pytest -q -n "$workers" "$@"
