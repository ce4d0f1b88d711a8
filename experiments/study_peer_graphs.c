/* The peer_graphs study (issue 9): the peers' real profiled graphs
 * (../shared/peers: eleven PipeDream profiles, Piper's three inputs),
 * imported (sim/pipeline/import.h) and planned by graphpipe, pipedream and
 * piper on a cluster, each plan simulated (pp_plan_point); beside them the
 * peers' own measured numbers (the peers' README tables).
 *
 * Planner settings per graph kind:
 *   - PipeDream profiles: the import's defaults (micro-batch = the profiled
 *     128 samples for the pipedream planner, with PipeDream's own cost
 *     model: its "time per stage in pipeline" is comparable to the README
 *     table); graphpipe and piper use plansim's cost model on the measured
 *     times (piper: plansim's formula, no TMPCs in these graphs).
 *   - Piper inputs: one sample = one Piper micro-batch; piper runs Piper's
 *     own DP with timePerSample CORRECTED to seconds (the resnet / gnmt
 *     inputs are in ms; piper_cost "seconds") and the cluster's link and
 *     memory, unless piper_cost = "piper" (the file's units and settings).
 * search_peak_bytes: growth of the process's peak resident set during the
 * point (Linux: /proc/self/clear_refs "5" resets VmHWM before the point,
 * VmHWM - VmRSS(before) after it; the search and the simulation of the plan,
 * the search dominating on the large state spaces); NaN when /proc is not
 * writable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "experiments/study.h"
#include "sim/pipeline/import.h"
#include "sim/pipeline/planner.h"

static const ps_param_spec params[] = {
    {"graph", PS_PARAM_STR, NULL, "",
     "pipedream/NAME (pipedream-profiles/NAME.graph.txt) or piper/NAME (piper-inputs/NAME.json)"},
    {"peers_dir", PS_PARAM_STR, "\"../../shared/peers\"", "",
     "the peers folder, relative to this config ($PS_PEERS_DIR overrides)"},
    {"cluster", PS_PARAM_STR, "\"summit\"", "", "built-in cluster or a cluster JSON file"},
    {"devices", PS_PARAM_INT, NULL, "", "devices to plan for"},
    {"planner", PS_PARAM_STR, "\"graphpipe\"", "", "graphpipe | pipedream | piper"},
    {"minibatch_per_device", PS_PARAM_INT, "0", "",
     "samples per device per iteration; 0 = 128 (PipeDream graphs: one profiled minibatch) or "
     "4 (Piper graphs: micro-batches)"},
    {"piper_cost", PS_PARAM_STR, "\"seconds\"", "",
     "Piper inputs under the piper planner: seconds (units corrected, the cluster's link and "
     "memory) | piper (exactly Piper: the file's units and settings)"},
    {"pipedream_cost", PS_PARAM_STR, "\"auto\"", "",
     "the pipedream planner's cost model: auto (PipeDream's own optimizer defaults on "
     "PipeDream profiles, as `plansim pipeline plan` does; plansim's on Piper inputs) | "
     "plansim | pipedream"},
    {"time_limit_s", PS_PARAM_NUM, "300", "s", "give up a search after this long"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_FEASIBLE,
    M_THROUGHPUT,
    M_ITER,
    M_SEARCH,
    M_PEAK_SEARCH,
    M_STAGES,
    M_DEV_USED,
    M_MB,
    M_OBJ,
    M_BOTTLENECK,
    M_PRED_THROUGHPUT,
    M_STATES,
    M_OOM,
    M_OPS,
    M_PEER_OBJ,
    M_PEER_SEARCH,
    M_TIME_LIMITED,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_FEASIBLE] = {"feasible", "", "1 if the planner found a plan"},
    [M_THROUGHPUT] = {"throughput_samples_per_s", "1/s", "simulated on the engine (0 on OOM)"},
    [M_ITER] = {"iteration_s", "s", "simulated iteration time"},
    [M_SEARCH] = {"search_time_s", "s", "planner wall time"},
    [M_PEAK_SEARCH] = {"search_peak_bytes", "B",
                       "peak resident-set growth during the point (clear_refs / VmHWM)"},
    [M_STAGES] = {"num_stages", "", "pipeline stages"},
    [M_DEV_USED] = {"devices_used", "", "devices the plan uses"},
    [M_MB] = {"microbatch", "", "samples per micro-batch"},
    [M_OBJ] = {"objective", "", "the planner's own objective in its own unit"},
    [M_BOTTLENECK] = {"bottleneck_stage_time_s", "s",
                      "bottleneck stage time per micro-batch (pipedream: its objective)"},
    [M_PRED_THROUGHPUT] = {"predicted_throughput_samples_per_s", "1/s",
                           "B / predicted iteration, shared cost model"},
    [M_STATES] = {"states", "", "DP states / antichain states / ideals explored"},
    [M_OOM] = {"oom", "", "1 if the simulated plan ran out of device memory"},
    [M_OPS] = {"model_ops", "", "operators in the imported graph"},
    [M_PEER_OBJ] = {"peer_objective", "",
                    "the peer's own reported objective here (PipeDream's bottleneck s per "
                    "minibatch), NaN where the README has none"},
    [M_PEER_SEARCH] = {"peer_search_time_s", "s",
                       "the peer planner's measured search time here (README), NaN if none"},
    [M_TIME_LIMITED] = {"time_limited", "",
                        "1 if the search hit time_limit_s: the plan is the best found by then "
                        "(not proven optimal) or there is none"},
    [M_COUNT] = {NULL, NULL, NULL}};

/* The peers' README numbers: planner, graph, devices -> objective, search */
typedef struct peer_row {
    const char *planner, *graph;
    int devices;
    double objective, search_s;
} peer_row;

