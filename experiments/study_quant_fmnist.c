/* The quant_fmnist study (issue 7): HAWQ-V2 mixed precision on the
 * Fashion-MNIST CNN, against exhaustive ground truth.
 *
 * One point does everything (docs/quant.md):
 *  1. train the CNN from a seed or load it from the cache (real/quant_eval.h);
 *  2. on `hessian_n` training images, with batch norm folded into the convs
 *     (the tensors the deployment quantizes): per-layer Hutchinson traces with
 *     their standard errors (real/hessian.h), the exact Gauss-Newton traces on
 *     the same images, λ_max per layer (power iteration), the imatrix
 *     statistics E[x_j²], and per-sample activation traces on `act_n` images;
 *  3. Ω tables: trace (HAWQ-V2: Tr/n·‖Q_b(W)−W‖²), λ_max (V1: λ/n·‖ΔW‖²),
 *     imatrix (Σ_j E[x_j²]‖ΔW_:,j‖²); sizes with scales (sim/quant/quantizer.h);
 *  4. every one of the 5^4 configurations measured on the test set (tree
 *     evaluation); Spearman ρ between ΣΩ and the measured loss increase, over
 *     the configurations with every layer ≥ 4 bits and over all of them;
 *  5. `budgets` budgets of kind `budget_kind` (model size in bytes, or BOPS =
 *     Σ MACs·b_w·b_a with the other operand at 8 bits) in (all-2-bit, all-8-bit]:
 *     each method's pick (exact solver of sim/quant/alloc.h on its Ω; uniform,
 *     random, greedy baselines) and its regret in accuracy points against the
 *     best measured configuration within the budget;
 *  6. the same for activation bits (weights at 8 bits): Ω_act from the
 *     activation traces, cost = activation bytes per image.
 * `model` picks the network (default, balanced, small: real/quant_eval.h);
 * points that differ only in budget_kind share steps 1-4 and 6's sweep (see
 * `base` below).
 * Detail tables: traces, convergence, configs, picks, frontier, act_traces,
 * act_configs, act_picks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "experiments/study.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/hessian.h"
#include "real/quant_eval.h"
#include "sim/quant/alloc.h"
#include "sim/quant/quantizer.h"

#define NB 5
static const int BITS[NB] = {2, 3, 4, 6, 8};

static const ps_param_spec params[] = {
    {"model", PS_PARAM_STR, "\"default\"", "",
     "default (fc1 holds 95% of the weights) | balanced (conv5x5 32, 16, hidden 32) | small "
     "(8, 16 channels, hidden 32: quick)"},
    {"budget_kind", PS_PARAM_STR, "\"size\"", "",
     "size (bytes of weights + scales) | bops (sum of MACs x weight bits x activation bits)"},
    {"model_dir", PS_PARAM_STR, "\"results/quant_models\"", "",
     "weights cache (relative to the working directory); trained when missing"},
    {"model_seed", PS_PARAM_INT, "1", "", "training seed"},
    {"train_n", PS_PARAM_INT, "0", "",
     "training images (0: 60000, or 2000 for small); part of the cache file name"},
    {"test_n", PS_PARAM_INT, "0", "", "test images for the ground truth (0 = all 10000)"},
    {"hessian_n", PS_PARAM_INT, "128", "", "training images for traces, λ_max, imatrix"},
    {"probes_min", PS_PARAM_INT, "10", "", "Hutchinson: at least this many probes"},
    {"probes_max", PS_PARAM_INT, "100", "", "Hutchinson: at most this many probes"},
    {"probe_tol", PS_PARAM_NUM, "0.02", "", "Hutchinson: stop when every se/|trace| < tol"},
    {"lambda_n", PS_PARAM_INT, "64", "", "training images for λ_max"},
    {"lambda_iters", PS_PARAM_INT, "30", "", "power iterations at most"},
    {"lambda_tol", PS_PARAM_NUM, "1e-3", "", "power iteration relative tolerance"},
    {"exact_n", PS_PARAM_INT, "64", "", "images (of the hessian_n) for the exact GN traces"},
    {"act_n", PS_PARAM_INT, "32", "", "images for the per-sample activation traces (exact)"},
    {"calib_n", PS_PARAM_INT, "1000", "", "training images to calibrate activation ranges"},
    {"act_percentile", PS_PARAM_NUM, "99.99", "", "activation range percentile (100 = max)"},
    {"granularity", PS_PARAM_STR, "\"channel\"", "", "weight scales: channel | tensor"},
    {"budgets", PS_PARAM_INT, "8", "", "size budgets in (all-2-bit, all-8-bit]"},
    {"random_draws", PS_PARAM_INT, "200", "", "random baseline: draws per budget"},
    {NULL, 0, NULL, NULL, NULL}};

/* methods of the weight experiment */
enum { MT_V2, MT_V1, MT_IMAT, MT_UNIF, MT_RAND, MT_GREEDY, MT_N };
static const char *const MNAME[MT_N] = {"hawq_v2", "v1", "imatrix", "uniform", "random", "greedy"};
/* methods of the activation experiment */
enum { AM_V2, AM_UNIF, AM_RAND, AM_GREEDY, AM_N };
static const char *const ANAME[AM_N] = {"hawq_v2", "uniform", "random", "greedy"};

enum {
    M_FP_ACC,
    M_FP_LOSS,
    M_SPEAR,
    M_SPEAR_ALL,
    M_SPEAR_V1,
    M_SPEAR_V1_ALL,
    M_SPEAR_IM,
    M_SPEAR_IM_ALL,
    M_REG0,                       /* regret mean per method, MT_N of them */
    M_REGMAX0 = M_REG0 + MT_N,    /* regret max per method */
    M_V2_LE_V1 = M_REGMAX0 + MT_N, /* budgets where regret(v2) ≤ regret(v1) */
    M_TRACE_ZMAX,
    M_TRACE_RELERR_MAX,
    M_PROBES,
    M_A_SPEAR,
    M_A_SPEAR_ALL,
    M_A_REG0,
    M_A_REGMAX0 = M_A_REG0 + AM_N,
    M_A_FP_ACC = M_A_REGMAX0 + AM_N,
    M_HESS_S,
    M_EXH_S,
    M_MODEL,    /* 0 default, 1 small, 2 balanced (qe_net) */
    M_KIND,     /* 0 size, 1 bops */
    M_NPARAMS,  /* quantized weights */
    M_MACS,     /* MACs per image of the quantized layers */
    M_DIFF0,                        /* per method m >= 1: budgets where its pick != hawq_v2's */
    M_LE0 = M_DIFF0 + MT_N,         /* of those, budgets with regret(v2) <= regret(m) */
    M_DREGV2_0 = M_LE0 + MT_N,      /* mean regret of hawq_v2 over those budgets */
    M_DREGM_0 = M_DREGV2_0 + MT_N,  /* mean regret of m over those budgets */
    M_COUNT = M_DREGM_0 + MT_N
};

static ps_metric_spec metrics[M_COUNT + 1];
static char mnames[M_COUNT][64];
static char mhelp[M_COUNT][128];

static void set_metric(int i, const char *name, const char *units, const char *help)
{
    snprintf(mnames[i], sizeof mnames[i], "%s", name);
    snprintf(mhelp[i], sizeof mhelp[i], "%s", help);
    metrics[i] = (ps_metric_spec){mnames[i], units, mhelp[i]};
}

