/* costmodel: closed forms (roofline, collectives, memory, quantized bytes,
 * LLM step limits), fits on synthetic measurements with a known law, exact
 * hits, the catalog, and the CLI's exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "costmodel/costmodel.h"
#include "costmodel/model_impl.h"
#include "common/json.h"
#include "common/util.h"

#define REL(a, b, tol) rel_d((a), (b), (tol), #a, __LINE__)
static void rel_d(double a, double b, double tol, const char *what, int line)
{
    double d = fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1);
    if (!(d <= tol))
        fail_msg("line %d: %s = %.10g, expected %.10g (rel %.3g > %.3g)", line, what, a, b, d,
                 tol);
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
/* Approximately normal (sum of uniforms), unit variance. */
static double nrand(void)
{
    double s = 0;
    for (int i = 0; i < 12; i++)
        s += urand();
    return s - 6;
}

static cm_device test_device(void)
{
    cm_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "testdev");
    d.peak_flops[CM_FP32] = 1e12;
    d.peak_flops[CM_FP16] = 1e14;
    d.peak_flops[CM_INT8] = 2e14;
    d.mem_bw_bytes_per_s = 1e11;
    d.launch_s = 1e-6;
    return d;
}

static ps_op mkop(const char *kind, const char *dtype, const char *variant, const int64_t *d,
                  int n)
{
    ps_op op;
    ps_err e = {0};
    if (ps_op_make(&op, kind, dtype, variant, d, n, &e))
        fail_msg("ps_op_make: %s", e.msg);
    return op;
}

static ps_db_row mkrow(const ps_op *op, double t)
{
    ps_db_row r;
    memset(&r, 0, sizeof r);
    r.op = *op;
    snprintf(r.backend, sizeof r.backend, "c");
    snprintf(r.timer, sizeof r.timer, "clock");
    r.flops = ps_op_flops(op);
    r.bytes = ps_op_bytes(op);
    r.repeats = 5;
    r.median_s = r.min_s = r.mean_s = t;
    r.p10_s = t * 0.99;
    r.p90_s = t * 1.01;
    r.event_median_s = NAN;
    return r;
}

/* ------------------------------------------------------------ roofline */

static void test_roofline_closed_form(void **st)
{
    (void)st;
    cm_device d = test_device();
    ps_err e = {0};
    cm_model *m = cm_model_roofline(&d, &e);
    assert_non_null(m);
    assert_int_equal(cm_model_set_efficiency(m, "gemm", 0.5, 0.8, &e), 0);
    assert_int_equal(cm_model_set_efficiency(m, "elementwise", 0.5, 0.8, &e), 0);
    cm_pred p;
    int64_t g[3] = {1024, 1024, 1024};
    ps_op op = mkop("gemm", "fp32", NULL, g, 3);
    assert_int_equal(cm_op_time(m, &op, &p, &e), 0);
    assert_int_equal(p.source, CM_SRC_ROOFLINE);
    assert_string_equal(cm_source_name(p.source), "roofline");
    double flops = 2.0 * 1024 * 1024 * 1024, bytes = 4.0 * 3 * 1024 * 1024;
    REL(p.flops, flops, 1e-12);
    REL(p.bytes, bytes, 1e-12);
    REL(p.time_s, 1e-6 + flops / (1e12 * 0.5), 1e-12); /* compute-bound */
    int64_t n1[1] = {1000000};
    op = mkop("elementwise", "fp32", "relu", n1, 1);
    assert_int_equal(cm_op_time(m, &op, &p, &e), 0);
    REL(p.time_s, 1e-6 + 8e6 / (1e11 * 0.8), 1e-12); /* memory-bound */
    /* fp16 runs at its own rate; a precision the device lacks falls back */
    op = mkop("gemm", "fp16", NULL, g, 3);
    assert_int_equal(cm_op_time(m, &op, &p, &e), 0);
    REL(p.time_s, 1e-6 + fmax(flops / (1e14 * 0.5), 2.0 * 3 * 1024 * 1024 / (1e11 * 0.8)), 1e-12);
    op = mkop("gemm", "bf16", NULL, g, 3);
    assert_int_equal(cm_op_time(m, &op, &p, &e), 0);
    REL(p.time_s, 1e-6 + flops / (1e12 * 0.5), 1e-12);
    assert_non_null(strstr(p.note, "fp32"));
    cm_model_free(m);
}

