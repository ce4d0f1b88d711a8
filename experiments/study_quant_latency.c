/* The quant_latency study: the integer Fashion-MNIST CNN (real/qcnn.h) on
 * this CPU — a per-layer latency lookup table from microbenchmarks
 * (sim/quant/latency.h), predicted vs measured end-to-end latency of many
 * per-layer bit vectors, int8 vs int4 speed per layer, and one
 * latency-budgeted allocation by the exact solver (sim/quant/alloc.h).
 *
 * Per point (batch):
 *   - the CNN: trained weights from `weights` when the file exists
 *     (e.g. `make models`), else the default config at random init (seed);
 *     calibration on Fashion-MNIST test images (random inputs when the data
 *     set is missing); OpenBLAS at 1 thread, the integer kernels are
 *     single-threaded too;
 *   - table: bits {2,3,4,6,8,32} per layer, warm-up then `runs` timed rounds;
 *   - bit vectors over {2,3,4,6,8}^L: all of them (n_vectors 0 and batch
 *     ≤ 8), else n_vectors drawn (the 5 uniform ones always included), plus
 *     all-f32; each measured as the median of `runs` full forwards, the
 *     vectors in a fresh random order every round, among the six uniform
 *     CALIBRATION forwards whose per-layer timestamps make the table
 *     (psq_lat_measure_context); the error statistics are over the
 *     non-uniform (held-out) vectors only, for the in-context table and,
 *     for comparison, the isolated-cell table (iso_* metrics);
 *   - the allocation: options {2,3,4,6,8,32}, Ω(l, b) = (1/K_l)·‖Q_b(W_l) −
 *     W_l‖² (a PROXY for the Hessian trace: trace/n ∝ 1/fan-in; the real
 *     traces are the quant_fmnist study's; Ω = 0 at f32), latency from the
 *     table; budgets: size ≤ the uniform 4-bit size AND latency ≤ the median
 *     predicted latency of the measured vectors (both dimensions at once). */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/study.h"
#include "kernels/cpu_blas.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/qcnn.h"
#include "sim/quant/alloc.h"
#include "sim/quant/latency.h"
#include "sim/quant/quantizer.h"

