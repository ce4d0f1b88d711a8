/* The simulated quantization study: HAWQ-V2 bit choices for the paper's
 * networks at their scale (sim/quant/nets.h) with per-layer latency from the
 * cost model (cm_quant_gemm on a catalog device's roofline), beside uniform
 * 8- and 4-bit and the paper's published sizes.
 *
 * Per point (net, device, batch): Ω from the HAWQ notebook's ResNet50 traces
 * (source "hawq") or the documented proxy (source "proxy": He-init Gaussian
 * weights, trace/n = 1/fan_in — Inception-V3 has no published traces);
 * the exact solver (sim/quant/alloc) minimises ΣΩ under the size budget
 * (the paper's size of its HAWQ-V2 model, MiB: weights at their bits plus
 * per-channel fp32 scales plus batch-norm / bias parameters at fp32).  Stem
 * and classifier stay at 8 bits.  Latency: Σ over layers of cm_quant_gemm
 * with 8-bit activations (the device's int8 rate; int4 weights on an int8
 * path save bytes only: the cost model runs int4 compute only when the
 * activations are 4-bit too).  A second pick minimises ΣΩ under a latency
 * budget halfway between uniform 4-bit and uniform 8-bit (HAWQ-V3 form). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel/catalog.h"
#include "costmodel/costmodel.h"
#include "experiments/study.h"
#include "sim/quant/alloc.h"
#include "sim/quant/nets.h"

#define MIB (1024.0 * 1024.0)

static const ps_param_spec params[] = {
    {"net", PS_PARAM_STR, NULL, "", "resnet50 | inceptionv3"},
    {"device", PS_PARAM_STR, "\"h100-sxm\"", "", "catalog device (costmodel/catalog.c): h100-sxm, t4, ..."},
    {"batch", PS_PARAM_INT, "1", "", "images per inference"},
    {"source", PS_PARAM_STR, "\"auto\"", "",
     "sensitivity: hawq (ResNet50 notebook traces) | proxy | auto (hawq for resnet50)"},
    {"fixture", PS_PARAM_STR, "\"../tests/fixtures/hawq_resnet50.json\"", "",
     "the HAWQ ResNet50 arrays, relative to the config"},
    {"size_mib", PS_PARAM_NUM, "0", "MiB", "size budget; 0 = the paper's (7.99 ResNet50, 7.57 Inception-V3)"},
    {"act_bits", PS_PARAM_INT, "8", "", "activation bits for the latency model (8 or 4)"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_PARAMS,
    M_FP32_MIB,
    M_PAPER_MIB,
    M_BUDGET_MIB,
    M_U8_MIB,
    M_U4_MIB,
    M_HAWQ_MIB,
    M_HAWQ_AVG_BITS,
    M_FP16_LAT,
    M_U8_LAT,
    M_U4_LAT,
    M_HAWQ_LAT,
    M_U8_OMEGA,
    M_U4_OMEGA,
    M_HAWQ_OMEGA,
    M_LATB_BUDGET,
    M_LATB_LAT,
    M_LATB_MIB,
    M_LATB_OMEGA,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_PARAMS] = {"params_M", "", "parameters (millions; torchvision count)"},
    [M_FP32_MIB] = {"fp32_mib", "MiB", "model size at fp32"},
    [M_PAPER_MIB] = {"paper_hawq_v2_mib", "MiB", "published HAWQ-V2 size"},
    [M_BUDGET_MIB] = {"budget_mib", "MiB", "size budget used"},
    [M_U8_MIB] = {"uniform8_mib", "MiB", "size, every layer 8-bit"},
    [M_U4_MIB] = {"uniform4_mib", "MiB", "size, stem/fc 8-bit, others 4-bit"},
    [M_HAWQ_MIB] = {"hawq_v2_mib", "MiB", "size of the exact min-ΣΩ pick under the budget"},
    [M_HAWQ_AVG_BITS] = {"hawq_v2_avg_bits", "", "parameter-weighted mean weight bits of the pick"},
    [M_FP16_LAT] = {"fp16_latency_s", "s", "predicted latency, fp16 weights and activations"},
    [M_U8_LAT] = {"uniform8_latency_s", "s", "predicted latency, uniform 8-bit"},
    [M_U4_LAT] = {"uniform4_latency_s", "s", "predicted latency, uniform 4-bit weights"},
    [M_HAWQ_LAT] = {"hawq_v2_latency_s", "s", "predicted latency of the size-budgeted pick"},
    [M_U8_OMEGA] = {"uniform8_omega", "", "ΣΩ uniform 8"},
    [M_U4_OMEGA] = {"uniform4_omega", "", "ΣΩ uniform 4"},
    [M_HAWQ_OMEGA] = {"hawq_v2_omega", "", "ΣΩ of the size-budgeted pick"},
    [M_LATB_BUDGET] = {"latency_budget_s", "s", "latency budget: (uniform4 + uniform8)/2"},
    [M_LATB_LAT] = {"latency_pick_latency_s", "s", "predicted latency of the latency-budgeted pick"},
    [M_LATB_MIB] = {"latency_pick_mib", "MiB", "size of the latency-budgeted pick"},
    [M_LATB_OMEGA] = {"latency_pick_omega", "", "ΣΩ of the latency-budgeted pick"},
    [M_COUNT] = {NULL, NULL, NULL}};

static const int BITS[] = {2, 3, 4, 6, 8};
#define NBITS 5

static int check(const ps_point *p, ps_err *e)
{
    const char *net = ps_point_str(p, "net");
    if (strcmp(net, "resnet50") && strcmp(net, "inceptionv3"))
        return ps_errf(e, PS_EINPUT, "net: unknown \"%s\" (expected resnet50 or inceptionv3)", net);
    if (ps_point_int(p, "batch") < 1 || ps_point_int(p, "batch") > 4096)
        return ps_errf(e, PS_EINPUT, "batch: %lld out of range 1..4096", ps_point_int(p, "batch"));
    long long ab = ps_point_int(p, "act_bits");
    if (ab != 8 && ab != 4)
        return ps_errf(e, PS_EINPUT, "act_bits: %lld (expected 8 or 4)", ab);
    if (ps_point_num(p, "size_mib") < 0)
        return ps_errf(e, PS_EINPUT, "size_mib: must be >= 0");
    return 0;
}

static double sol_avg_bits(const psq_problem *pr, const psq_solution *s)
{
    double num = 0, den = 0;
    for (int l = 0; l < pr->n_layers; l++) {
        num += pr->layers[l].params * s->bits[l];
        den += pr->layers[l].params;
    }
    return den > 0 ? num / den : NAN;
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    const char *netname = ps_point_str(p, "net"), *devname = ps_point_str(p, "device");
    const char *source = ps_point_str(p, "source");
    int64_t batch = ps_point_int(p, "batch");
    int abits = (int)ps_point_int(p, "act_bits");
    int resnet = !strcmp(netname, "resnet50");
    if (!strcmp(source, "auto"))
        source = resnet ? "hawq" : "proxy";
    double paper = resnet ? 7.99 : 7.57;
    double budget_mib = ps_point_num(p, "size_mib") > 0 ? ps_point_num(p, "size_mib") : paper;
    char fixture[1024];
    ps_point_path(p, ps_point_str(p, "fixture"), fixture, sizeof fixture);

    psq_net net;
    int rc = psq_net_build(netname, &net, e);
    if (rc)
        return rc;
    cm_catalog *cat = cm_catalog_new(e);
    if (!cat) {
        psq_net_free(&net);
        return PS_ERUN;
    }
    cm_model *cm = NULL;
    double *lat = NULL;
    psq_problem pr = {0};
    psq_solution su8 = {0}, su4 = {0}, sh = {0}, sl = {0};
    ps_table *tm = NULL, *tl = NULL;
    const cm_device *dev = cm_catalog_device(cat, devname, e);
    if (!dev) {
        rc = PS_EINPUT;
        goto out;
    }
    if (!(cm = cm_model_roofline(dev, e))) {
        rc = PS_ERUN;
        goto out;
    }
    lat = calloc((size_t)net.n * NBITS, sizeof *lat);
    double fp16 = 0;
    for (int l = 0; l < net.n && !rc; l++) {
        int64_t M, N, K;
        psq_net_gemm(&net, l, batch, &M, &N, &K);
        cm_quant_pred q;
        for (int k = 0; k < NBITS && !rc; k++) {
            rc = cm_quant_gemm(cm, M, N, K, BITS[k], abits, 0, &q, e);
            lat[l * NBITS + k] = q.time_s;
        }
        if (!rc && !(rc = cm_quant_gemm(cm, M, N, K, 16, 16, 0, &q, e)))
            fp16 += q.time_s;
    }
    if (rc)
        goto out;
    if ((rc = psq_net_problem(&net, source, fixture, BITS, NBITS, lat, &pr, e)))
        goto out;
    double other = 4.0 * net.other_params; /* BN and bias at fp32 */
    int ub[PSQ_MAX_OPTIONS];
    (void)ub;
    int *b8 = malloc((size_t)net.n * sizeof *b8), *b4 = malloc((size_t)net.n * sizeof *b4);
    for (int l = 0; l < net.n; l++) {
        b8[l] = 8;
        b4[l] = pr.layers[l].fixed_bits ? 8 : 4;
    }
    rc = psq_evaluate(&pr, b8, &su8, e);
    rc = rc ? rc : psq_evaluate(&pr, b4, &su4, e);
    free(b8);
    free(b4);
    if (rc)
        goto out;
    psq_budget bs = psq_budget_none();
    bs.bytes = budget_mib * MIB - other;
    if ((rc = psq_solve(&pr, &bs, NULL, &sh, e)))
        goto out;
    psq_budget bl = psq_budget_none();
    bl.latency_s = 0.5 * (su4.latency_s + su8.latency_s);
    if ((rc = psq_solve(&pr, &bl, NULL, &sl, e)))
        goto out;

    m[M_PARAMS] = psq_net_params(&net) / 1e6;
    m[M_FP32_MIB] = 4.0 * psq_net_params(&net) / MIB;
    m[M_PAPER_MIB] = paper;
    m[M_BUDGET_MIB] = budget_mib;
    m[M_U8_MIB] = (su8.bytes + other) / MIB;
    m[M_U4_MIB] = (su4.bytes + other) / MIB;
    m[M_HAWQ_MIB] = (sh.bytes + other) / MIB;
    m[M_HAWQ_AVG_BITS] = sol_avg_bits(&pr, &sh);
    m[M_FP16_LAT] = fp16;
    m[M_U8_LAT] = su8.latency_s;
    m[M_U4_LAT] = su4.latency_s;
    m[M_HAWQ_LAT] = sh.latency_s;
    m[M_U8_OMEGA] = su8.omega_sum;
    m[M_U4_OMEGA] = su4.omega_sum;
    m[M_HAWQ_OMEGA] = sh.omega_sum;
    m[M_LATB_BUDGET] = bl.latency_s;
    m[M_LATB_LAT] = sl.latency_s;
    m[M_LATB_MIB] = (sl.bytes + other) / MIB;
    m[M_LATB_OMEGA] = sl.omega_sum;

    /* methods table (for the figures) */
    tm = ps_table_new();
    int cn = ps_table_add_col(tm, "net", PS_COL_STR, "");
    int cd = ps_table_add_col(tm, "device", PS_COL_STR, "");
    int cba = ps_table_add_col(tm, "batch", PS_COL_INT, "");
    int cab = ps_table_add_col(tm, "act_bits", PS_COL_INT, "");
    int cme = ps_table_add_col(tm, "method", PS_COL_STR, "");
    int cs = ps_table_add_col(tm, "size_mib", PS_COL_DOUBLE, "MiB");
    int cl = ps_table_add_col(tm, "latency_ms", PS_COL_DOUBLE, "ms");
    int co = ps_table_add_col(tm, "omega", PS_COL_DOUBLE, "");
    struct {
        const char *name;
        double size, lat, om;
    } rows[] = {{"fp16", 2.0 * psq_net_params(&net) / MIB, fp16, NAN},
                {"uniform8", m[M_U8_MIB], su8.latency_s, su8.omega_sum},
                {"uniform4", m[M_U4_MIB], su4.latency_s, su4.omega_sum},
                {"hawq_v2_size", m[M_HAWQ_MIB], sh.latency_s, sh.omega_sum},
                {"hawq_v3_latency", m[M_LATB_MIB], sl.latency_s, sl.omega_sum},
                {"paper_hawq_v2", paper, NAN, NAN}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t r = ps_table_add_row(tm);
        ps_table_set_s(tm, r, cn, netname);
        ps_table_set_s(tm, r, cd, devname);
        ps_table_set_i(tm, r, cba, batch);
        ps_table_set_i(tm, r, cab, abits);
        ps_table_set_s(tm, r, cme, rows[i].name);
        ps_table_set_d(tm, r, cs, rows[i].size);
        ps_table_set_d(tm, r, cl, 1e3 * rows[i].lat);
        ps_table_set_d(tm, r, co, rows[i].om);
    }
    if ((rc = ps_point_emit(p, "methods", tm, e)))
        goto out;
    /* per-layer bits and latency */
    tl = ps_table_new();
    int xl = ps_table_add_col(tl, "layer", PS_COL_STR, "");
    int xi = ps_table_add_col(tl, "index", PS_COL_INT, "");
    int xM = ps_table_add_col(tl, "M", PS_COL_INT, "");
    int xN = ps_table_add_col(tl, "N", PS_COL_INT, "");
    int xK = ps_table_add_col(tl, "K", PS_COL_INT, "");
    int xb = ps_table_add_col(tl, "hawq_v2_bits", PS_COL_INT, "");
    int xlb = ps_table_add_col(tl, "latency_pick_bits", PS_COL_INT, "");
    int x8 = ps_table_add_col(tl, "latency_int8_s", PS_COL_DOUBLE, "s");
    int x4 = ps_table_add_col(tl, "latency_int4_s", PS_COL_DOUBLE, "s");
    for (int l = 0; l < net.n; l++) {
        int64_t M, N, K;
        psq_net_gemm(&net, l, batch, &M, &N, &K);
        size_t r = ps_table_add_row(tl);
        ps_table_set_s(tl, r, xl, net.L[l].name);
        ps_table_set_i(tl, r, xi, l);
        ps_table_set_i(tl, r, xM, M);
        ps_table_set_i(tl, r, xN, N);
        ps_table_set_i(tl, r, xK, K);
        ps_table_set_i(tl, r, xb, sh.bits[l]);
        ps_table_set_i(tl, r, xlb, sl.bits[l]);
        ps_table_set_d(tl, r, x8, lat[l * NBITS + 4]);
        ps_table_set_d(tl, r, x4, lat[l * NBITS + 2]);
    }
    rc = ps_point_emit(p, "layers", tl, e);
out:
    ps_table_free(tm);
    ps_table_free(tl);
    psq_solution_free(&su8);
    psq_solution_free(&su4);
    psq_solution_free(&sh);
    psq_solution_free(&sl);
    psq_problem_free(&pr);
    free(lat);
    cm_model_free(cm);
    cm_catalog_free(cat);
    psq_net_free(&net);
    return rc;
}

const ps_study ps_study_quant_sim = {
    .name = "quant_sim",
    .summary = "HAWQ-V2 bit choices for ResNet50 / Inception-V3 at scale: size and cost-model "
               "latency vs uniform 8/4-bit and the paper's sizes",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
};
