/* The pipeline study (GraphPipe, issue 4) as the runner sees it: a model
 * graph (built-in generator with knobs, or a JSON file), a cluster, a device
 * count and a planner; each point plans, then simulates the plan on the
 * engine (sim/pipeline/planner.h, pp_plan_point).  The derived table
 * /pipeline/speedups puts the planners of one configuration side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "experiments/study.h"
#include "sim/pipeline/planner.h"

static const ps_param_spec params[] = {
    {"model", PS_PARAM_STR, NULL, "",
     "built-in generator (mmt, dlrm, candle-uno, transformer, candle-uno-small, mmt-small) or a model JSON file"},
    {"knobs", PS_PARAM_JSON, "{}", "", "generator knobs, e.g. {\"layers\": 8}"},
    {"branches", PS_PARAM_INT, "0", "", "> 0 overrides the generator's branch count"},
    {"cluster", PS_PARAM_STR, "\"summit\"", "", "built-in cluster or a cluster JSON file"},
    {"devices", PS_PARAM_INT, NULL, "", "devices to plan for"},
    {"planner", PS_PARAM_STR, "\"graphpipe\"", "", "graphpipe | pipedream | piper | exhaustive"},
    {"minibatch", PS_PARAM_INT, "128", "", "samples per iteration B"},
    {"minibatch_per_device", PS_PARAM_INT, "0", "",
     "> 0: B = devices x this (weak scaling, as the paper sets B near the memory limit)"},
    {"microbatch_from", PS_PARAM_STR, "\"\"", "",
     "with microbatch 0: plan at the micro-batch this planner chose (ablation); \"\" = own"},
    {"pipedream_cost", PS_PARAM_STR, "\"plansim\"", "",
     "PipeDream's cost model: plansim (the shared one) | pipedream (its optimizer's own)"},
    {"pipedream_states", PS_PARAM_STR, "\"auto\"", "",
     "PipeDream's states: antichain (its optimizer) | topo (one topological order) | auto"},
    {"microbatch", PS_PARAM_INT, "0", "", "samples per micro-batch b (0 = the planner chooses)"},
    {"select_by_sim", PS_PARAM_BOOL, "true", "",
     "with microbatch 0: keep the candidate b whose plan simulates fastest"},
    {"optimizer", PS_PARAM_STR, "\"adam\"", "", "sgd | momentum | adam (optimizer state memory)"},
    {"schedule", PS_PARAM_STR, "\"1f1b\"", "", "simulated schedule (1f1b: GraphPipe's DAG 1F1B)"},
    {"time_limit_s", PS_PARAM_NUM, "600", "s", "give up a search after this long"},
    {"piper_max_ideals", PS_PARAM_INT, "0", "", "Piper's downset budget (0 = 40000)"},
    {"trace", PS_PARAM_BOOL, "false", "", "write a Chrome trace per point under NAME/traces/"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_FEASIBLE,
    M_THROUGHPUT,
    M_ITER,
    M_PRED_TPS,
    M_PRED_THROUGHPUT,
    M_OBJ_TPS,
    M_SEARCH,
    M_SIM_WALL,
    M_STAGES,
    M_DEPTH,
    M_DEV_USED,
    M_MB,
    M_STATES,
    M_BUBBLE,
    M_PEAK,
    M_CAP,
    M_OOM,
    M_SHORT,
    M_OPS,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_FEASIBLE] = {"feasible", "", "1 if the planner found a plan"},
    [M_THROUGHPUT] = {"throughput_samples_per_s", "1/s", "the plan's throughput simulated on the engine"},
    [M_ITER] = {"iteration_s", "s", "simulated iteration time"},
    [M_PRED_TPS] = {"predicted_tps_s", "s", "bottleneck time per sample, shared cost model"},
    [M_PRED_THROUGHPUT] = {"predicted_throughput_samples_per_s", "1/s", "B / predicted iteration time"},
    [M_OBJ_TPS] = {"objective_tps_s", "s", "the planner's own objective as time per sample"},
    [M_SEARCH] = {"search_time_s", "s", "planner wall time"},
    [M_SIM_WALL] = {"sim_wall_s", "s", "simulation wall time"},
    [M_STAGES] = {"num_stages", "", "stages in the plan"},
    [M_DEPTH] = {"depth", "", "longest stage path"},
    [M_DEV_USED] = {"devices_used", "", "devices the plan uses"},
    [M_MB] = {"microbatch_chosen", "", "samples per micro-batch in the plan"},
    [M_STATES] = {"states", "", "search states explored"},
    [M_BUBBLE] = {"bubble_fraction", "", "idle share of wall time"},
    [M_PEAK] = {"peak_device_bytes", "B", "largest per-device memory peak"},
    [M_CAP] = {"memory_capacity_bytes", "B", "memory per device"},
    [M_OOM] = {"oom", "", "1 if the simulated plan ran out of memory"},
    [M_SHORT] = {"oom_shortfall_bytes", "B", "bytes missing on the device that overflowed"},
    [M_OPS] = {"model_ops", "", "operators in the model graph"},
    [M_COUNT] = {NULL, NULL, NULL}};

static int spec_of(const ps_point *p, pp_point_spec *s, char *path, size_t n, ps_err *e)
{
    memset(s, 0, sizeof *s);
    const char *model = ps_point_str(p, "model");
    size_t l = strlen(model);
    if (l > 5 && !strcmp(model + l - 5, ".json")) {
        ps_point_path(p, model, path, n);
        s->model_path = path;
    } else {
        s->builtin = model;
    }
    const json_t *k = ps_point_json(p, "knobs");
    if (k && !json_is_object(k))
        return ps_errf(e, PS_EINPUT, "knobs: expected an object, got %s", ps_json_type_name(k));
    s->knobs = json_object_size(k) ? k : NULL;
    s->branches = (int)ps_point_int(p, "branches");
    s->cluster = ps_point_str(p, "cluster");
    s->devices = (int)ps_point_int(p, "devices");
    s->planner = pp_planner_parse(ps_point_str(p, "planner"));
    if (!s->planner)
        return ps_errf(e, PS_EINPUT,
                       "planner: unknown \"%s\" (expected graphpipe, pipedream, piper, exhaustive)",
                       ps_point_str(p, "planner"));
    s->minibatch = (int)ps_point_int(p, "minibatch");
    if (ps_point_int(p, "minibatch_per_device") > 0)
        s->minibatch = (int)(ps_point_int(p, "minibatch_per_device") * ps_point_int(p, "devices"));
    const char *from = ps_point_str(p, "microbatch_from");
    s->microbatch_from = *from ? pp_planner_parse(from) : 0;
    if (*from && !s->microbatch_from)
        return ps_errf(e, PS_EINPUT, "microbatch_from: unknown planner \"%s\"", from);
    const char *ps = ps_point_str(p, "pipedream_states");
    if (strcmp(ps, "auto") && strcmp(ps, "antichain") && strcmp(ps, "topo"))
        return ps_errf(e, PS_EINPUT,
                       "pipedream_states: unknown \"%s\" (expected auto, antichain or topo)", ps);
    const char *pc = ps_point_str(p, "pipedream_cost");
    if (strcmp(pc, "plansim") && strcmp(pc, "pipedream"))
        return ps_errf(e, PS_EINPUT,
                       "pipedream_cost: unknown \"%s\" (expected plansim or pipedream)", pc);
    s->microbatch = (int)ps_point_int(p, "microbatch");
    s->select_by_sim = ps_point_bool(p, "select_by_sim");
    int opt = cm_optimizer_from_name(ps_point_str(p, "optimizer"));
    if (opt < 0)
        return ps_errf(e, PS_EINPUT, "optimizer: unknown \"%s\" (expected sgd, momentum, adam)",
                       ps_point_str(p, "optimizer"));
    s->optimizer = (cm_optimizer)opt;
    s->schedule = pp_schedule_parse(ps_point_str(p, "schedule"));
    if (!s->schedule)
        return ps_errf(e, PS_EINPUT, "schedule: unknown \"%s\"", ps_point_str(p, "schedule"));
    if (s->devices < 1 || s->devices > 65536)
        return ps_errf(e, PS_EINPUT, "devices: %d out of range 1..65536", s->devices);
    if (s->minibatch < 1)
        return ps_errf(e, PS_EINPUT, "minibatch: %d must be >= 1", s->minibatch);
    if (s->microbatch < 0 || (s->microbatch && s->minibatch % s->microbatch))
        return ps_errf(e, PS_EINPUT, "microbatch: %d must divide minibatch %d (or be 0)",
                       s->microbatch, s->minibatch);
    return 0;
}

static int check(const ps_point *p, ps_err *e)
{
    pp_point_spec s;
    char path[4096];
    return spec_of(p, &s, path, sizeof path, e);
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    pp_point_spec s;
    char path[4096], trace[4400];
    int rc = spec_of(p, &s, path, sizeof path, e);
    if (rc)
        return rc;
    pp_popts o;
    pp_popts_default(&o, s.planner, s.minibatch);
    o.microbatch = s.microbatch;
    o.time_limit_s = ps_point_num(p, "time_limit_s");
    o.piper_max_ideals = ps_point_int(p, "piper_max_ideals");
    const char *pds = ps_point_str(p, "pipedream_states");
    o.pd_states = !strcmp(pds, "antichain") ? PP_PD_STATES_ANTICHAIN
                  : !strcmp(pds, "topo")    ? PP_PD_STATES_TOPO
                                            : PP_PD_STATES_AUTO;
    o.pd_cost = strcmp(ps_point_str(p, "pipedream_cost"), "pipedream") ? PP_PD_COST_PLANSIM
                                                                        : PP_PD_COST_PIPEDREAM;
    s.opts = &o;
    if (ps_point_bool(p, "trace")) {
        char dir[4096];
        if ((rc = ps_point_side_dir(p, dir, sizeof dir, e)))
            return rc;
        size_t l = strlen(dir);
        snprintf(dir + l, sizeof dir - l, "/traces");
        if ((rc = ps_mkdir_p(dir, e)))
            return rc;
        snprintf(trace, sizeof trace, "%s/point%03d_%s.json", dir, ps_point_index(p),
                 pp_planner_name(s.planner));
        s.trace_out = trace;
    }
    pp_point_result r;
    memset(&r, 0, sizeof r);
    if ((rc = pp_plan_point(&s, &r, e)))
        return rc;
    m[M_FEASIBLE] = r.feasible;
    m[M_OPS] = r.model_ops;
    m[M_SEARCH] = r.search_time_s;
    if (!r.feasible)
        return 0; /* the note is in the log; metrics stay NaN */
    m[M_THROUGHPUT] = r.throughput_samples_per_s;
    m[M_ITER] = r.iteration_s;
    m[M_PRED_TPS] = r.predicted_tps_s;
    m[M_PRED_THROUGHPUT] = r.predicted_throughput_samples_per_s;
    m[M_OBJ_TPS] = r.objective_tps_s;
    m[M_SIM_WALL] = r.sim_wall_s;
    m[M_STAGES] = r.num_stages;
    m[M_DEPTH] = r.depth;
    m[M_DEV_USED] = r.devices_used;
    m[M_MB] = r.microbatch;
    m[M_STATES] = (double)r.states;
    m[M_BUBBLE] = r.bubble_fraction;
    m[M_PEAK] = r.peak_device_bytes;
    m[M_CAP] = r.mem_capacity_bytes;
    m[M_OOM] = r.oom;
    m[M_SHORT] = r.oom_shortfall_bytes;
    return 0;
}

