/* Device catalog: built-in tables with a source for every number, JSON
 * overrides, and the measured `cpu` entry. */
#include "costmodel/catalog.h"

#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

static const char *const prec_names[CM_NPREC] = {"fp64", "fp32", "tf32", "fp16",
                                                 "bf16", "fp8",  "int8", "int4"};
static const int prec_bits[CM_NPREC] = {64, 32, 32, 16, 16, 8, 8, 4};

const char *cm_prec_name(cm_prec p) { return p < CM_NPREC ? prec_names[p] : "?"; }
int cm_prec_bits(cm_prec p) { return p < CM_NPREC ? prec_bits[p] : 0; }

int cm_prec_from_name(const char *name)
{
    for (int i = 0; i < CM_NPREC; i++)
        if (!strcmp(name, prec_names[i]))
            return i;
    return -1;
}

#define T 1e12
#define GIB 1073741824.0

/* Memory capacities: the datasheets' "80GB" on HBM and GDDR parts is binary
 * (an 80 GB H100 reports 81559 MiB in nvidia-smi), so GiB are used.
 * Bandwidths are decimal (GB/s = 1e9 B/s) as the datasheets print them.
 * Tensor-core rates are dense: NVIDIA's datasheets print "X | 2X*" with
 * * = with 2:4 sparsity, and the first (dense) figure is used.
 * launch_s for GPUs is an estimate, not a datasheet figure: CUPTI traces
 * show 2-5 µs from launch to kernel start on an idle stream; a profile
 * database of the device replaces it with the fitted per-op intercept. */
