/* The schedule study: pipeline schedules (GPipe, 1F1B, interleaved 1F1B,
 * ZB-H1) on a chain of uniform stages, simulated on the shared engine and
 * checked against their closed forms (sim/pipeline/schedule.h).  Planned
 * pipelines of real model graphs are the "pipeline" study. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "experiments/study.h"
#include "sim/pipeline/schedule.h"

static const ps_param_spec params[] = {
    {"schedule", PS_PARAM_STR, "\"1f1b\"", "", "gpipe | 1f1b | interleaved | zb-h1"},
    {"chunks", PS_PARAM_INT, "2", "", "interleaved: model chunks per stage v"},
    {"stages", PS_PARAM_INT, NULL, "", "pipeline stages p"},
    {"microbatches", PS_PARAM_INT, NULL, "", "micro-batches per iteration m"},
    {"t_fwd_s", PS_PARAM_NUM, "0.01", "s", "forward time per micro-batch per stage"},
    {"t_bwd_s", PS_PARAM_NUM, "0.02", "s", "backward time per micro-batch per stage"},
    {"activation_bytes", PS_PARAM_NUM, "0", "B", "activations kept per micro-batch per stage"},
    {"p2p_bytes", PS_PARAM_NUM, "0", "B",
     "bytes sent between consecutive stages per micro-batch and direction (0 = none)"},
    {"link_alpha_s", PS_PARAM_NUM, "0", "s", "link latency"},
    {"link_bandwidth_Bps", PS_PARAM_NUM, "0", "B/s", "link bandwidth"},
    {"memory_bytes", PS_PARAM_NUM, "0", "B", "activation memory per stage (0 = unlimited)"},
    {"timeline", PS_PARAM_BOOL, "true", "", "store every task's start and end in /pipeline/timeline"},
    {"trace", PS_PARAM_BOOL, "false", "", "write a Chrome trace per point under NAME/traces/"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_MAKESPAN,
    M_CF_MAKESPAN,
    M_REL_ERR,
    M_BUBBLE,
    M_CF_BUBBLE,
    M_RATIO,
    M_CF_RATIO,
    M_INFLIGHT1,
    M_CF_INFLIGHT1,
    M_INFLIGHT_MISMATCH,
    M_PEAK_ACT,
    M_OOM,
    M_SHORTFALL,
    M_EVENTS,
    M_SIM_WALL,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_MAKESPAN] = {"makespan_s", "s", "simulated iteration time"},
    [M_CF_MAKESPAN] = {"closed_form_makespan_s", "s", "m(t_f+t_b)(1+closed-form ratio); NaN with transfers"},
    [M_REL_ERR] = {"rel_err_makespan", "", "|simulated - closed form| / closed form"},
    [M_BUBBLE] = {"bubble_fraction", "", "idle share of wall time over stages"},
    [M_CF_BUBBLE] = {"closed_form_bubble_fraction", "", "ratio/(1+ratio): (p-1)/(m+p-1) for GPipe and 1F1B"},
    [M_RATIO] = {"bubble_ratio", "", "bubble over ideal time"},
    [M_CF_RATIO] = {"closed_form_bubble_ratio", "", "(p-1)/m; interleaved (p-1)/(vm); ZB-H1 (p-1)/(3m)"},
    [M_INFLIGHT1] = {"peak_inflight_stage1", "", "peak in-flight micro-batches, first stage"},
    [M_CF_INFLIGHT1] = {"closed_form_peak_inflight_stage1", "", "GPipe m, 1F1B min(m,p), see closed_peak()"},
    [M_INFLIGHT_MISMATCH] = {"inflight_mismatches", "", "stages whose peak differs from the closed form"},
    [M_PEAK_ACT] = {"peak_activation_bytes", "B", "largest per-stage activation peak"},
    [M_OOM] = {"oom", "", "1 if a stage ran out of memory"},
    [M_SHORTFALL] = {"oom_shortfall_bytes", "B", "bytes missing on the stage that overflowed"},
    [M_EVENTS] = {"events", "", "event-queue pops"},
    [M_SIM_WALL] = {"sim_wall_s", "s", "wall time of build + simulation"},
    [M_COUNT] = {NULL, NULL, NULL}};

static int check(const ps_point *p, ps_err *e)
{
    const char *sched = ps_point_str(p, "schedule");
    if (!pp_schedule_parse(sched))
        return ps_errf(e, PS_EINPUT,
                       "schedule: unknown \"%s\" (expected gpipe, 1f1b, interleaved, zb-h1)",
                       sched);
    if (ps_point_int(p, "chunks") < 1 || ps_point_int(p, "chunks") > 64)
        return ps_errf(e, PS_EINPUT, "chunks: %lld out of range 1..64", ps_point_int(p, "chunks"));
    long long st = ps_point_int(p, "stages"), mb = ps_point_int(p, "microbatches");
    if (st < 1 || st > 4096)
        return ps_errf(e, PS_EINPUT, "stages: %lld out of range 1..4096", st);
    if (mb < 1 || mb > 1000000)
        return ps_errf(e, PS_EINPUT, "microbatches: %lld out of range 1..1000000", mb);
    static const char *const nonneg[] = {"t_fwd_s", "t_bwd_s", "activation_bytes", "p2p_bytes",
                                         "link_alpha_s", "link_bandwidth_Bps", "memory_bytes",
                                         NULL};
    for (const char *const *n = nonneg; *n; n++) {
        double v = ps_point_num(p, *n);
        if (!(v >= 0) || !isfinite(v))
            return ps_errf(e, PS_EINPUT, "%s: %g must be a finite number >= 0", *n, v);
    }
    if (ps_point_num(p, "p2p_bytes") > 0 && !(ps_point_num(p, "link_bandwidth_Bps") > 0))
        return ps_errf(e, PS_EINPUT, "link_bandwidth_Bps: must be > 0 when p2p_bytes > 0");
    return 0;
}

/* Bubble over ideal time for uniform stages without transfers; NaN where
 * the schedule has no closed form for this shape.
 *   GPipe, 1F1B        (p-1)/m
 *   interleaved        (p-1)/(v m), when m is a multiple of p
 *   ZB-H1              (p-1)/(3m), when F = B = W (t_b = 2 t_f: the
 *                      backward splits evenly into B and W) and m >= p */
