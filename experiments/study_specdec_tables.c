/* The specdec_tables study: SpecInfer's Table 2 (tokens per step vs width w
 * of <1,1,w,1,1,1,1,1>) and Table 3 (MSS vs naive sampling) reproduced by
 * acceptance models calibrated on the paper's own numbers (issue 6).
 *
 * table2 (one point per tree x mode x dataset): each acceptance model of
 * sim/specdec/accept.h (positional, depth-decayed matrix, sticky two-state
 * correlated; procedures in accept.c) is calibrated on Table 1's row
 * (k = 1..5) plus the w = 1 entry of Table 2 — never on w = 2..5 — and
 * predicts w = 1..5 by its closed form.  Stochastic rows add the "token"
 * model: the synthetic token-level p/q model of table3 (fitted to the
 * stochastic Table 1 row and w = 1) run through MSS with i.i.d. drafts.
 * tree = "expansion" is the configured <1,1,w,1,...,1>; tree = "beam" tests
 * the hypothesis that the SSM's beam search of width w keeps the w best
 * paths (by Table 1 path value) at every depth from 3 on.  Detail table
 * /specdec_tables/table2: paper vs predicted per (model, w) with the error.
 *
 * Why no per-position model can meet +-5% on every greedy row (measured
 * numbers in the report / summary): for ANY stationary rank process whose
 * top-1 rate is T1 (Table 1), a depth-8 chain gives tokens/step
 *   E1 >= 1 / ((1 - T1) + T1 / 9)
 * (steps per token = R + C with R <= 1 - T1 tested misses and C = (1 - a -
 * R) / 9 caps, a >= 0 the accepted positions of non-capped steps), with
 * equality only if every non-capped step rejects at depth 1, where width at
 * depth 3 cannot help.  CP (2.58 vs bound 2.586) and PIQA (2.18 < 2.273) sit
 * at or below that bound, yet the paper reports +43% / +47% from width: the
 * w = 1 column and Table 1 cannot both be per-position rates of the same
 * process.  Meanwhile Table 1's i.i.d. vector alone predicts w = 2 within
 * 1.5% on 4 of 5 datasets (expansion trees) and w = 2..5 within 7% with
 * beam trees, so the paper's w = 1 column is the outlier.  The sticky
 * correlated model, forced to fit w = 1, must freeze (rho -> 1), which
 * removes the width gain; it is reported, not tuned.
 *
 * table3 (one point per dataset): the tree is <1,1,5,1,1,1,1,1> ("width 5 x
 * depth 8": its MSS row equals Table 2's stochastic w = 5 column).  A
 * synthetic target p = softmax(s z) and drafter q = softmax(s_q((1-a) z +
 * a z')) over V tokens (sim/specdec/verify.h's sd_synth) has (s, a) fitted by
 * Nelder-Mead so that P(x ~ p lies in q's top-k), k = 1..5, matches the
 * stochastic Table 1 row (top-k only depends on q's ranking), then s_q so
 * that MSS on the w = 1 chain gives Table 2's stochastic w = 1; tokens per
 * step of MSS (i.i.d. drafts) and naive sampling (same i.i.d.-drafted trees;
 * and deterministic top-k trees) are measured by Monte Carlo with the
 * verifiers of sim/specdec/verify.c.  fix_scale > 0 holds s: Table 1 leaves
 * s weakly identified (a flat ridge), and MSS/NS moves along it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/study.h"
#include "sim/specdec/accept.h"
#include "sim/specdec/build.h"
#include "sim/specdec/tree.h"
#include "sim/specdec/verify.h"

/* SpecInfer (ASPLOS'24) Tables 1-3, from /work/shared/papers/specinfer.md. */
#define NDS 5
static const char *const DS[NDS] = {"Alpaca", "CP", "WebQA", "CIP", "PIQA"};
static const double T1_GREEDY[NDS][5] = {{.68, .77, .81, .84, .85},
                                         {.69, .79, .83, .86, .87},
                                         {.62, .72, .77, .80, .82},
                                         {.70, .81, .85, .88, .89},
                                         {.63, .75, .79, .83, .85}};
static const double T1_STOCH[NDS][5] = {{.54, .81, .91, .95, .97},
                                        {.56, .82, .92, .95, .97},
                                        {.52, .80, .90, .94, .96},
                                        {.57, .84, .92, .95, .97},
                                        {.55, .82, .91, .95, .97}};
static const double T2_GREEDY[NDS][5] = {{2.95, 3.07, 3.21, 3.33, 3.43},
                                         {2.58, 3.24, 3.46, 3.59, 3.69},
                                         {2.27, 2.69, 2.86, 2.98, 3.07},
                                         {2.73, 3.40, 3.62, 3.79, 3.91},
                                         {2.18, 2.80, 2.97, 3.10, 3.21}};