static const cm_device builtin_devices[] = {
    {
        .name = "h100-sxm",
        .desc = "NVIDIA H100 SXM5 80 GB",
        .is_gpu = 1,
        /* NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column:
         * FP64 Tensor Core 67, FP32 67, TF32 989*, BF16/FP16 1979*,
         * FP8 3958*, INT8 3958* TOPS; Hopper has no INT4 tensor path. */
        .peak_flops = {[CM_FP64] = 67 * T, [CM_FP32] = 67 * T, [CM_TF32] = 494.5 * T,
                       [CM_FP16] = 989.5 * T, [CM_BF16] = 989.5 * T, [CM_FP8] = 1979 * T,
                       [CM_INT8] = 1979 * T},
        .mem_bytes = 80 * GIB,        /* datasheet: 80 GB HBM3 */
        .mem_bw_bytes_per_s = 3.35e12, /* datasheet: 3.35 TB/s */
        .launch_s = 4e-6,
        .intra_link = "nvlink4", /* datasheet: NVLink 900 GB/s */
        .host_link = "pcie5",    /* datasheet: PCIe Gen5 128 GB/s */
        .source = "NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
    },
    {
        .name = "h200",
        .desc = "NVIDIA H200 SXM 141 GB",
        .is_gpu = 1,
        /* NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column: the same
         * compute figures as H100 SXM (FP64 TC 67, FP32 67, TF32 989*,
         * BF16/FP16 1979*, FP8 3958*, INT8 3958*). */
        .peak_flops = {[CM_FP64] = 67 * T, [CM_FP32] = 67 * T, [CM_TF32] = 494.5 * T,
                       [CM_FP16] = 989.5 * T, [CM_BF16] = 989.5 * T, [CM_FP8] = 1979 * T,
                       [CM_INT8] = 1979 * T},
        .mem_bytes = 141 * GIB,      /* datasheet: 141 GB HBM3e */
        .mem_bw_bytes_per_s = 4.8e12, /* datasheet: 4.8 TB/s */
        .launch_s = 4e-6,
        .intra_link = "nvlink4", /* datasheet: NVLink 900 GB/s */
        .host_link = "pcie5",
        .source = "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
    },
    {
        .name = "a100-40g",
        .desc = "NVIDIA A100 SXM4 40 GB",
        .is_gpu = 1,
        /* NVIDIA A100 Tensor Core GPU datasheet (2021): FP64 TC 19.5, FP32
         * 19.5, TF32 156 (312*), BF16/FP16 312 (624*), INT8 624 (1248*);
         * INT4 1248 (2496*) from the NVIDIA A100 Tensor Core GPU
         * Architecture whitepaper, Table 1. */
        .peak_flops = {[CM_FP64] = 19.5 * T, [CM_FP32] = 19.5 * T, [CM_TF32] = 156 * T,
                       [CM_FP16] = 312 * T, [CM_BF16] = 312 * T, [CM_INT8] = 624 * T,
                       [CM_INT4] = 1248 * T},
        .mem_bytes = 40 * GIB,         /* datasheet: 40 GB HBM2 */
        .mem_bw_bytes_per_s = 1.555e12, /* datasheet: 1,555 GB/s */
        .launch_s = 4e-6,
        .intra_link = "nvlink3", /* datasheet: NVLink 600 GB/s */
        .host_link = "pcie4",    /* datasheet: PCIe Gen4 64 GB/s */
        .source = "NVIDIA A100 datasheet (SXM4 40GB); A100 architecture whitepaper",
    },
    {
        .name = "a100-80g",
        .desc = "NVIDIA A100 SXM4 80 GB",
        .is_gpu = 1,
        /* Same datasheet and whitepaper as a100-40g; compute is identical. */
        .peak_flops = {[CM_FP64] = 19.5 * T, [CM_FP32] = 19.5 * T, [CM_TF32] = 156 * T,
                       [CM_FP16] = 312 * T, [CM_BF16] = 312 * T, [CM_INT8] = 624 * T,
                       [CM_INT4] = 1248 * T},
        .mem_bytes = 80 * GIB,         /* datasheet: 80 GB HBM2e */
        .mem_bw_bytes_per_s = 2.039e12, /* datasheet: 2,039 GB/s (SXM) */
        .launch_s = 4e-6,
        .intra_link = "nvlink3",
        .host_link = "pcie4",
        .source = "NVIDIA A100 datasheet (SXM4 80GB); A100 architecture whitepaper",
    },
    {
        .name = "v100-16g",
        .desc = "NVIDIA Tesla V100 SXM2 16 GB (Summit)",
        .is_gpu = 1,
        /* NVIDIA Tesla V100 GPU datasheet (2018), SXM2 column: FP64 7.8,
         * FP32 15.7, Tensor (FP16 in, FP32 accumulate) 125.  Volta has no
         * BF16, TF32, FP8 or integer tensor paths. */
        .peak_flops = {[CM_FP64] = 7.8 * T, [CM_FP32] = 15.7 * T, [CM_FP16] = 125 * T},
        .mem_bytes = 16 * GIB,       /* datasheet: 16 GB HBM2 */
        .mem_bw_bytes_per_s = 900e9, /* datasheet: 900 GB/s */
        .launch_s = 5e-6,
        .intra_link = "nvlink2", /* datasheet: NVLink 300 GB/s */
        .host_link = "pcie3",    /* datasheet: PCIe 32 GB/s */
        .source = "NVIDIA Tesla V100 datasheet (SXM2 16GB)",
    },
    {
        .name = "v100-32g",
        .desc = "NVIDIA Tesla V100 SXM2 32 GB",
        .is_gpu = 1,
        /* Same datasheet as v100-16g; only the memory size differs. */
        .peak_flops = {[CM_FP64] = 7.8 * T, [CM_FP32] = 15.7 * T, [CM_FP16] = 125 * T},
        .mem_bytes = 32 * GIB,       /* datasheet: 32 GB HBM2 */
        .mem_bw_bytes_per_s = 900e9, /* datasheet: 900 GB/s */
        .launch_s = 5e-6,
        .intra_link = "nvlink2",
        .host_link = "pcie3",
        .source = "NVIDIA Tesla V100 datasheet (SXM2 32GB)",
    },
    {
        .name = "a10",
        .desc = "NVIDIA A10 24 GB (PCIe)",
        .is_gpu = 1,
        /* NVIDIA A10 Tensor Core GPU datasheet (2021): FP32 31.2, TF32 62.5
         * (125*), BF16/FP16 125 (250*), INT8 250 (500*), INT4 500 (1000*).
         * FP64 is not in the datasheet: GA102 runs FP64 at 1/32 of FP32
         * (NVIDIA Ampere GA102 GPU Architecture whitepaper). */
        .peak_flops = {[CM_FP64] = 0.976 * T, [CM_FP32] = 31.2 * T, [CM_TF32] = 62.5 * T,
                       [CM_FP16] = 125 * T, [CM_BF16] = 125 * T, [CM_INT8] = 250 * T,
                       [CM_INT4] = 500 * T},
        .mem_bytes = 24 * GIB,       /* datasheet: 24 GB GDDR6 */
        .mem_bw_bytes_per_s = 600e9, /* datasheet: 600 GB/s */
        .launch_s = 5e-6,
        .intra_link = "pcie4", /* no NVLink on A10 */
        .host_link = "pcie4",  /* datasheet: PCIe Gen4 64 GB/s */
        .source = "NVIDIA A10 datasheet; GA102 whitepaper (FP64 ratio)",
    },
    {
        .name = "l40s",
        .desc = "NVIDIA L40S 48 GB (PCIe)",
        .is_gpu = 1,
        /* NVIDIA L40S datasheet (2023): FP32 91.6, TF32 183 (366*),
         * BF16/FP16 362.05 (733*), FP8 733 (1466*), INT8 733 (1466*).  We
         * could not confirm a dense INT4 figure for L40S (the L40 sheet
         * lists INT4 at 2x INT8); left 0, so INT4 falls back to the INT8
         * rate.  FP64 is 1/64 of FP32 on AD102 (NVIDIA Ada GPU
         * Architecture whitepaper). */
        .peak_flops = {[CM_FP64] = 1.431 * T, [CM_FP32] = 91.6 * T, [CM_TF32] = 183 * T,
                       [CM_FP16] = 362.05 * T, [CM_BF16] = 362.05 * T, [CM_FP8] = 733 * T,
                       [CM_INT8] = 733 * T},
        .mem_bytes = 48 * GIB,       /* datasheet: 48 GB GDDR6 with ECC */
        .mem_bw_bytes_per_s = 864e9, /* datasheet: 864 GB/s */
        .launch_s = 5e-6,
        .intra_link = "pcie4", /* no NVLink on L40S */
        .host_link = "pcie4",  /* datasheet: PCIe Gen4 x16 64 GB/s bidirectional */
        .source = "NVIDIA L40S datasheet; Ada whitepaper (FP64 ratio)",
    },
    {
        .name = "t4",
        .desc = "NVIDIA T4 16 GB (PCIe)",
        .is_gpu = 1,
        /* NVIDIA T4 Tensor Core GPU datasheet (2019): FP32 8.1, mixed
         * FP16/FP32 65, INT8 130 TOPS, INT4 260 TOPS.  Turing has no BF16,
         * TF32 or FP8.  FP64 is 1/32 of FP32 on TU104 (Turing
         * whitepaper). */
        .peak_flops = {[CM_FP64] = 0.254 * T, [CM_FP32] = 8.1 * T, [CM_FP16] = 65 * T,
                       [CM_INT8] = 130 * T, [CM_INT4] = 260 * T},
        .mem_bytes = 16 * GIB,       /* datasheet: 16 GB GDDR6 */
        .mem_bw_bytes_per_s = 320e9, /* datasheet: 320+ GB/s */
        .launch_s = 5e-6,
        .intra_link = "pcie3",
        .host_link = "pcie3", /* datasheet: PCIe Gen3 x16 32 GB/s */
        .source = "NVIDIA T4 datasheet; Turing whitepaper (FP64 ratio)",
    },
    {
        .name = "l4",
        .desc = "NVIDIA L4 24 GB (PCIe)",
        .is_gpu = 1,
        /* NVIDIA L4 Tensor Core GPU datasheet (2023): FP32 30.3, TF32 120*,
         * BF16/FP16 242*, FP8 485*, INT8 485* TOPS (dense = half).  No INT4
         * figure in the datasheet; left 0 (falls back to INT8).  FP64 is
         * 1/64 of FP32 on AD104 (Ada whitepaper). */
        .peak_flops = {[CM_FP64] = 0.473 * T, [CM_FP32] = 30.3 * T, [CM_TF32] = 60 * T,
                       [CM_FP16] = 121 * T, [CM_BF16] = 121 * T, [CM_FP8] = 242.5 * T,
                       [CM_INT8] = 242.5 * T},
        .mem_bytes = 24 * GIB,       /* datasheet: 24 GB GDDR6 */
        .mem_bw_bytes_per_s = 300e9, /* datasheet: 300 GB/s */
        .launch_s = 5e-6,
        .intra_link = "pcie4",
        .host_link = "pcie4", /* datasheet: PCIe Gen4 x16 64 GB/s */
        .source = "NVIDIA L4 datasheet; Ada whitepaper (FP64 ratio)",
    },
};

