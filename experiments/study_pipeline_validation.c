/* The pipeline validation study (issue 5, "Pipeline replay"): plans of
 * replay-sized multi-branch models — sequential pipelines and graph
 * pipelines, by hand or from the planners on a CPU cluster — each simulated
 * and replayed for real on this machine (real/replay.h), predicted beside
 * measured.  The summary holds the error over the plans and the rank
 * correlation (Kendall's tau-b) of predicted against measured throughput.
 *
 * A point names one plan of the config's `plans` object (the swept `plan`
 * parameter) at a micro-batch count and schedule:
 *
 *   "plans": {"candle-fork": {"model": "candle-uno-small", "knobs": {...},
 *                             "stages": [["enc0.*"], ["enc1.*"], ["*"]]},
 *             "mmt-gp3": {"model": "mmt-small", "planner": "graphpipe",
 *                         "devices": 3}}
 *
 * Hand plans list their stages as arrays of fnmatch(3) patterns over op ids;
 * an op goes to the first stage with a matching pattern.  Stage i runs on
 * plan device i, and the replay maps device d to worker d mod `workers`, so
 * three or four stages share the two cores.  Planner plans come from
 * GraphPipe or PipeDream (the shared cost model, no replication: one device
 * per stage) planned on a CPU cluster costed from the calibration below.
 *
 * Noise: this machine is shared, so a calibration or a measurement is now
 * and then hit by another process.  Sweeping `round` ahead of `plan` replays
 * every plan several times, interleaved in time; the summary and the
 * per_plan table use each plan's medians over its runs.
 *
 * Calibration: the replay times every (op, micro-batch size, phase) the plan
 * runs, predicts from those times, and can write them as a profile DB.
 * Every plan of one model at one micro-batch size runs the same set, so the
 * DB is cached in the run's side folder (NAME/calib/) under a key of the
 * model's JSON, the micro-batch size and the calibration settings; the
 * planners cost their search from it (a planner point with no cache entry
 * first replays the model as one stage to make it).  The replay itself
 * always predicts from its own fresh calibration: the DB's cost model
 * prices the parts of block ops by fits, the fresh per-op times are exact. */
#include <fnmatch.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/stats.h"
#include "common/util.h"
#include "costmodel/costmodel.h"
#include "experiments/study.h"
#include "kernels/cpu_blas.h"
#include "profile/db.h"
#include "real/replay.h"
#include "sim/pipeline/planner.h"

static const ps_param_spec params[] = {
    {"plan", PS_PARAM_STR, NULL, "", "a key of `plans` (sweep it over the plans to compare)"},
    {"plans", PS_PARAM_JSON, NULL, "",
     "plan name -> {model, knobs, planner: hand | graphpipe | pipedream, stages (hand: arrays "
     "of op-id patterns), devices (planners), sequential, microbatches, schedule, minibatch}"},
    {"models", PS_PARAM_JSON, "{}", "",
     "model name -> {\"model\": builtin, \"knobs\": {...}}; a plan's model is one of these "
     "or a builtin (candle-uno-small, mmt-small)"},
    {"minibatch", PS_PARAM_INT, "64", "", "samples per iteration B"},
    {"microbatches", PS_PARAM_INT, "4", "", "micro-batches per iteration m (b = B / m)"},
    {"schedule", PS_PARAM_STR, "\"1f1b\"", "", "gpipe | 1f1b | zb-h1"},
    {"workers", PS_PARAM_INT, "2", "", "worker threads (cores) the replay runs on"},
    {"iterations", PS_PARAM_INT, "5", "", "measured iterations (the median is reported)"},
    {"warmup", PS_PARAM_INT, "2", "", "unmeasured iterations first"},
    {"calib_reps", PS_PARAM_INT, "0", "", "repetitions per calibrated op (0 = the replay's)"},
    {"share_calibration", PS_PARAM_BOOL, "true", "",
     "write every point's calibration DB to the run's cache (planner points always do)"},
    {"max_seconds", PS_PARAM_NUM, "120", "s", "refuse a plan predicted to replay longer"},
    {"round", PS_PARAM_INT, "1", "",
     "repetition index: sweep it ahead of plan ([1, 2, 3]) to replay every plan several times, "
     "interleaved; the summary and per_plan take each plan's medians"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_PRED_ITER,
    M_MEAS_ITER,
    M_REL_ERR,
    M_ABS_REL_ERR,
    M_PRED_TPUT,
    M_MEAS_TPUT,
    M_NOISE,
    M_STAGES,
    M_WORKERS,
    M_MB,
    M_NMB,
    M_GRAPH,
    M_LOSS0,
    M_LOSS1,
    M_CALIB_CACHED,
    M_CALIB_WALL,
    M_REPLAY_WALL,
    M_SEARCH,
    M_OPS,
    M_FOREIGN,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_PRED_ITER] = {"predicted_iteration_s", "s", "simulated iteration time (calibrated costs)"},
    [M_MEAS_ITER] = {"measured_iteration_s", "s", "replayed iteration time, median"},
    [M_REL_ERR] = {"rel_err", "", "(predicted - measured) / measured"},
    [M_ABS_REL_ERR] = {"abs_rel_err", "", "|rel_err|"},
    [M_PRED_TPUT] = {"predicted_throughput_samples_per_s", "1/s", "B / predicted iteration"},
    [M_MEAS_TPUT] = {"measured_throughput_samples_per_s", "1/s", "B / measured iteration"},
    [M_NOISE] = {"measured_noise", "",
                 "spread of the measured iterations: (max - min) / 2 / median"},
    [M_STAGES] = {"num_stages", "", "stages in the plan"},
    [M_WORKERS] = {"workers_used", "", "worker threads the replay ran"},
    [M_MB] = {"microbatch", "", "samples per micro-batch b"},
    [M_NMB] = {"microbatches_run", "", "micro-batches per iteration m"},
    [M_GRAPH] = {"graph_pipeline", "", "1 if the stage graph is not a chain"},
    [M_LOSS0] = {"loss_first", "", "training loss of the first iteration"},
    [M_LOSS1] = {"loss_last", "", "training loss of the last iteration"},
    [M_CALIB_CACHED] = {"calibration_cached", "",
                        "1 if the planner's calibration DB came from the run's cache"},
    [M_CALIB_WALL] = {"calib_wall_s", "s", "the replay's calibration wall time"},
    [M_REPLAY_WALL] = {"replay_wall_s", "s", "replay wall time (warm-up and iterations)"},
    [M_SEARCH] = {"search_time_s", "s", "planner wall time (NaN for hand plans)"},
    [M_OPS] = {"model_ops", "", "operators in the model graph"},
    [M_FOREIGN] = {"foreign_cpu_share", "",
                   "share of the machine's CPU time other processes used during the replay"},
    [M_COUNT] = {NULL, NULL, NULL}};

