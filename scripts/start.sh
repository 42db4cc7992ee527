#!/usr/bin/env bash
# Set up (first run only) and start Optimus on the embedded defaults: http://localhost:8501
# Extra arguments go to `streamlit run` (e.g. --server.port 9000 --server.address 0.0.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export MEM0_TELEMETRY=False HF_HUB_OFFLINE=1
exec .venv/bin/streamlit run app.py --server.address "${STREAMLIT_SERVER_ADDRESS:-127.0.0.1}" "$@"