/* β is per direction (what one transfer between two endpoints can use);
 * datasheets print NVLink and PCIe as bidirectional totals, halved here.
 * α is an estimate, not a datasheet figure: the end-to-end latency of a
 * small message through the communication library (nccl-tests and OSU
 * micro-benchmarks report a few µs; InfiniBand adapters alone quote about
 * 0.6 µs).  Measure and override with --catalog for precise work. */
static const cm_link builtin_links[] = {
    {"nvlink2", "NVLink 2 (V100 SXM2, 6 links)", 2e-6, 150e9,
     "V100 datasheet: NVLink 300 GB/s bidirectional"},
    {"nvlink3", "NVLink 3 (A100 SXM4, 12 links)", 2e-6, 300e9,
     "A100 datasheet: NVLink 600 GB/s bidirectional"},
    {"nvlink4", "NVLink 4 (H100/H200 SXM, 18 links)", 2e-6, 450e9,
     "H100 datasheet: NVLink 900 GB/s bidirectional"},
    {"pcie3", "PCIe 3.0 x16", 3e-6, 15.75e9,
     "PCIe 3.0 base spec: 8 GT/s x16 lanes, 128b/130b encoding"},
    {"pcie4", "PCIe 4.0 x16", 3e-6, 31.5e9,
     "PCIe 4.0 base spec: 16 GT/s x16 lanes, 128b/130b encoding"},
    {"pcie5", "PCIe 5.0 x16", 3e-6, 63e9,
     "PCIe 5.0 base spec: 32 GT/s x16 lanes, 128b/130b encoding"},
    {"ib_edr", "InfiniBand EDR 4x (100 Gb/s)", 5e-6, 12.5e9,
     "InfiniBand Trade Association roadmap: EDR 100 Gb/s per 4x port"},
    {"ib_hdr", "InfiniBand HDR 4x (200 Gb/s)", 5e-6, 25e9,
     "InfiniBand Trade Association roadmap: HDR 200 Gb/s per 4x port"},
    {"ib_ndr", "InfiniBand NDR 4x (400 Gb/s)", 5e-6, 50e9,
     "InfiniBand Trade Association roadmap: NDR 400 Gb/s per 4x port"},
};