static void test_invalid_ops(void **st)
{
    (void)st;
    cm_device d = test_device();
    ps_err e = {0};
    cm_model *m = cm_model_roofline(&d, &e);
    ps_op op;
    memset(&op, 0, sizeof op);
    snprintf(op.kind, sizeof op.kind, "gemm");
    snprintf(op.dtype, sizeof op.dtype, "fp32");
    snprintf(op.variant, sizeof op.variant, "nn");
    op.d[0] = 8, op.d[1] = 0, op.d[2] = 8;
    cm_pred p;
    assert_int_equal(cm_op_time(m, &op, &p, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "n"));
    snprintf(op.kind, sizeof op.kind, "gemmm");
    op.d[1] = 8;
    assert_int_equal(cm_op_time(m, &op, &p, &e), PS_EINPUT);
    cm_model_free(m);
}

/* ------------------------------------------------------------ fits */

/* time = 1e-6 + flops/1e11 with 1% noise on a log grid; predictions at
 * random off-grid shapes inside the grid must follow the law closely. */
static void test_fit_recovers_law(void **st)
{
    (void)st;
    const int64_t vals[] = {32, 64, 128, 256, 512, 1024, 2048};
    ps_db_row rows[343];
    size_t n = 0;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b++)
            for (int c = 0; c < 7; c++) {
                int64_t d[3] = {vals[a], vals[b], vals[c]};
                ps_op op = mkop("gemm", "fp32", NULL, d, 3);
                double t = (1e-6 + ps_op_flops(&op) / 1e11) * (1 + 0.01 * nrand());
                rows[n++] = mkrow(&op, t);
            }
    cm_device dev = test_device();
    ps_err e = {0};
    cm_model *m = cm_model_from_rows(&dev, rows, n, NULL, 0, &e);
    assert_non_null(m);
    double worst = 0, sum = 0;
    int np = 200;
    for (int i = 0; i < np; i++) {
        int64_t d[3];
        for (int j = 0; j < 3; j++)
            d[j] = (int64_t)exp(log(40.0) + urand() * (log(1900.0) - log(40.0)));
        ps_op op = mkop("gemm", "fp32", NULL, d, 3);
        cm_pred p;
        assert_int_equal(cm_op_time(m, &op, &p, &e), 0);
        assert_int_equal(p.source, CM_SRC_FIT);
        double truth = 1e-6 + ps_op_flops(&op) / 1e11;
        double err = fabs(p.time_s / truth - 1);
        worst = fmax(worst, err);
        sum += err;
        assert_true(p.rel_uncertainty > 0 && p.rel_uncertainty < 0.1);
    }
    if (!(sum / np < 0.01) || !(worst < 0.05))
        fail_msg("fit: mean error %.4f, worst %.4f", sum / np, worst);
    cm_model_free(m);
}

static void test_exact_hit_and_validate(void **st)
{
    (void)st;
    ps_db_row rows[200];
    size_t n = 0;
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++) {
            int64_t d[2] = {(int64_t)16 << i, (int64_t)16 << j};
            ps_op op = mkop("reduction", "fp32", "softmax", d, 2);
            rows[n++] = mkrow(&op, 2e-7 + ps_op_bytes(&op) / 5e9);
        }
    for (int i = 0; i < 12; i++) {
        int64_t b[1] = {(int64_t)4096 << i};
        ps_op op = mkop("memcpy", NULL, "host", b, 1);
        rows[n++] = mkrow(&op, 5e-7 + (double)b[0] / 8e9);
    }
    cm_device dev = test_device();
    ps_err e = {0};
    cm_model *m = cm_model_from_rows(&dev, rows, n, NULL, 0, &e);
    assert_non_null(m);
    cm_pred p;
    assert_int_equal(cm_op_time(m, &rows[37].op, &p, &e), 0);
    assert_int_equal(p.source, CM_SRC_DB);
    assert_string_equal(cm_source_name(p.source), "db");
    REL(p.time_s, rows[37].median_s, 0);
    cm_model_set_exact_hits(m, 0);
    assert_int_equal(cm_op_time(m, &rows[37].op, &p, &e), 0);
    assert_int_equal(p.source, CM_SRC_FIT);
    REL(p.time_s, rows[37].median_s, 0.02);
    /* α–β from the copies */
    cm_ab ab;
    assert_int_equal(cm_model_copy_ab(m, "host", &ab, &e), 0);
    REL(ab.alpha_s, 5e-7, 1e-6);
    REL(ab.beta_bytes_per_s, 8e9, 1e-6);
    assert_int_equal(cm_model_copy_ab(m, "h2d", &ab, &e), PS_EINPUT);
    cm_model_free(m);

    cm_validate_opts o = {0.25, 7};
    json_t *rep = NULL;
    cm_validate_point *pts = NULL;
    size_t np = 0;
    assert_int_equal(cm_validate(rows, n, &dev, NULL, 0, &o, &rep, &pts, &np, &e), 0);
    assert_non_null(rep);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rep, "sources"), "db")),
                     0);
    assert_true(np == 25 + 3);
    assert_true(json_real_value(json_object_get(rep, "median_rel_err")) < 0.02);
    json_t *pk = json_object_get(rep, "per_kind");
    assert_non_null(json_object_get(pk, "reduction"));
    assert_non_null(json_object_get(pk, "memcpy"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(pk, "memcpy"), "n")), 3);
    /* same seed, same split */
    json_t *rep2 = NULL;
    assert_int_equal(cm_validate(rows, n, &dev, NULL, 0, &o, &rep2, NULL, NULL, &e), 0);
    REL(json_real_value(json_object_get(rep2, "median_rel_err")),
        json_real_value(json_object_get(rep, "median_rel_err")), 0);
    json_decref(rep);
    json_decref(rep2);
    free(pts);
}

