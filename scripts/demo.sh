#!/usr/bin/env bash
# `make demo`: run the default experiment and say where everything is.
# Safe to run again and again: it replaces its own previous result.
set -eu
cd "$(dirname "$0")/.."
./build/plansim run experiments/quickstart.json --force
echo
echo "plansim binary:  $(pwd)/build/plansim   (also ./plansim; 'make install PREFIX=...' puts it on PATH)"
echo "results:         results/quickstart.h5   ('./plansim info results/quickstart.h5')"
echo "figures:         results/quickstart/*.png, *.svg"
echo "timelines:       results/quickstart/traces/*.json   (open in https://ui.perfetto.dev)"
if [ -w /usr/local/bin ] && { [ ! -e /usr/local/bin/plansim ] || [ -L /usr/local/bin/plansim ]; }; then
  ln -sf "$(pwd)/build/plansim" /usr/local/bin/plansim
  echo "linked:          /usr/local/bin/plansim -> $(pwd)/build/plansim"
fi