/* ------------------------------------------------------------------ a point's plan */

typedef struct vspec {
    const char *name;
    const char *model;     /* builtin */
    const json_t *knobs;   /* NULL = defaults */
    pp_planner_kind planner; /* 0 = hand */
    const json_t *stages;  /* hand */
    int devices;           /* planners */
    int sequential;
    int minibatch, microbatches;
    pp_schedule schedule;
} vspec;

static int spec_of(const ps_point *p, vspec *s, ps_err *e)
{
    memset(s, 0, sizeof *s);
    s->name = ps_point_str(p, "plan");
    const json_t *plans = ps_point_json(p, "plans");
    if (!json_is_object(plans))
        return ps_errf(e, PS_EINPUT, "plans: expected an object of named plans, got %s",
                       ps_json_type_name(plans));
    const json_t *j = json_object_get(plans, s->name);
    if (!j) {
        char list[512] = "";
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)plans, k, v) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", k);
        }
        (void)v;
        return ps_errf(e, PS_EINPUT, "plan: \"%s\" is not in plans (known: %s)", s->name, list);
    }
    char at[160];
    snprintf(at, sizeof at, "plans.%s", s->name);
    if (!json_is_object(j))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", at, ps_json_type_name(j));
    static const char *const keys[] = {"model",      "knobs",        "planner",  "stages",
                                       "devices",    "sequential",   "microbatches",
                                       "schedule",   "minibatch",    "note",     NULL};
    int rc = ps_json_check_keys(j, at, keys, e);
    const char *planner = "hand", *sched = ps_point_str(p, "schedule");
    long long devices = 2, mbs = ps_point_int(p, "microbatches"), B = ps_point_int(p, "minibatch");
    int seq = 0;
    s->model = "candle-uno-small";
    if (rc || (rc = ps_json_get_str(j, at, "model", 0, &s->model, e)) ||
        (rc = ps_json_get_str(j, at, "planner", 0, &planner, e)) ||
        (rc = ps_json_get_int(j, at, "devices", 0, &devices, e)) ||
        (rc = ps_json_get_bool(j, at, "sequential", 0, &seq, e)) ||
        (rc = ps_json_get_int(j, at, "microbatches", 0, &mbs, e)) ||
        (rc = ps_json_get_int(j, at, "minibatch", 0, &B, e)) ||
        (rc = ps_json_get_str(j, at, "schedule", 0, &sched, e)))
        return rc;
    s->knobs = json_object_get(j, "knobs");
    const json_t *models = ps_point_json(p, "models");
    const json_t *mdef = json_object_get(models, s->model);
    if (models && !json_is_object(models))
        return ps_errf(e, PS_EINPUT, "models: expected an object, got %s",
                       ps_json_type_name(models));
    if (mdef) {
        char mat[160];
        snprintf(mat, sizeof mat, "models.%s", s->model);
        static const char *const mkeys[] = {"model", "knobs", NULL};
        if (!json_is_object(mdef))
            return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", mat,
                           ps_json_type_name(mdef));
        if ((rc = ps_json_check_keys(mdef, mat, mkeys, e)) ||
            (rc = ps_json_get_str(mdef, mat, "model", 1, &s->model, e)))
            return rc;
        if (s->knobs)
            return ps_errf(e, PS_EINPUT, "%s.knobs: the plan's model comes from %s, which "
                           "holds the knobs", at, mat);
        s->knobs = json_object_get(mdef, "knobs");
    }
    if (s->knobs && !json_is_object(s->knobs))
        return ps_errf(e, PS_EINPUT, "%s.knobs: expected an object, got %s", at,
                       ps_json_type_name(s->knobs));
    s->sequential = seq;
    if (!strcmp(planner, "hand")) {
        s->planner = 0;
        s->stages = json_object_get(j, "stages");
        if (!json_is_array(s->stages) || !json_array_size(s->stages))
            return ps_errf(e, PS_EINPUT, "%s.stages: a hand plan needs a non-empty array of "
                           "stages (arrays of op-id patterns)", at);
    } else {
        s->planner = pp_planner_parse(planner);
        if (s->planner != PP_PLANNER_GRAPHPIPE && s->planner != PP_PLANNER_PIPEDREAM)
            return ps_errf(e, PS_EINPUT,
                           "%s.planner: \"%s\" (expected hand, graphpipe or pipedream)", at,
                           planner);
        if (json_object_get(j, "stages"))
            return ps_errf(e, PS_EINPUT, "%s.stages: only hand plans list stages", at);
    }
    if (devices < 1 || devices > 64)
        return ps_errf(e, PS_EINPUT, "%s.devices: %lld out of range 1..64", at, devices);
    s->devices = (int)devices;
    s->schedule = pp_schedule_parse(sched);
    if (s->schedule != PP_GPIPE && s->schedule != PP_1F1B && s->schedule != PP_ZB_H1)
        return ps_errf(e, PS_EINPUT, "schedule: \"%s\" (expected gpipe, 1f1b or zb-h1)", sched);
    if (B < 1 || mbs < 1 || B % mbs)
        return ps_errf(e, PS_EINPUT, "%s: microbatches %lld must divide minibatch %lld", at, mbs,
                       B);
    s->minibatch = (int)B;
    s->microbatches = (int)mbs;
    if (ps_point_int(p, "workers") < 1 || ps_point_int(p, "workers") > 64)
        return ps_errf(e, PS_EINPUT, "workers: %lld out of range 1..64",
                       ps_point_int(p, "workers"));
    if (ps_point_int(p, "iterations") < 1 || ps_point_int(p, "warmup") < 0)
        return ps_errf(e, PS_EINPUT, "iterations must be >= 1 and warmup >= 0 (got %lld, %lld)",
                       ps_point_int(p, "iterations"), ps_point_int(p, "warmup"));
    return 0;
}