static void test_phases(void **st)
{
    (void)st;
    ps_err e = {0};
    int64_t g[3] = {100, 200, 300};
    ps_op op = mkop("gemm", "fp32", NULL, g, 3), ph;
    assert_int_equal(cm_phase_op(&op, CM_PHASE_BWD_INPUT, &ph, &e), 0);
    assert_true(ph.d[0] == 100 && ph.d[1] == 300 && ph.d[2] == 200);
    assert_int_equal(cm_phase_op(&op, CM_PHASE_BWD_WEIGHT, &ph, &e), 0);
    assert_true(ph.d[0] == 300 && ph.d[1] == 200 && ph.d[2] == 100);
    int64_t c[9] = {2, 3, 16, 16, 8, 3, 3, 1, 1};
    ps_op conv = mkop("conv2d", "fp32", NULL, c, 9);
    assert_int_equal(cm_phase_op(&conv, CM_PHASE_BWD_WEIGHT, &ph, &e), 0);
    assert_string_equal(ph.variant, "bwd_weight");

    cm_device d = test_device();
    cm_model *m = cm_model_roofline(&d, &e);
    cm_pred f, b;
    int64_t a[5] = {2, 4, 128, 128, 64};
    ps_op at = mkop("attention", "fp32", "causal", a, 5);
    assert_int_equal(cm_op_time_phase(m, &at, CM_PHASE_FWD, &f, &e), 0);
    assert_int_equal(cm_op_time_phase(m, &at, CM_PHASE_BWD_INPUT, &b, &e), 0);
    REL(b.time_s, 2.5 * f.time_s, 1e-12);
    assert_int_equal(cm_op_time_phase(m, &at, CM_PHASE_BWD_WEIGHT, &b, &e), 0);
    assert_true(b.time_s == 0);
    int64_t eb[4] = {1000, 64, 8, 32};
    ps_op emb = mkop("embedding_bag", "fp32", NULL, eb, 4);
    assert_int_equal(cm_op_time_phase(m, &emb, CM_PHASE_FWD, &f, &e), 0);
    assert_int_equal(cm_op_time_phase(m, &emb, CM_PHASE_BWD_WEIGHT, &b, &e), 0);
    REL(b.time_s, 2 * f.time_s, 1e-12);
    /* gemm backward = forward GEMMs of the transposed shapes */
    assert_int_equal(cm_op_time_phase(m, &op, CM_PHASE_BWD_INPUT, &b, &e), 0);
    assert_int_equal(cm_phase_op(&op, CM_PHASE_BWD_INPUT, &ph, &e), 0);
    assert_int_equal(cm_op_time(m, &ph, &f, &e), 0);
    REL(b.time_s, f.time_s, 0);
    int64_t mc[1] = {4096};
    ps_op cp = mkop("memcpy", NULL, "host", mc, 1);
    assert_int_equal(cm_op_time_phase(m, &cp, CM_PHASE_BWD_INPUT, &b, &e), PS_EINPUT);
    assert_int_equal(cm_phase_from_name("bwd_weight"), CM_PHASE_BWD_WEIGHT);
    assert_int_equal(cm_phase_from_name("backward"), -1);
    cm_model_free(m);
}

/* ------------------------------------------------------- communication */

