#!/usr/bin/env bash
# The GPU check (issue 3), in one call on a machine with an NVIDIA GPU:
# build with CUDA (or unpack a build carried from the development machine),
# run the GPU tests (every CUDA kernel and library wrapper against a float64
# CPU reference on fresh random inputs; the CUPTI tracer on real kernels),
# profile the standard suite — and the GPU-sized suite while time remains —
# with `plansim profile run --device cuda`, then (time permitting) replay a
# few small pipeline plans on CUDA streams (`plansim pipeline replay --device
# cuda --json`: predicted vs measured iteration, $OUT/replay_cuda.jsonl), and
# leave the databases and one log in one folder: $OUT if set, else
# results/gpu-check/.  A short table comes last.  Exit status 0 only if
# every step passed.
#
#   scripts/gpu-check.sh --prepare   on the development machine: build with
#                                    CUDA and pack build/gpu-bundle.tgz (the
#                                    binaries, the test programs and the
#                                    non-system shared libraries they need)
#   scripts/gpu-check.sh             on the GPU machine
#
# Why a bundle: the lent GPU machines have the CUDA toolkit but not HDF5,
# jansson, GSL, OpenBLAS or cmocka, and cannot install anything.  When those
# are found (pkg-config), the script builds in place instead.  The CUDA
# libraries themselves (cudart, cuBLAS, cuBLASLt, CUPTI, cuDNN) come from the
# GPU machine; libcupti and libcudart travel in the bundle as a fallback.
#
# Environment: OUT (output folder), GPU_CHECK_BUDGET_S (wall-clock budget,
# default 400; later steps are skipped rather than overrun it),
# GPU_CHECK_SUITES (default "standard gpu"), GPU_CHECK_REPLAY_PLANS (default
# "chain_1f1b fj_1f1b cs_gp"; "" for none), GPU_CHECK_USE_BUNDLE=1 (use the
# bundle even where the dependencies are installed).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUNDLE=build/gpu-bundle.tgz
GPU_TESTS="test_kernels_cuda test_cupti test_rt_cuda test_gpt test_replay_cuda"
# Plans replayed with `plansim pipeline replay --device cuda` last (tests/fixtures/replay_cuda/).
REPLAY_PLANS=${GPU_CHECK_REPLAY_PLANS:-"chain_1f1b fj_1f1b cs_gp"}

die() {
  echo "gpu-check: error: $*" >&2
  exit 1
}

# Identifies the sources a build came from (no git on the GPU machine).
src_hash() {
  find common kernels profile costmodel sim real experiments tests -type f \
    \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) 2>/dev/null | LC_ALL=C sort |
    xargs cat Makefile | sha256sum | cut -c1-16
}

find_nvcc() {
  command -v nvcc 2>/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; }
}

# ------------------------------------------------------------------ --prepare

