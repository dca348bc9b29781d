#!/usr/bin/env bash
# Set everything up on a fresh machine and run the checks (the README's test command):
# install the package with its test extras at the pinned versions, lint, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
python3 -m ruff check repyolo tests benchmarks scripts
python3 -m pytest -q -p no:cacheprovider "$@"