static void test_collectives(void **st)
{
    (void)st;
    ps_err e = {0};
    cm_ab in = {2e-6, 300e9}, out = {5e-6, 25e9};
    cm_topology t = {1, 8, in, out};
    double S = 1e9, n = 8, x;
    assert_int_equal(cm_collective_time(&t, CM_COLL_ALLREDUCE, CM_ALG_RING, S, &x, &e), 0);
    REL(x, 2 * (n - 1) * 2e-6 + 2 * (n - 1) / n * S / 300e9, 1e-12);
    assert_int_equal(cm_collective_time(&t, CM_COLL_ALLGATHER, CM_ALG_RING, S, &x, &e), 0);
    REL(x, (n - 1) * 2e-6 + (n - 1) / n * S / 300e9, 1e-12);
    assert_int_equal(cm_collective_time(&t, CM_COLL_REDUCESCATTER, CM_ALG_RING, S, &x, &e), 0);
    REL(x, (n - 1) * 2e-6 + (n - 1) / n * S / 300e9, 1e-12);
    assert_int_equal(cm_collective_time(&t, CM_COLL_ALLREDUCE, CM_ALG_TREE, S, &x, &e), 0);
    REL(x, 2 * 3 * (2e-6 + S / 300e9), 1e-12);
    assert_int_equal(cm_collective_time(&t, CM_COLL_ALLGATHER, CM_ALG_TREE, S, &x, &e), 0);
    REL(x, 3 * 2e-6 + (n - 1) / n * S / 300e9, 1e-12);
    /* small messages: the tree's log n latency beats the ring's n */
    double ring, tree;
    cm_collective_time(&t, CM_COLL_ALLREDUCE, CM_ALG_RING, 8, &ring, &e);
    cm_collective_time(&t, CM_COLL_ALLREDUCE, CM_ALG_TREE, 8, &tree, &e);
    assert_true(tree < ring);

    /* 4 nodes x 8: hierarchical = intra RS + inter AR on S/8 + intra AG */
    cm_topology h = {4, 8, in, out};
    assert_int_equal(cm_collective_time(&h, CM_COLL_ALLREDUCE, CM_ALG_HIER, S, &x, &e), 0);
    double rs = 7 * 2e-6 + 7.0 / 8 * S / 300e9;
    double ar = 2 * 3 * 5e-6 + 2 * 3.0 / 4 * (S / 8) / 25e9;
    REL(x, rs + ar + rs, 1e-12);
    assert_int_equal(cm_collective_time(&h, CM_COLL_ALLREDUCE, CM_ALG_RING, S, &x, &e), 0);
    REL(x, 2 * 31 * 5e-6 + 2 * 31.0 / 32 * S / 25e9, 1e-12);
    cm_topology one = {1, 1, in, out};
    assert_int_equal(cm_collective_time(&one, CM_COLL_ALLREDUCE, CM_ALG_RING, S, &x, &e), 0);
    assert_true(x == 0);
    cm_topology bad = {0, 8, in, out};
    assert_int_equal(cm_collective_time(&bad, CM_COLL_ALLREDUCE, CM_ALG_RING, S, &x, &e),
                     PS_EINPUT);
    REL(cm_p2p_time(in, 1e6), 2e-6 + 1e6 / 300e9, 1e-12);
    assert_int_equal(cm_coll_from_name("reducescatter"), CM_COLL_REDUCESCATTER);
    assert_int_equal(cm_alg_from_name("hier"), CM_ALG_HIER);

    double bytes[4] = {1e3, 1e5, 1e7, 1e9}, ts[4];
    for (int i = 0; i < 4; i++)
        ts[i] = 3e-6 + bytes[i] / 2e10;
    cm_ab ab;
    assert_int_equal(cm_fit_ab(bytes, ts, 4, &ab, &e), 0);
    REL(ab.alpha_s, 3e-6, 1e-8);
    REL(ab.beta_bytes_per_s, 2e10, 1e-8);
    assert_int_equal(cm_fit_ab(bytes, ts, 1, &ab, &e), PS_EINPUT);
}

/* ------------------------------------------------------------ memory */

static void test_memory(void **st)
{
    (void)st;
    ps_err e = {0};
    cm_mem_spec s = {.params = 1e9,
                     .weight_bytes_per_param = 2,
                     .grad_bytes_per_param = 2,
                     .optimizer = CM_OPT_ADAM,
                     .master_fp32 = 1,
                     .activation_bytes_per_sample = 1e6,
                     .micro_batch = 4,
                     .micro_batches_in_flight = 3};
    cm_mem m;
    assert_int_equal(cm_memory(&s, &m, &e), 0);
    REL(m.weights_bytes, 2e9, 0);
    REL(m.grads_bytes, 2e9, 0);
    REL(m.optimizer_bytes, 12e9, 0); /* m, v and the fp32 master: 16 B/param total with w, g */
    REL(m.activations_bytes, 12e6, 0);
    REL(m.total_bytes, 16e9 + 12e6, 0);
    s.optimizer = CM_OPT_MOMENTUM;
    s.master_fp32 = 0;
    assert_int_equal(cm_memory(&s, &m, &e), 0);
    REL(m.optimizer_bytes, 4e9, 0);
    s.optimizer = CM_OPT_SGD;
    assert_int_equal(cm_memory(&s, &m, &e), 0);
    assert_true(m.optimizer_bytes == 0);
    s.params = -1;
    assert_int_equal(cm_memory(&s, &m, &e), PS_EINPUT);
    assert_int_equal(cm_optimizer_from_name("adam"), CM_OPT_ADAM);
    /* Korthikanti et al.: s·b·h·(34 + 5·a·s/h) */
    REL(cm_transformer_layer_activation_bytes(2048, 1, 4096, 32),
        2048.0 * 4096 * (34 + 5.0 * 32 * 2048 / 4096), 1e-12);
}