prepare() {
  local nvcc
  nvcc=$(find_nvcc) || die "--prepare needs nvcc (a CUDA build)"
  local cuda_lib
  cuda_lib="$(dirname "$(dirname "$nvcc")")/lib64"
  local targets="all"
  for t in $GPU_TESTS; do targets="$targets build/tests/$t"; done
  make -j"$(nproc)" $targets || die "build failed"
  # The CLI's CUDA path is chosen at compile time (__has_include): an
  # object built before profile/cuda_backend.h existed must be rebuilt.
  if build/plansim profile run --device cuda --suite profile/suites/quick.json \
      -o /tmp/gpu-check-probe.h5 --force 2>&1 | grep -q "built without CUDA"; then
    rm -f build/obj/experiments/cli_profile.o
    make -j"$(nproc)" $targets || die "build failed"
  fi
  build/plansim profile run --device cuda --suite profile/suites/quick.json \
    -o /tmp/gpu-check-probe.h5 --force 2>&1 | grep -q "built without CUDA" &&
    die "build/plansim has no CUDA profiling path"

  local stage=build/gpu-bundle
  rm -rf "$stage"
  mkdir -p "$stage/bin/tests" "$stage/lib" "$stage/cuda-fallback"
  cp build/plansim "$stage/bin/"
  for t in $GPU_TESTS; do cp "build/tests/$t" "$stage/bin/tests/"; done
  strip --strip-debug "$stage/bin/plansim" "$stage/bin/tests/"*
  # Every shared library the programs load, except the C library's own,
  # the C++ runtime (the GPU machine's is newer) and CUDA's.
  local libs
  libs=$(for b in "$stage/bin/plansim" "$stage/bin/tests/"*; do ldd "$b"; done |
    awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64)\.so|libstdc\+\+|libgcc_s|libcudart|libcublas|libcupti|libcudnn|libnvrtc|libnvJitLink')
  for l in $libs; do cp -L "$l" "$stage/lib/" || die "cannot copy $l"; done
  for l in libcupti.so.13 libcudart.so.13; do
    [ -e "$cuda_lib/$l" ] && cp -L "$cuda_lib/$l" "$stage/cuda-fallback/"
  done
  {
    echo "src_hash=$(src_hash)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "git=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)"
    echo "nvcc=$("$nvcc" --version | grep -o 'V[0-9][0-9.]*' | head -1)"
  } >"$stage/STAMP"
  tar -czf "$BUNDLE" -C build gpu-bundle || die "tar failed"
  rm -rf "$stage"
  echo "gpu-check: packed $BUNDLE ($(du -h "$BUNDLE" | cut -f1), $(echo "$libs" | wc -w) libraries)"
  echo "gpu-check: on the GPU machine run:  bash scripts/gpu-check.sh   (carry: $BUNDLE)"
}

# ------------------------------------------------------------------ the check

OUT=${OUT:-$ROOT/results/gpu-check}
BUDGET=${GPU_CHECK_BUDGET_S:-400}
SUITES=${GPU_CHECK_SUITES:-standard gpu}
T0=$(date +%s)
ROWS=()
FAILED=0
BIN=""
LIBPATH=""
CUDNN=""

left() { echo $((BUDGET - ($(date +%s) - T0))); }
row() { # step status seconds note
  ROWS+=("$(printf '%-22s %-5s %6s  %s' "$1" "$2" "$3" "$4")")
  [ "$2" = FAIL ] && FAILED=1
  return 0
}
section() { printf '\n==== %s (t=%ss)\n' "$*" "$(($(date +%s) - T0))"; }
run_env() { env LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${CUDNN:+PLANSIM_CUDNN=$CUDNN} "$@"; }

machine() {
  section "machine"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,persistence_mode,compute_mode \
      --format=csv || true
  else
    echo "nvidia-smi not found"
  fi
  uname -srm
  grep -E '^(PRETTY_NAME)=' /etc/os-release 2>/dev/null || true
  echo "nproc: $(nproc)"
  local nvcc
  nvcc=$(find_nvcc) && "$nvcc" --version | tail -2
  ldconfig -p 2>/dev/null | grep -E 'libcudnn\.so\.9 |libcupti\.so\.13 |libcublas\.so\.13 ' || true
}

# libcudnn.so.9: loaded at run time by plansim (PLANSIM_CUDNN).
find_cudnn() {
  local p
  p=$(ldconfig -p 2>/dev/null | awk '/libcudnn\.so\.9 /{print $NF; exit}')
  [ -z "$p" ] && for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcudnn.so.9" ] && { p="$d/libcudnn.so.9"; break; }
  done
  [ -z "$p" ] && p=$(find /opt /usr/local/lib /usr/lib/python3* -maxdepth 8 -name libcudnn.so.9 2>/dev/null | head -1)
  echo "$p"
}