static const peer_row peer_rows[] = {
    {"pipedream", "pipedream/vgg16", 4, 0.175732624, 0.18},
    {"pipedream", "pipedream/vgg16", 8, 0.09351323, 0.22},
    {"pipedream", "pipedream/vgg16", 16, 0.04738646, 0.33},
    {"pipedream", "pipedream/resnet50", 4, 0.111497, 0.68},
    {"pipedream", "pipedream/resnet50", 8, 0.056315324, 1.42},
    {"pipedream", "pipedream/resnet50", 16, 0.029212, 5.24},
    {"pipedream", "pipedream/gnmt", 4, 0.025868, 0.22},
    {"pipedream", "pipedream/gnmt", 8, 0.019032, 0.26},
    {"pipedream", "pipedream/gnmt", 16, 0.0183795755, 0.97},
    {"pipedream", "pipedream/gnmt_large", 4, 0.137129, 11.1},
    {"pipedream", "pipedream/gnmt_large", 8, 0.082845, 29.0},
    {"pipedream", "pipedream/gnmt_large", 16, 0.058971, 70.9},
    /* Piper's scaling runs (search time only; its own settings) */
    {"piper", "piper/bert32a100", 8, NAN, 0.06},
    {"piper", "piper/bert32a100", 32, NAN, 0.15},
    {"piper", "piper/resnet", 8, NAN, 4.1},
    {"piper", "piper/gnmt", 4, NAN, 335},
    {"piper", "piper/gnmt", 8, NAN, 483},
    {NULL, NULL, 0, 0, 0}};

static int graph_path(const ps_point *p, char *path, size_t n, int *is_piper, ps_err *e)
{
    const char *g = ps_point_str(p, "graph");
    const char *dir = getenv("PS_PEERS_DIR");
    char base[4096];
    if (dir && *dir)
        snprintf(base, sizeof base, "%s", dir);
    else
        ps_point_path(p, ps_point_str(p, "peers_dir"), base, sizeof base);
    if (!strncmp(g, "pipedream/", 10)) {
        *is_piper = 0;
        snprintf(path, n, "%s/pipedream-profiles/%s.graph.txt", base, g + 10);
    } else if (!strncmp(g, "piper/", 6)) {
        *is_piper = 1;
        snprintf(path, n, "%s/piper-inputs/%s.json", base, g + 6);
    } else {
        return ps_errf(e, PS_EINPUT, "graph: \"%s\" (expected pipedream/NAME or piper/NAME)", g);
    }
    return 0;
}