/* ---------------------------------------------------- quantized, LLM */

static void test_quant_bytes(void **st)
{
    (void)st;
    ps_err e = {0};
    cm_device d = test_device();
    cm_model *m = cm_model_roofline(&d, &e);
    const int bits[] = {2, 3, 4, 8, 16};
    int64_t M = 16, N = 4096, K = 4096, G = 128;
    for (int i = 0; i < 5; i++) {
        cm_quant_pred q;
        assert_int_equal(cm_quant_gemm(m, M, N, K, bits[i], 16, G, &q, &e), 0);
        double scales = bits[i] < 16 ? 2.0 * N * (K / G) : 0;
        REL(q.scale_bytes, scales, 0);
        REL(q.weight_bytes, (double)K * N * bits[i] / 8 + scales, 0);
        REL(q.act_bytes, (double)M * K * 2 + (double)M * N * 2, 0);
        REL(q.flops, 2.0 * M * N * K, 0);
        REL(cm_quant_weight_bytes((double)K * N, bits[i], G), q.weight_bytes, 1e-12);
        assert_int_equal(q.compute, CM_FP16);
    }
    /* fewer bits, less traffic, less time when memory-bound (M small) */
    cm_quant_pred q4, q8, q16;
    cm_quant_gemm(m, 1, N, K, 4, 16, G, &q4, &e);
    cm_quant_gemm(m, 1, N, K, 8, 16, G, &q8, &e);
    cm_quant_gemm(m, 1, N, K, 16, 16, G, &q16, &e);
    assert_true(q4.time_s < q8.time_s && q8.time_s < q16.time_s);
    /* integer paths where the device has them */
    cm_quant_pred qi;
    assert_int_equal(cm_quant_gemm(m, M, N, K, 8, 8, G, &qi, &e), 0);
    assert_int_equal(qi.compute, CM_INT8);
    assert_string_equal(qi.path, "int8 tensor");
    assert_int_equal(cm_quant_gemm(m, M, N, K, 4, 4, G, &qi, &e), 0);
    assert_int_equal(qi.compute, CM_INT8); /* no int4 rate on testdev */
    d.peak_flops[CM_INT4] = 4e14;
    cm_model *m4 = cm_model_roofline(&d, &e);
    assert_int_equal(cm_quant_gemm(m4, M, N, K, 4, 4, G, &qi, &e), 0);
    assert_int_equal(qi.compute, CM_INT4);
    assert_int_equal(cm_quant_gemm(m, M, N, K, 4, 16, 0, &qi, &e), 0);
    REL(qi.scale_bytes, 2.0 * N, 0); /* one scale per output column */
    assert_int_equal(cm_quant_gemm(m, M, 0, K, 4, 16, G, &qi, &e), PS_EINPUT);
    assert_int_equal(cm_quant_gemm(m, M, N, K, 12, 16, G, &qi, &e), PS_EINPUT);
    cm_model_free(m4);
    cm_model_free(m);
}

