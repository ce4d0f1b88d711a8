#!/usr/bin/env bash
# Install the Debian packages plansim needs, only those missing.  Idempotent
# and quick when nothing is missing (one dpkg-query); says clearly why it
# cannot install (not root, no apt, no network).
set -u
PKGS="build-essential pkg-config libgsl-dev libhdf5-dev hdf5-tools libcmocka-dev \
gnuplot-nox libjansson-dev libopenblas-dev zlib1g-dev \
dataset-fashion-mnist fortunes fortunes-min"
[ -n "${PLANSIM_EXTRA_PKGS:-}" ] && PKGS="$PKGS $PLANSIM_EXTRA_PKGS"

missing=""
for p in $PKGS; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
  case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing missing Debian packages:$missing" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: error: apt-get not found; install these packages by hand:$missing" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "deps: error: not root and no password-less sudo; run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends $missing >/tmp/plansim-deps.log 2>&1; then
  # The package lists may be stale or absent on a fresh machine.
  if ! $SUDO apt-get update -q >>/tmp/plansim-deps.log 2>&1; then
    echo "deps: error: apt-get update failed (no network?); see /tmp/plansim-deps.log" >&2
    exit 1
  fi
  if ! $SUDO apt-get install -y -q --no-install-recommends $missing >>/tmp/plansim-deps.log 2>&1; then
    echo "deps: error: apt-get install failed; see /tmp/plansim-deps.log" >&2
    tail -5 /tmp/plansim-deps.log >&2
    exit 1
  fi
fi
echo "deps: done" >&2