/* A hand plan: op i goes to the first stage with a pattern matching its id. */
static pp_plan *hand_plan(const vspec *s, const pp_model *m, ps_err *e)
{
    int n = pp_model_nops(m), ns = (int)json_array_size(s->stages);
    int *stage_of = malloc((size_t)n * sizeof *stage_of), *ops = malloc((size_t)n * sizeof *ops);
    pp_plan *p = NULL;
    if (!stage_of || !ops) {
        ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *id = pp_model_op_at(m, i)->id;
        stage_of[i] = -1;
        for (int k = 0; k < ns && stage_of[i] < 0; k++) {
            const json_t *st = json_array_get(s->stages, (size_t)k);
            size_t np = json_is_array(st) ? json_array_size(st) : 1;
            for (size_t q = 0; q < np; q++) {
                const json_t *pat = json_is_array(st) ? json_array_get(st, q) : st;
                if (!json_is_string(pat)) {
                    ps_errf(e, PS_EINPUT, "plans.%s.stages[%d]: expected op-id patterns "
                            "(strings), got %s", s->name, k, ps_json_type_name(pat));
                    goto out;
                }
                if (!fnmatch(json_string_value(pat), id, 0)) {
                    stage_of[i] = k;
                    break;
                }
            }
        }
        if (stage_of[i] < 0) {
            ps_errf(e, PS_EINPUT, "plans.%s.stages: op \"%s\" (model %s) matches no stage; end "
                    "with [\"*\"] to collect the rest", s->name, id, s->model);
            goto out;
        }
    }
    if (!(p = pp_plan_new(ns, e)))
        goto out;
    for (int k = 0; k < ns; k++) {
        int c = 0;
        for (int i = 0; i < n; i++)
            if (stage_of[i] == k)
                ops[c++] = i;
        if (!c) {
            ps_errf(e, PS_EINPUT, "plans.%s.stages[%d]: no op of model %s is left for it",
                    s->name, k, s->model);
            goto fail;
        }
        if (pp_plan_set_stage(p, k, ops, c, s->minibatch / s->microbatches, &k, 1, 0, e))
            goto fail;
    }
    p->minibatch = s->minibatch;
    p->schedule = s->schedule;
    p->sequential = s->sequential;
    p->optimizer = CM_OPT_SGD;
    if (pp_plan_finalize(p, m, NULL, e)) {
        ps_err_prefix(e, "plans.%s: ", s->name);
        goto fail;
    }
    goto out;
fail:
    pp_plan_free(p);
    p = NULL;
out:
    free(stage_of);
    free(ops);
    return p;
}

static pp_model *build_model(const vspec *s, ps_err *e)
{
    pp_model *m = pp_model_builtin(s->model, s->knobs, e);
    if (!m)
        ps_err_prefix(e, "plans.%s: ", s->name);
    return m;
}

/* The point's spec and model; NULL with the error code in *rc. */
static pp_model *point_model(const ps_point *p, vspec *s, int *rc, ps_err *e)
{
    *rc = spec_of(p, s, e);
    if (*rc)
        return NULL;
    pp_model *m = build_model(s, e);
    if (!m)
        *rc = e->code ? e->code : PS_EINPUT;
    return m;
}