static double closed_ratio(pp_schedule s, int p, int m, int v, double tf, double tb)
{
    switch (s) {
    case PP_GPIPE:
    case PP_1F1B: return (double)(p - 1) / m;
    case PP_INTERLEAVED: return m % p == 0 ? (double)(p - 1) / ((double)v * m) : NAN;
    case PP_ZB_H1:
        return m >= p && fabs(tb - 2 * tf) <= 1e-12 * tb ? (double)(p - 1) / (3.0 * m) : NAN;
    }
    return NAN;
}

/* Peak in-flight activations on 1-indexed stage i (0 = no closed form):
 *   GPipe m;  1F1B min(m, p-i+1);  ZB-H1, when m >= p, p on every stage
 *   (W frees what F kept, and W lags B by i-1 micro-batches on stage i:
 *   (p-i+1) + (i-1));
 *   interleaved, in chunk activations (1/v of a micro-batch each), when m is
 *   a multiple of p: m v if m = p, else min(m v, 2(p-i) + (v-1)p + 1) —
 *   Megatron's warm-up of 2(p-i) + (v-1)p forwards plus the one in steady
 *   state. */
static int closed_peak(pp_schedule s, int p, int m, int v, int i)
{
    int f1b = m < p - i + 1 ? m : p - i + 1;
    switch (s) {
    case PP_GPIPE: return m;
    case PP_1F1B: return f1b;
    case PP_ZB_H1: return m >= p ? p : 0;
    case PP_INTERLEAVED: {
        if (m % p)
            return 0;
        if (m == p)
            return m * v;
        int w = 2 * (p - i) + (v - 1) * p + 1;
        return m * v < w ? m * v : w;
    }
    }
    return 0;
}

