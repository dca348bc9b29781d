#!/usr/bin/env bash
# Set everything up on a fresh machine and run the checks (the README's test command):
# install the package with its test extras at the pinned versions, lint, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
python3 -m ruff check repyolo tests benchmarks scripts
# one test process per core, at most 4 (each test runs one intra-op thread, tests/conftest.py; on 2 cores
# 5.9 instead of 9.6 min); a module's tests stay in one process (--dist loadscope)
workers=$(python3 -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(); print(max(1, min(4, n or 1)))")
python3 -m pytest -q -p no:cacheprovider -n "$workers" --dist loadscope --no-loadscope-reorder "$@"
