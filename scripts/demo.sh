#!/usr/bin/env bash
# The main job on the built-in default: set up, then the whole job on simulated (SYNTHETIC) traffic:
# simulate, ingest, series, pre-train, fine-tune with a few labels, baselines, report.
# Runs from any working directory: the set-up happens in the repository, and the demo's output
# (--out, default runs/demo) is relative to where you are, as with any command.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/scripts/setup-venv.sh"
exec "$repo/.venv/bin/netflowgen" demo "$@"