struct cm_catalog {
    cm_device *dev;
    size_t ndev, capdev;
    cm_link *link;
    size_t nlink, caplink;
};

cm_catalog *cm_catalog_new(ps_err *e)
{
    cm_catalog *c = calloc(1, sizeof *c);
    size_t nd = sizeof builtin_devices / sizeof builtin_devices[0];
    size_t nl = sizeof builtin_links / sizeof builtin_links[0];
    if (c) {
        c->dev = malloc((nd + 4) * sizeof *c->dev);
        c->link = malloc((nl + 4) * sizeof *c->link);
    }
    if (!c || !c->dev || !c->link) {
        cm_catalog_free(c);
        ps_errf(e, PS_ERUN, "catalog: out of memory");
        return NULL;
    }
    memcpy(c->dev, builtin_devices, sizeof builtin_devices);
    memcpy(c->link, builtin_links, sizeof builtin_links);
    c->ndev = nd;
    c->capdev = nd + 4;
    c->nlink = nl;
    c->caplink = nl + 4;
    return c;
}

void cm_catalog_free(cm_catalog *c)
{
    if (!c)
        return;
    free(c->dev);
    free(c->link);
    free(c);
}

static cm_device *find_dev(const cm_catalog *c, const char *name)
{
    for (size_t i = 0; i < c->ndev; i++)
        if (!strcmp(c->dev[i].name, name))
            return &c->dev[i];
    return NULL;
}

static cm_link *find_link(const cm_catalog *c, const char *name)
{
    for (size_t i = 0; i < c->nlink; i++)
        if (!strcmp(c->link[i].name, name))
            return &c->link[i];
    return NULL;
}