/* Columns of the points table that are swept parameters (not metrics and
 * not the runner's bookkeeping). */
static int is_param_col(const char *name)
{
    static const char *const skip[] = {"point", "repeat", "seed", "run_time_s", NULL};
    for (const char *const *s = skip; *s; s++)
        if (!strcmp(*s, name))
            return 0;
    for (const ps_metric_spec *mm = metrics; mm->name; mm++)
        if (!strcmp(mm->name, name))
            return 0;
    return 1;
}

static void group_key(const ps_table *t, size_t r, int planner_col, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t c = 0; c < t->ncols; c++) {
        if ((int)c == planner_col || !is_param_col(t->cols[c].name))
            continue;
        char cell[128];
        ps_table_format(t, r, (int)c, cell, sizeof cell);
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", l ? "/" : "", cell);
    }
}

static double mean_of(const ps_table *t, int col, const char *key, int planner_col,
                      const char *planner)
{
    double sum = 0;
    int n = 0;
    char k[512];
    for (size_t r = 0; r < t->nrows; r++) {
        if (strcmp(ps_table_get_s(t, r, planner_col), planner))
            continue;
        group_key(t, r, planner_col, k, sizeof k);
        double v = ps_table_get_d(t, r, col);
        if (!strcmp(k, key) && isfinite(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

/* /pipeline/speedups: one row per configuration (every swept parameter but
 * the planner), each planner's simulated throughput and search time, and
 * GraphPipe's ratios to the others.  Needs "planner" swept. */
static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    (void)e;
    *n = 0;
    int pc = ps_table_col(pts, "planner");
    int tc = ps_table_col(pts, "throughput_samples_per_s");
    int sc = ps_table_col(pts, "search_time_s");
    if (pc < 0 || tc < 0 || sc < 0 || max < 1)
        return 0;
    ps_table *t = ps_table_new();
    int ncfg = 0;
    for (size_t c = 0; c < pts->ncols; c++)
        if ((int)c != pc && is_param_col(pts->cols[c].name)) {
            ps_table_add_col(t, pts->cols[c].name, pts->cols[c].type, pts->cols[c].units);
            ncfg++;
        }
    static const char *const planners[] = {"graphpipe", "pipedream", "piper"};
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_throughput_samples_per_s", planners[i]);
        ps_table_add_col(t, nm, PS_COL_DOUBLE, "1/s");
        snprintf(nm, sizeof nm, "%s_search_time_s", planners[i]);
        ps_table_add_col(t, nm, PS_COL_DOUBLE, "s");
    }
    int c_sp_pd = ps_table_add_col(t, "speedup_vs_pipedream", PS_COL_DOUBLE, "");
    int c_sp_pi = ps_table_add_col(t, "speedup_vs_piper", PS_COL_DOUBLE, "");
    int c_sp_best = ps_table_add_col(t, "speedup_vs_best_baseline", PS_COL_DOUBLE, "");
    int c_se_pd = ps_table_add_col(t, "search_speedup_vs_pipedream", PS_COL_DOUBLE, "");
    int c_se_pi = ps_table_add_col(t, "search_speedup_vs_piper", PS_COL_DOUBLE, "");
    char seen[256][512];
    int nseen = 0;
    for (size_t r = 0; r < pts->nrows; r++) {
        char k[512];
        group_key(pts, r, pc, k, sizeof k);
        int dup = 0;
        for (int i = 0; i < nseen; i++)
            dup |= !strcmp(seen[i], k);
        if (dup || nseen == 256)
            continue;
        snprintf(seen[nseen++], sizeof seen[0], "%s", k);
        size_t row = ps_table_add_row(t);
        int oc = 0;
        for (size_t c = 0; c < pts->ncols; c++) {
            if ((int)c == pc || !is_param_col(pts->cols[c].name))
                continue;
            if (pts->cols[c].type == PS_COL_STR)
                ps_table_set_s(t, row, oc, ps_table_get_s(pts, r, (int)c));
            else if (pts->cols[c].type == PS_COL_INT)
                ps_table_set_i(t, row, oc, ps_table_get_i(pts, r, (int)c));
            else
                ps_table_set_d(t, row, oc, ps_table_get_d(pts, r, (int)c));
            oc++;
        }
        double thr[3], st[3];
        for (int i = 0; i < 3; i++) {
            thr[i] = mean_of(pts, tc, k, pc, planners[i]);
            st[i] = mean_of(pts, sc, k, pc, planners[i]);
            ps_table_set_d(t, row, ncfg + 2 * i, thr[i]);
            ps_table_set_d(t, row, ncfg + 2 * i + 1, st[i]);
        }
        double best = fmax(isfinite(thr[1]) ? thr[1] : 0, isfinite(thr[2]) ? thr[2] : 0);
        ps_table_set_d(t, row, c_sp_pd, thr[0] / thr[1]);
        ps_table_set_d(t, row, c_sp_pi, thr[0] / thr[2]);
        ps_table_set_d(t, row, c_sp_best, best > 0 ? thr[0] / best : NAN);
        ps_table_set_d(t, row, c_se_pd, st[1] / st[0]);
        ps_table_set_d(t, row, c_se_pi, st[2] / st[0]);
    }
    snprintf(out[0].name, sizeof out[0].name, "speedups");
    out[0].t = t;
    *n = 1;
    return 0;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    ps_summary_add(out, "points", NULL, (double)pts->nrows, "");
    int pc = ps_table_col(pts, "planner"), fc = ps_table_col(pts, "feasible");
    int tc = ps_table_col(pts, "throughput_samples_per_s");
    int sc = ps_table_col(pts, "search_time_s");
    static const char *const planners[] = {"graphpipe", "pipedream", "piper", "exhaustive"};
    for (int i = 0; i < 4 && pc >= 0; i++) {
        int n = 0, feas = 0;
        double smax = 0, tsum = 0;
        for (size_t r = 0; r < pts->nrows; r++) {
            if (strcmp(ps_table_get_s(pts, r, pc), planners[i]))
                continue;
            n++;
            feas += ps_table_get_d(pts, r, fc) == 1;
            double s = ps_table_get_d(pts, r, sc), t = ps_table_get_d(pts, r, tc);
            if (isfinite(s))
                smax = fmax(smax, s);
            if (isfinite(t))
                tsum += t;
        }
        if (!n)
            continue;
        ps_summary_add(out, "points_feasible", planners[i], feas, "");
        ps_summary_add(out, "max_search_time_s", planners[i], smax, "s");
    }
    ps_derived d[1];
    size_t nd = 0;
    int rc = derive(pts, d, 1, &nd, e);
    if (rc || !nd)
        return rc;
    ps_table *t = d[0].t;
    static const char *const cols[] = {"speedup_vs_pipedream", "speedup_vs_piper",
                                       "speedup_vs_best_baseline", "search_speedup_vs_pipedream",
                                       "search_speedup_vs_piper"};
    for (int i = 0; i < 5; i++) {
        int c = ps_table_col(t, cols[i]);
        double mx = NAN, mn = NAN, lsum = 0;
        int n = 0;
        for (size_t r = 0; c >= 0 && r < t->nrows; r++) {
            double v = ps_table_get_d(t, r, c);
            if (!isfinite(v) || v <= 0)
                continue;
            mx = isnan(mx) ? v : fmax(mx, v);
            mn = isnan(mn) ? v : fmin(mn, v);
            lsum += log(v);
            n++;
        }
        if (!n)
            continue;
        char nm[96];
        snprintf(nm, sizeof nm, "max_%s", cols[i]);
        ps_summary_add(out, nm, NULL, mx, "");
        snprintf(nm, sizeof nm, "min_%s", cols[i]);
        ps_summary_add(out, nm, NULL, mn, "");
        snprintf(nm, sizeof nm, "geomean_%s", cols[i]);
        ps_summary_add(out, nm, NULL, exp(lsum / n), "");
    }
    ps_table_free(t);
    return 0;
}

const ps_study ps_study_pipeline = {
    .name = "pipeline",
    .summary = "plan model graphs on clusters (GraphPipe, PipeDream, Piper) and simulate the plans",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
    .derive = derive,
};
