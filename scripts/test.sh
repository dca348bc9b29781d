#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[dev]"
python3 -m pytest -q -p no:cacheprovider "$@"
