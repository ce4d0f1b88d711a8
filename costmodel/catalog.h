/* Device catalog: what a device can do at best (datasheet peaks per
 * precision, memory size and bandwidth, launch overhead) and what links can
 * carry (latency α, bandwidth β).  Built-in entries are C tables whose every
 * number names its source (catalog.c); `cpu` is this machine, measured (from
 * a profile database's /device/peaks, or on the spot with a short OpenBLAS
 * GEMM and memcpy run).  A JSON file can override fields of built-in entries
 * or add new ones (format in costmodel/README.md). */
#ifndef PS_CM_CATALOG_H
#define PS_CM_CATALOG_H

#include <stddef.h>

#include "common/err.h"

/* Precisions with a distinct hardware rate.  Tensor-core precisions are
 * dense rates (the datasheets' "with sparsity" numbers are halved). */
typedef enum {
    CM_FP64,
    CM_FP32,
    CM_TF32,
    CM_FP16,
    CM_BF16,
    CM_FP8,
    CM_INT8,
    CM_INT4,
    CM_NPREC
} cm_prec;

const char *cm_prec_name(cm_prec p);
/* A dtype name ("fp32", "bf16", "int4", ...) to its precision; -1 if unknown. */
int cm_prec_from_name(const char *name);
/* Storage width of one element in bits (fp64 64 ... int4 4). */
int cm_prec_bits(cm_prec p);

#define CM_NAME_MAX 32

typedef struct cm_device {
    char name[CM_NAME_MAX];   /* catalog key: "h100-sxm", "cpu", ... */
    char desc[96];            /* "NVIDIA H100 SXM5 80 GB" */
    int is_gpu;
    double peak_flops[CM_NPREC]; /* FLOP/s (OP/s for ints); 0 = no hardware rate */
    double mem_bytes;
    double mem_bw_bytes_per_s;
    double launch_s;          /* fixed cost per op (kernel launch / call overhead) */
    char intra_link[CM_NAME_MAX]; /* default device-to-device link in a node */
    char host_link[CM_NAME_MAX];  /* host <-> device link */
    char source[192];         /* where the numbers come from */
} cm_device;

typedef struct cm_link {
    char name[CM_NAME_MAX]; /* "nvlink4", "pcie4", "ib_hdr", ... */
    char desc[96];
    double latency_s;      /* α: end-to-end small-message latency */
    double bw_bytes_per_s; /* β: per direction */
    char source[192];
} cm_link;

typedef struct cm_catalog cm_catalog;

/* The built-in devices and links (no `cpu` yet: see cm_catalog_set_cpu*). */
cm_catalog *cm_catalog_new(ps_err *e);
void cm_catalog_free(cm_catalog *c);

/* Override or add entries from a JSON file:
 *   {"devices": {"NAME": {"desc": "...", "is_gpu": true, "mem_bytes": 8e10,
 *                         "mem_bw_bytes_per_s": 3.35e12, "launch_s": 4e-6,
 *                         "peak_flops": {"fp16": 9.9e14, ...},
 *                         "intra_link": "nvlink4", "host_link": "pcie5"}},
 *    "links": {"NAME": {"desc": "...", "latency_s": 1e-6, "bw_bytes_per_s": 4.5e11}}}
 * Fields left out keep their built-in values; a new device starts from zero.
 * Errors name the file and the JSON path. */
int cm_catalog_load_json(cm_catalog *c, const char *path, ps_err *e);

/* `cpu` from measured peaks: the name/value pairs of a profile database's
 * /device/peaks table (gemm_fp32_flops_per_s, gemm_fp64_flops_per_s,
 * memcpy_bytes_per_s, launch_s; others are ignored). */
int cm_catalog_set_cpu_peaks(cm_catalog *c, const char *const *names, const double *values,
                             size_t n, const char *source, ps_err *e);
/* `cpu` measured on the spot: OpenBLAS sgemm/dgemm at n=512..1024 and a
 * 64 MiB memcpy, best of a few runs (well under a second). */
int cm_catalog_measure_cpu(cm_catalog *c, ps_err *e);

/* Catalog name for a CUDA device name as the driver reports it ("NVIDIA
 * H100 80GB HBM3" → "h100-sxm"); NULL when no entry matches. */
const char *cm_catalog_match(const char *device_name);

/* Lookup by name; NULL with a PS_EINPUT error listing the known names. */
const cm_device *cm_catalog_device(const cm_catalog *c, const char *name, ps_err *e);
const cm_link *cm_catalog_link(const cm_catalog *c, const char *name, ps_err *e);
size_t cm_catalog_ndevices(const cm_catalog *c);
const cm_device *cm_catalog_device_at(const cm_catalog *c, size_t i);
size_t cm_catalog_nlinks(const cm_catalog *c);
const cm_link *cm_catalog_link_at(const cm_catalog *c, size_t i);

/* Peak rate for a dtype on a device: the dtype's own rate when the hardware
 * has one; else the nearest wider precision it has (int4 -> int8 -> fp16,
 * fp8 -> fp16, bf16 <-> fp16, tf32 -> fp32), reporting which one through
 * *used (may be NULL).  0 when nothing applies. */
double cm_device_peak(const cm_device *d, cm_prec p, cm_prec *used);

#endif