__attribute__((constructor)) static void init_metrics(void)
{
    set_metric(M_FP_ACC, "fp_acc", "", "float (BN folded) test accuracy");
    set_metric(M_FP_LOSS, "fp_loss", "", "float test cross-entropy");
    set_metric(M_SPEAR, "spearman", "", "rho(sum Omega_trace, loss increase), all bits >= 4");
    set_metric(M_SPEAR_ALL, "spearman_all", "", "the same over all configurations");
    set_metric(M_SPEAR_V1, "spearman_v1", "", "rho with Omega_lambda_max, bits >= 4");
    set_metric(M_SPEAR_V1_ALL, "spearman_v1_all", "", "rho with Omega_lambda_max, all");
    set_metric(M_SPEAR_IM, "spearman_imatrix", "", "rho with Omega_imatrix, bits >= 4");
    set_metric(M_SPEAR_IM_ALL, "spearman_imatrix_all", "", "rho with Omega_imatrix, all");
    for (int m = 0; m < MT_N; m++) {
        char n[64];
        snprintf(n, sizeof n, "regret_%s", MNAME[m]);
        set_metric(M_REG0 + m, n, "points", "mean regret over budgets (accuracy points)");
        snprintf(n, sizeof n, "regret_max_%s", MNAME[m]);
        set_metric(M_REGMAX0 + m, n, "points", "max regret over budgets");
    }
    set_metric(M_V2_LE_V1, "budgets_v2_le_v1", "", "budgets where regret(hawq_v2) <= regret(v1)");
    set_metric(M_TRACE_ZMAX, "trace_z_max", "", "max |Hutchinson - exact GN| / se over layers");
    set_metric(M_TRACE_RELERR_MAX, "trace_relerr_max", "", "max |Hutchinson - exact| / exact");
    set_metric(M_PROBES, "probes", "", "Hutchinson probes used");
    set_metric(M_A_SPEAR, "act_spearman", "", "activations: rho(sum Omega_act, loss increase), >= 4");
    set_metric(M_A_SPEAR_ALL, "act_spearman_all", "", "activations: rho over all");
    for (int m = 0; m < AM_N; m++) {
        char n[64];
        snprintf(n, sizeof n, "act_regret_%s", ANAME[m]);
        set_metric(M_A_REG0 + m, n, "points", "activations: mean regret");
        snprintf(n, sizeof n, "act_regret_max_%s", ANAME[m]);
        set_metric(M_A_REGMAX0 + m, n, "points", "activations: max regret");
    }
    set_metric(M_A_FP_ACC, "act_ref_acc", "", "accuracy with 8-bit weights, float activations");
    set_metric(M_HESS_S, "hessian_s", "s", "wall time of the second-order statistics");
    set_metric(M_EXH_S, "exhaustive_s", "s", "wall time of both exhaustive sweeps");
    set_metric(M_MODEL, "model_code", "", "0 default, 1 small, 2 balanced");
    set_metric(M_KIND, "budget_kind_code", "", "0 size budgets, 1 BOPS budgets");
    set_metric(M_NPARAMS, "params", "", "weights of the quantized layers");
    set_metric(M_MACS, "macs", "", "multiply-accumulates per image of the quantized layers");
    for (int m = 0; m < MT_N; m++) {
        char n[64];
        snprintf(n, sizeof n, "differ_%s", MNAME[m]);
        set_metric(M_DIFF0 + m, n, "", "budgets where this pick differs from hawq_v2's");
        snprintf(n, sizeof n, "v2_le_%s", MNAME[m]);
        set_metric(M_LE0 + m, n, "", "of those, budgets with regret(hawq_v2) <= regret(this)");
        snprintf(n, sizeof n, "regret_v2_where_differ_%s", MNAME[m]);
        set_metric(M_DREGV2_0 + m, n, "points", "mean regret of hawq_v2 where the picks differ");
        snprintf(n, sizeof n, "regret_where_differ_%s", MNAME[m]);
        set_metric(M_DREGM_0 + m, n, "points", "mean regret of this method where they differ");
    }
    metrics[M_COUNT] = (ps_metric_spec){NULL, NULL, NULL};
}

/* ------------------------------------------------------------------ helpers */

static int cmp_idx_val;
static const double *rank_vals;
static int cmp_rank(const void *a, const void *b)
{
    double x = rank_vals[*(const int *)a], y = rank_vals[*(const int *)b];
    (void)cmp_idx_val;
    return (x > y) - (x < y);
}

/* Ranks with ties averaged (1-based). */
static void ranks(const double *v, int n, double *r)
{
    int *ix = malloc((size_t)n * sizeof *ix);
    for (int i = 0; i < n; i++)
        ix[i] = i;
    rank_vals = v;
    qsort(ix, (size_t)n, sizeof *ix, cmp_rank);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && v[ix[j + 1]] == v[ix[i]])
            j++;
        double rr = (i + j) / 2.0 + 1;
        for (int k = i; k <= j; k++)
            r[ix[k]] = rr;
        i = j + 1;
    }
    free(ix);
}

/* Spearman's ρ: Pearson correlation of the (tie-averaged) ranks. */
static double spearman(const double *x, const double *y, int n)
{
    if (n < 3)
        return NAN;
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry);
    ranks(x, n, rx);
    ranks(y, n, ry);
    double mx = 0, my = 0;
    for (int i = 0; i < n; i++) {
        mx += rx[i];
        my += ry[i];
    }
    mx /= n;
    my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        sxy += (rx[i] - mx) * (ry[i] - my);
        sxx += (rx[i] - mx) * (rx[i] - mx);
        syy += (ry[i] - my) * (ry[i] - my);
    }
    free(rx);
    free(ry);
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

/* ρ over the configurations whose option indices are all ≥ kmin. */
static double spearman_sub(const double *om, const double *dl, long ncfg, int nq, int kmin)
{
    double *a = malloc((size_t)ncfg * sizeof *a), *b = malloc((size_t)ncfg * sizeof *b);
    int n = 0;
    for (long i = 0; i < ncfg; i++) {
        int k[QE_MAXQ], ok = 1;
        qe_config_decode(i, NB, nq, k);
        for (int l = 0; l < nq; l++)
            ok &= k[l] >= kmin;
        if (ok) {
            a[n] = om[i];
            b[n] = dl[i];
            n++;
        }
    }
    double r = spearman(a, b, n);
    free(a);
    free(b);
    return r;
}

static int bits_index(int b)
{
    for (int k = 0; k < NB; k++)
        if (BITS[k] == b)
            return k;
    return -1;
}

static long sol_index(const psq_solution *s, int nq)
{
    long idx = 0;
    for (int l = 0; l < nq; l++) {
        int k = bits_index(s->bits[l]);
        if (k < 0)
            return -1;
        idx = idx * NB + k;
    }
    return idx;
}

/* ΣΩ and Σ cost of every configuration from per-layer tables [nq·NB]. */
static void config_sums(const double *tab, int nq, long ncfg, double *out)
{
    for (long i = 0; i < ncfg; i++) {
        int k[QE_MAXQ];
        qe_config_decode(i, NB, nq, k);
        double s = 0;
        for (int l = 0; l < nq; l++)
            s += tab[l * NB + k[l]];
        out[i] = s;
    }
}

static void bits_str_k(long idx, int nq, char *buf, size_t n)
{
    int k[QE_MAXQ], b[QE_MAXQ];
    qe_config_decode(idx, NB, nq, k);
    for (int l = 0; l < nq; l++)
        b[l] = BITS[k[l]];
    psq_bits_str(b, nq, buf, (int)n);
}

/* Build a problem whose Ω(l, k) = omega[l·NB + k], bytes = cost[l·NB + k],
 * BOPS = bops[l·NB + k] (NULL: 0). */
static int make_problem(psq_problem *p, int nq, const double *omega, const double *cost,
                        const double *bops, const char *const *names, ps_err *e)
{
    double one[QE_MAXQ];
    for (int l = 0; l < nq; l++)
        one[l] = 1.0;
    return psq_problem_from_deltas(p, nq, NB, BITS, one, omega, cost, NULL, bops, names, e);
}

enum { BK_SIZE = 0, BK_BOPS = 1 };
static const char *const BKNAME[2] = {"size", "bops"};

/* The regret experiment over budgets: for each budget the best measured
 * accuracy within it and each method's pick.  probs[m] NULL for the
 * baselines (they run on probs[0]).  kinds[m]: 0 exact solve, 1 uniform,
 * 2 random, 3 greedy.  bk: the budget's dimension (bytes or BOPS); the
 * budgets are cmin + (cmax − cmin)·i/nbud, i = 1..nbud, over that
 * dimension's configuration costs.  Per method m ≥ 1 against method 0
 * (hawq_v2): the budgets where the picks differ, how many of those
 * hawq_v2 does no worse on, and both mean regrets over them. */
typedef struct regret_out {
    double mean[MT_N], max[MT_N];
    int v2_le_v1;
    int differ[MT_N], le[MT_N];
    double dreg_v2[MT_N], dreg_m[MT_N];
} regret_out;

typedef struct budget_ctx {
    const char *table, *model;
    int bk, nq;
    long ncfg;
    const double *cfg_bytes, *cfg_bops, *acc;
} budget_ctx;