static int check(const ps_point *p, ps_err *e)
{
    char path[4400];
    int pi;
    int rc = graph_path(p, path, sizeof path, &pi, e);
    if (rc)
        return rc;
    if (!pp_planner_parse(ps_point_str(p, "planner")))
        return ps_errf(e, PS_EINPUT, "planner: unknown \"%s\"", ps_point_str(p, "planner"));
    const char *pcost = ps_point_str(p, "piper_cost");
    if (strcmp(pcost, "seconds") && strcmp(pcost, "piper"))
        return ps_errf(e, PS_EINPUT, "piper_cost: \"%s\" (expected seconds or piper)", pcost);
    const char *pdc = ps_point_str(p, "pipedream_cost");
    if (strcmp(pdc, "auto") && strcmp(pdc, "plansim") && strcmp(pdc, "pipedream"))
        return ps_errf(e, PS_EINPUT, "pipedream_cost: \"%s\" (expected auto, plansim or pipedream)",
                       pdc);
    if (ps_point_int(p, "devices") < 1 || ps_point_int(p, "devices") > PP_PC_MAX_DEVICES)
        return ps_errf(e, PS_EINPUT, "devices: %lld out of range", ps_point_int(p, "devices"));
    return 0;
}

/* kB from a /proc/self/status line */
static double status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return NAN;
    char line[256];
    double v = NAN;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = atof(line + kl + 1);
            break;
        }
    fclose(f);
    return v;
}