static const double T2_STOCH[NDS][5] = {{1.79, 2.11, 2.26, 2.32, 2.38},
                                        {1.69, 1.99, 2.15, 2.23, 2.28},
                                        {1.64, 1.93, 2.08, 2.15, 2.21},
                                        {1.72, 2.05, 2.19, 2.28, 2.29},
                                        {1.67, 1.93, 2.08, 2.15, 2.21}};
static const double T3_NS[NDS] = {1.87, 1.80, 1.73, 1.79, 1.73};
static const double T3_MSS[NDS] = {2.38, 2.28, 2.21, 2.29, 2.21};

static const ps_param_spec params[] = {
    {"table", PS_PARAM_STR, "\"table2\"", "", "table2 | table3"},
    {"dataset", PS_PARAM_STR, "\"CP\"", "", "Alpaca | CP | WebQA | CIP | PIQA"},
    {"mode", PS_PARAM_STR, "\"greedy\"", "", "table2: greedy | stochastic (table3: stochastic)"},
    {"tree", PS_PARAM_STR, "\"expansion\"", "",
     "table2: expansion (<1,1,w,1,...> as configured) | beam (SSM beam search of width w from "
     "depth 3 on: the w best paths by Table 1 path value kept at every depth)"},
    {"vocab", PS_PARAM_INT, "32", "", "synthetic token model: vocabulary size V"},
    {"fit_contexts", PS_PARAM_INT, "2000", "", "contexts averaged when fitting the token model"},
    {"mc_steps", PS_PARAM_INT, "20000", "", "Monte Carlo verification steps per tree"},
    {"fix_scale", PS_PARAM_NUM, "0", "",
     "token model: hold the target's logit scale s at this value (0 = fit it too)"},
    {"fit_w1", PS_PARAM_BOOL, "true", "",
     "token model: also fit the drafter's scale to Table 2's w = 1 (false: s_q = s)"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_PAPER_W1,
    M_PAPER_W5,
    M_ERR_POS,
    M_ERR_MAT,
    M_ERR_COR,
    M_ERR_TOK,
    M_PERR_POS,
    M_PERR_MAT,
    M_PERR_COR,
    M_PERR_TOK,
    M_PRED_W5_POS,
    M_PRED_W5_MAT,
    M_PRED_W5_COR,
    M_GAMMA,
    M_RHO,
    M_BOUND_W1,
    M_NS,
    M_NS_TOPK,
    M_MSS,
    M_RATIO,
    M_PAPER_RATIO,
    M_RATIO_ERR,
    M_SCALE,
    M_NOISE,
    M_TOPK_RMS,
    M_DSCALE,
    M_ALPHA,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_PAPER_W1] = {"paper_w1", "tokens/step", "Table 2, w = 1 (calibration target)"},
    [M_PAPER_W5] = {"paper_w5", "tokens/step", "Table 2, w = 5"},
    [M_ERR_POS] = {"max_abs_err_pct_positional", "%", "max over w=1..5 of |pred/paper - 1|"},
    [M_ERR_MAT] = {"max_abs_err_pct_matrix", "%", "same, depth-decayed matrix model"},
    [M_ERR_COR] = {"max_abs_err_pct_correlated", "%", "same, sticky two-state model"},
    [M_ERR_TOK] = {"max_abs_err_pct_token", "%", "same, synthetic token model + MSS (stochastic)"},
    [M_PERR_POS] = {"max_abs_pred_err_pct_positional", "%", "max over w=2..5 (not fitted)"},
    [M_PERR_MAT] = {"max_abs_pred_err_pct_matrix", "%", "max over w=2..5 (not fitted)"},
    [M_PERR_COR] = {"max_abs_pred_err_pct_correlated", "%", "max over w=2..5 (not fitted)"},
    [M_PERR_TOK] = {"max_abs_pred_err_pct_token", "%", "max over w=2..5"},
    [M_PRED_W5_POS] = {"pred_w5_positional", "tokens/step", "positional model at w = 5"},
    [M_PRED_W5_MAT] = {"pred_w5_matrix", "tokens/step", "matrix model at w = 5"},
    [M_PRED_W5_COR] = {"pred_w5_correlated", "tokens/step", "correlated model at w = 5"},
    [M_GAMMA] = {"matrix_gamma", "", "fitted depth decay of the matrix model"},
    [M_RHO] = {"correlated_rho", "", "fitted persistence of the two-state model"},
    [M_BOUND_W1] = {"w1_lower_bound", "tokens/step",
                    "1/((1-T1) + T1/9): least w=1 tokens/step any model with Table 1's top-1 "
                    "rate can give (depth 8)"},
    [M_NS] = {"ns_tokens", "tokens/step", "table3: naive sampling, i.i.d.-drafted trees"},
    [M_NS_TOPK] = {"ns_topk_tokens", "tokens/step", "table3: naive sampling, top-k trees"},
    [M_MSS] = {"mss_tokens", "tokens/step", "table3: MSS, i.i.d.-drafted trees"},
    [M_RATIO] = {"ratio", "", "table3: mss_tokens / ns_tokens"},
    [M_PAPER_RATIO] = {"paper_ratio", "", "table3: paper MSS / NS"},
    [M_RATIO_ERR] = {"ratio_err_pct", "%", "table3: ratio / paper_ratio - 1"},
    [M_SCALE] = {"synth_scale", "", "token model: target logit scale s"},
    [M_NOISE] = {"synth_noise", "", "token model: drafter noise a"},
    [M_TOPK_RMS] = {"synth_topk_rms", "", "token model: RMS error of the fitted top-k row"},
    [M_DSCALE] = {"synth_draft_scale", "", "token model: drafter logit scale s_q (fit to w = 1)"},
    [M_ALPHA] = {"synth_alpha", "", "token model: MSS acceptance of one i.i.d. draft"},
    [M_COUNT] = {NULL, NULL, NULL}};