static int budgets_run(const ps_point *pt, const budget_ctx *bc, int nmeth,
                       const char *const *mname, psq_problem *const *probs, const int *kinds,
                       int nbud, uint64_t seed, int draws, regret_out *ro, ps_err *e)
{
    const int nq = bc->nq;
    const long ncfg = bc->ncfg;
    const double *cfg_cost = bc->bk == BK_BOPS ? bc->cfg_bops : bc->cfg_bytes;
    const double *acc = bc->acc;
    double cmin = INFINITY, cmax = 0;
    for (long i = 0; i < ncfg; i++) {
        if (cfg_cost[i] < cmin)
            cmin = cfg_cost[i];
        if (cfg_cost[i] > cmax)
            cmax = cfg_cost[i];
    }
    ps_table *t = ps_table_new();
    int c_mo = ps_table_add_col(t, "model", PS_COL_STR, "");
    int c_k = ps_table_add_col(t, "budget_kind", PS_COL_STR, "");
    int c_b = ps_table_add_col(t, "budget", PS_COL_DOUBLE, "");
    int c_m = ps_table_add_col(t, "method", PS_COL_STR, "");
    int c_se = ps_table_add_col(t, "series", PS_COL_STR, "");
    int c_bits = ps_table_add_col(t, "bits", PS_COL_STR, "");
    int c_om = ps_table_add_col(t, "omega", PS_COL_DOUBLE, "");
    int c_sz = ps_table_add_col(t, "bytes", PS_COL_DOUBLE, "B");
    int c_bo = ps_table_add_col(t, "bops", PS_COL_DOUBLE, "");
    int c_acc = ps_table_add_col(t, "acc", PS_COL_DOUBLE, "");
    int c_best = ps_table_add_col(t, "best_acc", PS_COL_DOUBLE, "");
    int c_bb = ps_table_add_col(t, "best_bits", PS_COL_STR, "");
    int c_reg = ps_table_add_col(t, "regret_points", PS_COL_DOUBLE, "points");
    memset(ro, 0, sizeof *ro);
    for (int m = 0; m < nmeth; m++)
        ro->max[m] = -INFINITY;
    int rc = 0;
    for (int bi = 1; bi <= nbud && !rc; bi++) {
        double B = cmin + (cmax - cmin) * bi / nbud;
        long best = -1;
        for (long i = 0; i < ncfg; i++)
            if (cfg_cost[i] <= B * (1 + PSQ_BUDGET_RTOL) && (best < 0 || acc[i] > acc[best]))
                best = i;
        char bb[64];
        bits_str_k(best, nq, bb, sizeof bb);
        /* the problems carry this kind's cost in their bytes slot (see run) */
        psq_budget bud = psq_budget_none();
        bud.bytes = B;
        double reg[MT_N];
        long pick[MT_N];
        for (int m = 0; m < nmeth && !rc; m++) {
            psq_solution s;
            memset(&s, 0, sizeof s);
            const psq_problem *p = probs[m] ? probs[m] : probs[0];
            switch (kinds[m]) {
            case 0: rc = psq_solve(p, &bud, NULL, &s, e); break;
            case 1: rc = psq_uniform(p, &bud, &s, e); break;
            case 2: rc = psq_random(p, &bud, seed + (uint64_t)bi, draws, &s, e); break;
            default: rc = psq_greedy(p, &bud, &s, e); break;
            }
            if (rc) {
                ps_err_prefix(e, "%s budget %.6g, %s: ", BKNAME[bc->bk], B, mname[m]);
                break;
            }
            long idx = sol_index(&s, nq);
            pick[m] = idx;
            char bs[64], ser[96];
            psq_bits_str(s.bits, nq, bs, sizeof bs);
            snprintf(ser, sizeof ser, "%s %s", bc->model, mname[m]);
            double a = idx >= 0 ? acc[idx] : NAN;
            reg[m] = 100.0 * (acc[best] - a);
            ro->mean[m] += reg[m] / nbud;
            if (reg[m] > ro->max[m])
                ro->max[m] = reg[m];
            size_t r = ps_table_add_row(t);
            ps_table_set_s(t, r, c_mo, bc->model);
            ps_table_set_s(t, r, c_k, BKNAME[bc->bk]);
            ps_table_set_d(t, r, c_b, B);
            ps_table_set_s(t, r, c_m, mname[m]);
            ps_table_set_s(t, r, c_se, ser);
            ps_table_set_s(t, r, c_bits, bs);
            ps_table_set_d(t, r, c_om, s.omega_sum);
            ps_table_set_d(t, r, c_sz, idx >= 0 ? bc->cfg_bytes[idx] : s.bytes);
            ps_table_set_d(t, r, c_bo, idx >= 0 ? bc->cfg_bops[idx] : s.bops);
            ps_table_set_d(t, r, c_acc, a);
            ps_table_set_d(t, r, c_best, acc[best]);
            ps_table_set_s(t, r, c_bb, bb);
            ps_table_set_d(t, r, c_reg, reg[m]);
            psq_solution_free(&s);
        }
        if (rc)
            break;
        if (nmeth > 1 && reg[0] <= reg[1] + 1e-9)
            ro->v2_le_v1++;
        for (int m = 1; m < nmeth; m++)
            if (pick[m] != pick[0]) {
                ro->differ[m]++;
                ro->le[m] += reg[0] <= reg[m] + 1e-9;
                ro->dreg_v2[m] += reg[0];
                ro->dreg_m[m] += reg[m];
            }
    }
    for (int m = 1; m < nmeth; m++) {
        ro->dreg_v2[m] = ro->differ[m] ? ro->dreg_v2[m] / ro->differ[m] : NAN;
        ro->dreg_m[m] = ro->differ[m] ? ro->dreg_m[m] / ro->differ[m] : NAN;
    }
    if (!rc)
        rc = ps_point_emit(pt, bc->table, t, e);
    ps_table_free(t);
    return rc;
}

/* ------------------------------------------------------------------ run */

typedef struct ctx {
    cnn net;
    int have_net;
    qe_model m;
    hs_net hs;
    int have_hs;
    qe_data test, calib;
    double *hx;
    int32_t *hy;
    fmnist_set tr, te;
    int have_tr, have_te;
    double *acc, *loss, *aacc, *aloss;
    double *samples;
} ctx;

static void ctx_free(ctx *c)
{
    if (c->have_net)
        cnn_free(&c->net);
    qe_model_free(&c->m);
    if (c->have_hs)
        hs_net_free(&c->hs);
    qe_data_free(&c->test);
    qe_data_free(&c->calib);
    free(c->hx);
    free(c->hy);
    if (c->have_tr)
        fmnist_free(&c->tr);
    if (c->have_te)
        fmnist_free(&c->te);
    free(c->acc);
    free(c->loss);
    free(c->aacc);
    free(c->aloss);
    free(c->samples);
}

/* Everything but the budgets: the model, its statistics, the Ω and cost
 * tables and both exhaustive sweeps.  Points that differ only in
 * budget_kind share one (the runner sweeps the last dimension fastest, so
 * {"model": [...], "budget_kind": [...]} computes each model once); the
 * later points reuse the first one's statistics, including its Hutchinson
 * seed, and emit only their own picks / frontier tables. */
typedef struct base {
    int valid;
    char key[4096];
    ctx c;
    qe_net which;
    int nq;
    long ncfg;
    double *om_tr, *om_v1, *om_im, *wbytes; /* [nq·NB] */
    double *om_act, *abytes;                /* [nq·NB] */
    double *bops;                           /* [nq·NB]: MACs_l · b · 8 (both experiments) */
    double *cfg_bytes, *cfg_abytes, *cfg_bops; /* [ncfg] */
    double mv[M_COUNT];
} base;

static base g_base;

static void base_free(base *b)
{
    ctx_free(&b->c);
    free(b->om_tr);
    free(b->om_v1);
    free(b->om_im);
    free(b->wbytes);
    free(b->om_act);
    free(b->abytes);
    free(b->bops);
    free(b->cfg_bytes);
    free(b->cfg_abytes);
    free(b->cfg_bops);
    memset(b, 0, sizeof *b);
}