static int check(const ps_point *p, ps_err *e)
{
    vspec s;
    int rc;
    pp_model *m = point_model(p, &s, &rc, e);
    if (!m)
        return rc;
    if (!s.planner) {
        pp_plan *pl = hand_plan(&s, m, e);
        if (!pl)
            rc = e->code ? e->code : PS_EINPUT;
        pp_plan_free(pl);
    }
    pp_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------ calibration cache */

/* NAME/calib/<model>-b<b>-<hash>.h5: the same ops at the same micro-batch
 * size under the same calibration settings. */
static int calib_path(const ps_point *p, const pp_model *m, int b, char *out, size_t n,
                      ps_err *e)
{
    char dir[4096];
    int rc = ps_point_side_dir(p, dir, sizeof dir, e);
    if (rc)
        return rc;
    size_t l = strlen(dir);
    snprintf(dir + l, sizeof dir - l, "/calib");
    if ((rc = ps_mkdir_p(dir, e)))
        return rc;
    json_t *j = pp_model_to_json(m);
    char *txt = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    if (!txt)
        return ps_errf(e, PS_ERUN, "out of memory");
    uint64_t h = ps_fnv1a(PS_FNV1A_OFFSET, txt, strlen(txt));
    free(txt);
    long long extra[2] = {ps_point_int(p, "calib_reps"), ps_point_int(p, "workers")};
    h = ps_fnv1a(h, extra, sizeof extra);
    snprintf(out, n, "%s/%s-b%d-%016llx.h5", dir, pp_model_name(m), b, (unsigned long long)h);
    return 0;
}

/* The link the replay measured beside its DB (planners cost boundaries
 * with it): DB.link.json {"alpha_s": .., "bytes_per_s": ..}. */
static void link_save(const char *db, const ps_replay_result *r)
{
    char path[4500], txt[128];
    snprintf(path, sizeof path, "%s.link.json", db);
    int n = snprintf(txt, sizeof txt, "{\"alpha_s\": %.9g, \"bytes_per_s\": %.9g}\n",
                     r->link_alpha_s, r->link_bytes_per_s);
    ps_err e = {0};
    if (isfinite(r->link_alpha_s) && r->link_bytes_per_s > 0)
        (void)ps_file_write_atomic(path, txt, (size_t)n, &e); /* a cache: best effort */
}

static void link_load(const char *db, double *alpha_s, double *bps)
{
    char path[4500];
    snprintf(path, sizeof path, "%s.link.json", db);
    json_t *j = json_load_file(path, 0, NULL);
    double a = json_number_value(json_object_get(j, "alpha_s"));
    double b = json_number_value(json_object_get(j, "bytes_per_s"));
    if (a >= 0 && b > 0) {
        *alpha_s = a;
        *bps = b;
    }
    json_decref(j);
}

static void replay_opts(const ps_point *p, ps_replay_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = "cpu";
    o->iterations = (int)ps_point_int(p, "iterations");
    o->warmup = (int)ps_point_int(p, "warmup");
    o->warmup_set = 1;
    o->workers = (int)ps_point_int(p, "workers");
    o->max_seconds = ps_point_num(p, "max_seconds");
    o->calib_reps = (int)ps_point_int(p, "calib_reps");
    o->seed = ps_point_seed(p) ? ps_point_seed(p) : 1;
    o->quiet = 1;
}

/* ------------------------------------------------------------------ planner plans */

/* GraphPipe or PipeDream on a CPU cluster of s->devices devices, costed from
 * the calibration DB (its measured single-op rows; block parts by the
 * roofline of this core's measured peaks), links as the replay measured
 * them.  The DB must exist: a one-stage replay of the model makes
 * it when the cache has none. */
static pp_plan *planner_plan(const vspec *s, const pp_model *m, const char *db_path,
                             double link_alpha_s, double link_bps, double *search_s,
                             int *infeasible, ps_err *e)
{
    ps_db *db = NULL;
    cm_model *cm = NULL;
    pp_pgraph *g = NULL;
    pp_plan *plan = NULL;
    cm_catalog *cat = NULL;
    const cm_device *cpu = NULL;
    pp_presult r;
    memset(&r, 0, sizeof r);
    /* The DB holds the single-op rows of the calibration; the parts of
     * block ops fall to the roofline, on this core's measured peaks. */
    if (!(cat = cm_catalog_new(e)))
        goto out;
    int threads = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    int mrc = cm_catalog_measure_cpu(cat, e);
    ps_cpu_blas_set_threads(threads);
    if (mrc || !(cpu = cm_catalog_device(cat, "cpu", e)) || ps_db_open(db_path, &db, e) ||
        !(cm = cm_model_from_db(db, cat, cpu, e)))
        goto out;
    pp_cluster c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "cpu-replay");
    c.device = *cm_model_device(cm);
    c.devices_per_node = s->devices;
    c.nodes = 1;
    c.mem_bytes = 64e9;
    c.intra.alpha_s = c.inter.alpha_s = link_alpha_s;
    c.intra.beta_bytes_per_s = c.inter.beta_bytes_per_s = link_bps;
    c.allreduce = CM_ALG_RING;
    pp_pcluster pc;
    if (pp_pcluster_from_cluster(&c, s->devices, CM_OPT_SGD, &pc, e) ||
        !(g = pp_pgraph_from_model(m, cm, e)))
        goto out;
    pp_popts o;
    pp_popts_default(&o, s->planner, s->minibatch);
    o.microbatch = s->minibatch / s->microbatches;
    o.gp_max_stage_devices = 1; /* the replay runs one replica per stage */
    if (pp_planner_run(g, &pc, &o, &r, e))
        goto out;
    *search_s = r.search_time_s;
    if (!r.feasible) {
        /* not an error of the run: the point's metrics stay NaN */
        fprintf(stderr, "plansim: note: plans.%s: %s found no plan: %s\n", s->name,
                pp_planner_name(s->planner), r.note);
        *infeasible = 1;
        goto out;
    }
    if ((plan = pp_presult_to_plan(&r, m, &c, s->minibatch, s->devices, e))) {
        plan->schedule = s->schedule;
        plan->optimizer = CM_OPT_SGD;
        if (pp_plan_finalize(plan, m, &c, e)) {
            pp_plan_free(plan);
            plan = NULL;
        }
    }
out:
    pp_presult_free(&r);
    pp_pgraph_free(g);
    cm_model_free(cm);
    ps_db_close(db);
    cm_catalog_free(cat);
    return plan;
}

