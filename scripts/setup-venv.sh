#!/usr/bin/env bash
# Create .venv (if missing) and install netflowgen with its test dependencies into it.
# Sourced by demo.sh and test.sh; safe to run again (pip skips what is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# LightGBM's wheel links the system OpenMP runtime (Debian package libgomp1), which a minimal
# machine may lack; the demo and the tests both use LightGBM.
if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1'; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libgomp1 >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned exactly: a looser spec would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