# Directories that hold each library the programs cannot find yet.
resolve_libs() {
  local missing l d
  missing=$(for b in "$BIN/plansim" "$BIN/tests/"*; do run_env ldd "$b"; done 2>/dev/null |
    awk '/not found/{print $1}' | sort -u)
  for l in $missing; do
    d=""
    for c in "$BIN/cuda-fallback" /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/extras/CUPTI/lib64; do
      [ -e "$c/$l" ] && { d=$c; break; }
    done
    [ -z "$d" ] && d=$(dirname "$(find /usr/local /opt /usr/lib/python3* -maxdepth 9 -name "$l" 2>/dev/null | head -1)" 2>/dev/null)
    if [ -n "$d" ] && [ "$d" != . ]; then
      echo "  $l -> $d"
      case ":$LIBPATH:" in *":$d:"*) ;; *) LIBPATH="${LIBPATH:+$LIBPATH:}$d" ;; esac
    fi
  done
  missing=$(for b in "$BIN/plansim" "$BIN/tests/"*; do run_env ldd "$b"; done 2>/dev/null |
    awk '/not found/{print $1}' | sort -u)
  [ -z "$missing" ] || { echo "  still missing: $missing"; return 1; }
}

# With the carried bundle nothing is compiled here: compile the CUDA sources
# with this machine's nvcc for its own architecture, to show they build.
nvcc_check() {
  section "nvcc compile check"
  local nvcc=$1 t pids="" f ok=1 arch
  t=$(date +%s)
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  [ -z "$arch" ] && arch=90
  mkdir -p /tmp/plansim-nvcc
  for f in $(find kernels profile real -name '*.cu' 2>/dev/null | sort); do
    "$nvcc" -O2 -std=c++17 -I. -Xcompiler -Wall,-fPIC -gencode "arch=compute_$arch,code=sm_$arch" \
      -c "$f" -o "/tmp/plansim-nvcc/$(basename "$f").o" &
    pids="$pids $!"
  done
  for p in $pids; do wait "$p" || ok=0; done
  if [ $ok = 1 ]; then
    row "nvcc sm_$arch" PASS $(($(date +%s) - t)) "$(find kernels profile real -name '*.cu' | wc -l) CUDA sources compile with nvcc $("$nvcc" --version | grep -o 'V[0-9][0-9.]*' | head -1)"
  else
    row "nvcc sm_$arch" FAIL $(($(date +%s) - t)) "a CUDA source does not compile here (see log)"
  fi
}

build_or_unpack() {
  section "build"
  local t nvcc
  t=$(date +%s)
  nvcc=$(find_nvcc)
  if [ -z "${GPU_CHECK_USE_BUNDLE:-}" ] && [ -n "$nvcc" ] && command -v pkg-config >/dev/null &&
    pkg-config --exists hdf5 jansson gsl cmocka openblas zlib 2>/dev/null; then
    local targets="all"
    for x in $GPU_TESTS; do targets="$targets build/tests/$x"; done
    local lim=$(($(left) - 60))
    [ "$lim" -lt 60 ] && lim=60
    if timeout "$lim" make -j"$(nproc)" $targets; then
      BIN=$ROOT/build
      row build PASS $(($(date +%s) - t)) "built here with nvcc $("$nvcc" --version | grep -o 'V[0-9][0-9.]*' | head -1)"
    else
      row build FAIL $(($(date +%s) - t)) "make failed"
      return 1
    fi
  elif [ -f "$BUNDLE" ]; then
    local d=/tmp/plansim-gpu-check
    rm -rf "$d" && mkdir -p "$d" && tar -xzf "$BUNDLE" -C "$d" || {
      row build FAIL $(($(date +%s) - t)) "cannot unpack $BUNDLE"
      return 1
    }
    BIN=$d/gpu-bundle
    mkdir -p "$BIN/tests" && mv "$BIN/bin/tests/"* "$BIN/tests/" && mv "$BIN/bin/plansim" "$BIN/plansim"
    LIBPATH=$BIN/lib
    cat "$BIN/STAMP"
    local want have note
    want=$(awk -F= '/^src_hash=/{print $2}' "$BIN/STAMP")
    have=$(src_hash)
    note="carried bundle ($(awk -F= '/^git=/{print $2}' "$BIN/STAMP"))"
    if [ "$want" != "$have" ]; then
      echo "gpu-check: WARNING: the bundle was built from other sources ($want) than this tree ($have)"
      note="$note, sources DIFFER from this tree"
    fi
    echo "deps for a local build not found; using the bundle"
    row build PASS $(($(date +%s) - t)) "$note"
    [ -n "$nvcc" ] && [ "${GPU_CHECK_NVCC:-1}" = 1 ] && nvcc_check "$nvcc"
  else
    row build FAIL $(($(date +%s) - t)) "no HDF5/jansson/GSL/cmocka/OpenBLAS here and no $BUNDLE (run --prepare and carry it)"
    return 1
  fi
  CUDNN=$(find_cudnn)
  if [ -n "$CUDNN" ]; then
    echo "cuDNN: $CUDNN"
    LIBPATH="${LIBPATH:+$LIBPATH:}$(dirname "$CUDNN")"
  else
    echo "cuDNN: not found (conv2d will be skipped)"
  fi
  resolve_libs || { row libraries FAIL 0 "shared libraries missing (see log)"; return 1; }
  echo "LD_LIBRARY_PATH for plansim: ${LIBPATH:-(none)}"
  run_env "$BIN/plansim" --version 2>/dev/null || true
}

