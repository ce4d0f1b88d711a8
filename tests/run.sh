#!/usr/bin/env bash
# Run every cmocka test binary in BUILD_DIR/tests from the repository root.
# Exit non-zero if any fails.  VALGRIND=1 runs each under valgrind.
set -u
dir=${1:-build}
export PLANSIM_BIN="$dir/plansim"
export PLANSIM_QUIET=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=""
for t in "$dir"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $t"
  if [ "${VALGRIND:-0}" = 1 ]; then
    valgrind -q --suppressions=tests/valgrind.supp --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$t" || failed="$failed $t"
  else
    "$t" || failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "FAILED:$failed" >&2
  exit 1
fi
