#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, tests (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff check";  .venv/bin/ruff check selfsup tests bench conftest.py
echo "== ruff format"; .venv/bin/ruff format --check selfsup tests bench conftest.py
echo "== mypy";        .venv/bin/mypy
echo "== pytest";      .venv/bin/python -m pytest -q "$@"