/* ------------------------------------------------------------------ the point */

static int is_chain(const pp_plan *p)
{
    if (p->sequential)
        return 1;
    if (p->nedges != p->nstages - 1)
        return 0;
    for (int i = 0; i < p->nedges; i++)
        if (p->edges[i].to != p->edges[i].from + 1)
            return 0;
    return 1;
}

static int emit_details(const ps_point *p, const vspec *s, const pp_plan *plan,
                        const pp_model *m, const ps_replay_result *r, ps_err *e)
{
    ps_table *t = ps_table_new();
    int ci[7];
    ci[0] = ps_table_add_col(t, "plan", PS_COL_STR, "");
    ci[1] = ps_table_add_col(t, "model", PS_COL_STR, "");
    ci[2] = ps_table_add_col(t, "planner", PS_COL_STR, "");
    ci[3] = ps_table_add_col(t, "schedule", PS_COL_STR, "");
    ci[4] = ps_table_add_col(t, "minibatch", PS_COL_INT, "");
    ci[5] = ps_table_add_col(t, "microbatches", PS_COL_INT, "");
    ci[6] = ps_table_add_col(t, "sequential", PS_COL_INT, "");
    size_t row0 = ps_table_add_row(t);
    ps_table_set_s(t, row0, ci[0], s->name);
    ps_table_set_s(t, row0, ci[1], pp_model_name(m));
    ps_table_set_s(t, row0, ci[2], s->planner ? pp_planner_name(s->planner) : "hand");
    ps_table_set_s(t, row0, ci[3], pp_schedule_name(s->schedule));
    ps_table_set_i(t, row0, ci[4], s->minibatch);
    ps_table_set_i(t, row0, ci[5], s->microbatches);
    ps_table_set_i(t, row0, ci[6], plan->sequential);
    int rc = ps_point_emit(p, "plan_info", t, e);
    ps_table_free(t);
    if (rc)
        return rc;
    t = ps_table_new();
    int cs = ps_table_add_col(t, "stage", PS_COL_INT, "");
    int cw = ps_table_add_col(t, "worker", PS_COL_INT, "");
    int cp = ps_table_add_col(t, "predicted_busy_s", PS_COL_DOUBLE, "s");
    int cm = ps_table_add_col(t, "measured_busy_s", PS_COL_DOUBLE, "s");
    int cn = ps_table_add_col(t, "ops", PS_COL_INT, "");
    int cf = ps_table_add_col(t, "first_op", PS_COL_STR, "");
    int cl = ps_table_add_col(t, "last_op", PS_COL_STR, "");
    for (int i = 0; i < r->nstages; i++) {
        size_t row = ps_table_add_row(t);
        if (i < plan->nstages && plan->stages[i].nops > 0) {
            const pp_stage *st = &plan->stages[i];
            ps_table_set_i(t, row, cn, st->nops);
            ps_table_set_s(t, row, cf, pp_model_op_at(m, st->ops[0])->id);
            ps_table_set_s(t, row, cl, pp_model_op_at(m, st->ops[st->nops - 1])->id);
        }
        ps_table_set_i(t, row, cs, i);
        ps_table_set_i(t, row, cw, r->stage_worker ? r->stage_worker[i] : -1);
        ps_table_set_d(t, row, cp, r->stage_pred_busy_s ? r->stage_pred_busy_s[i] : NAN);
        ps_table_set_d(t, row, cm, r->stage_meas_busy_s ? r->stage_meas_busy_s[i] : NAN);
    }
    rc = ps_point_emit(p, "stages", t, e);
    ps_table_free(t);
    if (rc)
        return rc;
    t = ps_table_new();
    static const char *const icols[] = {"worker", "seq", "stage", "kind", "mb"};
    static const char *const dcols[] = {"predicted_start_s", "predicted_end_s",
                                        "measured_start_s", "measured_end_s"};
    for (int i = 0; i < 5; i++)
        ps_table_add_col(t, icols[i], PS_COL_INT, "");
    for (int i = 0; i < 4; i++)
        ps_table_add_col(t, dcols[i], PS_COL_DOUBLE, "s");
    for (int i = 0; i < r->ntasks; i++) {
        const ps_replay_task *k = &r->tasks[i];
        size_t row = ps_table_add_row(t);
        int64_t iv[5] = {k->worker, k->seq, k->stage, k->kind, k->mb};
        double dv[4] = {k->pred_start_s, k->pred_end_s, k->meas_start_s, k->meas_end_s};
        for (int c = 0; c < 5; c++)
            ps_table_set_i(t, row, c, iv[c]);
        for (int c = 0; c < 4; c++)
            ps_table_set_d(t, row, 5 + c, dv[c]);
    }
    rc = ps_point_emit(p, "tasks", t, e);
    ps_table_free(t);
    return rc;
}