static cm_device *add_dev(cm_catalog *c, const char *name, ps_err *e)
{
    cm_device *d = find_dev(c, name);
    if (d)
        return d;
    if (strlen(name) >= CM_NAME_MAX || !name[0]) {
        ps_errf(e, PS_EINPUT, "device name '%s' is empty or longer than %d characters", name,
                CM_NAME_MAX - 1);
        return NULL;
    }
    if (c->ndev == c->capdev) {
        size_t cap = c->capdev * 2;
        cm_device *p = realloc(c->dev, cap * sizeof *p);
        if (!p) {
            ps_errf(e, PS_ERUN, "catalog: out of memory");
            return NULL;
        }
        c->dev = p;
        c->capdev = cap;
    }
    d = &c->dev[c->ndev++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    return d;
}

static cm_link *add_link(cm_catalog *c, const char *name, ps_err *e)
{
    cm_link *l = find_link(c, name);
    if (l)
        return l;
    if (strlen(name) >= CM_NAME_MAX || !name[0]) {
        ps_errf(e, PS_EINPUT, "link name '%s' is empty or longer than %d characters", name,
                CM_NAME_MAX - 1);
        return NULL;
    }
    if (c->nlink == c->caplink) {
        size_t cap = c->caplink * 2;
        cm_link *p = realloc(c->link, cap * sizeof *p);
        if (!p) {
            ps_errf(e, PS_ERUN, "catalog: out of memory");
            return NULL;
        }
        c->link = p;
        c->caplink = cap;
    }
    l = &c->link[c->nlink++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

/* A non-negative finite number at where.key, if present. */
static int get_nonneg(const json_t *o, const char *where, const char *key, double *out,
                      ps_err *e)
{
    double v = *out;
    if (ps_json_get_num(o, where, key, 0, &v, e))
        return PS_EINPUT;
    if (!isfinite(v) || v < 0)
        return ps_errf(e, PS_EINPUT, "%s.%s: must be a finite number >= 0, got %g", where, key,
                       v);
    *out = v;
    return 0;
}

static int get_strbuf(const json_t *o, const char *where, const char *key, char *buf, size_t n,
                      ps_err *e)
{
    const char *s = NULL;
    if (ps_json_get_str(o, where, key, 0, &s, e))
        return PS_EINPUT;
    if (s) {
        if (strlen(s) >= n)
            return ps_errf(e, PS_EINPUT, "%s.%s: longer than %zu characters", where, key, n - 1);
        snprintf(buf, n, "%s", s);
    }
    return 0;
}

static int load_device(cm_catalog *c, const char *name, const json_t *o, const char *where,
                       ps_err *e)
{
    static const char *const keys[] = {"desc",     "is_gpu",     "mem_bytes",
                                       "mem_bw_bytes_per_s", "launch_s", "peak_flops",
                                       "intra_link", "host_link", "source", NULL};
    if (!json_is_object(o))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                       ps_json_type_name(o));
    if (ps_json_check_keys(o, where, keys, e))
        return PS_EINPUT;
    cm_device *d = add_dev(c, name, e);
    if (!d) {
        ps_err_prefix(e, "%s: ", where);
        return e ? e->code : PS_EINPUT;
    }
    int gpu = d->is_gpu;
    if (get_strbuf(o, where, "desc", d->desc, sizeof d->desc, e) ||
        ps_json_get_bool(o, where, "is_gpu", 0, &gpu, e) ||
        get_nonneg(o, where, "mem_bytes", &d->mem_bytes, e) ||
        get_nonneg(o, where, "mem_bw_bytes_per_s", &d->mem_bw_bytes_per_s, e) ||
        get_nonneg(o, where, "launch_s", &d->launch_s, e) ||
        get_strbuf(o, where, "intra_link", d->intra_link, sizeof d->intra_link, e) ||
        get_strbuf(o, where, "host_link", d->host_link, sizeof d->host_link, e) ||
        get_strbuf(o, where, "source", d->source, sizeof d->source, e))
        return PS_EINPUT;
    d->is_gpu = gpu;
    const json_t *pf = json_object_get(o, "peak_flops");
    if (pf) {
        char w[256];
        snprintf(w, sizeof w, "%s.peak_flops", where);
        if (!json_is_object(pf))
            return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", w,
                           ps_json_type_name(pf));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)pf, k, v)
        {
            int p = cm_prec_from_name(k);
            if (p < 0)
                return ps_errf(e, PS_EINPUT,
                               "%s.%s: unknown precision (fp64, fp32, tf32, fp16, bf16, fp8, "
                               "int8, int4)",
                               w, k);
            if (get_nonneg(pf, w, k, &d->peak_flops[p], e))
                return PS_EINPUT;
        }
    }
    if (!d->source[0])
        snprintf(d->source, sizeof d->source, "user catalog");
    return 0;
}