/* Every parameter's value but budget_kind. */
static void base_key(const ps_point *pt, char *key, size_t n)
{
    size_t o = 0;
    key[0] = '\0';
    for (const ps_param_spec *s = params; s->name && o + 1 < n; s++) {
        if (!strcmp(s->name, "budget_kind"))
            continue;
        int w = 0;
        switch (s->type) {
        case PS_PARAM_INT: w = snprintf(key + o, n - o, "%s=%lld;", s->name, ps_point_int(pt, s->name)); break;
        case PS_PARAM_NUM: w = snprintf(key + o, n - o, "%s=%.17g;", s->name, ps_point_num(pt, s->name)); break;
        case PS_PARAM_BOOL: w = snprintf(key + o, n - o, "%s=%d;", s->name, ps_point_bool(pt, s->name)); break;
        default: w = snprintf(key + o, n - o, "%s=%s;", s->name, ps_point_str(pt, s->name)); break;
        }
        if (w < 0)
            break;
        o += (size_t)w;
        if (o >= n)
            o = n - 1;
    }
}

static int check(const ps_point *p, ps_err *e)
{
    qe_net which;
    if (qe_net_parse(ps_point_str(p, "model"), &which, e))
        return PS_EINPUT;
    const char *bk = ps_point_str(p, "budget_kind");
    if (strcmp(bk, "size") && strcmp(bk, "bops"))
        return ps_errf(e, PS_EINPUT, "budget_kind: \"%s\" (expected size or bops)", bk);
    const char *g = ps_point_str(p, "granularity");
    if (strcmp(g, "channel") && strcmp(g, "tensor"))
        return ps_errf(e, PS_EINPUT, "granularity: \"%s\" (expected channel or tensor)", g);
    if (ps_point_int(p, "hessian_n") < 1 || ps_point_int(p, "hessian_n") > 60000)
        return ps_errf(e, PS_EINPUT, "hessian_n: %lld outside 1..60000",
                       ps_point_int(p, "hessian_n"));
    if (ps_point_int(p, "exact_n") > ps_point_int(p, "hessian_n"))
        return ps_errf(e, PS_EINPUT, "exact_n: %lld exceeds hessian_n %lld",
                       ps_point_int(p, "exact_n"), ps_point_int(p, "hessian_n"));
    if (ps_point_int(p, "budgets") < 1 || ps_point_int(p, "budgets") > 100)
        return ps_errf(e, PS_EINPUT, "budgets: %lld outside 1..100", ps_point_int(p, "budgets"));
    if (ps_point_int(p, "probes_min") < 1 || ps_point_int(p, "probes_max") < ps_point_int(p, "probes_min"))
        return ps_errf(e, PS_EINPUT, "probes_min/probes_max: need 1 <= min <= max");
    return 0;
}