static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int run(const ps_point *p, double *m, ps_err *e)
{
    char path[4400], mpath[4400], dir[4096];
    int is_piper, rc = graph_path(p, path, sizeof path, &is_piper, e);
    if (rc)
        return rc;
    pp_model *model = is_piper ? pp_import_piper(path, NULL, e)
                               : pp_import_pipedream(path, NULL, e);
    if (!model)
        return e && e->code ? e->code : PS_EINPUT;
    if ((rc = ps_point_side_dir(p, dir, sizeof dir, e))) {
        pp_model_free(model);
        return rc;
    }
    const char *g = ps_point_str(p, "graph");
    snprintf(mpath, sizeof mpath, "%s/model_%03d.json", dir, ps_point_index(p));
    rc = pp_import_save(model, is_piper ? "piper" : "pipedream", path,
                        is_piper ? 0 : 128, mpath, e);
    pp_model_free(model);
    if (rc)
        return rc;
    int devices = (int)ps_point_int(p, "devices");
    int mpd = (int)ps_point_int(p, "minibatch_per_device");
    if (mpd <= 0)
        mpd = is_piper ? 4 : 128;
    pp_planner_kind pk = pp_planner_parse(ps_point_str(p, "planner"));
    pp_popts o;
    pp_popts_default(&o, pk, mpd * devices);
    o.time_limit_s = ps_point_num(p, "time_limit_s");
    o.piper_cost = strcmp(ps_point_str(p, "piper_cost"), "piper") ? PP_PIPER_COST_SECONDS
                                                                   : PP_PIPER_COST_AUTO;
    const char *pdc = ps_point_str(p, "pipedream_cost");
    int pd_own = !strcmp(pdc, "pipedream") || (!strcmp(pdc, "auto") && !is_piper);
    int micro = 0;
    if (pk == PP_PLANNER_PIPEDREAM && pd_own) {
        /* PipeDream's optimizer defaults (as the plan CLI sets them for an
         * imported profile): its cost model, 1 GB/s, the first-source start,
         * antichain states up to 250,000, one micro-batch of the profiled
         * 128 samples; bottleneck_stage_time_s is then its "time per stage" */
        o.pd_cost = PP_PD_COST_PIPEDREAM;
        if (!is_piper) {
            o.pd_bandwidth_Bps = PP_PD_DEFAULT_BANDWIDTH_BPS;
            o.pd_first_source_only = 1;
            o.pd_auto_states = 250000;
            micro = 128;
        }
    }
    pp_point_spec s = {.model_path = mpath,
                       .microbatch = micro,
                       .cluster = ps_point_str(p, "cluster"),
                       .devices = devices,
                       .planner = pk,
                       .minibatch = mpd * devices,
                       .select_by_sim = 1,
                       .optimizer = CM_OPT_ADAM,
                       .opts = &o};
    double base_kb = status_kb("VmRSS");
    int peak_ok = reset_peak() == 0;
    pp_point_result r;
    memset(&r, 0, sizeof r);
    rc = pp_plan_point(&s, &r, e);
    double hwm_kb = status_kb("VmHWM");
    remove(mpath);
    if (rc)
        return rc;
    m[M_PEAK_SEARCH] = peak_ok && isfinite(base_kb) && isfinite(hwm_kb)
                           ? fmax(0, hwm_kb - base_kb) * 1024.0
                           : NAN;
    m[M_FEASIBLE] = r.feasible;
    m[M_TIME_LIMITED] = strstr(r.note, "time limit") != NULL;
    m[M_SEARCH] = r.search_time_s;
    m[M_OPS] = r.model_ops;
    m[M_STATES] = (double)r.states;
    for (const peer_row *pr = peer_rows; pr->planner; pr++)
        if (!strcmp(pr->planner, pp_planner_name(pk)) && !strcmp(pr->graph, g) &&
            pr->devices == devices) {
            m[M_PEER_OBJ] = pr->objective;
            m[M_PEER_SEARCH] = pr->search_s;
        }
    if (!r.feasible)
        return 0;
    m[M_THROUGHPUT] = r.throughput_samples_per_s;
    m[M_ITER] = r.iteration_s;
    m[M_STAGES] = r.num_stages;
    m[M_DEV_USED] = r.devices_used;
    m[M_MB] = r.microbatch;
    m[M_OBJ] = r.objective;
    m[M_BOTTLENECK] = (r.objective_name && !strcmp(r.objective_name, "bottleneck_stage_time_s"))
                          ? r.objective
                          : r.objective_tps_s * r.microbatch;
    m[M_PRED_THROUGHPUT] = r.predicted_throughput_samples_per_s;
    m[M_OOM] = r.oom;
    return 0;
}

/* /peer_graphs/side_by_side: per (graph, cluster, devices) each planner's
 * simulated throughput and search time, GraphPipe's ratios. */
static double cell(const ps_table *t, const char *graph, const char *cluster, int64_t dev,
                   const char *planner, int col)
{
    int gc = ps_table_col(t, "graph"), cc = ps_table_col(t, "cluster"),
        dc = ps_table_col(t, "devices"), pc = ps_table_col(t, "planner");
    for (size_t r = 0; r < t->nrows; r++)
        if (!strcmp(ps_table_get_s(t, r, gc), graph) && !strcmp(ps_table_get_s(t, r, cc), cluster) &&
            ps_table_get_i(t, r, dc) == dev && !strcmp(ps_table_get_s(t, r, pc), planner))
            return ps_table_get_d(t, r, col);
    return NAN;
}