run_tests() {
  for x in $GPU_TESTS; do
    section "test $x"
    local t lim rc out
    t=$(date +%s)
    lim=$(($(left) - 60))
    [ "$lim" -gt 300 ] && lim=300
    if [ "$lim" -lt 20 ]; then
      row "$x" SKIP 0 "out of time"
      continue
    fi
    out=$(mktemp)
    (cd "$ROOT" && PLANSIM_QUIET=1 timeout --kill-after=10 "$lim" env \
      LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${CUDNN:+PLANSIM_CUDNN=$CUDNN} \
      "$BIN/tests/$x") >"$out" 2>&1
    rc=$?
    cat "$out"
    local passed skipped failed skipnames
    passed=$(grep -o '\[  PASSED  \] [0-9]*' "$out" | awk '{print $NF}' | tail -1)
    skipped=$(grep -o '\[  SKIPPED \] [0-9]* test' "$out" | awk '{print $(NF-1)}' | tail -1)
    failed=$(grep -o '\[  FAILED  \] [0-9]* test' "$out" | awk '{print $(NF-1)}' | tail -1)
    skipnames=$(grep -E '^\[  SKIPPED \] test_' "$out" | awk '{print $NF}' | sort -u | tr '\n' ' ')
    local note="${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped${skipnames:+ ($skipnames)}"
    if grep -q "no usable GPU" "$out"; then
      row "$x" FAIL $(($(date +%s) - t)) "GPU NOT USABLE: $(grep -m1 'no usable GPU' "$out" | cut -c1-120)"
    elif [ $rc -ne 0 ]; then
      [ $rc -eq 124 ] && note="TIMED OUT after ${lim}s; $note"
      row "$x" FAIL $(($(date +%s) - t)) "rc=$rc; $note"
    else
      row "$x" PASS $(($(date +%s) - t)) "$note"
    fi
    rm -f "$out"
  done
}

