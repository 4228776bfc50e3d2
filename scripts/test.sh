#!/usr/bin/env bash
# The test suite: installs the system programs the integration tests use (nfdump, softflowd, fastnetmon,
# chromium for the live status page; Debian packages), sets up .venv, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nfdump >/dev/null 2>&1 && command -v nfpcapd >/dev/null 2>&1 || need+=(nfdump)
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# FastNetMon for the side-by-side benchmark's config check (tests/detect/test_live_vs_fastnetmon.py).
command -v fastnetmon >/dev/null 2>&1 || [ -x /usr/sbin/fastnetmon ] || need+=(fastnetmon)
# Java for the Spark tests (`--engine spark`, the [spark] extra).
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup-venv.sh
.venv/bin/python -m pip install --quiet -e ".[spark]"
# Installed above: a Spark test that would skip for want of pyspark or Java must fail instead.
export NETFLOWGEN_REQUIRE_SPARK=1
exec .venv/bin/python -m pytest "$@"