/* CPU time of the whole machine (busy, total) from /proc/stat and of this
 * process from /proc/self/stat, in clock ticks; 0 when unreadable. */
static void cpu_ticks(double *busy, double *total, double *self)
{
    *busy = *total = *self = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[10] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
            *total = *busy + (double)(v[3] + v[4]);
        }
        fclose(f);
    }
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        char *q = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        /* fields after the command: state ppid ... utime (14) stime (15) */
        if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                        &st) == 2)
            *self = (double)(ut + st);
        fclose(f);
    }
}

static int run(const ps_point *p, double *mt, ps_err *e)
{
    vspec s;
    int rc;
    pp_model *m = point_model(p, &s, &rc, e);
    if (!m)
        return rc;
    pp_plan *plan = NULL;
    ps_replay_result r;
    memset(&r, 0, sizeof r);
    ps_replay_opts o;
    replay_opts(p, &o);
    int b = s.minibatch / s.microbatches;
    char db[4400] = "";
    int cached = 0;
    double search_s = NAN;
    int infeasible = 0;
    if (ps_point_bool(p, "share_calibration") || s.planner) {
        if ((rc = calib_path(p, m, b, db, sizeof db, e)))
            goto out;
        cached = ps_file_exists(db);
    }
    double alpha = 5e-6, bps = 5e9; /* replaced by the replay's measured link */
    if (s.planner) {
        if (!cached) {
            /* the whole model as one stage: calibrates every op at b */
            vspec one = s;
            json_t *all = json_pack("[[s]]", "*");
            one.stages = all;
            one.planner = 0;
            one.sequential = 0;
            pp_plan *p1 = hand_plan(&one, m, e);
            json_decref(all);
            ps_replay_opts o1 = o;
            o1.iterations = 1;
            o1.warmup = 0;
            o1.db_out = db;
            if (!p1 || (rc = ps_replay_run(p1, m, &o1, &r, e))) {
                rc = rc ? rc : (e->code ? e->code : PS_ERUN);
                pp_plan_free(p1);
                goto out;
            }
            pp_plan_free(p1);
            link_save(db, &r);
            ps_replay_result_free(&r);
            memset(&r, 0, sizeof r);
        }
        link_load(db, &alpha, &bps);
        plan = planner_plan(&s, m, db, alpha, bps, &search_s, &infeasible, e);
        mt[M_SEARCH] = search_s;
        if (infeasible)
            goto out;
    } else {
        plan = hand_plan(&s, m, e);
    }
    if (!plan) {
        rc = e->code ? e->code : PS_ERUN;
        goto out;
    }
    /* The replay calibrates every point afresh and predicts from those
     * measured per-op times (the most exact costs it has); the cached DB
     * only costs the planners' search.  A missing cache entry is written
     * from this point's calibration. */
    if (*db && !ps_file_exists(db))
        o.db_out = db;
    double b0, t0, s0, b1, t1, s1;
    cpu_ticks(&b0, &t0, &s0);
    if ((rc = ps_replay_run(plan, m, &o, &r, e))) {
        ps_err_prefix(e, "plan %s: ", s.name);
        goto out;
    }
    cpu_ticks(&b1, &t1, &s1);
    if (t1 > t0)
        mt[M_FOREIGN] = fmax(0, ((b1 - b0) - (s1 - s0)) / (t1 - t0));
    if (o.db_out)
        link_save(db, &r);
    mt[M_PRED_ITER] = r.predicted_iteration_s;
    mt[M_MEAS_ITER] = r.measured_iteration_s;
    mt[M_REL_ERR] = r.rel_err;
    mt[M_ABS_REL_ERR] = fabs(r.rel_err);
    mt[M_PRED_TPUT] = r.throughput_predicted;
    mt[M_MEAS_TPUT] = r.throughput_measured;
    if (r.iteration_s && r.iterations > 0 && r.measured_iteration_s > 0) {
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < r.iterations; i++) {
            lo = fmin(lo, r.iteration_s[i]);
            hi = fmax(hi, r.iteration_s[i]);
        }
        mt[M_NOISE] = (hi - lo) / 2 / r.measured_iteration_s;
    }
    mt[M_STAGES] = r.nstages;
    mt[M_WORKERS] = r.workers;
    mt[M_MB] = b;
    mt[M_NMB] = s.microbatches;
    mt[M_GRAPH] = !is_chain(plan);
    mt[M_LOSS0] = r.loss_first;
    mt[M_LOSS1] = r.loss_last;
    mt[M_CALIB_CACHED] = cached;
    mt[M_CALIB_WALL] = r.calib_wall_s;
    mt[M_REPLAY_WALL] = r.replay_wall_s;
    mt[M_SEARCH] = search_s;
    mt[M_OPS] = pp_model_nops(m);
    rc = emit_details(p, &s, plan, m, &r, e);
out:
    ps_replay_result_free(&r);
    pp_plan_free(plan);
    pp_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------ over all points */