static int ds_index(const char *s)
{
    for (int i = 0; i < NDS; i++)
        if (!strcmp(DS[i], s))
            return i;
    return -1;
}

static int check(const ps_point *p, ps_err *e)
{
    const char *t = ps_point_str(p, "table"), *m = ps_point_str(p, "mode");
    if (strcmp(t, "table2") && strcmp(t, "table3"))
        return ps_errf(e, PS_EINPUT, "table: unknown \"%s\" (table2, table3)", t);
    if (ds_index(ps_point_str(p, "dataset")) < 0)
        return ps_errf(e, PS_EINPUT, "dataset: unknown \"%s\" (Alpaca, CP, WebQA, CIP, PIQA)",
                       ps_point_str(p, "dataset"));
    if (strcmp(m, "greedy") && strcmp(m, "stochastic"))
        return ps_errf(e, PS_EINPUT, "mode: unknown \"%s\" (greedy, stochastic)", m);
    const char *tr = ps_point_str(p, "tree");
    if (strcmp(tr, "expansion") && strcmp(tr, "beam"))
        return ps_errf(e, PS_EINPUT, "tree: unknown \"%s\" (expansion, beam)", tr);
    long long V = ps_point_int(p, "vocab");
    if (V < 8 || V > 1024)
        return ps_errf(e, PS_EINPUT, "vocab: %lld out of range 8..1024", V);
    if (ps_point_int(p, "fit_contexts") < 10 || ps_point_int(p, "fit_contexts") > 10000000)
        return ps_errf(e, PS_EINPUT, "fit_contexts: %lld out of range 10..1e7",
                       ps_point_int(p, "fit_contexts"));
    double fs = ps_point_num(p, "fix_scale");
    if (!(fs >= 0 && fs < 50))
        return ps_errf(e, PS_EINPUT, "fix_scale: %g out of range [0, 50)", fs);
    if (ps_point_int(p, "mc_steps") < 100 || ps_point_int(p, "mc_steps") > 100000000)
        return ps_errf(e, PS_EINPUT, "mc_steps: %lld out of range 100..1e8",
                       ps_point_int(p, "mc_steps"));
    return 0;
}

static sd_tree *spec_tree(int w, ps_err *e)
{
    int k[8] = {1, 1, w, 1, 1, 1, 1, 1};
    return sd_tree_from_expansion(k, 8, e);
}

/* Beam tree: depths 1-2 a chain; from depth 3 on the frontier keeps the w
 * best candidates (children of ranks 1..w of every frontier node) by path
 * value prod p[rank] (ties: the earlier candidate), as an SSM beam search of
 * width w keeps its w best sequences.  Built through the Medusa choice-list
 * builder (0-based rank paths).  w = 1 is the same chain as the expansion. */
static sd_tree *beam_tree(int w, const double *p, int m, ps_err *e)
{
    enum { D = 8, MAXN = 64 };
    int path[MAXN][D], len[MAXN], np = 0;
    double val[MAXN];
    int front[8], nf = 0;
    /* depth 1 */
    path[0][0] = 0;
    len[0] = 1;
    val[0] = p[0];
    front[nf++] = np++;
    for (int d = 2; d <= D; d++) {
        int width = d < 3 ? 1 : w, kids = d < 3 ? 1 : w;
        int cu[64], cr[64], nc = 0;
        double cv[64];
        for (int i = 0; i < nf; i++)
            for (int r = 0; r < kids; r++) {
                cu[nc] = front[i];
                cr[nc] = r;
                cv[nc] = val[front[i]] * (r < m ? p[r] : 0);
                nc++;
            }
        /* stable selection of the `width` best */
        int take[8], nt = 0;
        char used[64] = {0};
        for (int k = 0; k < width && k < nc; k++) {
            int b = -1;
            for (int c = 0; c < nc; c++)
                if (!used[c] && (b < 0 || cv[c] > cv[b]))
                    b = c;
            used[b] = 1;
            take[nt++] = b;
        }
        nf = 0;
        for (int k = 0; k < nt; k++) {
            int c = take[k], u = cu[c];
            memcpy(path[np], path[u], sizeof(int) * (size_t)len[u]);
            path[np][len[u]] = cr[c];
            len[np] = len[u] + 1;
            val[np] = cv[c];
            front[nf++] = np++;
        }
    }
    const int *pp[MAXN];
    for (int i = 0; i < np; i++)
        pp[i] = path[i];
    return sd_tree_from_choices(pp, len, np, "beam tree", e);
}