static int emit_per_stage(const ps_point *p, const pp_result *r, pp_schedule sched,
                          const int *cf_inflight, ps_err *e)
{
    ps_table *t = ps_table_new();
    int c_sched = ps_table_add_col(t, "schedule", PS_COL_STR, "");
    int c_p = ps_table_add_col(t, "stages", PS_COL_INT, "");
    int c_m = ps_table_add_col(t, "microbatches", PS_COL_INT, "");
    int c_stage = ps_table_add_col(t, "stage", PS_COL_INT, "");
    int c_busy = ps_table_add_col(t, "busy_s", PS_COL_DOUBLE, "s");
    int c_util = ps_table_add_col(t, "utilization", PS_COL_DOUBLE, "");
    int c_inf = ps_table_add_col(t, "peak_inflight", PS_COL_INT, "");
    int c_cf = ps_table_add_col(t, "closed_form_peak_inflight", PS_COL_INT, "");
    int c_mem = ps_table_add_col(t, "peak_activation_bytes", PS_COL_DOUBLE, "B");
    for (int i = 0; i < r->stages; i++) {
        size_t row = ps_table_add_row(t);
        ps_table_set_s(t, row, c_sched, pp_schedule_name(sched));
        ps_table_set_i(t, row, c_p, r->stages);
        ps_table_set_i(t, row, c_m, r->microbatches);
        ps_table_set_i(t, row, c_stage, i + 1);
        ps_table_set_d(t, row, c_busy, r->busy_s[i]);
        ps_table_set_d(t, row, c_util, r->makespan_s > 0 ? r->busy_s[i] / r->makespan_s : 0);
        ps_table_set_i(t, row, c_inf, r->peak_inflight[i]);
        ps_table_set_i(t, row, c_cf, cf_inflight[i]);
        ps_table_set_d(t, row, c_mem, r->peak_mem_bytes[i]);
    }
    int rc = ps_point_emit(p, "per_stage", t, e);
    ps_table_free(t);
    return rc;
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    pp_schedule sched = pp_schedule_parse(ps_point_str(p, "schedule"));
    int P = (int)ps_point_int(p, "stages"), M = (int)ps_point_int(p, "microbatches");
    double tf = ps_point_num(p, "t_fwd_s"), tb = ps_point_num(p, "t_bwd_s");
    double act = ps_point_num(p, "activation_bytes"), p2p = ps_point_num(p, "p2p_bytes");
    int V = sched == PP_INTERLEAVED ? (int)ps_point_int(p, "chunks") : 1;
    double *buf = calloc(5 * (size_t)P, sizeof *buf);
    int *cf = calloc((size_t)P, sizeof *cf);
    if (!buf || !cf) {
        free(buf);
        free(cf);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    double *fwd = buf, *bwd = buf + P, *acts = buf + 2 * P, *sf = buf + 3 * P, *sb = buf + 4 * P;
    for (int i = 0; i < P; i++) {
        fwd[i] = tf;
        bwd[i] = tb;
        acts[i] = act;
        sf[i] = sb[i] = p2p;
        cf[i] = closed_peak(sched, P, M, V, i + 1);
    }
    pp_chain ch = {.stages = P,
                   .microbatches = M,
                   .fwd_s = fwd,
                   .bwd_s = bwd,
                   .act_bytes = act > 0 ? acts : NULL,
                   .send_fwd_bytes = p2p > 0 ? sf : NULL,
                   .send_bwd_bytes = p2p > 0 ? sb : NULL,
                   .link_alpha_s = ps_point_num(p, "link_alpha_s"),
                   .link_bytes_per_s = ps_point_num(p, "link_bandwidth_Bps"),
                   .mem_capacity_bytes = ps_point_num(p, "memory_bytes"),
                   .chunks = V};
    double t0 = ps_now_s();
    int rc = 0;
    pp_sim *s = pp_sim_chain(&ch, sched, e);
    if (!s)
        rc = e->code ? e->code : PS_ERUN;
    int st = rc ? rc : pp_sim_run(s, e);
    m[M_SIM_WALL] = ps_now_s() - t0;
    if (!rc && st == DES_OOM) {
        des_oom oom;
        des_oom_get(pp_sim_des(s), &oom);
        m[M_OOM] = 1;
        m[M_SHORTFALL] = oom.shortfall_bytes;
        ps_err_clear(e);
        st = 0;
    } else if (!rc) {
        m[M_OOM] = 0;
        m[M_SHORTFALL] = 0;
    }
    rc = rc ? rc : st;
    if (!rc) {
        const pp_result *r = pp_sim_result(s);
        m[M_MAKESPAN] = r->makespan_s;
        m[M_BUBBLE] = r->bubble_fraction;
        m[M_RATIO] = r->bubble_ratio;
        m[M_INFLIGHT1] = r->peak_inflight[0];
        m[M_CF_INFLIGHT1] = cf[0] > 0 ? cf[0] : NAN;
        m[M_EVENTS] = (double)des_event_count(pp_sim_des(s));
        double peak = 0, mism = 0;
        for (int i = 0; i < P; i++) {
            peak = fmax(peak, r->peak_mem_bytes[i]);
            mism += cf[i] > 0 && r->peak_inflight[i] != cf[i];
        }
        m[M_PEAK_ACT] = peak;
        m[M_INFLIGHT_MISMATCH] = act > 0 && cf[0] > 0 ? mism : NAN;
        double ratio = closed_ratio(sched, P, M, V, tf, tb);
        if (p2p == 0 && m[M_OOM] == 0 && isfinite(ratio)) {
            double ideal = M * (tf + tb);
            m[M_CF_MAKESPAN] = ideal * (1 + ratio);
            m[M_CF_BUBBLE] = ratio / (1 + ratio);
            m[M_CF_RATIO] = ratio;
            m[M_REL_ERR] = m[M_CF_MAKESPAN] > 0
                               ? fabs(r->makespan_s - m[M_CF_MAKESPAN]) / m[M_CF_MAKESPAN]
                               : fabs(r->makespan_s);
        }
        rc = emit_per_stage(p, r, sched, cf, e);
        if (!rc && ps_point_bool(p, "timeline")) {
            ps_table *tl;
            rc = des_timeline_table(pp_sim_des(s), &tl, e);
            if (!rc) {
                rc = ps_point_emit(p, "timeline", tl, e);
                ps_table_free(tl);
            }
        }
        if (!rc && ps_point_bool(p, "trace")) {
            char dir[4096], path[4300];
            rc = ps_point_side_dir(p, dir, sizeof dir, e);
            size_t l = strlen(dir);
            snprintf(dir + l, sizeof dir - l, "/traces");
            if (!rc)
                rc = ps_mkdir_p(dir, e);
            snprintf(path, sizeof path, "%s/point%03d_%s_p%d_m%d.json", dir, ps_point_index(p),
                     pp_schedule_name(sched), P, M);
            if (!rc)
                rc = des_write_trace(pp_sim_des(s), path, e);
        }
    }
    pp_sim_free(s);
    free(buf);
    free(cf);
    return rc;
}

static double col_max_abs(const ps_table *t, const char *a, const char *b, int *n)
{
    int ca = ps_table_col(t, a), cb = b ? ps_table_col(t, b) : -1;
    double mx = 0;
    *n = 0;
    if (ca < 0)
        return NAN;
    for (size_t r = 0; r < t->nrows; r++) {
        double v = ps_table_get_d(t, r, ca);
        if (cb >= 0)
            v -= ps_table_get_d(t, r, cb);
        if (isfinite(v)) {
            mx = fmax(mx, fabs(v));
            (*n)++;
        }
    }
    return mx;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    int n1, n2, n3, n4, n5;
    double rel = col_max_abs(pts, "rel_err_makespan", NULL, &n1);
    double bub = col_max_abs(pts, "bubble_fraction", "closed_form_bubble_fraction", &n2);
    double rat = col_max_abs(pts, "bubble_ratio", "closed_form_bubble_ratio", &n3);
    int ci = ps_table_col(pts, "inflight_mismatches");
    double mism = 0;
    for (size_t r = 0; ci >= 0 && r < pts->nrows; r++) {
        double v = ps_table_get_d(pts, r, ci);
        mism += isfinite(v) ? v : 0;
    }
    double oom = col_max_abs(pts, "oom", NULL, &n4);
    (void)n5;
    ps_summary_add(out, "points", NULL, (double)pts->nrows, "");
    ps_summary_add(out, "closed_form_points", NULL, n1, "");
    ps_summary_add(out, "max_rel_err_makespan", NULL, rel, "");
    ps_summary_add(out, "max_abs_err_bubble_fraction", NULL, bub, "");
    ps_summary_add(out, "max_abs_err_bubble_ratio", NULL, rat, "");
    ps_summary_add(out, "inflight_mismatches", NULL, mism, "");
    ps_summary_add(out, "any_oom", NULL, oom, "");
    int ok = n1 > 0 && rel <= 1e-9 && bub <= 1e-9 && rat <= 1e-9 * fmax(1, rat) && mism == 0;
    ps_summary_add(out, "matches_closed_forms", NULL, ok, "");
    (void)n2;
    (void)n3;
    return 0;
}

const ps_study ps_study_schedule = {
    .name = "schedule",
    .summary = "GPipe, 1F1B, interleaved and ZB-H1 on uniform stages vs their closed forms",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
};
