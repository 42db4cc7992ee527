#!/usr/bin/env bash
# Set up everything the tests need (venv, pinned packages, Debian's postgresql) and run the
# whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
export MEM0_TELEMETRY=False HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
