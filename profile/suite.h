/* Microbenchmark suites: a JSON file declaring, per op kind, a grid of
 * shapes to measure and how (warm-up runs, repeats, minimum time per
 * measurement).  Loading expands every grid into a flat list of ops that
 * any backend (CPU, CUDA) runs in order.
 *
 *   {
 *     "name": "quick", "description": "...",
 *     "warmup": 1,          runs before the first measurement (default 1)
 *     "repeats": 5,         measurements per op → median/p10/p90 (default 5)
 *     "min_time_s": 0.002,  one measurement loops the op until this much
 *                           time has passed; time = elapsed / iterations
 *     "peaks": {"gemm_n": 2048, "memcpy_bytes": 268435456},
 *     "ops": [
 *       {"kind": "gemm", "dtype": ["fp32", "fp64"], "variant": "nn",
 *        "grid": {"m": [64, 128], "n": {"log": [64, 2048, 6]}, "k": 256},
 *        "max_flops": 4e9},
 *       {"kind": "attention", "variant": ["causal", "none"],
 *        "grid": {"b": 1, "h": 8, "sq": [64, 256], "skv": "sq", "d": 64}},
 *       {"kind": "gemm", "grid": {"m": {"log": [16, 4096]}, "n": ..., "k": ...},
 *        "sample": {"count": 40, "seed": 7, "multiple": 8}},
 *       {"kind": "conv2d", "points": [{"n": 1, "c": 64, ...}, ...]}
 *     ]
 *   }
 *
 * An entry names a kind, optional dtype and variant (a string or a list:
 * every combination is measured), and either "grid" (the cartesian product
 * of its dims) or "points" (explicit shapes).  A grid dim is an integer, a
 * list of integers, {"log": [from, to, count]} (count log-spaced integers,
 * default 8), {"lin": [from, to, count]}, or the name of another dim of the
 * entry ("skv": "sq" ties prefill's key length to its query length).
 * "sample": {"count": N, "seed": S, "multiple": M} replaces the cartesian
 * product by N points drawn log-uniformly between each dim's smallest and
 * largest value, rounded to a multiple of M — dense coverage for the cost
 * model's fits without a combinatorial grid.  "max_flops" / "max_bytes" drop
 * points above a bound.  An entry may override warmup, repeats, min_time_s,
 * and name a "backend" ("" = the device's default for the kind).
 * Duplicate ops are measured once.  Errors name the JSON path. */
#ifndef PS_PROFILE_SUITE_H
#define PS_PROFILE_SUITE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "profile/opdesc.h"

typedef struct ps_suite_item {
    ps_op op;
    int warmup, repeats;
    double min_time_s;
    char backend[16]; /* "" = backend's default */
} ps_suite_item;

typedef struct ps_suite {
    char name[64];
    char *text; /* the JSON text as loaded (stored in the DB) */
    int warmup, repeats;
    double min_time_s;
    int64_t peak_gemm_n;       /* square GEMM size for the FLOP/s peaks */
    int64_t peak_memcpy_bytes; /* copy size for the bandwidth peak */
    ps_suite_item *items;
    size_t n, cap;
} ps_suite;

/* Parse a suite from a file or text (`what` names the text in messages).
 * Returns NULL with e set (PS_EINPUT for bad input). */
ps_suite *ps_suite_load_file(const char *path, ps_err *e);
ps_suite *ps_suite_load_str(const char *text, const char *what, ps_err *e);
void ps_suite_free(ps_suite *s);

/* Path of a built-in suite ("quick", "standard"): $PLANSIM_SUITES/NAME.json,
 * else profile/suites next to the binary (EXE_DIR/../profile/suites,
 * EXE_DIR/../share/plansim/suites), else ./profile/suites.  PS_EINPUT with
 * the places looked in when absent. */
int ps_suite_builtin_path(const char *name, char *out, size_t n, ps_err *e);

/* Rough duration of running s, given the device's rates and per-call
 * overhead: per op, (warmup + repeats) measurements, each at least
 * min_time_s and at least one execution of max(flops/rate, bytes/bw). */
double ps_suite_estimate_s(const ps_suite *s, double flops_per_s, double bytes_per_s,
                           double overhead_s);

#endif