/* ---- the synthetic token model fitted to the stochastic Table 1 row ---- */

typedef struct fitctx {
    int V, nctx;
    double fix_s; /* > 0: the target's scale is held at this value */
    const double *target;
    double *p, *q;
    int *idx;
} fitctx;

static void synth_of(double s, double a, int V, sd_synth *m)
{
    m->V = V;
    m->seed = 0x5EC1F3ull;
    m->scale = s;
    m->draft_seed = 0xD4AF7ull;
    m->draft_noise = a;
    m->draft_scale = s;
}

/* P(x ~ p in top-k(q)), k = 1..5, averaged over contexts 1..nctx. */
static void synth_topk(const fitctx *f, const sd_synth *m, double *tk)
{
    int V = f->V;
    for (int k = 0; k < 5; k++)
        tk[k] = 0;
    for (int c = 0; c < f->nctx; c++) {
        sd_synth_row(m, 0, (uint64_t)c + 1, NULL, 0, f->p);
        sd_synth_row(m, 1, (uint64_t)c + 1, NULL, 0, f->q);
        /* top-5 of q (ties to the lower id) */
        char used[1024] = {0};
        double acc = 0;
        for (int k = 0; k < 5 && k < V; k++) {
            int b = -1;
            for (int a = 0; a < V; a++)
                if (!used[a] && (b < 0 || f->q[a] > f->q[b]))
                    b = a;
            used[b] = 1;
            acc += f->p[b];
            tk[k] += acc;
        }
    }
    for (int k = 0; k < 5; k++)
        tk[k] /= f->nctx;
}

/* x = (log s, logit a) */
static double synth_obj(const fitctx *f, const double *x)
{
    double s = f->fix_s > 0 ? f->fix_s : exp(x[0]), a = 1 / (1 + exp(-x[1]));
    if (!(s > 1e-3 && s < 50))
        return 1e9;
    sd_synth m;
    synth_of(s, a, f->V, &m);
    double tk[5], r = 0;
    synth_topk(f, &m, tk);
    for (int k = 0; k < 5; k++)
        r += (tk[k] - f->target[k]) * (tk[k] - f->target[k]);
    return r;
}

/* Nelder-Mead in 2-D (standard coefficients) from x0. */
static void nm2(const fitctx *f, const double *x0, double *xo, double *fo)
{
    double x[3][2], fx[3];
    for (int i = 0; i < 3; i++) {
        x[i][0] = x0[0] + (i == 1 ? 0.2 : 0);
        x[i][1] = x0[1] + (i == 2 ? 0.5 : 0);
        fx[i] = synth_obj(f, x[i]);
    }
    for (int it = 0; it < 200; it++) {
        /* order */
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++)
                if (fx[b] < fx[a]) {
                    double t0 = x[a][0], t1 = x[a][1], tf = fx[a];
                    x[a][0] = x[b][0];
                    x[a][1] = x[b][1];
                    fx[a] = fx[b];
                    x[b][0] = t0;
                    x[b][1] = t1;
                    fx[b] = tf;
                }
        if (fx[2] - fx[0] < 1e-12)
            break;
        double c[2] = {(x[0][0] + x[1][0]) / 2, (x[0][1] + x[1][1]) / 2};
        double xr[2] = {2 * c[0] - x[2][0], 2 * c[1] - x[2][1]}, fr = synth_obj(f, xr);
        if (fr < fx[0]) {
            double xe[2] = {3 * c[0] - 2 * x[2][0], 3 * c[1] - 2 * x[2][1]};
            double fe = synth_obj(f, xe);
            if (fe < fr) {
                x[2][0] = xe[0];
                x[2][1] = xe[1];
                fx[2] = fe;
            } else {
                x[2][0] = xr[0];
                x[2][1] = xr[1];
                fx[2] = fr;
            }
        } else if (fr < fx[1]) {
            x[2][0] = xr[0];
            x[2][1] = xr[1];
            fx[2] = fr;
        } else {
            double xc[2] = {(c[0] + x[2][0]) / 2, (c[1] + x[2][1]) / 2};
            double fc = synth_obj(f, xc);
            if (fc < fx[2]) {
                x[2][0] = xc[0];
                x[2][1] = xc[1];
                fx[2] = fc;
            } else {
                for (int i = 1; i < 3; i++) {
                    x[i][0] = (x[i][0] + x[0][0]) / 2;
                    x[i][1] = (x[i][1] + x[0][1]) / 2;
                    fx[i] = synth_obj(f, x[i]);
                }
            }
        }
    }
    int b = 0;
    for (int i = 1; i < 3; i++)
        if (fx[i] < fx[b])
            b = i;
    xo[0] = x[b][0];
    xo[1] = x[b][1];
    *fo = fx[b];
}