run_profiles() {
  for s in $SUITES; do
    local path=profile/suites/$s.json t lim rc db=$OUT/cuda_$s.h5
    t=$(date +%s)
    section "profile $s"
    if [ ! -f "$path" ]; then
      row "profile $s" SKIP 0 "$path not found"
      continue
    fi
    lim=$(($(left) - 40))
    if [ "$lim" -lt 45 ]; then
      row "profile $s" SKIP 0 "out of time (${lim}s left)"
      continue
    fi
    (cd "$ROOT" && timeout --kill-after=10 "$lim" env \
      LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${CUDNN:+PLANSIM_CUDNN=$CUDNN} \
      "$BIN/plansim" profile run --device cuda --suite "$path" -o "$db" --force --json)
    rc=$?
    if [ $rc -eq 0 ] && [ -f "$db" ]; then
      row "profile $s" PASS $(($(date +%s) - t)) "$(basename "$db") ($(du -h "$db" | cut -f1))"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      row "profile $s" FAIL $(($(date +%s) - t)) "timed out after ${lim}s (suite too big for the budget?)"
    else
      row "profile $s" FAIL $(($(date +%s) - t)) "rc=$rc (see log)"
    fi
  done
}

# Pipeline replays on CUDA streams: one JSON line per plan in
# $OUT/replay_cuda.jsonl, a row per plan (predicted, measured, error).
run_replays() {
  local p t lim rc js plan
  [ -z "$REPLAY_PLANS" ] && return 0
  section "pipeline replay --device cuda"
  : >"$OUT/replay_cuda.jsonl"
  for p in $REPLAY_PLANS; do
    plan=tests/fixtures/replay_cuda/$p.json
    t=$(date +%s)
    if [ ! -f "$ROOT/$plan" ]; then
      row "replay $p" SKIP 0 "$plan not found"
      continue
    fi
    lim=$(($(left) - 20))
    if [ "$lim" -lt 30 ]; then
      row "replay $p" SKIP 0 "out of time (${lim}s left)"
      continue
    fi
    [ "$lim" -gt 120 ] && lim=120
    js=$(mktemp)
    (cd "$ROOT" && PLANSIM_QUIET=1 timeout --kill-after=10 "$lim" env \
      LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ${CUDNN:+PLANSIM_CUDNN=$CUDNN} \
      "$BIN/plansim" pipeline replay --plan "$plan" --device cuda --iterations 10 --warmup 3 \
      --json) >"$js" 2>"$js.err"
    rc=$?
    cat "$js.err"
    if [ $rc -eq 0 ] && python3 - "$js" "$OUT/replay_cuda.jsonl" >"$js.note" 2>>"$js.err" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
with open(sys.argv[2], "a") as f:
    f.write(json.dumps(d, sort_keys=True) + "\n")
print(f"predicted {d['predicted_iteration_s']*1e3:.3f} ms, measured {d['measured_iteration_s']*1e3:.3f} ms, "
      f"error {100*d['rel_err']:+.1f}%; {d['workers']} streams, link {d['link_alpha_s']*1e6:.1f} us, "
      f"loss {d['loss_first']:.4g}->{d['loss_last']:.4g}")
PY
    then
      cat "$js.note"
      row "replay $p" PASS $(($(date +%s) - t)) "$(cat "$js.note")"
    elif [ $rc -eq 0 ]; then
      tr -d '\n' <"$js" >>"$OUT/replay_cuda.jsonl" && echo >>"$OUT/replay_cuda.jsonl"
      row "replay $p" PASS $(($(date +%s) - t)) "JSON in replay_cuda.jsonl (no python3 summary)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      row "replay $p" FAIL $(($(date +%s) - t)) "timed out after ${lim}s"
    else
      row "replay $p" FAIL $(($(date +%s) - t)) "rc=$rc: $(tail -1 "$js.err" | cut -c1-100)"
    fi
    rm -f "$js" "$js.err" "$js.note"
  done
}

