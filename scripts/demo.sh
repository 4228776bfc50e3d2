#!/usr/bin/env bash
# The main job on the built-in default: set up, then ingest and inspect the shipped sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/netflowgen demo "$@"