/* alpha = E_ctx sum_x min(p(x), q(x)): MSS acceptance of one i.i.d. draft;
 * nodes of the synthetic model are independent, so a chain of depth 8 gives
 * E1 = sum_{d=0..8} alpha^d exactly. */
static double synth_alpha(const fitctx *f, const sd_synth *m)
{
    double s = 0;
    for (int c = 0; c < f->nctx; c++) {
        sd_synth_row(m, 0, (uint64_t)c + 1, NULL, 0, f->p);
        sd_synth_row(m, 1, (uint64_t)c + 1, NULL, 0, f->q);
        for (int a = 0; a < f->V; a++)
            s += fmin(f->p[a], f->q[a]);
    }
    return s / f->nctx;
}

static double chain_tokens(double alpha)
{
    double E = 0, f = 1;
    for (int d = 0; d <= 8; d++, f *= alpha)
        E += f;
    return E;
}

static double w1_obj(const fitctx *f, const sd_synth *base, double log_sq, double w1)
{
    sd_synth m = *base;
    m.draft_scale = exp(log_sq);
    double r = chain_tokens(synth_alpha(f, &m)) / w1 - 1;
    return r * r;
}

/* (s, a) by Nelder-Mead in 2-D (standard coefficients) from a coarse grid's
 * best, on the top-k row (which does not depend on the drafter's scale: it
 * only ranks q); then, when w1 > 1, the drafter's scale s_q by a scan plus
 * golden section so that the MSS chain's tokens per step match w1. */
static int fit_synth(int V, int nctx, double fix_s, const double *target, double w1,
                     sd_synth *out, double *rms, double *alpha, ps_err *e)
{
    fitctx f = {V, nctx, fix_s, target, malloc(sizeof(double) * (size_t)V),
                malloc(sizeof(double) * (size_t)V), NULL};
    if (!f.p || !f.q) {
        free(f.p);
        free(f.q);
        return ps_errf(e, PS_ERUN, "token model fit: out of memory");
    }
    /* coarse grid: s in [0.5, 32] (log-spaced), a = logistic(-4..3); NM from the 3 best */
    double gx[3][2] = {{0, 0}, {0, 0}, {0, 0}}, gv[3] = {INFINITY, INFINITY, INFINITY};
    for (int i = 0; i < 9; i++)
        for (int j = 0; j < 8; j++) {
            double g[2] = {log(0.5) + i * log(64.0) / 8, -4 + j};
            double v = synth_obj(&f, g);
            for (int r = 0; r < 3; r++)
                if (v < gv[r]) {
                    for (int q = 2; q > r; q--) {
                        gv[q] = gv[q - 1];
                        gx[q][0] = gx[q - 1][0];
                        gx[q][1] = gx[q - 1][1];
                    }
                    gv[r] = v;
                    gx[r][0] = g[0];
                    gx[r][1] = g[1];
                    break;
                }
        }
    double bx[2] = {gx[0][0], gx[0][1]}, bv = INFINITY;
    for (int r = 0; r < 3; r++) {
        double xo[2], fo;
        nm2(&f, gx[r], xo, &fo);
        if (fo < bv) {
            bv = fo;
            bx[0] = xo[0];
            bx[1] = xo[1];
        }
    }
    synth_of(fix_s > 0 ? fix_s : exp(bx[0]), 1 / (1 + exp(-bx[1])), V, out);
    *rms = sqrt(bv / 5);
    if (w1 > 1) { /* drafter temperature: golden section on log(draft_scale) */
        double lo = log(out->scale / 30), hi = log(out->scale * 30), bestv = INFINITY, bx = 0;
        for (int i = 0; i <= 40; i++) { /* coarse scan, then refine around the best */
            double xs = lo + (hi - lo) * i / 40, v = w1_obj(&f, out, xs, w1);
            if (v < bestv) {
                bestv = v;
                bx = xs;
            }
        }
        double a = bx - (hi - lo) / 40, c = bx + (hi - lo) / 40, g = 0.6180339887498949;
        for (int it = 0; it < 40; it++) {
            double x1 = c - g * (c - a), x2 = a + g * (c - a);
            if (w1_obj(&f, out, x1, w1) < w1_obj(&f, out, x2, w1))
                c = x2;
            else
                a = x1;
        }
        out->draft_scale = exp(0.5 * (a + c));
        *alpha = synth_alpha(&f, out);
    }
    free(f.p);
    free(f.q);
    return 0;
}