static void test_llm_step(void **st)
{
    (void)st;
    ps_err e = {0};
    cm_device d = test_device(); /* fp16 1e14, bw 1e11 */
    d.launch_s = 0;
    cm_model *m = cm_model_roofline(&d, &e);
    assert_int_equal(cm_model_set_efficiency(m, "gemm", 1, 1, &e), 0);
    cm_llm l = {.params = 7e9, .layers = 32, .d_model = 4096, .heads = 32, .kv_heads = 32,
                .head_dim = 128, .weight_bits = 16, .kv_bits = 16};
    cm_llm_pred p;
    assert_int_equal(cm_llm_step(m, &l, 1, 1, 128, &p, &e), 0);
    assert_false(p.compute_bound);
    REL(p.weight_bytes, 14e9, 1e-12);
    REL(p.time_s, 14e9 / 1e11, 0.01); /* weights / bandwidth */
    /* a tree of 16 tokens costs about the same as one: still memory-bound */
    cm_llm_pred p16;
    assert_int_equal(cm_llm_step(m, &l, 1, 16, 128, &p16, &e), 0);
    REL(p16.time_s, p.time_s, 0.02);
    assert_true(p.knee_tokens > 100 && p.knee_tokens < 2000);
    /* far past the knee: FLOPs / peak */
    assert_int_equal(cm_llm_step(m, &l, 64, 512, 0, &p, &e), 0);
    assert_true(p.compute_bound);
    REL(p.time_s, p.flops / 1e14, 1e-12);
    REL(p.flops, 2 * 7e9 * 64 * 512 + 64.0 * 512 * 4 * 32 * 32 * 128 * 512, 1e-12);
    /* quantized weights halve the memory-bound time */
    l.weight_bits = 8;
    cm_llm_pred q;
    assert_int_equal(cm_llm_step(m, &l, 1, 1, 128, &q, &e), 0);
    REL(q.weight_bytes, 7e9 + 2 * ceil(7e9 / 128), 1e-12);
    assert_true(q.time_s < 0.55 * 14e9 / 1e11);
    assert_int_equal(cm_llm_step(m, &l, 0, 1, 128, &q, &e), PS_EINPUT);
    cm_model_free(m);
}

/* ------------------------------------------------------------ catalog */

