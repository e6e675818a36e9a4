#!/usr/bin/env bash
# Creates .venv and installs the requirements and clipsearch itself (editable) into it; does nothing when
# neither the requirements nor pyproject.toml have changed.
# Usage: bash scripts/setup.sh [requirements-file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)"
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$(basename "$requirements")"
wanted="$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing $requirements into .venv (torch is large: the first time takes a few minutes)"
  .venv/bin/python -m pip install --quiet -r "$requirements"
  .venv/bin/python -m pip install --quiet --no-deps --editable .
  echo "$wanted" > "$stamp"
fi