/* ---- table 2 ---- */

static int emit_row(ps_table *t, const char *ds, const char *mode, const char *tree,
                    const char *model, int w, double tok, double paper)
{
    size_t r = ps_table_add_row(t);
    ps_table_set_s(t, r, ps_table_col(t, "tree"), tree);
    ps_table_set_s(t, r, ps_table_col(t, "dataset"), ds);
    ps_table_set_s(t, r, ps_table_col(t, "mode"), mode);
    ps_table_set_s(t, r, ps_table_col(t, "model"), model);
    ps_table_set_i(t, r, ps_table_col(t, "w"), w);
    ps_table_set_d(t, r, ps_table_col(t, "tokens"), tok);
    ps_table_set_d(t, r, ps_table_col(t, "paper"), paper);
    ps_table_set_d(t, r, ps_table_col(t, "err_pct"), 100 * (tok / paper - 1));
    return 0;
}

static ps_table *table2_layout(void)
{
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "dataset", PS_COL_STR, "");
    ps_table_add_col(t, "mode", PS_COL_STR, "");
    ps_table_add_col(t, "tree", PS_COL_STR, "");
    ps_table_add_col(t, "model", PS_COL_STR, "");
    ps_table_add_col(t, "w", PS_COL_INT, "");
    ps_table_add_col(t, "tokens", PS_COL_DOUBLE, "tokens/step");
    ps_table_add_col(t, "paper", PS_COL_DOUBLE, "tokens/step");
    ps_table_add_col(t, "err_pct", PS_COL_DOUBLE, "%");
    return t;
}

static int run_table2(const ps_point *p, int di, int stoch, double *m, ps_err *e)
{
    const double *T1 = stoch ? T1_STOCH[di] : T1_GREEDY[di];
    const double *T2 = stoch ? T2_STOCH[di] : T2_GREEDY[di];
    const char *mode = stoch ? "stochastic" : "greedy";
    sd_tree *trees[5] = {0};
    ps_table *t = table2_layout();
    int rc = 0;
    int beam = !strcmp(ps_point_str(p, "tree"), "beam");
    const char *tn = beam ? "beam" : "expansion";
    double pd[5];
    for (int k = 0; k < 5; k++)
        pd[k] = T1[k] - (k ? T1[k - 1] : 0);
    for (int w = 1; w <= 5 && !rc; w++)
        if (!(trees[w - 1] = beam ? beam_tree(w, pd, 5, e) : spec_tree(w, e)))
            rc = e->code;
    m[M_PAPER_W1] = T2[0];
    m[M_PAPER_W5] = T2[4];
    m[M_BOUND_W1] = 1 / ((1 - T1[0]) + T1[0] / 9);
    for (int w = 1; w <= 5 && !rc; w++)
        emit_row(t, DS[di], mode, tn, "paper", w, T2[w - 1], T2[w - 1]);
    static const sd_acc_kind kinds[3] = {SD_ACC_POSITIONAL, SD_ACC_MATRIX, SD_ACC_CORRELATED};
    static const int errm[3] = {M_ERR_POS, M_ERR_MAT, M_ERR_COR};
    static const int w5m[3] = {M_PRED_W5_POS, M_PRED_W5_MAT, M_PRED_W5_COR};
    static const int perrm[3] = {M_PERR_POS, M_PERR_MAT, M_PERR_COR};
    for (int k = 0; k < 3 && !rc; k++) {
        double obj;
        sd_accept *a = sd_accept_calibrate(kinds[k], T1, 5, trees[0], T2[0], &obj, e);
        if (!a) {
            rc = e->code ? e->code : PS_ERUN;
            break;
        }
        if (kinds[k] == SD_ACC_MATRIX)
            m[M_GAMMA] = sd_accept_param(a);
        if (kinds[k] == SD_ACC_CORRELATED)
            m[M_RHO] = sd_accept_param(a);
        double mx = 0, px = 0;
        for (int w = 1; w <= 5 && !rc; w++) {
            double E;
            if ((rc = sd_accept_expected(a, trees[w - 1], &E, e)))
                break;
            emit_row(t, DS[di], mode, tn, sd_acc_kind_name(kinds[k]), w, E, T2[w - 1]);
            mx = fmax(mx, fabs(100 * (E / T2[w - 1] - 1)));
            if (w >= 2)
                px = fmax(px, fabs(100 * (E / T2[w - 1] - 1)));
            if (w == 5)
                m[w5m[k]] = E;
        }
        m[errm[k]] = mx;
        m[perrm[k]] = px;
        sd_accept_free(a);
    }
    if (!rc && stoch) { /* token-level model + MSS with i.i.d. drafts */
        sd_synth sm;
        double rms;
        double alpha = NAN;
        rc = fit_synth((int)ps_point_int(p, "vocab"), (int)ps_point_int(p, "fit_contexts"),
                       ps_point_num(p, "fix_scale"), T1,
                       ps_point_bool(p, "fit_w1") ? T2[0] : 0, &sm, &rms, &alpha, e);
        if (!rc) {
            m[M_SCALE] = sm.scale;
            m[M_NOISE] = sm.draft_noise;
            m[M_DSCALE] = sm.draft_scale;
            m[M_ALPHA] = alpha;
            m[M_TOPK_RMS] = rms;
        }
        double mx = 0, px = 0;
        for (int w = 1; w <= 5 && !rc; w++) {
            double E;
            rc = sd_verify_mc_tokens(trees[w - 1], &sm, SD_VERIFY_MSS, SD_DRAFT_IID,
                                     ps_point_int(p, "mc_steps"), ps_point_seed(p) + (uint64_t)w,
                                     &E, NULL, e);
            if (rc)
                break;
            emit_row(t, DS[di], mode, tn, "token", w, E, T2[w - 1]);
            mx = fmax(mx, fabs(100 * (E / T2[w - 1] - 1)));
            if (w >= 2)
                px = fmax(px, fabs(100 * (E / T2[w - 1] - 1)));
        }
        m[M_ERR_TOK] = mx;
        m[M_PERR_TOK] = px;
    }
    if (!rc)
        rc = ps_point_emit(p, "table2", t, e);
    ps_table_free(t);
    for (int w = 0; w < 5; w++)
        sd_tree_free(trees[w]);
    return rc;
}

