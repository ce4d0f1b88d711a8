/* The profile database: one HDF5 file per profiled device.  Written by the
 * CPU backend (profile/cpu_backend.c) and the GPU backend
 * (profile/cuda_backend.*) through the writer below; read by the cost model
 * through the reader.  Layout (readable with h5py / h5dump):
 *
 *   /  attributes  format = "plansim-profile-db", format_version = 1,
 *                  plansim_version, git_commit, created (UTC ISO), host,
 *                  device_kind ("cpu" | "cuda"), device_name, suite (the
 *                  suite JSON text), threads (CPU BLAS threads), pinned_core
 *                  (-1 = not pinned); backends may add more (e.g. "device_index",
 *                  "cuda_runtime_version") with ps_db_writer_set_attr_*.
 *   /device/peaks  name (str), value (double), units (str): see PS_PEAK_*.
 *   /ops           one row per measured op point:
 *                  op (row id), kind, dtype, variant, d0..d9 (the kind's dims
 *                  in opdesc.h order, 0 beyond), shape (canonical, may be
 *                  truncated to 47 chars; the dims are authoritative),
 *                  flops ("flop"), bytes ("B") — ps_op_flops/ps_op_bytes —,
 *                  backend ("openblas" | "c" | "cublas" | "cublaslt" | "cudnn" |
 *                  "plansim"), repeats, median_s, p10_s, p90_s, min_s, mean_s
 *                  ("s", time of ONE execution of the op), timer ("clock" |
 *                  "cupti" | "cuda_event"); when the device is "cuda" also
 *                  event_median_s (CUDA-event cross-check, NaN if not taken).
 *   GPU only:
 *   /kernels       op (row id of /ops = the CUPTI external correlation id),
 *                  correlation, name_idx (into /kernel_names), grid_x..z,
 *                  block_x..z, registers, shared_bytes, start_ns, end_ns,
 *                  stream
 *   /kernel_names  1-D dataset of variable-length strings
 *   /tracer_overhead  op, traced_median_s, untraced_median_s, overhead_ratio
 *
 * The file is written to PATH.partial and renamed to PATH at commit, so a
 * crash never leaves a truncated database under the final name. */
#ifndef PS_PROFILE_DB_H
#define PS_PROFILE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/table.h"
#include "profile/opdesc.h"
#include "profile/timer.h"

#define PS_DB_FORMAT "plansim-profile-db"
#define PS_DB_FORMAT_VERSION 1

/* Peak names in /device/peaks.  Rates measured, not datasheet.  Bandwidths
 * are ps_op_bytes per second (host/d2d memcpy: 2 x copied bytes, read +
 * write), so roofline bytes/bw is consistent with the /ops bytes column.
 * The *_flops_per_s and memcpy peaks are measured at the DB's thread count
 * (the one the /ops rows used); *_all_cores variants with every core (the
 * "cpu" catalog entry's device peak). */
#define PS_PEAK_GEMM_FP32 "gemm_fp32_flops_per_s"            /* flop/s */
#define PS_PEAK_GEMM_FP64 "gemm_fp64_flops_per_s"            /* flop/s */
#define PS_PEAK_MEMCPY "memcpy_bytes_per_s"                  /* B/s    */
#define PS_PEAK_GEMM_FP32_ALL "gemm_fp32_flops_per_s_all_cores" /* CPU */
#define PS_PEAK_GEMM_FP64_ALL "gemm_fp64_flops_per_s_all_cores" /* CPU */
#define PS_PEAK_MEMCPY_ALL "memcpy_bytes_per_s_all_cores"    /* CPU    */
#define PS_PEAK_LAUNCH "launch_overhead_s"  /* s: time of a near-empty op  */
#define PS_PEAK_TIMER_RES "timer_resolution_s"
#define PS_PEAK_CORES "cores"               /* CPU: online cores           */
#define PS_PEAK_THREADS "threads"           /* threads the /ops rows used  */
#define PS_PEAK_CLOCK "clock_hz"            /* nominal (CPU) / SM clock    */
#define PS_PEAK_MEM "mem_bytes"             /* device (CPU: physical RAM)  */
#define PS_PEAK_L2 "l2_bytes"               /* per core on CPU             */
#define PS_PEAK_L3 "l3_bytes"
#define PS_PEAK_SMS "sms"                   /* GPU                         */

/* ------------------------------------------------------------ writer */

