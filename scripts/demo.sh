#!/usr/bin/env bash
# The main job on the built-in default: set up, then the whole job on simulated (SYNTHETIC) traffic:
# simulate, ingest, series, pre-train, fine-tune with a few labels, baselines, report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/netflowgen demo "$@"