static int compute_base(const ps_point *pt, base *bs, ps_err *e)
{
    ctx *c = &bs->c;
    memset(c, 0, sizeof *c);
    double *mv = bs->mv;
    int rc = 0;
    qe_net which = QE_NET_DEFAULT;
    if ((rc = qe_net_parse(ps_point_str(pt, "model"), &which, e)))
        return rc;
    int small = which == QE_NET_SMALL;
    uint64_t seed = (uint64_t)ps_point_int(pt, "model_seed");
    psq_gran gran = strcmp(ps_point_str(pt, "granularity"), "tensor") ? PSQ_PER_CHANNEL
                                                                        : PSQ_PER_TENSOR;
    char path[1024];
    int64_t train_n = ps_point_int(pt, "train_n");
    if (train_n <= 0)
        train_n = small ? 2000 : 60000;
    snprintf(path, sizeof path, "%s/cnn_fmnist_%s_n%lld_s%llu.bin", ps_point_str(pt, "model_dir"),
             which == QE_NET_DEFAULT ? "full" : qe_net_name(which), (long long)train_n,
             (unsigned long long)seed);
    double *om_tr = NULL, *om_v1 = NULL, *om_im = NULL, *cfg_bytes = NULL, *om_act = NULL,
           *cfg_abytes = NULL, *wbytes = NULL, *abytes = NULL;
    for (int i = 0; i < M_COUNT; i++)
        mv[i] = NAN;

    /* 1. the model */
    int trained = 0;
    if ((rc = qe_train_or_load_net(path, which, seed, train_n, &c->net, &trained, e)))
        goto out;
    c->have_net = 1;
    if (trained)
        fprintf(stderr, "plansim: quant_fmnist: trained %s\n", path);
    if ((rc = qe_model_from_cnn(&c->m, &c->net, e)))
        goto out;
    const int nq = c->m.nq;
    const char *lname[QE_MAXQ];
    for (int l = 0; l < nq; l++)
        lname[l] = c->m.l[l].name;
    long ncfg = qe_nconfigs(NB, nq);
    int64_t test_n = ps_point_int(pt, "test_n");
    int64_t hn = ps_point_int(pt, "hessian_n"), calib_n = ps_point_int(pt, "calib_n");
    int64_t need_tr = hn > calib_n ? hn : calib_n;
    if ((rc = fmnist_load(NULL, "t10k", test_n > 0 ? test_n : 0, &c->te, e)))
        goto out;
    c->have_te = 1;
    if ((rc = fmnist_load(NULL, "train", need_tr, &c->tr, e)))
        goto out;
    c->have_tr = 1;
    if ((rc = qe_data_from_fmnist(&c->te, 0, &c->test, e)) ||
        (rc = qe_data_from_fmnist(&c->tr, calib_n, &c->calib, e)))
        goto out;

    /* 2. second-order statistics (float64, BN folded) */
    double t0 = ps_now_s();
    if ((rc = hs_net_from_cnn(&c->hs, &c->net, 1, e)))
        goto out;
    c->have_hs = 1;
    if (c->hs.nquant != nq) {
        rc = ps_errf(e, PS_ERUN, "quant_fmnist: hessian net has %d quantized layers, model %d",
                     c->hs.nquant, nq);
        goto out;
    }
    int64_t in_dim = c->hs.in_dim;
    c->hx = malloc((size_t)(hn * in_dim) * sizeof(double));
    c->hy = malloc((size_t)hn * sizeof(int32_t));
    if (!c->hx || !c->hy) {
        rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
        goto out;
    }
    fmnist_batch_f64(&c->tr, NULL, 0, hn, c->hx, c->hy);
    hs_hutch_opts ho = {.m_min = (int)ps_point_int(pt, "probes_min"),
                        .m_max = (int)ps_point_int(pt, "probes_max"),
                        .tol = ps_point_num(pt, "probe_tol"),
                        .seed = (uint64_t)ps_point_seed(pt)};
    hs_est est[2 * HS_MAXLAYERS];
    int m_used = 0;
    c->samples = malloc((size_t)ho.m_max * (size_t)c->hs.nblocks * sizeof(double));
    if (!c->samples) {
        rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
        goto out;
    }
    fprintf(stderr, "plansim: quant_fmnist: Hutchinson traces on %lld images\n", (long long)hn);
    if ((rc = hs_hutchinson(&c->hs, c->hx, c->hy, hn, &ho, est, c->samples, &m_used, e)))
        goto out;
    int64_t en = ps_point_int(pt, "exact_n");
    double exact[2 * HS_MAXLAYERS];
    hs_est est_sub[2 * HS_MAXLAYERS];
    int m_sub = 0;
    /* exact GN traces on the first exact_n images, and Hutchinson on the same images */
    fprintf(stderr, "plansim: quant_fmnist: exact Gauss-Newton traces on %lld images\n",
            (long long)en);
    if ((rc = hs_gn_trace(&c->hs, c->hx, c->hy, en, exact, e)))
        goto out;
    if (en == hn) {
        memcpy(est_sub, est, sizeof est);
        m_sub = m_used;
    } else if ((rc = hs_hutchinson(&c->hs, c->hx, c->hy, en, &ho, est_sub, NULL, &m_sub, e))) {
        goto out;
    }
    double lam[QE_MAXQ];
    int64_t ln = ps_point_int(pt, "lambda_n");
    if (ln > hn)
        ln = hn;
    fprintf(stderr, "plansim: quant_fmnist: lambda_max on %lld images\n", (long long)ln);
    int lam_it[QE_MAXQ];
    for (int l = 0; l < nq; l++) {
        int blk = c->hs.layers[c->hs.quant[l]].wblock;
        if ((rc = hs_lambda_max(&c->hs, c->hx, c->hy, ln, blk, (int)ps_point_int(pt, "lambda_iters"),
                                ps_point_num(pt, "lambda_tol"), seed + 17 + (uint64_t)l,
                                &lam[l], &lam_it[l], e)))
            goto out;
    }
    /* activation traces (per sample, exact), q in [0, nq] */
    int64_t an = ps_point_int(pt, "act_n");
    if (an > hn)
        an = hn;
    hs_est aest[HS_MAXLAYERS + 1];
    fprintf(stderr, "plansim: quant_fmnist: activation traces on %lld images\n", (long long)an);
    if ((rc = hs_act_trace_exact(&c->hs, c->hx, c->hy, an, aest, e)))
        goto out;

    /* 3. Ω tables (weights) */
    om_tr = calloc((size_t)nq * NB, sizeof(double));
    om_v1 = calloc((size_t)nq * NB, sizeof(double));
    om_im = calloc((size_t)nq * NB, sizeof(double));
    double *delta = calloc((size_t)nq * NB, sizeof(double));
    wbytes = calloc((size_t)nq * NB, sizeof(double));
    if (!om_tr || !om_v1 || !om_im || !delta || !wbytes) {
        free(delta);
        rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
        goto out;
    }
    double trpp[QE_MAXQ];
    {
        ps_table *t = ps_table_new();
        int c_l = ps_table_add_col(t, "layer", PS_COL_STR, "");
        int c_n = ps_table_add_col(t, "params", PS_COL_INT, "");
        int c_t = ps_table_add_col(t, "trace", PS_COL_DOUBLE, "");
        int c_se = ps_table_add_col(t, "se", PS_COL_DOUBLE, "");
        int c_lo = ps_table_add_col(t, "ci_lo", PS_COL_DOUBLE, "");
        int c_hi = ps_table_add_col(t, "ci_hi", PS_COL_DOUBLE, "");
        int c_pp = ps_table_add_col(t, "trace_per_param", PS_COL_DOUBLE, "");
        int c_m = ps_table_add_col(t, "probes", PS_COL_INT, "");
        int c_sub = ps_table_add_col(t, "trace_subset", PS_COL_DOUBLE, "");
        int c_sse = ps_table_add_col(t, "se_subset", PS_COL_DOUBLE, "");
        int c_ex = ps_table_add_col(t, "exact_gn_subset", PS_COL_DOUBLE, "");
        int c_z = ps_table_add_col(t, "z_subset", PS_COL_DOUBLE, "");
        int c_lm = ps_table_add_col(t, "lambda_max", PS_COL_DOUBLE, "");
        int c_li = ps_table_add_col(t, "lambda_iters", PS_COL_INT, "");
        int c_lx = ps_table_add_col(t, "x", PS_COL_INT, "");
        double zmax = 0, relmax = 0;
        for (int l = 0; l < nq && !rc; l++) {
            int blk = c->hs.layers[c->hs.quant[l]].wblock;
            int64_t np = qe_layer_params(&c->m, l);
            trpp[l] = est[blk].mean / (double)np;
            double z = fabs(est_sub[blk].mean - exact[blk]) / est_sub[blk].se;
            double rel = fabs(est_sub[blk].mean - exact[blk]) / fabs(exact[blk]);
            if (z > zmax)
                zmax = z;
            if (rel > relmax)
                relmax = rel;
            size_t r = ps_table_add_row(t);
            ps_table_set_s(t, r, c_l, lname[l]);
            ps_table_set_i(t, r, c_n, np);
            ps_table_set_d(t, r, c_t, est[blk].mean);
            ps_table_set_d(t, r, c_se, est[blk].se);
            ps_table_set_d(t, r, c_lo, est[blk].mean - 1.96 * est[blk].se);
            ps_table_set_d(t, r, c_hi, est[blk].mean + 1.96 * est[blk].se);
            ps_table_set_d(t, r, c_pp, trpp[l]);
            ps_table_set_i(t, r, c_m, m_used);
            ps_table_set_d(t, r, c_sub, est_sub[blk].mean);
            ps_table_set_d(t, r, c_sse, est_sub[blk].se);
            ps_table_set_d(t, r, c_ex, exact[blk]);
            ps_table_set_d(t, r, c_z, z);
            ps_table_set_d(t, r, c_lm, lam[l]);
            ps_table_set_i(t, r, c_li, lam_it[l]);
            ps_table_set_i(t, r, c_lx, l + 1);
            /* Ω rows */
            psq_wspec sp = {.gran = gran};
            int64_t cols = hs_imatrix_cols(&c->hs, l);
            double *ex2 = malloc((size_t)cols * sizeof(double));
            float *wq = malloc((size_t)np * sizeof(float));
            double *dw = malloc((size_t)np * sizeof(double));
            if (!ex2 || !wq || !dw) {
                rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
            } else if (cols != c->m.l[l].cols) {
                rc = ps_errf(e, PS_ERUN, "quant_fmnist: %s: imatrix has %lld columns, weight %lld",
                             lname[l], (long long)cols, (long long)c->m.l[l].cols);
            } else {
                rc = hs_imatrix(&c->hs, c->hx, hn, l, ex2, e);
            }
            for (int k = 0; k < NB && !rc; k++) {
                sp.bits = BITS[k];
                double d2 = 0;
                rc = psq_fake_quant_weights(c->m.l[l].w, (size_t)c->m.l[l].rows,
                                            (size_t)c->m.l[l].cols, &sp, wq, &d2, e);
                for (int64_t j = 0; j < np; j++)
                    dw[j] = (double)wq[j] - (double)c->m.l[l].w[j];
                delta[l * NB + k] = d2;
                wbytes[l * NB + k] = psq_weight_bytes((size_t)c->m.l[l].rows,
                                                      (size_t)c->m.l[l].cols, &sp);
                om_tr[l * NB + k] = trpp[l] * d2;
                om_v1[l * NB + k] = lam[l] / (double)np * d2;
                om_im[l * NB + k] = hs_imatrix_omega(&c->hs, l, ex2, dw);
            }
            free(ex2);
            free(wq);
            free(dw);
        }
        mv[M_TRACE_ZMAX] = zmax;
        mv[M_TRACE_RELERR_MAX] = relmax;
        mv[M_PROBES] = m_used;
        if (!rc)
            rc = ps_point_emit(pt, "traces", t, e);
        ps_table_free(t);
        if (rc) {
            free(delta);
            goto out;
        }
        /* convergence vs probes: running mean and se per layer */
        t = ps_table_new();
        c_l = ps_table_add_col(t, "layer", PS_COL_STR, "");
        int c_pm = ps_table_add_col(t, "probes", PS_COL_INT, "");
        int c_mean = ps_table_add_col(t, "trace", PS_COL_DOUBLE, "");
        int c_s2 = ps_table_add_col(t, "se", PS_COL_DOUBLE, "");
        int c_rel = ps_table_add_col(t, "rel_to_final", PS_COL_DOUBLE, "");
        for (int l = 0; l < nq; l++) {
            int blk = c->hs.layers[c->hs.quant[l]].wblock;
            double s1 = 0, s2 = 0;
            for (int j = 0; j < m_used; j++) {
                double v = c->samples[(size_t)j * c->hs.nblocks + blk];
                s1 += v;
                s2 += v * v;
                int mm = j + 1;
                double mean = s1 / mm;
                double var = mm > 1 ? (s2 - mm * mean * mean) / (mm - 1) : NAN;
                size_t r = ps_table_add_row(t);
                ps_table_set_s(t, r, c_l, lname[l]);
                ps_table_set_i(t, r, c_pm, mm);
                ps_table_set_d(t, r, c_mean, mean);
                ps_table_set_d(t, r, c_s2, var > 0 ? sqrt(var / mm) : NAN);
                ps_table_set_d(t, r, c_rel, mean / est[blk].mean);
            }
        }
        rc = ps_point_emit(pt, "convergence", t, e);
        ps_table_free(t);
    }
    free(delta);
    if (rc)
        goto out;
    mv[M_HESS_S] = ps_now_s() - t0;

    /* 4. exhaustive ground truth (weights) */
    t0 = ps_now_s();
    c->acc = malloc((size_t)ncfg * sizeof(double));
    c->loss = malloc((size_t)ncfg * sizeof(double));
    c->aacc = malloc((size_t)ncfg * sizeof(double));
    c->aloss = malloc((size_t)ncfg * sizeof(double));
    cfg_bytes = malloc((size_t)ncfg * sizeof(double));
    double *s_tr = malloc((size_t)ncfg * sizeof(double)), *s_v1 = malloc((size_t)ncfg * sizeof(double)),
           *s_im = malloc((size_t)ncfg * sizeof(double)), *dl = malloc((size_t)ncfg * sizeof(double));
    if (!c->acc || !c->loss || !c->aacc || !c->aloss || !cfg_bytes || !s_tr || !s_v1 || !s_im || !dl) {
        rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
        goto out2;
    }
    qe_config fp;
    memset(&fp, 0, sizeof fp);
    double fp_acc, fp_loss;
    if ((rc = qe_evaluate(&c->m, &fp, &c->test, &fp_acc, &fp_loss, e)))
        goto out2;
    mv[M_FP_ACC] = fp_acc;
    mv[M_FP_LOSS] = fp_loss;
    qe_sweep sw = {.mode = QE_SWEEP_WEIGHTS, .nopt = NB, .gran = gran, .label = "quant weights"};
    memcpy(sw.bits, BITS, sizeof BITS);
    if ((rc = qe_exhaustive(&c->m, &sw, &c->test, c->acc, c->loss, e)))
        goto out2;
    config_sums(om_tr, nq, ncfg, s_tr);
    config_sums(om_v1, nq, ncfg, s_v1);
    config_sums(om_im, nq, ncfg, s_im);
    config_sums(wbytes, nq, ncfg, cfg_bytes);
    for (long i = 0; i < ncfg; i++)
        dl[i] = c->loss[i] - fp_loss;
    int k4 = bits_index(4);
    mv[M_SPEAR] = spearman_sub(s_tr, dl, ncfg, nq, k4);
    mv[M_SPEAR_ALL] = spearman_sub(s_tr, dl, ncfg, nq, 0);
    mv[M_SPEAR_V1] = spearman_sub(s_v1, dl, ncfg, nq, k4);
    mv[M_SPEAR_V1_ALL] = spearman_sub(s_v1, dl, ncfg, nq, 0);
    mv[M_SPEAR_IM] = spearman_sub(s_im, dl, ncfg, nq, k4);
    mv[M_SPEAR_IM_ALL] = spearman_sub(s_im, dl, ncfg, nq, 0);
    {
        ps_table *t = ps_table_new();
        int cc[QE_MAXQ];
        for (int l = 0; l < nq; l++)
            cc[l] = ps_table_add_col(t, lname[l], PS_COL_INT, "bits");
        int c_bits = ps_table_add_col(t, "bits", PS_COL_STR, "");
        int c_tr = ps_table_add_col(t, "omega_trace", PS_COL_DOUBLE, "");
        int c_v1 = ps_table_add_col(t, "omega_v1", PS_COL_DOUBLE, "");
        int c_im = ps_table_add_col(t, "omega_imatrix", PS_COL_DOUBLE, "");
        int c_b = ps_table_add_col(t, "bytes", PS_COL_DOUBLE, "B");
        int c_a = ps_table_add_col(t, "acc", PS_COL_DOUBLE, "");
        int c_lo = ps_table_add_col(t, "loss", PS_COL_DOUBLE, "");
        int c_dl = ps_table_add_col(t, "dloss", PS_COL_DOUBLE, "");
        int c_min = ps_table_add_col(t, "min_bits", PS_COL_INT, "bits");
        for (long i = 0; i < ncfg; i++) {
            int k[QE_MAXQ], mb = 99;
            char bs[32];
            qe_config_decode(i, NB, nq, k);
            bits_str_k(i, nq, bs, sizeof bs);
            size_t r = ps_table_add_row(t);
            for (int l = 0; l < nq; l++) {
                ps_table_set_i(t, r, cc[l], BITS[k[l]]);
                if (BITS[k[l]] < mb)
                    mb = BITS[k[l]];
            }
            ps_table_set_s(t, r, c_bits, bs);
            ps_table_set_d(t, r, c_tr, s_tr[i]);
            ps_table_set_d(t, r, c_v1, s_v1[i]);
            ps_table_set_d(t, r, c_im, s_im[i]);
            ps_table_set_d(t, r, c_b, cfg_bytes[i]);
            ps_table_set_d(t, r, c_a, c->acc[i]);
            ps_table_set_d(t, r, c_lo, c->loss[i]);
            ps_table_set_d(t, r, c_dl, dl[i]);
            ps_table_set_i(t, r, c_min, mb);
        }
        rc = ps_point_emit(pt, "configs", t, e);
        ps_table_free(t);
    }
    if (rc)
        goto out2;

    /* 6. activations (weights at 8 bits) */
    {
        double range[QE_MAXQ];
        double pct = ps_point_num(pt, "act_percentile");
        if ((rc = qe_calibrate(&c->m, &c->calib, pct >= 100 ? PSQ_CAL_MAX : PSQ_CAL_PERCENTILE,
                               pct, range, e)))
            goto out2;
        double aerr[QE_MAXQ * NB];
        if ((rc = qe_act_err2(&c->m, &c->calib, BITS, NB, range, aerr, e)))
            goto out2;
        om_act = calloc((size_t)nq * NB, sizeof(double));
        abytes = calloc((size_t)nq * NB, sizeof(double));
        cfg_abytes = malloc((size_t)ncfg * sizeof(double));
        if (!om_act || !abytes || !cfg_abytes) {
            rc = ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
            goto out2;
        }
        ps_table *t = ps_table_new();
        int c_l = ps_table_add_col(t, "layer", PS_COL_STR, "");
        int c_x = ps_table_add_col(t, "x", PS_COL_INT, "");
        int c_n = ps_table_add_col(t, "numel", PS_COL_INT, "");
        int c_t = ps_table_add_col(t, "trace", PS_COL_DOUBLE, "");
        int c_se = ps_table_add_col(t, "se", PS_COL_DOUBLE, "");
        int c_lo = ps_table_add_col(t, "ci_lo", PS_COL_DOUBLE, "");
        int c_hi = ps_table_add_col(t, "ci_hi", PS_COL_DOUBLE, "");
        int c_pp = ps_table_add_col(t, "trace_per_elem", PS_COL_DOUBLE, "");
        int c_r = ps_table_add_col(t, "range", PS_COL_DOUBLE, "");
        for (int l = 0; l < nq; l++) {
            for (int k = 0; k < NB; k++) {
                om_act[l * NB + k] = aest[l].per_param * aerr[l * NB + k];
                abytes[l * NB + k] = (double)c->m.l[l].in_numel * BITS[k] / 8.0;
            }
            size_t r = ps_table_add_row(t);
            ps_table_set_s(t, r, c_l, lname[l]);
            ps_table_set_i(t, r, c_x, l + 1);
            ps_table_set_i(t, r, c_n, c->m.l[l].in_numel);
            ps_table_set_d(t, r, c_t, aest[l].mean);
            ps_table_set_d(t, r, c_se, aest[l].se);
            ps_table_set_d(t, r, c_lo, aest[l].mean - 1.96 * aest[l].se);
            ps_table_set_d(t, r, c_hi, aest[l].mean + 1.96 * aest[l].se);
            ps_table_set_d(t, r, c_pp, aest[l].per_param);
            ps_table_set_d(t, r, c_r, range[l]);
        }
        rc = ps_point_emit(pt, "act_traces", t, e);
        ps_table_free(t);
        if (rc) {
            goto out2;
        }
        qe_config a8;
        memset(&a8, 0, sizeof a8);
        a8.gran = gran;
        for (int l = 0; l < nq; l++)
            a8.wbits[l] = 8;
        double ref_acc, ref_loss;
        if ((rc = qe_evaluate(&c->m, &a8, &c->test, &ref_acc, &ref_loss, e))) {
            goto out2;
        }
        mv[M_A_FP_ACC] = ref_acc;
        qe_sweep as = {.mode = QE_SWEEP_ACTS, .nopt = NB, .gran = gran, .fixed_wbits = 8,
                       .label = "quant activations"};
        memcpy(as.bits, BITS, sizeof BITS);
        memcpy(as.range, range, sizeof range);
        if ((rc = qe_exhaustive(&c->m, &as, &c->test, c->aacc, c->aloss, e))) {
            goto out2;
        }
        config_sums(om_act, nq, ncfg, s_tr);
        config_sums(abytes, nq, ncfg, cfg_abytes);
        for (long i = 0; i < ncfg; i++)
            dl[i] = c->aloss[i] - ref_loss;
        mv[M_A_SPEAR] = spearman_sub(s_tr, dl, ncfg, nq, k4);
        mv[M_A_SPEAR_ALL] = spearman_sub(s_tr, dl, ncfg, nq, 0);
        t = ps_table_new();
        int cc[QE_MAXQ];
        for (int l = 0; l < nq; l++)
            cc[l] = ps_table_add_col(t, lname[l], PS_COL_INT, "bits");
        int c_bits = ps_table_add_col(t, "bits", PS_COL_STR, "");
        int c_o = ps_table_add_col(t, "omega_act", PS_COL_DOUBLE, "");
        int c_b = ps_table_add_col(t, "act_bytes", PS_COL_DOUBLE, "B");
        int c_a = ps_table_add_col(t, "acc", PS_COL_DOUBLE, "");
        int c_ls = ps_table_add_col(t, "loss", PS_COL_DOUBLE, "");
        int c_dl = ps_table_add_col(t, "dloss", PS_COL_DOUBLE, "");
        for (long i = 0; i < ncfg; i++) {
            int k[QE_MAXQ];
            char bs[32];
            qe_config_decode(i, NB, nq, k);
            bits_str_k(i, nq, bs, sizeof bs);
            size_t r = ps_table_add_row(t);
            for (int l = 0; l < nq; l++)
                ps_table_set_i(t, r, cc[l], BITS[k[l]]);
            ps_table_set_s(t, r, c_bits, bs);
            ps_table_set_d(t, r, c_o, s_tr[i]);
            ps_table_set_d(t, r, c_b, cfg_abytes[i]);
            ps_table_set_d(t, r, c_a, c->aacc[i]);
            ps_table_set_d(t, r, c_ls, c->aloss[i]);
            ps_table_set_d(t, r, c_dl, dl[i]);
        }
        rc = ps_point_emit(pt, "act_configs", t, e);
        ps_table_free(t);
        if (rc)
            goto out2;
    }
    mv[M_EXH_S] = ps_now_s() - t0;
out2:
    free(s_tr);
    free(s_v1);
    free(s_im);
    free(dl);
out:
    /* hand the tables to the base (freed by base_free; NULL after a failure) */
    bs->nq = c->m.nq;
    bs->ncfg = qe_nconfigs(NB, c->m.nq);
    bs->which = which;
    bs->om_tr = om_tr;
    bs->om_v1 = om_v1;
    bs->om_im = om_im;
    bs->wbytes = wbytes;
    bs->cfg_bytes = cfg_bytes;
    bs->om_act = om_act;
    bs->abytes = abytes;
    bs->cfg_abytes = cfg_abytes;
    return rc;
}

