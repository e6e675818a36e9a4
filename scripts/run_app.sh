#!/usr/bin/env bash
# Sets up .venv if needed and starts the search page. Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
exec .venv/bin/streamlit run streamlit_app.py "$@"