static int load_link(cm_catalog *c, const char *name, const json_t *o, const char *where,
                     ps_err *e)
{
    static const char *const keys[] = {"desc", "latency_s", "bw_bytes_per_s", "source", NULL};
    if (!json_is_object(o))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                       ps_json_type_name(o));
    if (ps_json_check_keys(o, where, keys, e))
        return PS_EINPUT;
    cm_link *l = add_link(c, name, e);
    if (!l) {
        ps_err_prefix(e, "%s: ", where);
        return e ? e->code : PS_EINPUT;
    }
    if (get_strbuf(o, where, "desc", l->desc, sizeof l->desc, e) ||
        get_nonneg(o, where, "latency_s", &l->latency_s, e) ||
        get_nonneg(o, where, "bw_bytes_per_s", &l->bw_bytes_per_s, e) ||
        get_strbuf(o, where, "source", l->source, sizeof l->source, e))
        return PS_EINPUT;
    if (!(l->bw_bytes_per_s > 0))
        return ps_errf(e, PS_EINPUT, "%s.bw_bytes_per_s: must be > 0", where);
    if (!l->source[0])
        snprintf(l->source, sizeof l->source, "user catalog");
    return 0;
}

int cm_catalog_load_json(cm_catalog *c, const char *path, ps_err *e)
{
    json_t *root = ps_json_load_file(path, e);
    if (!root)
        return PS_EINPUT;
    static const char *const keys[] = {"devices", "links", NULL};
    int rc = 0;
    if (!json_is_object(root))
        rc = ps_errf(e, PS_EINPUT, "$: expected an object, got %s", ps_json_type_name(root));
    else
        rc = ps_json_check_keys(root, "$", keys, e);
    const char *sect[2] = {"devices", "links"};
    for (int s = 0; s < 2 && !rc; s++) {
        const json_t *o = json_object_get(root, sect[s]);
        if (!o)
            continue;
        if (!json_is_object(o)) {
            rc = ps_errf(e, PS_EINPUT, "$.%s: expected an object, got %s", sect[s],
                         ps_json_type_name(o));
            break;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)o, k, v)
        {
            char w[256];
            snprintf(w, sizeof w, "$.%s.%s", sect[s], k);
            rc = s == 0 ? load_device(c, k, v, w, e) : load_link(c, k, v, w, e);
            if (rc)
                break;
        }
    }
    /* Links named by devices must exist, else a later comm query fails far
     * from the file that caused it. */
    for (size_t i = 0; i < c->ndev && !rc; i++) {
        const cm_device *d = &c->dev[i];
        const char *ln[2] = {d->intra_link, d->host_link};
        for (int j = 0; j < 2 && !rc; j++)
            if (ln[j][0] && !find_link(c, ln[j]))
                rc = ps_errf(e, PS_EINPUT, "$.devices.%s.%s: unknown link '%s'", d->name,
                             j ? "host_link" : "intra_link", ln[j]);
    }
    json_decref(root);
    if (rc)
        ps_err_prefix(e, "%s: ", path);
    return rc;
}

static cm_device *cpu_entry(cm_catalog *c, ps_err *e)
{
    cm_device *d = add_dev(c, "cpu", e);
    if (!d)
        return NULL;
    memset(d->peak_flops, 0, sizeof d->peak_flops);
    snprintf(d->desc, sizeof d->desc, "this machine's CPU (measured)");
    d->is_gpu = 0;
    d->intra_link[0] = d->host_link[0] = '\0';
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    d->mem_bytes = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
    return d;
}