/* Per point: the base (computed or reused), then the budget experiments of
 * this point's budget_kind. */
static int run(const ps_point *pt, double *mv, ps_err *e)
{
    char key[sizeof g_base.key];
    base_key(pt, key, sizeof key);
    int rc = 0;
    if (!g_base.valid || strcmp(key, g_base.key)) {
        base_free(&g_base);
        for (int i = 0; i < M_COUNT; i++)
            g_base.mv[i] = NAN;
        if ((rc = compute_base(pt, &g_base, e))) {
            base_free(&g_base);
            return rc;
        }
        base *b = &g_base;
        b->bops = calloc((size_t)b->nq * NB, sizeof(double));
        b->cfg_bops = malloc((size_t)b->ncfg * sizeof(double));
        if (!b->bops || !b->cfg_bops) {
            base_free(b);
            return ps_errf(e, PS_ERUN, "quant_fmnist: out of memory");
        }
        double np = 0, macs = 0;
        for (int l = 0; l < b->nq; l++) {
            np += (double)qe_layer_params(&b->c.m, l);
            macs += (double)qe_layer_macs(&b->c.m, l);
            for (int k = 0; k < NB; k++)
                b->bops[l * NB + k] = (double)qe_layer_macs(&b->c.m, l) * BITS[k] * 8.0;
        }
        config_sums(b->bops, b->nq, b->ncfg, b->cfg_bops);
        b->mv[M_MODEL] = b->which;
        b->mv[M_NPARAMS] = np;
        b->mv[M_MACS] = macs;
        snprintf(b->key, sizeof b->key, "%s", key);
        b->valid = 1;
    }
    const base *b = &g_base;
    memcpy(mv, b->mv, sizeof b->mv);
    const int bk = strcmp(ps_point_str(pt, "budget_kind"), "bops") ? BK_SIZE : BK_BOPS;
    mv[M_KIND] = bk;
    const int nq = b->nq;
    const char *lname[QE_MAXQ];
    for (int l = 0; l < nq; l++)
        lname[l] = b->c.m.l[l].name;
    const uint64_t seed = (uint64_t)ps_point_int(pt, "model_seed");
    const int nbud = (int)ps_point_int(pt, "budgets"), draws = (int)ps_point_int(pt, "random_draws");
    const char *model = qe_net_name(b->which);
    psq_problem probs[3], aprob;
    memset(probs, 0, sizeof probs);
    memset(&aprob, 0, sizeof aprob);
    psq_frontier fr;
    memset(&fr, 0, sizeof fr);

    /* 5. picks per budget (weights).  The problems' cost ("bytes" slot) is
     * this point's budget dimension: bytes, or BOPS.  Putting BOPS there
     * (rather than in psq_option.bops with a bops budget, which the exact
     * solver handles the same way) makes the random baseline keep the
     * feasible draw with the most BOPS — the one that uses the budget —
     * instead of the most bytes. */
    const double *wcost = bk == BK_BOPS ? b->bops : b->wbytes;
    const double *acost = bk == BK_BOPS ? b->bops : b->abytes;
    if ((rc = make_problem(&probs[0], nq, b->om_tr, wcost, NULL, lname, e)) ||
        (rc = make_problem(&probs[1], nq, b->om_v1, wcost, NULL, lname, e)) ||
        (rc = make_problem(&probs[2], nq, b->om_im, wcost, NULL, lname, e)))
        goto out;
    {
        psq_problem *pp[MT_N] = {&probs[0], &probs[1], &probs[2], &probs[0], &probs[0], &probs[0]};
        int kinds[MT_N] = {0, 0, 0, 1, 2, 3};
        regret_out ro;
        budget_ctx bc = {.table = "picks", .model = model, .bk = bk, .nq = nq, .ncfg = b->ncfg,
                         .cfg_bytes = b->cfg_bytes, .cfg_bops = b->cfg_bops, .acc = b->c.acc};
        if ((rc = budgets_run(pt, &bc, MT_N, MNAME, pp, kinds, nbud, seed, draws, &ro, e)))
            goto out;
        for (int m = 0; m < MT_N; m++) {
            mv[M_REG0 + m] = ro.mean[m];
            mv[M_REGMAX0 + m] = ro.max[m];
            if (m > 0) {
                mv[M_DIFF0 + m] = ro.differ[m];
                mv[M_LE0 + m] = ro.le[m];
                mv[M_DREGV2_0 + m] = ro.dreg_v2[m];
                mv[M_DREGM_0 + m] = ro.dreg_m[m];
            }
        }
        mv[M_V2_LE_V1] = ro.v2_le_v1;
    }
    /* the trace frontier over this point's cost with each point's measured accuracy */
    {
        psq_opts po = {.dims = 1u << PSQ_COST_BYTES};
        if ((rc = psq_frontier_compute(&probs[0], NULL, &po, &fr, e)))
            goto out;
        ps_table *t = ps_table_new();
        int c_mo = ps_table_add_col(t, "model", PS_COL_STR, "");
        int c_k = ps_table_add_col(t, "budget_kind", PS_COL_STR, "");
        int c_b = ps_table_add_col(t, "bytes", PS_COL_DOUBLE, "B");
        int c_bo = ps_table_add_col(t, "bops", PS_COL_DOUBLE, "");
        int c_o = ps_table_add_col(t, "omega", PS_COL_DOUBLE, "");
        int c_bs = ps_table_add_col(t, "bits", PS_COL_STR, "");
        int c_a = ps_table_add_col(t, "acc", PS_COL_DOUBLE, "");
        int c_lo = ps_table_add_col(t, "loss", PS_COL_DOUBLE, "");
        for (int i = 0; i < fr.n_points; i++) {
            psq_solution s = {.n_layers = nq, .bits = fr.bits + (size_t)i * nq};
            long idx = sol_index(&s, nq);
            char bs[32];
            psq_bits_str(s.bits, nq, bs, sizeof bs);
            size_t r = ps_table_add_row(t);
            ps_table_set_s(t, r, c_mo, model);
            ps_table_set_s(t, r, c_k, BKNAME[bk]);
            ps_table_set_d(t, r, c_b, idx >= 0 ? b->cfg_bytes[idx] : NAN);
            ps_table_set_d(t, r, c_bo, idx >= 0 ? b->cfg_bops[idx] : NAN);
            ps_table_set_d(t, r, c_o, fr.omega[i]);
            ps_table_set_s(t, r, c_bs, bs);
            ps_table_set_d(t, r, c_a, idx >= 0 ? b->c.acc[idx] : NAN);
            ps_table_set_d(t, r, c_lo, idx >= 0 ? b->c.loss[idx] : NAN);
        }
        rc = ps_point_emit(pt, "frontier", t, e);
        ps_table_free(t);
        if (rc)
            goto out;
    }
    /* 6. activation picks (weights at 8 bits): bytes per image or BOPS */
    if ((rc = make_problem(&aprob, nq, b->om_act, acost, NULL, lname, e)))
        goto out;
    {
        psq_problem *pp[AM_N] = {&aprob, &aprob, &aprob, &aprob};
        int kinds[AM_N] = {0, 1, 2, 3};
        regret_out ro;
        budget_ctx bc = {.table = "act_picks", .model = model, .bk = bk, .nq = nq,
                         .ncfg = b->ncfg, .cfg_bytes = b->cfg_abytes, .cfg_bops = b->cfg_bops,
                         .acc = b->c.aacc};
        if ((rc = budgets_run(pt, &bc, AM_N, ANAME, pp, kinds, nbud, seed + 1000, draws, &ro, e)))
            goto out;
        for (int m = 0; m < AM_N; m++) {
            mv[M_A_REG0 + m] = ro.mean[m];
            mv[M_A_REGMAX0 + m] = ro.max[m];
        }
    }
out:
    psq_frontier_free(&fr);
    for (int i = 0; i < 3; i++)
        psq_problem_free(&probs[i]);
    psq_problem_free(&aprob);
    return rc;
}