# What the databases hold, read with h5py (the GPU image's python3 has it).
db_summary() {
  section "databases"
  local dbs
  dbs=$(ls "$OUT"/cuda_*.h5 2>/dev/null)
  [ -z "$dbs" ] && { echo "no database written"; return 0; }
  python3 - $dbs <<'PY' || echo "(h5py summary failed)"
import sys
try:
    import h5py, numpy as np
except Exception as ex:
    print("h5py not available:", ex); sys.exit(0)
def s(x): return x.decode() if isinstance(x, bytes) else str(x)
for path in sys.argv[1:]:
    f = h5py.File(path, "r")
    a = f.attrs
    ops = f["ops"][:]
    pk = {s(r["name"]): float(r["value"]) for r in f["device/peaks"][:]}
    timers = {}
    for t in ops["timer"]: timers[s(t)] = timers.get(s(t), 0) + 1
    nk = f["kernels"].shape[0] if "kernels" in f else 0
    print(f"{path}: {s(a['device_name'])}, {len(ops)} ops, timers {timers}, {nk} kernel records, "
          f"CUPTI dropped {int(a.get('cupti_dropped_records', -1))}")
    def g(n, sc=1e12): return f"{pk[n]/sc:.1f}" if n in pk else "-"
    print(f"  peaks TFLOP/s: fp32 {g('gemm_fp32_flops_per_s')}  tf32 {g('gemm_tf32_flops_per_s')}  "
          f"fp16 {g('gemm_fp16_flops_per_s')}  bf16 {g('gemm_bf16_flops_per_s')}  "
          f"fp64 {g('gemm_fp64_flops_per_s')}  int8 TOP/s {g('gemm_int8_ops_per_s')}")
    print(f"  peaks TB/s: d2d {g('memcpy_bytes_per_s')} (theory {g('mem_bw_theoretical_bytes_per_s')})  "
          f"h2d {g('memcpy_h2d_bytes_per_s')}  d2h {g('memcpy_d2h_bytes_per_s')};  "
          f"launch {pk.get('launch_overhead_s', float('nan'))*1e6:.1f} us;  SMs {int(pk.get('sms', 0))}")
    if "tracer_overhead" in f and f["tracer_overhead"].shape[0]:
        r = f["tracer_overhead"]["overhead_ratio"][:]
        r = r[np.isfinite(r)]
        print(f"  tracer overhead (traced/untraced event medians): median {np.median(r):.3f}x, "
              f"p10 {np.percentile(r, 10):.3f}x, p90 {np.percentile(r, 90):.3f}x")
    cu = ops[[s(t) == "cupti" for t in ops["timer"]]]
    if len(cu):
        q = cu["event_median_s"] / cu["median_s"]
        print(f"  events / CUPTI span: median {np.median(q):.3f}x, p10 {np.percentile(q, 10):.3f}x, "
              f"p90 {np.percentile(q, 90):.3f}x;  repeat noise (p90-p10)/median: "
              f"median {np.median((cu['p90_s']-cu['p10_s'])/cu['median_s']):.3f}")
    kinds = {}
    for r in ops:
        k = s(r["kind"]) + "/" + s(r["backend"])
        kinds[k] = kinds.get(k, 0) + 1
    print("  rows:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
PY
}

check() {
  mkdir -p "$OUT" || die "cannot create $OUT"
  echo "gpu-check: output in $OUT, budget ${BUDGET}s, suites: $SUITES"
  machine
  if build_or_unpack; then
    run_tests
    run_profiles
    run_replays
  fi
  db_summary
  section "summary"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>/dev/null |
    sed 's/^/after the run: sm, mem clock, temperature, power: /' || true
  echo "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
  printf '%-22s %-5s %6s  %s\n' step state secs note
  for r in "${ROWS[@]}"; do echo "$r"; done
  printf '%-22s %-5s %6s\n' total "$([ $FAILED = 0 ] && echo PASS || echo FAIL)" "$(($(date +%s) - T0))"
  return $FAILED
}

case "${1:-}" in
--prepare) prepare ;;
"")
  mkdir -p "$OUT" || die "cannot create $OUT"
  check 2>&1 | tee "$OUT/gpu-check.log"
  exit "${PIPESTATUS[0]}"
  ;;
-h | --help) sed -n '2,28p' "$0" ;;
*) die "unknown argument '$1' (--prepare, or none)" ;;
esac
