#!/usr/bin/env bash
# Set up a fresh machine for wae: the embedded dataset (Debian's dataset-fashion-mnist, when
# apt is available) and a virtual environment in .venv with the package and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST" ] && [ -z "${WAE_DATA_DIR:-}" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
echo "setup: installing wae and its dependencies into .venv (torch takes a minute or two)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,openvino]"
echo "setup: done. Activate with: source .venv/bin/activate"