/* Summary.  Top level (what the acceptance check reads): the first point
 * with size budgets (the first model of the sweep): spearman /
 * spearman_all / fp_acc; per method objects {"hawq_v2": {"regret_points",
 * "regret_points_max", "spearman"}, ...} and the transposed
 * {"regret_points": {"hawq_v2": ...}}; activations under "activations".
 * "bops": the same model's BOPS-budget regrets.  Every point also gets an
 * object "<model>_<kind>" (e.g. "balanced_bops") with its fp_acc, params,
 * spearman (trace, v1, imatrix), regret_points_<m>, regret_points_max_<m>,
 * differ_<m>, v2_le_<m>, regret_v2_where_differ_<m>,
 * regret_where_differ_<m>, act_regret_points_<m>. */
static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    base_free(&g_base); /* every point has run */
    if (pts->nrows < 1)
        return 0;
    size_t r = 0;
    for (size_t i = 0; i < pts->nrows; i++)
        if (ps_table_get_d(pts, i, ps_table_col(pts, "budget_kind_code")) == BK_SIZE) {
            r = i;
            break;
        }
    const size_t r0 = r;
#define COL(nm) ps_table_get_d(pts, r, ps_table_col(pts, nm))
    ps_summary_add(out, "spearman", "", COL("spearman"), "");
    ps_summary_add(out, "spearman_all", "", COL("spearman_all"), "");
    ps_summary_add(out, "fp_acc", "", COL("fp_acc"), "");
    for (int m = 0; m < MT_N; m++) {
        char n[64];
        snprintf(n, sizeof n, "regret_%s", MNAME[m]);
        double reg = COL(n);
        snprintf(n, sizeof n, "regret_max_%s", MNAME[m]);
        double rmax = COL(n);
        ps_summary_add(out, MNAME[m], "regret_points", reg, "points");
        ps_summary_add(out, MNAME[m], "regret_points_max", rmax, "points");
        ps_summary_add(out, "regret_points", MNAME[m], reg, "points");
        ps_summary_add(out, "regret_points_max", MNAME[m], rmax, "points");
        double sp = m == MT_V2 ? COL("spearman") : m == MT_V1 ? COL("spearman_v1")
                                 : m == MT_IMAT ? COL("spearman_imatrix") : NAN;
        double spa = m == MT_V2 ? COL("spearman_all") : m == MT_V1 ? COL("spearman_v1_all")
                                  : m == MT_IMAT ? COL("spearman_imatrix_all") : NAN;
        if (m <= MT_IMAT) {
            ps_summary_add(out, MNAME[m], "spearman", sp, "");
            ps_summary_add(out, MNAME[m], "spearman_all", spa, "");
        }
    }
    ps_summary_add(out, "budgets_v2_le_v1", "", COL("budgets_v2_le_v1"), "");
    ps_summary_add(out, "activations", "spearman", COL("act_spearman"), "");
    ps_summary_add(out, "activations", "spearman_all", COL("act_spearman_all"), "");
    for (int m = 0; m < AM_N; m++) {
        char n[64], k[64];
        snprintf(n, sizeof n, "act_regret_%s", ANAME[m]);
        snprintf(k, sizeof k, "regret_points_%s", ANAME[m]);
        ps_summary_add(out, "activations", k, COL(n), "points");
    }
    /* the same model's BOPS budgets */
    for (size_t i = 0; i < pts->nrows; i++) {
        r = i;
        if (COL("budget_kind_code") != BK_BOPS ||
            COL("model_code") != ps_table_get_d(pts, r0, ps_table_col(pts, "model_code")))
            continue;
        for (int m = 0; m < MT_N; m++) {
            char n[64], k[64];
            snprintf(n, sizeof n, "regret_%s", MNAME[m]);
            snprintf(k, sizeof k, "regret_points_%s", MNAME[m]);
            ps_summary_add(out, "bops", k, COL(n), "points");
            snprintf(n, sizeof n, "regret_max_%s", MNAME[m]);
            snprintf(k, sizeof k, "regret_points_max_%s", MNAME[m]);
            ps_summary_add(out, "bops", k, COL(n), "points");
        }
        ps_summary_add(out, "bops", "budgets_v2_le_v1", COL("budgets_v2_le_v1"), "");
        break;
    }
    /* every point */
    for (r = 0; r < pts->nrows; r++) {
        int mc = (int)COL("model_code"), kc = (int)COL("budget_kind_code");
        if (mc < 0 || mc > QE_NET_BALANCED || kc < 0 || kc > 1)
            continue;
        char obj[64];
        snprintf(obj, sizeof obj, "%s_%s", qe_net_name((qe_net)mc), BKNAME[kc]);
        ps_summary_add(out, obj, "fp_acc", COL("fp_acc"), "");
        ps_summary_add(out, obj, "params", COL("params"), "");
        ps_summary_add(out, obj, "spearman", COL("spearman"), "");
        ps_summary_add(out, obj, "spearman_v1", COL("spearman_v1"), "");
        ps_summary_add(out, obj, "spearman_imatrix", COL("spearman_imatrix"), "");
        ps_summary_add(out, obj, "budgets_v2_le_v1", COL("budgets_v2_le_v1"), "");
        for (int m = 0; m < MT_N; m++) {
            static const char *const pre[][2] = {
                {"regret_", "regret_points_"},       {"regret_max_", "regret_points_max_"},
                {"differ_", "differ_"},              {"v2_le_", "v2_le_"},
                {"regret_v2_where_differ_", "regret_v2_where_differ_"},
                {"regret_where_differ_", "regret_where_differ_"}};
            for (int j = 0; j < 6; j++) {
                if (m == 0 && j >= 2)
                    break;
                char n[96], k[96];
                snprintf(n, sizeof n, "%s%s", pre[j][0], MNAME[m]);
                snprintf(k, sizeof k, "%s%s", pre[j][1], MNAME[m]);
                ps_summary_add(out, obj, k, COL(n), j == 2 || j == 3 ? "" : "points");
            }
        }
        for (int m = 0; m < AM_N; m++) {
            char n[64], k[64];
            snprintf(n, sizeof n, "act_regret_%s", ANAME[m]);
            snprintf(k, sizeof k, "act_regret_points_%s", ANAME[m]);
            ps_summary_add(out, obj, k, COL(n), "points");
        }
    }
#undef COL
    return 0;
}

const ps_study ps_study_quant_fmnist = {
    .name = "quant_fmnist",
    .summary = "HAWQ-V2 mixed precision on the Fashion-MNIST CNN vs exhaustive ground truth",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
};