int cm_catalog_set_cpu_peaks(cm_catalog *c, const char *const *names, const double *values,
                             size_t n, const char *source, ps_err *e)
{
    cm_device *d = cpu_entry(c, e);
    if (!d)
        return e ? e->code : PS_ERUN;
    for (size_t i = 0; i < n; i++) {
        double v = values[i];
        if (!isfinite(v) || v <= 0)
            continue;
        if (!strcmp(names[i], "gemm_fp32_flops_per_s"))
            d->peak_flops[CM_FP32] = v;
        else if (!strcmp(names[i], "gemm_fp64_flops_per_s"))
            d->peak_flops[CM_FP64] = v;
        else if (!strcmp(names[i], "memcpy_bytes_per_s") ||
                 !strcmp(names[i], "mem_bw_bytes_per_s"))
            d->mem_bw_bytes_per_s = v;
        else if (!strcmp(names[i], "launch_s") || !strcmp(names[i], "launch_overhead_s"))
            d->launch_s = v;
    }
    if (!(d->peak_flops[CM_FP32] > 0) || !(d->mem_bw_bytes_per_s > 0))
        return ps_errf(e, PS_EINPUT,
                       "%s: /device/peaks lacks gemm_fp32_flops_per_s or memcpy_bytes_per_s",
                       source);
    snprintf(d->source, sizeof d->source, "measured: %s", source);
    return 0;
}

/* Best-of-k, since on a shared machine the minimum is the least disturbed
 * estimate of what the hardware can do. */
static double best_gemm_rate(int dbl, int n, int reps)
{
    size_t nn = (size_t)n * (size_t)n;
    size_t esz = dbl ? sizeof(double) : sizeof(float);
    void *a = malloc(nn * esz), *b = malloc(nn * esz), *cc = malloc(nn * esz);
    double best = 0;
    if (a && b && cc) {
        for (size_t i = 0; i < nn; i++) {
            double v = (double)(i % 97) / 97.0 - 0.5;
            if (dbl) {
                ((double *)a)[i] = v;
                ((double *)b)[i] = -v;
            } else {
                ((float *)a)[i] = (float)v;
                ((float *)b)[i] = (float)-v;
            }
        }
        for (int r = 0; r < reps; r++) {
            double t0 = ps_now_s();
            if (dbl)
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n,
                            0.0, cc, n);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b,
                            n, 0.0f, cc, n);
            double dt = ps_now_s() - t0;
            double rate = 2.0 * n * (double)n * n / dt;
            if (dt > 0 && rate > best)
                best = rate;
        }
    }
    free(a);
    free(b);
    free(cc);
    return best;
}

int cm_catalog_measure_cpu(cm_catalog *c, ps_err *e)
{
    double f32 = best_gemm_rate(0, 1024, 4);
    double f64 = best_gemm_rate(1, 768, 3);
    size_t nb = (size_t)64 << 20;
    char *src = malloc(nb), *dst = malloc(nb);
    double bw = 0;
    if (src && dst) {
        memset(src, 1, nb);
        memset(dst, 0, nb);
        for (int r = 0; r < 5; r++) {
            double t0 = ps_now_s();
            memcpy(dst, src, nb);
            double dt = ps_now_s() - t0;
            /* read + write, the same convention as ps_op_bytes for memcpy */
            double rate = 2.0 * (double)nb / dt;
            if (dt > 0 && rate > bw)
                bw = rate;
            src[r] = dst[nb - 1 - r]; /* keep the copies observable */
        }
    }
    free(src);
    free(dst);
    /* Per-op overhead: a 1x1x1 sgemm is nothing but the library call. */
    float a1 = 1, b1 = 1, c1 = 0;
    double launch = INFINITY;
    for (int r = 0; r < 5; r++) {
        double t0 = ps_now_s();
        for (int i = 0; i < 1000; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a1, 1, &b1, 1,
                        0.0f, &c1, 1);
        launch = fmin(launch, (ps_now_s() - t0) / 1000);
    }
    if (!(f32 > 0) || !(bw > 0))
        return ps_errf(e, PS_ERUN, "cpu: measuring GEMM and memcpy rates failed");
    const char *names[] = {"gemm_fp32_flops_per_s", "gemm_fp64_flops_per_s",
                           "memcpy_bytes_per_s", "launch_s"};
    double vals[] = {f32, f64, bw, launch};
    return cm_catalog_set_cpu_peaks(c, names, vals, 4,
                                    "on the spot (OpenBLAS sgemm 1024^3, dgemm 768^3, 64 MiB "
                                    "memcpy, 1x1x1 sgemm calls; best of 3-5)",
                                    e);
}