static int run_table3(const ps_point *p, int di, double *m, ps_err *e)
{
    sd_synth sm;
    double rms, alpha = NAN;
    int rc = fit_synth((int)ps_point_int(p, "vocab"), (int)ps_point_int(p, "fit_contexts"),
                       ps_point_num(p, "fix_scale"),
                       T1_STOCH[di], ps_point_bool(p, "fit_w1") ? T2_STOCH[di][0] : 0, &sm,
                       &rms, &alpha, e);
    if (rc)
        return rc;
    m[M_SCALE] = sm.scale;
    m[M_NOISE] = sm.draft_noise;
    m[M_TOPK_RMS] = rms;
    m[M_DSCALE] = sm.draft_scale;
    m[M_ALPHA] = alpha;
    sd_tree *t = spec_tree(5, e);
    if (!t)
        return e->code;
    long steps = ps_point_int(p, "mc_steps");
    uint64_t seed = ps_point_seed(p);
    double ns, nst, mss, se[3];
    rc = sd_verify_mc_tokens(t, &sm, SD_VERIFY_MSS, SD_DRAFT_IID, steps, seed, &mss, &se[0], e);
    if (!rc)
        rc = sd_verify_mc_tokens(t, &sm, SD_VERIFY_NAIVE, SD_DRAFT_IID, steps, seed + 1, &ns,
                                 &se[1], e);
    if (!rc)
        rc = sd_verify_mc_tokens(t, &sm, SD_VERIFY_NAIVE, SD_DRAFT_TOPK, steps, seed + 2, &nst,
                                 &se[2], e);
    sd_tree_free(t);
    if (rc)
        return rc;
    m[M_MSS] = mss;
    m[M_NS] = ns;
    m[M_NS_TOPK] = nst;
    m[M_RATIO] = mss / ns;
    m[M_PAPER_RATIO] = T3_MSS[di] / T3_NS[di];
    m[M_RATIO_ERR] = 100 * (m[M_RATIO] / m[M_PAPER_RATIO] - 1);
    m[M_PAPER_W5] = T3_MSS[di];
    ps_table *tb = ps_table_new();
    int cd = ps_table_add_col(tb, "dataset", PS_COL_STR, "");
    int cm = ps_table_add_col(tb, "method", PS_COL_STR, "");
    int ct = ps_table_add_col(tb, "tokens", PS_COL_DOUBLE, "tokens/step");
    int cs = ps_table_add_col(tb, "stderr", PS_COL_DOUBLE, "tokens/step");
    int cp = ps_table_add_col(tb, "paper", PS_COL_DOUBLE, "tokens/step");
    int cf = ps_table_add_col(tb, "fix_scale", PS_COL_DOUBLE, "");
    const char *names[3] = {"mss_iid", "ns_iid", "ns_topk"};
    double vals[3] = {mss, ns, nst}, paper[3] = {T3_MSS[di], T3_NS[di], NAN};
    for (int i = 0; i < 3; i++) {
        size_t r = ps_table_add_row(tb);
        ps_table_set_s(tb, r, cd, DS[di]);
        ps_table_set_s(tb, r, cm, names[i]);
        ps_table_set_d(tb, r, ct, vals[i]);
        ps_table_set_d(tb, r, cs, se[i]);
        ps_table_set_d(tb, r, cp, paper[i]);
        ps_table_set_d(tb, r, cf, ps_point_num(p, "fix_scale"));
    }
    rc = ps_point_emit(p, "table3", tb, e);
    ps_table_free(tb);
    return rc;
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    for (int i = 0; i < M_COUNT; i++)
        m[i] = NAN;
    int di = ds_index(ps_point_str(p, "dataset"));
    if (!strcmp(ps_point_str(p, "table"), "table3"))
        return run_table3(p, di, m, e);
    return run_table2(p, di, !strcmp(ps_point_str(p, "mode"), "stochastic"), m, e);
}

