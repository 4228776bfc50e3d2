#!/usr/bin/env bash
# The test suite: installs the system programs the integration tests use (nfdump, softflowd,
# chromium for the live status page; Debian packages), sets up .venv, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nfdump >/dev/null 2>&1 && command -v nfpcapd >/dev/null 2>&1 || need+=(nfdump)
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup-venv.sh
exec .venv/bin/python -m pytest "$@"