/* One plan over its runs (rounds, repeats): medians of what each run
 * predicted and measured, so that one calibration or one measurement hit by
 * another process on this shared machine does not decide the plan.  The
 * plan's error is the median of its runs' errors: each run calibrates and
 * replays back to back, a paired trial under the same machine state, and
 * this VM drifts between states (~30% slower for seconds at a time) that a
 * median of predictions and a separate median of measurements would pair
 * up wrongly (docs/pipeline-validation.md). */
typedef struct vagg {
    char plan[PS_STR_LEN];
    int runs, graph, stages;
    double pred_it, meas_it, pred_tp, meas_tp;
    double err; /* median over runs of (predicted - measured) / measured */
} vagg;

static double median_inplace(double *v, size_t n)
{
    if (!n)
        return NAN;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Plans in order of first appearance; only runs with every value finite
 * and, when max_foreign < 1, other processes' CPU share at most that. */
static int aggregate(const ps_table *pts, double max_foreign, vagg **out, size_t *nout,
                     ps_err *e)
{
    int cpl = ps_table_col(pts, "plan"), cg = ps_table_col(pts, "graph_pipeline"),
        cst = ps_table_col(pts, "num_stages"), cf = ps_table_col(pts, "foreign_cpu_share");
    int cols[4] = {ps_table_col(pts, "predicted_iteration_s"),
                   ps_table_col(pts, "measured_iteration_s"),
                   ps_table_col(pts, "predicted_throughput_samples_per_s"),
                   ps_table_col(pts, "measured_throughput_samples_per_s")};
    *out = NULL;
    *nout = 0;
    for (int c = 0; c < 4; c++)
        if (cols[c] < 0)
            return ps_errf(e, PS_ERUN, "pipeline_validation: the points table lacks a metric");
    size_t n = pts->nrows, ng = 0;
    vagg *g = calloc(n + 1, sizeof *g);
    double *v = malloc((n + 1) * sizeof *v);
    int *grp = malloc((n + 1) * sizeof *grp);
    if (!g || !v || !grp) {
        free(g), free(v), free(grp);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    for (size_t r = 0; r < n; r++) {
        grp[r] = -1;
        int ok = 1;
        for (int c = 0; c < 4; c++) {
            double x = ps_table_get_d(pts, r, cols[c]);
            ok &= isfinite(x) && x > 0;
        }
        if (max_foreign < 1) {
            double fs = cf >= 0 ? ps_table_get_d(pts, r, cf) : NAN;
            ok &= isfinite(fs) && fs <= max_foreign;
        }
        if (!ok)
            continue;
        char name[PS_STR_LEN];
        if (cpl >= 0)
            snprintf(name, sizeof name, "%s", ps_table_get_s(pts, r, cpl));
        else
            snprintf(name, sizeof name, "point%zu", r);
        size_t k = 0;
        while (k < ng && strcmp(g[k].plan, name))
            k++;
        if (k == ng) {
            snprintf(g[ng].plan, sizeof g[ng].plan, "%s", name);
            g[ng].graph = cg >= 0 && ps_table_get_d(pts, r, cg) == 1;
            g[ng].stages = cst >= 0 ? (int)ps_table_get_d(pts, r, cst) : 0;
            ng++;
        }
        grp[r] = (int)k;
        g[k].runs++;
    }
    for (size_t k = 0; k < ng; k++) {
        size_t m = 0;
        for (size_t r = 0; r < n; r++)
            if (grp[r] == (int)k) {
                double pr = ps_table_get_d(pts, r, cols[0]), me = ps_table_get_d(pts, r, cols[1]);
                v[m++] = (pr - me) / me;
            }
        g[k].err = median_inplace(v, m);
    }
    for (size_t k = 0; k < ng; k++) {
        double *dst[4] = {&g[k].pred_it, &g[k].meas_it, &g[k].pred_tp, &g[k].meas_tp};
        for (int c = 0; c < 4; c++) {
            size_t m = 0;
            for (size_t r = 0; r < n; r++)
                if (grp[r] == (int)k)
                    v[m++] = ps_table_get_d(pts, r, cols[c]);
            *dst[c] = median_inplace(v, m);
        }
    }
    free(v);
    free(grp);
    *out = g;
    *nout = ng;
    return 0;
}

/* Error and rank metrics over the plans' medians; names get `sfx`. */
static int summarize_with(const ps_table *pts, double max_foreign, const char *sfx, ps_table *out,
                          ps_err *e)
{
    vagg *g;
    size_t k;
    int rc = aggregate(pts, max_foreign, &g, &k, e);
    if (rc)
        return rc;
    double *pi = malloc((k + 1) * sizeof *pi), *mi = malloc((k + 1) * sizeof *mi);
    double *pt = malloc((k + 1) * sizeof *pt), *mtp = malloc((k + 1) * sizeof *mtp);
    if (!pi || !mi || !pt || !mtp) {
        free(pi), free(mi), free(pt), free(mtp), free(g);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    double bias = 0, mean = 0, max = 0;
    size_t runs = 0;
    for (size_t i = 0; i < k; i++) {
        pi[i] = g[i].pred_it, mi[i] = g[i].meas_it, pt[i] = g[i].pred_tp, mtp[i] = g[i].meas_tp;
        bias += g[i].err;
        mean += fabs(g[i].err);
        max = fmax(max, fabs(g[i].err));
        runs += (size_t)g[i].runs;
    }
    mean = k ? mean / (double)k : NAN;
    if (!k)
        max = NAN;
    double tau = NAN, tau_it = NAN;
    rc = ps_kendall_tau_b(pt, mtp, k, &tau, e);
    if (!rc)
        rc = ps_kendall_tau_b(pi, mi, k, &tau_it, e);
    if (!rc) {
        char nm[96];
#define ADD(name, v)                                                                               \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "%s%s", name, sfx);                                                \
        ps_summary_add(out, nm, NULL, v, "");                                                      \
    } while (0)
        ADD("n_plans", (double)k);
        ADD("runs", (double)runs);
        ADD("mean_abs_rel_err", mean);
        ADD("max_abs_rel_err", max);
        ADD("mean_rel_err", k ? bias / (double)k : NAN);
        ADD("kendall_tau", tau);
        ADD("kendall_tau_iteration", tau_it);
#undef ADD
    }
    free(pi), free(mi), free(pt), free(mtp), free(g);
    return rc;
}

/* Over every run; then again over the runs during which other processes
 * used at most 5% of the machine (`*_undisturbed`): on this shared 2-core
 * machine a plan that keeps both cores busy shares them with whatever else
 * runs, while the calibration (one core) and one-stage plans leave a core
 * free for it (docs/pipeline-validation.md). */
static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    int rc = summarize_with(pts, 1, "", out, e);
    if (!rc)
        rc = summarize_with(pts, 0.05, "_undisturbed", out, e);
    /* the spread of one replay's measured iterations, median over runs: the
     * scale below which two plans' throughputs cannot be told apart */
    double *nz = malloc((pts->nrows + 1) * sizeof *nz);
    if (!nz)
        return ps_errf(e, PS_ERUN, "out of memory");
    size_t nn = 0;
    int cn = ps_table_col(pts, "measured_noise"), cf = ps_table_col(pts, "foreign_cpu_share");
    for (size_t r = 0; cn >= 0 && r < pts->nrows; r++) {
        double x = ps_table_get_d(pts, r, cn);
        if (isfinite(x))
            nz[nn++] = x;
    }
    if (!rc)
        ps_summary_add(out, "median_measured_noise", NULL, median_inplace(nz, nn), "");
    nn = 0;
    for (size_t r = 0; cf >= 0 && r < pts->nrows; r++) {
        double x = ps_table_get_d(pts, r, cf);
        if (isfinite(x))
            nz[nn++] = x;
    }
    if (!rc)
        ps_summary_add(out, "median_foreign_cpu_share", NULL, median_inplace(nz, nn), "");
    free(nz);
    return rc;
}

/* /pipeline_validation/per_plan: one row per plan (medians over its runs)
 * with its name and kind (sequential | graph) as strings; figures: error per
 * plan, the scatter with the y = x line as the column `y_eq_x`. */
static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    *n = 0;
    if (max < 1)
        return 0;
    vagg *g;
    size_t k;
    int rc = aggregate(pts, 1, &g, &k, e);
    if (rc)
        return rc;
    ps_table *t = ps_table_new();
    int o_lab = ps_table_add_col(t, "label", PS_COL_STR, "");
    int o_kind = ps_table_add_col(t, "pipeline", PS_COL_STR, "");
    int o_st = ps_table_add_col(t, "num_stages", PS_COL_INT, "");
    int o_runs = ps_table_add_col(t, "runs", PS_COL_INT, "");
    int o_p = ps_table_add_col(t, "predicted_iteration_s", PS_COL_DOUBLE, "s");
    int o_m = ps_table_add_col(t, "measured_iteration_s", PS_COL_DOUBLE, "s");
    int o_y = ps_table_add_col(t, "y_eq_x", PS_COL_DOUBLE, "s");
    int o_pt = ps_table_add_col(t, "predicted_throughput_samples_per_s", PS_COL_DOUBLE, "1/s");
    int o_mt = ps_table_add_col(t, "measured_throughput_samples_per_s", PS_COL_DOUBLE, "1/s");
    int o_err = ps_table_add_col(t, "rel_err_pct", PS_COL_DOUBLE, "%");
    int o_abs = ps_table_add_col(t, "abs_rel_err_pct", PS_COL_DOUBLE, "%");
    for (size_t i = 0; i < k; i++) {
        size_t row = ps_table_add_row(t);
        double re = g[i].err;
        ps_table_set_s(t, row, o_lab, g[i].plan);
        ps_table_set_s(t, row, o_kind, g[i].graph ? "graph" : "sequential");
        ps_table_set_i(t, row, o_st, g[i].stages);
        ps_table_set_i(t, row, o_runs, g[i].runs);
        ps_table_set_d(t, row, o_p, g[i].pred_it);
        ps_table_set_d(t, row, o_m, g[i].meas_it);
        ps_table_set_d(t, row, o_y, g[i].meas_it);
        ps_table_set_d(t, row, o_pt, g[i].pred_tp);
        ps_table_set_d(t, row, o_mt, g[i].meas_tp);
        ps_table_set_d(t, row, o_err, 100 * re);
        ps_table_set_d(t, row, o_abs, 100 * fabs(re));
    }
    free(g);
    snprintf(out[0].name, sizeof out[0].name, "per_plan");
    out[0].t = t;
    *n = 1;
    return 0;
}

const ps_study ps_study_pipeline_validation = {
    .name = "pipeline_validation",
    .summary = "replay pipeline plans for real on this machine and compare with the prediction",
    .params = params,
    .metrics = metrics,
    .check_point = check,
    .run_point = run,
    .summarize = summarize,
    .derive = derive,
};