/* max over rows matching table/mode/tree (NULL: any) of a metric column */
static double col_max(const ps_table *pts, const char *col, const char *mode, const char *table,
                      const char *tree)
{
    int c = ps_table_col(pts, col), cm = ps_table_col(pts, "mode");
    int ct = ps_table_col(pts, "table"), cr = ps_table_col(pts, "tree");
    double mx = NAN;
    for (size_t r = 0; c >= 0 && r < pts->nrows; r++) {
        if (mode && cm >= 0 && strcmp(ps_table_get_s(pts, r, cm), mode))
            continue;
        if (table && ct >= 0 && strcmp(ps_table_get_s(pts, r, ct), table))
            continue;
        if (tree && cr >= 0 && strcmp(ps_table_get_s(pts, r, cr), tree))
            continue;
        double v = ps_table_get_d(pts, r, c);
        if (isfinite(v) && !(v <= mx))
            mx = v;
    }
    return mx;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    static const char *const models[4] = {"positional", "matrix", "correlated", "token"};
    static const char *const modes[2] = {"greedy", "stochastic"};
    static const char *const trees[2] = {"expansion", "beam"};
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) {
                char col[64], name[96];
                snprintf(col, sizeof col, "max_abs_err_pct_%s", models[k]);
                snprintf(name, sizeof name, "table2_%s%s_max_abs_err_pct", modes[i],
                         b ? "_beam" : "");
                double v = col_max(pts, col, modes[i], "table2", trees[b]);
                if (isfinite(v))
                    ps_summary_add(out, name, models[k], v, "%");
                snprintf(col, sizeof col, "max_abs_pred_err_pct_%s", models[k]);
                snprintf(name, sizeof name, "table2_%s%s_w2to5_max_abs_err_pct", modes[i],
                         b ? "_beam" : "");
                v = col_max(pts, col, modes[i], "table2", trees[b]);
                if (isfinite(v))
                    ps_summary_add(out, name, models[k], v, "%");
            }
    /* table3: MSS/NS over the fitted points (fix_scale = 0) and over every scale */
    int cr = ps_table_col(pts, "ratio"), ce = ps_table_col(pts, "ratio_err_pct");
    int cf = ps_table_col(pts, "fix_scale"), ct = ps_table_col(pts, "table");
    /* fixed parameters have no column: then every row matches */
    for (int all = 0; all < 2 && cr >= 0 && ce >= 0; all++) {
        double rmin = INFINITY, rmax = -INFINITY, emax = 0;
        int n = 0;
        for (size_t r = 0; r < pts->nrows; r++) {
            double v = ps_table_get_d(pts, r, cr);
            if ((ct >= 0 && strcmp(ps_table_get_s(pts, r, ct), "table3")) || !isfinite(v))
                continue;
            if (!all && cf >= 0 && ps_table_get_d(pts, r, cf) != 0)
                continue;
            rmin = fmin(rmin, v);
            rmax = fmax(rmax, v);
            emax = fmax(emax, fabs(ps_table_get_d(pts, r, ce)));
            n++;
        }
        if (!n)
            continue;
        const char *sfx = all ? "_all_scales" : "";
        char name[64];
        snprintf(name, sizeof name, "table3_ratio_min%s", sfx);
        ps_summary_add(out, name, "mss/ns", rmin, "");
        snprintf(name, sizeof name, "table3_ratio_max%s", sfx);
        ps_summary_add(out, name, "mss/ns", rmax, "");
        snprintf(name, sizeof name, "table3_max_abs_ratio_err_pct%s", sfx);
        ps_summary_add(out, name, "mss/ns", emax, "%");
    }
    return 0;
}

const ps_study ps_study_specdec_tables = {
    .name = "specdec_tables",
    .summary = "SpecInfer Tables 2 and 3: acceptance models calibrated on Table 1 + w=1, "
               "MSS vs naive sampling on a calibrated token model",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
};