static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    (void)e;
    *n = 0;
    int gc = ps_table_col(pts, "graph"), cc = ps_table_col(pts, "cluster"),
        dc = ps_table_col(pts, "devices"), pc = ps_table_col(pts, "planner"),
        tc = ps_table_col(pts, "throughput_samples_per_s"),
        sc = ps_table_col(pts, "search_time_s");
    if (gc < 0 || cc < 0 || dc < 0 || pc < 0 || tc < 0 || sc < 0 || max < 1)
        return 0;
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "graph", PS_COL_STR, "");
    ps_table_add_col(t, "cluster", PS_COL_STR, "");
    ps_table_add_col(t, "devices", PS_COL_INT, "");
    static const char *const pl[] = {"graphpipe", "pipedream", "piper"};
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_throughput_samples_per_s", pl[i]);
        ps_table_add_col(t, nm, PS_COL_DOUBLE, "1/s");
        snprintf(nm, sizeof nm, "%s_search_time_s", pl[i]);
        ps_table_add_col(t, nm, PS_COL_DOUBLE, "s");
    }
    int c_best = ps_table_add_col(t, "graphpipe_vs_best_baseline", PS_COL_DOUBLE, "");
    for (size_t r = 0; r < pts->nrows; r++) {
        const char *g = ps_table_get_s(pts, r, gc), *c = ps_table_get_s(pts, r, cc);
        int64_t d = ps_table_get_i(pts, r, dc);
        int dup = 0;
        for (size_t q = 0; q < t->nrows && !dup; q++)
            dup = !strcmp(ps_table_get_s(t, q, 0), g) && !strcmp(ps_table_get_s(t, q, 1), c) &&
                  ps_table_get_i(t, q, 2) == d;
        if (dup)
            continue;
        size_t row = ps_table_add_row(t);
        ps_table_set_s(t, row, 0, g);
        ps_table_set_s(t, row, 1, c);
        ps_table_set_i(t, row, 2, d);
        double thr[3];
        for (int i = 0; i < 3; i++) {
            thr[i] = cell(pts, g, c, d, pl[i], tc);
            ps_table_set_d(t, row, 3 + 2 * i, thr[i]);
            ps_table_set_d(t, row, 4 + 2 * i, cell(pts, g, c, d, pl[i], sc));
        }
        double best = fmax(isfinite(thr[1]) ? thr[1] : 0, isfinite(thr[2]) ? thr[2] : 0);
        ps_table_set_d(t, row, c_best, best > 0 && isfinite(thr[0]) ? thr[0] / best : NAN);
    }
    snprintf(out[0].name, sizeof out[0].name, "side_by_side");
    out[0].t = t;
    *n = 1;
    return 0;
}

/* where graph pipelines win: configurations with GraphPipe >1% above the
 * best baseline, within 1%, below */
static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    ps_summary_add(out, "points", NULL, (double)pts->nrows, "");
    ps_derived d[1];
    size_t nd = 0;
    int rc = derive(pts, d, 1, &nd, e);
    if (rc || !nd)
        return rc;
    ps_table *t = d[0].t;
    int c = ps_table_col(t, "graphpipe_vs_best_baseline");
    int win = 0, tie = 0, lose = 0;
    double lsum = 0;
    int nl = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        double v = ps_table_get_d(t, r, c);
        if (!isfinite(v))
            continue;
        if (v > 1.01)
            win++;
        else if (v >= 0.99)
            tie++;
        else
            lose++;
        if (v > 0) {
            lsum += log(v);
            nl++;
        }
    }
    ps_summary_add(out, "configs_graphpipe_wins", ">1% over the best baseline", win, "");
    ps_summary_add(out, "configs_graphpipe_ties", "within 1%", tie, "");
    ps_summary_add(out, "configs_graphpipe_loses", "<-1%", lose, "");
    if (nl)
        ps_summary_add(out, "geomean_graphpipe_vs_best_baseline", NULL, exp(lsum / nl), "");
    ps_table_free(t);
    return 0;
}

const ps_study ps_study_peer_graphs = {
    .name = "peer_graphs",
    .summary = "the peers' real profiled graphs (PipeDream, Piper) planned by graphpipe, "
               "pipedream and piper beside the peers' own numbers",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
    .derive = derive,
};
