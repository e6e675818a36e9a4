#!/usr/bin/env bash
# Sets up .venv with the test requirements, then runs ruff, mypy and the whole test suite.
# Arguments go to pytest: `bash scripts/test.sh -m "not slow"` runs the unit tests alone, in seconds.
# The suite starts (and stops) its own embedded Valkey; the browser test needs /usr/bin/chromium
# (Debian: apt-get install chromium) and is skipped without it unless CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