static const ps_param_spec params[] = {
    {"batch", PS_PARAM_INT, NULL, "", "images per forward"},
    {"runs", PS_PARAM_INT, "30", "", "timed runs per median (table and end-to-end)"},
    {"warmup", PS_PARAM_INT, "3", "", "untimed runs before each median"},
    {"n_vectors", PS_PARAM_INT, "0", "",
     "bit vectors to measure: 0 = all 5^L when batch <= 8, else 100"},
    {"weights", PS_PARAM_STR, "\"../models/cnn_fmnist.bin\"", "",
     "trained CNN (relative to the config); random init when missing"},
    {"threads", PS_PARAM_INT, "1", "", "OpenBLAS threads for the f32 layers"},
    {"pin_cpu", PS_PARAM_INT, "1", "",
     "1: pin the measuring thread to the CPU it is on while timing (no migration between "
     "CPUs mid-measurement: a migrated forward starts with cold caches); 0: leave it free"},
    {"clock", PS_PARAM_STR, "\"thread_cpu\"", "",
     "thread_cpu (CPU time of this thread: immune to being descheduled on a shared machine) "
     "| wall"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_TRAINED,
    M_NVEC,
    M_ERR_MED,
    M_ERR_P90,
    M_ERR_MAX,
    M_ERR_BIAS,
    M_WITHIN10,
    M_F32_MEAS,
    M_I8_MEAS,
    M_I4_MEAS,
    M_I8_PRED,
    M_I4_PRED,
    M_GEMM_RATIO,
    M_BUDGET,
    M_PICK_PRED,
    M_PICK_MEAS,
    M_PICK_OMEGA,
    M_U4_OMEGA,
    M_U8_OMEGA,
    M_NHELD,
    M_ISO_MED,
    M_ISO_BIAS,
    M_ISO_WITHIN10,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_TRAINED] = {"trained", "", "1: trained weights loaded; 0: random init"},
    [M_NVEC] = {"n_vectors", "", "bit vectors measured (incl. all-f32)"},
    [M_ERR_MED] = {"abs_err_median", "",
                   "median |predicted - measured| / measured over the held-out vectors "
                   "(in-context table)"},
    [M_ERR_P90] = {"abs_err_p90", "", "90th percentile of the relative error"},
    [M_ERR_MAX] = {"abs_err_max", "", "largest relative error"},
    [M_ERR_BIAS] = {"err_median_signed", "", "median signed relative error"},
    [M_WITHIN10] = {"frac_within_10pct", "", "share of vectors with |err| <= 10%"},
    [M_F32_MEAS] = {"f32_measured_s", "s", "all layers f32 (OpenBLAS)"},
    [M_I8_MEAS] = {"int8_measured_s", "s", "all layers 8-bit"},
    [M_I4_MEAS] = {"int4_measured_s", "s", "all layers 4-bit (packed int4)"},
    [M_I8_PRED] = {"int8_predicted_s", "s", "table prediction, all 8-bit"},
    [M_I4_PRED] = {"int4_predicted_s", "s", "table prediction, all 4-bit"},
    [M_GEMM_RATIO] = {"int4_over_int8_gemm", "", "Σ GEMM time int4 / int8 (>1: int4 slower)"},
    [M_BUDGET] = {"latency_budget_s", "s",
                  "latency budget of the allocation: median predicted latency of the vectors "
                  "(with a size budget = uniform 4-bit size)"},
    [M_PICK_PRED] = {"pick_predicted_s", "s", "predicted latency of the min-ΣΩ pick"},
    [M_PICK_MEAS] = {"pick_measured_s", "s", "measured latency of the pick"},
    [M_PICK_OMEGA] = {"pick_omega", "", "ΣΩ (proxy) of the pick"},
    [M_U4_OMEGA] = {"uniform4_omega", "", "ΣΩ (proxy) uniform 4-bit"},
    [M_U8_OMEGA] = {"uniform8_omega", "", "ΣΩ (proxy) uniform 8-bit"},
    [M_NHELD] = {"n_heldout", "",
                 "vectors the error statistics are over: all measured vectors except the "
                 "uniform ones (the calibration configurations of the table)"},
    [M_ISO_MED] = {"iso_abs_err_median", "",
                   "median |err| on the same held-out vectors with the isolated-cell table "
                   "(each layer re-run alone right after a forward of the same bits)"},
    [M_ISO_BIAS] = {"iso_err_median_signed", "", "median signed error, isolated-cell table"},
    [M_ISO_WITHIN10] = {"iso_frac_within_10pct", "", "share within 10%, isolated-cell table"},
    [M_COUNT] = {NULL, NULL, NULL}};

static const int TBITS[] = {2, 3, 4, 6, 8, 32};
#define NTB 6
#define NQB 5 /* the first five are the quantized choices */

static int check(const ps_point *p, ps_err *e)
{
    long long b = ps_point_int(p, "batch");
    if (b < 1 || b > 1024)
        return ps_errf(e, PS_EINPUT, "batch: %lld out of range 1..1024", b);
    if (ps_point_int(p, "runs") < 1 || ps_point_int(p, "runs") > 10000)
        return ps_errf(e, PS_EINPUT, "runs: %lld out of range 1..10000", ps_point_int(p, "runs"));
    if (ps_point_int(p, "warmup") < 0)
        return ps_errf(e, PS_EINPUT, "warmup: must be >= 0");
    if (ps_point_int(p, "n_vectors") < 0)
        return ps_errf(e, PS_EINPUT, "n_vectors: must be >= 0");
    if (ps_point_int(p, "threads") < 1)
        return ps_errf(e, PS_EINPUT, "threads: must be >= 1");
    const char *ck = ps_point_str(p, "clock");
    if (strcmp(ck, "thread_cpu") && strcmp(ck, "wall"))
        return ps_errf(e, PS_EINPUT, "clock: \"%s\" (expected thread_cpu or wall)", ck);
    if (!strcmp(ck, "thread_cpu") && ps_point_int(p, "threads") != 1)
        return ps_errf(e, PS_EINPUT, "clock: thread_cpu needs threads = 1");
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k];
}