typedef struct ps_db_meta {
    const char *device_kind; /* "cpu" | "cuda" */
    const char *device_name;
    const char *suite_json;  /* the suite's JSON text ("" if none) */
    int threads;             /* CPU BLAS threads (GPU: 0) */
    int pinned_core;         /* -1 = not pinned */
} ps_db_meta;

typedef struct ps_db_writer ps_db_writer;

/* Start a database at `path` (written to path.partial).  `path` exists and
 * !force → PS_EINPUT.  Rows are kept in memory and written at commit. */
ps_db_writer *ps_db_writer_open(const char *path, const ps_db_meta *meta, int force, ps_err *e);
/* Extra root attributes (device specifics); "device_name" replaces the
 * meta's (a backend learns the real name once the device is open). */
int ps_db_writer_set_attr_str(ps_db_writer *w, const char *name, const char *val, ps_err *e);
int ps_db_writer_set_attr_int(ps_db_writer *w, const char *name, long long val, ps_err *e);
/* Add or replace a peak. */
int ps_db_writer_add_peak(ps_db_writer *w, const char *name, double value, const char *units,
                          ps_err *e);
/* Append one /ops row; returns its row id (>= 0; use it as the CUPTI
 * external correlation id), or -1 with e set.  event_median_s: NaN when not
 * measured (ignored for CPU databases). */
int64_t ps_db_writer_add_op(ps_db_writer *w, const ps_op *op, const char *backend,
                            const char *timer, const ps_stats *st, double event_median_s,
                            ps_err *e);

typedef struct ps_db_kernel {
    int64_t op;          /* /ops row id */
    int64_t correlation; /* CUPTI correlation id */
    const char *name;    /* interned into /kernel_names */
    int64_t grid[3], block[3];
    int64_t registers, shared_bytes;
    int64_t start_ns, end_ns;
    int64_t stream;
} ps_db_kernel;

int ps_db_writer_add_kernel(ps_db_writer *w, const ps_db_kernel *k, ps_err *e);
int ps_db_writer_add_tracer_overhead(ps_db_writer *w, int64_t op, double traced_median_s,
                                     double untraced_median_s, ps_err *e);
size_t ps_db_writer_nops(const ps_db_writer *w);
/* Write everything, rename path.partial → path, free w (also on error). */
int ps_db_writer_commit(ps_db_writer *w, ps_err *e);
/* Discard: remove path.partial, free w. */
void ps_db_writer_abort(ps_db_writer *w);

/* ------------------------------------------------------------ reader */

typedef struct ps_db_row {
    int64_t id; /* the op column */
    ps_op op;
    char backend[16];
    char timer[16];
    double flops, bytes;
    int repeats;
    double median_s, p10_s, p90_s, min_s, mean_s;
    double event_median_s; /* NaN when absent */
} ps_db_row;

typedef struct ps_db_peak {
    char name[PS_STR_LEN];
    double value;
    char units[PS_STR_LEN];
} ps_db_peak;

typedef struct ps_db ps_db;

/* Open and load a database.  Missing, truncated, non-HDF5 files and HDF5
 * files that are not plansim profile databases (no format attribute, a
 * newer format_version, no /ops) → PS_EINPUT naming the path. */
int ps_db_open(const char *path, ps_db **out, ps_err *e);
void ps_db_close(ps_db *db);

size_t ps_db_nops(const ps_db *db);
const ps_db_row *ps_db_op_at(const ps_db *db, size_t i);
/* The row measuring exactly this op (kind, dtype, variant, dims), or NULL. */
const ps_db_row *ps_db_find(const ps_db *db, const ps_op *op);

size_t ps_db_npeaks(const ps_db *db);
const ps_db_peak *ps_db_peak_at(const ps_db *db, size_t i);
/* 0 and *value when present, -1 when not (no error: peaks are optional). */
int ps_db_peak_get(const ps_db *db, const char *name, double *value);

/* Root string attributes (format, device_kind, device_name, host, created,
 * suite, plansim_version, git_commit); NULL when absent. */
const char *ps_db_attr(const ps_db *db, const char *name);
int ps_db_threads(const ps_db *db);
int ps_db_pinned_core(const ps_db *db);
const char *ps_db_path(const ps_db *db);

/* GPU tables (0 rows on CPU databases). */
size_t ps_db_nkernels(const ps_db *db);
/* Kernel i; its name pointer lives as long as db. */
int ps_db_kernel_at(const ps_db *db, size_t i, ps_db_kernel *out);

#endif