const char *cm_catalog_match(const char *devname)
{
    char u[256];
    size_t i = 0;
    for (; devname[i] && i + 1 < sizeof u; i++)
        u[i] = (char)toupper((unsigned char)devname[i]);
    u[i] = '\0';
    if (strstr(u, "H200"))
        return "h200";
    if (strstr(u, "H100"))
        return "h100-sxm";
    if (strstr(u, "A100"))
        return strstr(u, "80G") ? "a100-80g" : "a100-40g";
    if (strstr(u, "V100"))
        return strstr(u, "32G") ? "v100-32g" : "v100-16g";
    if (strstr(u, "L40S"))
        return "l40s";
    if (strstr(u, "A10"))
        return "a10";
    if (strstr(u, "T4"))
        return "t4";
    if (strstr(u, "L4"))
        return "l4";
    return NULL;
}

const cm_device *cm_catalog_device(const cm_catalog *c, const char *name, ps_err *e)
{
    const cm_device *d = find_dev(c, name);
    if (!d) {
        char list[1024] = "";
        size_t off = 0;
        for (size_t i = 0; i < c->ndev && off < sizeof list; i++)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "",
                                    c->dev[i].name);
        if (!find_dev(c, "cpu") && off < sizeof list)
            snprintf(list + off, sizeof list - off, ", cpu");
        ps_errf(e, PS_EINPUT, "unknown device '%s' (known: %s)", name, list);
    }
    return d;
}

const cm_link *cm_catalog_link(const cm_catalog *c, const char *name, ps_err *e)
{
    const cm_link *l = find_link(c, name);
    if (!l) {
        char list[1024] = "";
        size_t off = 0;
        for (size_t i = 0; i < c->nlink && off < sizeof list; i++)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "",
                                    c->link[i].name);
        ps_errf(e, PS_EINPUT, "unknown link '%s' (known: %s)", name, list);
    }
    return l;
}

size_t cm_catalog_ndevices(const cm_catalog *c) { return c->ndev; }
const cm_device *cm_catalog_device_at(const cm_catalog *c, size_t i)
{
    return i < c->ndev ? &c->dev[i] : NULL;
}
size_t cm_catalog_nlinks(const cm_catalog *c) { return c->nlink; }
const cm_link *cm_catalog_link_at(const cm_catalog *c, size_t i)
{
    return i < c->nlink ? &c->link[i] : NULL;
}

double cm_device_peak(const cm_device *d, cm_prec p, cm_prec *used)
{
    /* Where the hardware lacks a precision, the library runs it on the next
     * wider path it has: int4 is unpacked to int8, fp8 and int8 upcast to
     * fp16, bf16/fp16 without tensor support run as fp32, tf32 is fp32. */
    static const int next[CM_NPREC] = {[CM_FP64] = -1, [CM_FP32] = -1,     [CM_TF32] = CM_FP32,
                                       [CM_FP16] = CM_FP32, [CM_BF16] = CM_FP32,
                                       [CM_FP8] = CM_FP16, [CM_INT8] = CM_FP16,
                                       [CM_INT4] = CM_INT8};
    int q = (int)p;
    while (q >= 0 && q < CM_NPREC) {
        if (d->peak_flops[q] > 0) {
            if (used)
                *used = (cm_prec)q;
            return d->peak_flops[q];
        }
        q = next[q];
    }
    /* fp64 on a device that lists only fp32 (never for built-ins): the fp32
     * rate halved is the usual ratio on CPUs. */
    if (p == CM_FP64 && d->peak_flops[CM_FP32] > 0) {
        if (used)
            *used = CM_FP32;
        return d->peak_flops[CM_FP32] / 2;
    }
    if (used)
        *used = p;
    return 0;
}