static void bits_str(const int *b, int n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o + 4 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? "," : "", b[i]);
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    int64_t batch = ps_point_int(p, "batch");
    int runs = (int)ps_point_int(p, "runs"), warm = (int)ps_point_int(p, "warmup");
    ps_cpu_blas_set_threads((int)ps_point_int(p, "threads"));
    char wpath[1024];
    ps_point_path(p, ps_point_str(p, "weights"), wpath, sizeof wpath);
    cnn net;
    cnn_config cfg = cnn_config_default();
    int64_t ncal = batch > 256 ? batch : 256;
    int rc = cnn_init(&net, &cfg, rt_cpu(), RT_F32, 1, ps_point_seed(p), e);
    if (rc)
        return rc;
    m[M_TRAINED] = 0;
    if (access(wpath, R_OK) == 0) {
        if ((rc = cnn_load(&net, wpath, e))) {
            cnn_free(&net);
            return rc;
        }
        m[M_TRAINED] = 1;
    }
    float *x = malloc((size_t)ncal * 784 * sizeof *x);
    fmnist_set ds = {0};
    ps_err e2 = {0};
    if (fmnist_load(NULL, "t10k", ncal, &ds, &e2) == 0 && ds.n >= ncal) {
        fmnist_batch_f32(&ds, NULL, 0, ncal, x, NULL);
    } else {
        gsl_rng *r = ps_point_rng(p);
        for (int64_t i = 0; i < ncal * 784; i++)
            x[i] = (float)((gsl_rng_uniform(r) - FMNIST_MEAN) / FMNIST_STD);
    }
    fmnist_free(&ds);
    qcnn q;
    psq_lat_table t, ti;
    psq_problem pr = {0};
    psq_solution sol = {0}, s4 = {0}, s8 = {0};
    ps_table *tv = NULL, *ts = NULL, *tp = NULL, *tl = NULL;
    int *vec = NULL;
    double *err = NULL;
    cpu_set_t saved_mask;
    int pinned = 0;
    if ((rc = qcnn_init(&q, &net, ncal, e))) {
        free(x);
        cnn_free(&net);
        return rc;
    }
    int L = q.nl;
    q.cpu_clock = !strcmp(ps_point_str(p, "clock"), "thread_cpu");
    if ((rc = qcnn_calibrate(&q, x, ncal, e)))
        goto out;

    /* vectors */
    int total = 1;
    for (int l = 0; l < L; l++)
        total *= NQB;
    int nv = (int)ps_point_int(p, "n_vectors");
    if (nv == 0)
        nv = batch <= 8 ? total : 100;
    if (nv > total)
        nv = total;
    vec = malloc((size_t)(nv + 1) * (size_t)L * sizeof *vec);
    err = malloc((size_t)(nv + 1) * sizeof *err);
    gsl_rng *rng = ps_point_rng(p);
    for (int v = 0; v < nv; v++) {
        int code;
        if (nv == total)
            code = v;
        else if (v < NQB) { /* uniform vectors first */
            code = 0;
            for (int l = 0; l < L; l++)
                code = code * NQB + v;
        } else
            code = (int)gsl_rng_uniform_int(rng, (unsigned long)total);
        for (int l = L - 1; l >= 0; l--) {
            vec[v * L + l] = TBITS[code % NQB];
            code /= NQB;
        }
    }
    for (int l = 0; l < L; l++)
        vec[nv * L + l] = 32;
    tv = ps_table_new();
    int cb = ps_table_add_col(tv, "bits", PS_COL_STR, "");
    int cba = ps_table_add_col(tv, "batch", PS_COL_INT, "");
    int cpr = ps_table_add_col(tv, "predicted_s", PS_COL_DOUBLE, "s");
    int cme = ps_table_add_col(tv, "measured_s", PS_COL_DOUBLE, "s");
    int cer = ps_table_add_col(tv, "rel_err", PS_COL_DOUBLE, "");
    int cwb = ps_table_add_col(tv, "weight_bytes", PS_COL_DOUBLE, "B");
    int cca = ps_table_add_col(tv, "calibration", PS_COL_INT, "");
    int cpi = ps_table_add_col(tv, "predicted_iso_s", PS_COL_DOUBLE, "s");
    int cei = ps_table_add_col(tv, "rel_err_iso", PS_COL_DOUBLE, "");
    m[M_I8_MEAS] = m[M_I4_MEAS] = NAN;
    double *meas_v = malloc((size_t)(nv + 1) * sizeof *meas_v);
    if (!meas_v) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    double *erri = malloc((size_t)(nv + 1) * sizeof *erri);
    int *held = malloc((size_t)(nv + 1) * sizeof *held);
    if (!erri || !held) {
        free(meas_v);
        free(erri);
        free(held);
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    if (ps_point_int(p, "pin_cpu") && sched_getaffinity(0, sizeof saved_mask, &saved_mask) == 0) {
        int cpu = sched_getcpu();
        cpu_set_t one;
        CPU_ZERO(&one);
        if (cpu >= 0) {
            CPU_SET(cpu, &one);
            pinned = sched_setaffinity(0, sizeof one, &one) == 0;
        }
    }
    rc = psq_lat_measure_context(&q, x, batch, TBITS, NTB, vec, nv + 1, warm, runs,
                                 ps_point_seed(p), &t, &ti, meas_v, e);
    char side[1024], jpath[1100];
    if (!rc && !ps_point_side_dir(p, side, sizeof side, &e2)) {
        snprintf(jpath, sizeof jpath, "%s/latency_table_b%lld.json", side, (long long)batch);
        psq_lat_save_json(&t, jpath, &e2);
        snprintf(jpath, sizeof jpath, "%s/latency_table_isolated_b%lld.json", side,
                 (long long)batch);
        psq_lat_save_json(&ti, jpath, &e2);
    }
    if (!rc && (!(tl = psq_lat_to_table(&t)) || (rc = ps_point_emit(p, "lut", tl, e)))) {
        free(meas_v);
        free(erri);
        free(held);
        goto out;
    }
    int nh = 0;
    for (int v = 0; v <= nv && !rc; v++) {
        double pred, predi, meas = meas_v[v];
        if ((rc = psq_lat_predict(&t, vec + v * L, &pred, e)) ||
            (rc = psq_lat_predict(&ti, vec + v * L, &predi, e)) ||
            (rc = qcnn_set_bits(&q, vec + v * L, e)))
            break;
        double wb = 0;
        for (int l = 0; l < L; l++)
            wb += qcnn_layer_weight_bytes(&q, l);
        int uni0 = 1;
        for (int l = 1; l < L; l++)
            uni0 &= vec[v * L + l] == vec[v * L];
        if (!uni0) { /* held out: not a calibration configuration */
            err[nh] = (pred - meas) / meas;
            erri[nh] = (predi - meas) / meas;
            held[nh++] = v;
        }
        char bs[64];
        bits_str(vec + v * L, L, bs, sizeof bs);
        size_t r = ps_table_add_row(tv);
        ps_table_set_s(tv, r, cb, bs);
        ps_table_set_i(tv, r, cba, batch);
        ps_table_set_d(tv, r, cpr, pred);
        ps_table_set_d(tv, r, cme, meas);
        ps_table_set_d(tv, r, cer, (pred - meas) / meas);
        ps_table_set_i(tv, r, cca, uni0);
        ps_table_set_d(tv, r, cpi, predi);
        ps_table_set_d(tv, r, cei, (predi - meas) / meas);
        ps_table_set_d(tv, r, cwb, wb);
        int uni = 1;
        for (int l = 1; l < L; l++)
            uni &= vec[v * L + l] == vec[v * L];
        if (uni && vec[v * L] == 8)
            m[M_I8_MEAS] = meas;
        if (uni && vec[v * L] == 4)
            m[M_I4_MEAS] = meas;
        if (uni && vec[v * L] == 32)
            m[M_F32_MEAS] = meas;
    }
    free(meas_v);
    free(held);
    if (rc || (rc = ps_point_emit(p, "vectors", tv, e)) || nh < 1) {
        free(erri);
        if (!rc)
            rc = ps_errf(e, PS_EINPUT, "n_vectors: no held-out (non-uniform) vector");
        goto out;
    }
    int n = nh;
    double *ab = malloc((size_t)n * sizeof *ab);
    int within = 0, withini = 0;
    for (int i = 0; i < n; i++) {
        ab[i] = fabs(erri[i]);
        withini += ab[i] <= 0.10;
    }
    m[M_ISO_MED] = pct(ab, n, 50);
    m[M_ISO_BIAS] = pct(erri, n, 50);
    m[M_ISO_WITHIN10] = (double)withini / n;
    free(erri);
    for (int i = 0; i < n; i++) {
        ab[i] = fabs(err[i]);
        within += ab[i] <= 0.10;
    }
    m[M_NVEC] = nv + 1;
    m[M_NHELD] = n;
    m[M_ERR_MED] = pct(ab, n, 50);
    m[M_ERR_P90] = pct(ab, n, 90);
    m[M_ERR_MAX] = ab[n - 1];
    m[M_WITHIN10] = (double)within / n;
    m[M_ERR_BIAS] = pct(err, n, 50);
    free(ab);

    /* int8 vs int4 per layer */
    int k4 = 2, k8 = 4, k32 = 5;
    int b8[QCNN_MAXL], b4[QCNN_MAXL];
    for (int l = 0; l < L; l++) {
        b8[l] = 8;
        b4[l] = 4;
    }
    psq_lat_predict(&t, b8, &m[M_I8_PRED], NULL);
    psq_lat_predict(&t, b4, &m[M_I4_PRED], NULL);
    double g8 = 0, g4 = 0;
    ts = ps_table_new();
    int sl = ps_table_add_col(ts, "layer", PS_COL_STR, "");
    int sb = ps_table_add_col(ts, "batch", PS_COL_INT, "");
    int s8c = ps_table_add_col(ts, "gemm_int8_s", PS_COL_DOUBLE, "s");
    int s4c = ps_table_add_col(ts, "gemm_int4_s", PS_COL_DOUBLE, "s");
    int s32c = ps_table_add_col(ts, "gemm_f32_s", PS_COL_DOUBLE, "s");
    int sr = ps_table_add_col(ts, "int4_over_int8", PS_COL_DOUBLE, "");
    int sf = ps_table_add_col(ts, "f32_over_int8", PS_COL_DOUBLE, "");
    int sgo = ps_table_add_col(ts, "gops_int8", PS_COL_DOUBLE, "");
    for (int l = 0; l < L; l++) {
        g8 += t.t_gemm[l][k8];
        g4 += t.t_gemm[l][k4];
        size_t r = ps_table_add_row(ts);
        ps_table_set_s(ts, r, sl, t.names[l]);
        ps_table_set_i(ts, r, sb, batch);
        ps_table_set_d(ts, r, s8c, t.t_gemm[l][k8]);
        ps_table_set_d(ts, r, s4c, t.t_gemm[l][k4]);
        ps_table_set_d(ts, r, s32c, t.t_gemm[l][k32]);
        ps_table_set_d(ts, r, sr, t.t_gemm[l][k4] / t.t_gemm[l][k8]);
        ps_table_set_d(ts, r, sf, t.t_gemm[l][k32] / t.t_gemm[l][k8]);
        double ops = 2.0 * (double)batch * (double)(q.L[l].oh * q.L[l].ow) *
                     (double)q.L[l].N * (double)q.L[l].Kp;
        ps_table_set_d(ts, r, sgo, ops / t.t_gemm[l][k8] / 1e9);
    }
    m[M_GEMM_RATIO] = g4 / g8;
    if ((rc = ps_point_emit(p, "speed", ts, e)))
        goto out;

    /* latency-budgeted allocation (proxy Ω): options {2,3,4,6,8,32}, size
     * budget = uniform 4-bit size, latency budget = median predicted latency
     * of the quantized vectors measured above */
    if ((rc = psq_problem_init(&pr, L, e)))
        goto out;
    for (int l = 0; l < L && !rc; l++) {
        psq_layer *pl = &pr.layers[l];
        snprintf(pl->name, sizeof pl->name, "%s", q.L[l].name);
        pl->params = (double)(q.L[l].N * q.L[l].K);
        pl->n_opt = NTB;
        for (int k = 0; k < NTB; k++) {
            pl->opt[k].bits = TBITS[k];
            pl->opt[k].latency_s = t.t[l][k];
            if (TBITS[k] == 32) {
                pl->opt[k].omega = 0;
                pl->opt[k].bytes = 4.0 * pl->params;
                continue;
            }
            psq_wspec s = {.bits = TBITS[k], .gran = PSQ_PER_CHANNEL, .scale_bytes = 4};
            double d = psq_weight_err2(q.L[l].wf, (size_t)q.L[l].N, (size_t)q.L[l].K, &s, e);
            if (d < 0) {
                rc = PS_EINPUT;
                break;
            }
            pl->opt[k].omega = d / (double)q.L[l].K;
            pl->opt[k].bytes = psq_weight_bytes((size_t)q.L[l].N, (size_t)q.L[l].K, &s);
        }
    }
    if (rc || (rc = psq_evaluate(&pr, b8, &s8, e)) || (rc = psq_evaluate(&pr, b4, &s4, e)))
        goto out;
    psq_budget bud = psq_budget_none();
    {
        double *pv = malloc((size_t)nv * sizeof *pv);
        for (int v = 0; v < nv; v++)
            psq_lat_predict(&t, vec + v * L, &pv[v], NULL);
        bud.latency_s = pct(pv, nv, 50) - t.overhead_s; /* the solver sums layers only */
        free(pv);
    }
    bud.bytes = s4.bytes;
    if ((rc = psq_solve(&pr, &bud, NULL, &sol, e)))
        goto out;
    /* the pick, measured the way the vectors were: in random order among the
     * calibration forwards (tables of this second pass are discarded) */
    double pm;
    {
        psq_lat_table t2, ti2;
        rc = psq_lat_measure_context(&q, x, batch, TBITS, NTB, sol.bits, 1, warm, runs,
                                     ps_point_seed(p) + 1, &t2, &ti2, &pm, e);
        if (pinned)
            sched_setaffinity(0, sizeof saved_mask, &saved_mask);
        pinned = 0;
        if (rc)
            goto out;
    }
    m[M_BUDGET] = bud.latency_s + t.overhead_s;
    psq_lat_predict(&t, sol.bits, &m[M_PICK_PRED], NULL);
    m[M_PICK_MEAS] = pm;
    m[M_PICK_OMEGA] = sol.omega_sum;
    m[M_U4_OMEGA] = s4.omega_sum;
    m[M_U8_OMEGA] = s8.omega_sum;
    tp = ps_table_new();
    int pb = ps_table_add_col(tp, "bits", PS_COL_STR, "");
    int pba = ps_table_add_col(tp, "batch", PS_COL_INT, "");
    int pbu = ps_table_add_col(tp, "budget_s", PS_COL_DOUBLE, "s");
    int ppr = ps_table_add_col(tp, "predicted_s", PS_COL_DOUBLE, "s");
    int pme = ps_table_add_col(tp, "measured_s", PS_COL_DOUBLE, "s");
    int pom = ps_table_add_col(tp, "omega", PS_COL_DOUBLE, "");
    int pby = ps_table_add_col(tp, "weight_bytes", PS_COL_DOUBLE, "B");
    int pbb = ps_table_add_col(tp, "budget_bytes", PS_COL_DOUBLE, "B");
    char bs[64];
    bits_str(sol.bits, L, bs, sizeof bs);
    size_t r = ps_table_add_row(tp);
    ps_table_set_s(tp, r, pb, bs);
    ps_table_set_i(tp, r, pba, batch);
    ps_table_set_d(tp, r, pbu, m[M_BUDGET]);
    ps_table_set_d(tp, r, ppr, m[M_PICK_PRED]);
    ps_table_set_d(tp, r, pme, pm);
    ps_table_set_d(tp, r, pom, sol.omega_sum);
    ps_table_set_d(tp, r, pby, sol.bytes);
    ps_table_set_d(tp, r, pbb, bud.bytes);
    rc = ps_point_emit(p, "pick", tp, e);
out:
    if (pinned)
        sched_setaffinity(0, sizeof saved_mask, &saved_mask);
    ps_table_free(tv);
    ps_table_free(ts);
    ps_table_free(tp);
    ps_table_free(tl);
    psq_solution_free(&sol);
    psq_solution_free(&s4);
    psq_solution_free(&s8);
    psq_problem_free(&pr);
    free(vec);
    free(err);
    qcnn_free(&q);
    free(x);
    cnn_free(&net);
    return rc;
}

const ps_study ps_study_quant_latency = {
    .name = "quant_latency",
    .summary = "integer CNN on the CPU: per-layer latency table, predicted vs measured "
               "end-to-end latency of bit vectors, int8 vs int4, a latency-budgeted pick",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
};