static void test_catalog(void **st)
{
    (void)st;
    ps_err e = {0};
    cm_catalog *c = cm_catalog_new(&e);
    assert_non_null(c);
    const char *names[] = {"h100-sxm", "h200", "a100-40g", "a100-80g", "v100-16g",
                           "v100-32g", "a10",  "l40s",     "t4",       "l4"};
    for (int i = 0; i < 10; i++) {
        const cm_device *d = cm_catalog_device(c, names[i], &e);
        assert_non_null(d);
        assert_true(d->peak_flops[CM_FP32] > 0 && d->peak_flops[CM_FP16] > 0);
        assert_true(d->mem_bytes > 0 && d->mem_bw_bytes_per_s > 0);
        assert_non_null(cm_catalog_link(c, d->intra_link, &e));
        assert_true(d->source[0]);
    }
    REL(cm_catalog_device(c, "h100-sxm", &e)->peak_flops[CM_BF16], 989.5e12, 0);
    REL(cm_catalog_device(c, "h200", &e)->mem_bw_bytes_per_s, 4.8e12, 0);
    const char *links[] = {"nvlink2", "nvlink3", "nvlink4", "pcie3", "pcie4",
                           "pcie5",   "ib_edr",  "ib_hdr",  "ib_ndr"};
    for (int i = 0; i < 9; i++)
        assert_non_null(cm_catalog_link(c, links[i], &e));
    assert_null(cm_catalog_device(c, "h300", &e));
    assert_non_null(strstr(e.msg, "h100-sxm"));
    assert_string_equal(cm_catalog_match("NVIDIA H100 80GB HBM3"), "h100-sxm");
    assert_string_equal(cm_catalog_match("NVIDIA A100-SXM4-80GB"), "a100-80g");
    assert_string_equal(cm_catalog_match("Tesla V100-SXM2-16GB"), "v100-16g");
    assert_string_equal(cm_catalog_match("NVIDIA L40S"), "l40s");
    assert_string_equal(cm_catalog_match("NVIDIA A10"), "a10");
    /* fallbacks: int4 on H100 runs at the int8 rate; bf16 on V100 at fp32 */
    cm_prec used;
    REL(cm_device_peak(cm_catalog_device(c, "h100-sxm", &e), CM_INT4, &used), 1979e12, 0);
    assert_int_equal(used, CM_INT8);
    REL(cm_device_peak(cm_catalog_device(c, "v100-16g", &e), CM_BF16, &used), 15.7e12, 0);

    char path[] = "/tmp/plansim_cm_catXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *good = "{\"devices\": {\"h100-sxm\": {\"mem_bw_bytes_per_s\": 3e12},"
                       " \"mygpu\": {\"desc\": \"x\", \"is_gpu\": true, \"mem_bytes\": 1e10,"
                       " \"mem_bw_bytes_per_s\": 1e11, \"peak_flops\": {\"fp16\": 1e14},"
                       " \"intra_link\": \"myl\"}},"
                       " \"links\": {\"myl\": {\"latency_s\": 1e-6, \"bw_bytes_per_s\": 1e10}}}";
    assert_true(write(fd, good, strlen(good)) == (ssize_t)strlen(good));
    close(fd);
    assert_int_equal(cm_catalog_load_json(c, path, &e), 0);
    REL(cm_catalog_device(c, "h100-sxm", &e)->mem_bw_bytes_per_s, 3e12, 0);
    REL(cm_catalog_device(c, "h100-sxm", &e)->peak_flops[CM_FP16], 989.5e12, 0);
    REL(cm_catalog_device(c, "mygpu", &e)->peak_flops[CM_FP16], 1e14, 0);
    REL(cm_catalog_link(c, "myl", &e)->bw_bytes_per_s, 1e10, 0);
    FILE *f = fopen(path, "w");
    fputs("{\"devices\": {\"a10\": {\"peak_flops\": {\"fp16\": \"fast\"}}}}", f);
    fclose(f);
    assert_int_equal(cm_catalog_load_json(c, path, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "$.devices.a10.peak_flops.fp16"));
    f = fopen(path, "w");
    fputs("{\"devices\": {\"a10\": {\"mem_bytes\": -5}}}", f);
    fclose(f);
    assert_int_equal(cm_catalog_load_json(c, path, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "$.devices.a10.mem_bytes"));
    f = fopen(path, "w");
    fputs("{\"devices\": {\"a10\": {\"mem_byte\": 5}}}", f);
    fclose(f);
    assert_int_equal(cm_catalog_load_json(c, path, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "mem_byte"));
    unlink(path);

    const char *pn[] = {"gemm_fp32_flops_per_s", "memcpy_bytes_per_s"};
    double pv[] = {5e10, 2e10};
    assert_int_equal(cm_catalog_set_cpu_peaks(c, pn, pv, 2, "test", &e), 0);
    REL(cm_catalog_device(c, "cpu", &e)->peak_flops[CM_FP32], 5e10, 0);
    cm_catalog_free(c);
}

/* ------------------------------------------------------------ CLI */

static const char *bin(void)
{
    const char *b = getenv("PLANSIM_BIN");
    return b ? b : "build/plansim";
}

static int run_cmd(const char *fmt, ...)
{
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >/tmp/plansim_cm_out.txt 2>/tmp/plansim_cm_err.txt", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    ps_err e = {0};
    char *s = ps_file_read(path, NULL, &e);
    return s ? s : strdup("");
}

/* A small CPU database written through profile's own writer. */
static void write_db(const char *path)
{
    ps_err e = {0};
    ps_db_meta meta = {"cpu", "test cpu", "", 1, -1};
    ps_db_writer *w = ps_db_writer_open(path, &meta, 1, &e);
    if (!w)
        fail_msg("writer: %s", e.msg);
    ps_db_writer_add_peak(w, PS_PEAK_GEMM_FP32, 5e10, "flop/s", &e);
    ps_db_writer_add_peak(w, PS_PEAK_MEMCPY, 2e10, "B/s", &e);
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++)
            for (int c = 0; c < 6; c++) {
                int64_t d[3] = {(int64_t)32 << a, (int64_t)32 << b, (int64_t)32 << c};
                ps_op op = mkop("gemm", "fp32", NULL, d, 3);
                double t = 1e-6 + ps_op_flops(&op) / 4e10;
                ps_stats s = {5, t, t * 0.98, t * 1.02, t * 0.97, t};
                if (ps_db_writer_add_op(w, &op, "openblas", "clock", &s, NAN, &e) < 0)
                    fail_msg("add_op: %s", e.msg);
            }
    if (ps_db_writer_commit(w, &e))
        fail_msg("commit: %s", e.msg);
}

static void test_cli(void **st)
{
    (void)st;
    const char *db = "/tmp/plansim_cm_test.h5";
    write_db(db);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op "
                             "'{\"kind\":\"gemm\",\"m\":512,\"n\":512,\"k\":512,\"dtype\":\"fp32\"}' "
                             "--json",
                             bin(), db),
                     0);
    char *out = slurp("/tmp/plansim_cm_out.txt");
    json_t *j = ps_json_load_str(out, "out", NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "db");
    REL(json_real_value(json_object_get(j, "time_s")), 1e-6 + 2.0 * 512 * 512 * 512 / 4e10, 1e-9);
    json_decref(j);
    free(out);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op "
                             "'{\"kind\":\"gemm\",\"m\":300,\"n\":500,\"k\":700}' --json "
                             "--phase bwd_weight",
                             bin(), db),
                     0);
    out = slurp("/tmp/plansim_cm_out.txt");
    j = ps_json_load_str(out, "out", NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "fit");
    REL(json_real_value(json_object_get(j, "time_s")), 1e-6 + 2.0 * 300 * 500 * 700 / 4e10, 0.05);
    json_decref(j);
    free(out);
    /* unknown kind, zero and negative dims: exit 2 with the field named */
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op '{\"kind\":\"gemmx\",\"m\":1}'",
                             bin(), db),
                     2);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op "
                             "'{\"kind\":\"gemm\",\"m\":0,\"n\":5,\"k\":5}'",
                             bin(), db),
                     2);
    char *err = slurp("/tmp/plansim_cm_err.txt");
    assert_non_null(strstr(err, "m"));
    free(err);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op "
                             "'{\"kind\":\"gemm\",\"m\":4,\"n\":-5,\"k\":5}'",
                             bin(), db),
                     2);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op '{\"kind\":' ", bin(), db), 2);
    assert_int_equal(run_cmd("%s costmodel predict --db %s --phase sideways --op "
                             "'{\"kind\":\"gemm\",\"m\":4,\"n\":5,\"k\":5}'",
                             bin(), db),
                     2);
    /* truncated, corrupt and foreign databases */
    const char *tr = "/tmp/plansim_cm_trunc.h5";
    char *whole;
    size_t len;
    {
        ps_err e = {0};
        whole = ps_file_read(db, &len, &e);
        assert_non_null(whole);
        FILE *f = fopen(tr, "wb");
        fwrite(whole, 1, len / 2, f);
        fclose(f);
        free(whole);
    }
    assert_int_equal(run_cmd("%s costmodel predict --db %s --op "
                             "'{\"kind\":\"gemm\",\"m\":4,\"n\":5,\"k\":5}'",
                             bin(), tr),
                     2);
    assert_int_equal(run_cmd("%s costmodel validate --db %s", bin(), tr), 2);
    err = slurp("/tmp/plansim_cm_err.txt");
    assert_non_null(strstr(err, tr));
    free(err);
    FILE *f = fopen(tr, "wb");
    fputs("this is not HDF5 at all", f);
    fclose(f);
    assert_int_equal(run_cmd("%s costmodel validate --db %s", bin(), tr), 2);
    hid_t h = H5Fcreate(tr, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(h >= 0);
    H5Fclose(h);
    assert_int_equal(run_cmd("%s costmodel validate --db %s", bin(), tr), 2);
    err = slurp("/tmp/plansim_cm_err.txt");
    assert_non_null(strstr(err, "not a plansim profile database"));
    free(err);
    assert_int_equal(run_cmd("%s costmodel validate --db /nonexistent/x.h5", bin()), 2);
    unlink(tr);
    /* validate: the acceptance fields, and a plot */
    assert_int_equal(run_cmd("%s costmodel validate --db %s --json -o /tmp/plansim_cm_plot "
                             "--holdout 0.2 --seed 3",
                             bin(), db),
                     0);
    out = slurp("/tmp/plansim_cm_out.txt");
    j = ps_json_load_str(out, "out", NULL);
    assert_non_null(j);
    assert_true(json_is_number(json_object_get(j, "median_rel_err")));
    assert_true(json_is_number(json_object_get(j, "p90_rel_err")));
    assert_true(json_real_value(json_object_get(j, "median_rel_err")) < 0.05);
    json_t *g = json_object_get(json_object_get(j, "per_kind"), "gemm");
    assert_non_null(g);
    assert_true(json_integer_value(json_object_get(g, "n")) > 0);
    assert_true(ps_file_exists("/tmp/plansim_cm_plot/costmodel_validate.dat"));
    json_decref(j);
    free(out);
    assert_int_equal(run_cmd("%s costmodel validate --db %s --holdout 1.5", bin(), db), 2);
    assert_int_equal(run_cmd("%s costmodel devices --json", bin()), 0);
    assert_int_equal(run_cmd("%s costmodel predict --device h100-sxm --op "
                             "'{\"kind\":\"gemm\",\"m\":4096,\"n\":4096,\"k\":4096,"
                             "\"dtype\":\"bf16\"}' --json",
                             bin()),
                     0);
    out = slurp("/tmp/plansim_cm_out.txt");
    assert_non_null(strstr(out, "roofline"));
    free(out);
    assert_int_equal(run_cmd("%s costmodel predict --device nosuchgpu --op "
                             "'{\"kind\":\"gemm\",\"m\":4,\"n\":4,\"k\":4}'",
                             bin()),
                     2);
    unlink(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roofline_closed_form),
        cmocka_unit_test(test_invalid_ops),
        cmocka_unit_test(test_fit_recovers_law),
        cmocka_unit_test(test_exact_hit_and_validate),
        cmocka_unit_test(test_phases),
        cmocka_unit_test(test_collectives),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_quant_bytes),
        cmocka_unit_test(test_llm_step),
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
