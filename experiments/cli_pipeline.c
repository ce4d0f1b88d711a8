/* `plansim pipeline ...`: model graphs, plan simulation (and planning, in
 * cli_pipeline_plan.c). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "experiments/cli_pipeline.h"
#include "sim/pipeline/schedule_impl.h"

/* ------------------------------------------------------------ model */

static void model_help(void)
{
    printf("usage: plansim pipeline model --builtin NAME [--KNOB VALUE ...] [-o M.json]\n"
           "       plansim pipeline model M.json\n"
           "       plansim pipeline model --list\n"
           "  with [--cluster C [--microbatch B]] [--per-op] [--json]\n\n"
           "Builds a built-in model graph (mmt, dlrm, candle-uno, transformer; every size is\n"
           "a knob, defaults are the GraphPipe paper's settings; candle-uno-small and\n"
           "mmt-small are replay-sized, trainable by `plansim pipeline replay`) or loads and\n"
           "validates a model file; writes it with -o.  With --cluster (a built-in name such\n"
           "as summit or dgx-h100, or a cluster file), prices every op on the cluster's\n"
           "device at B samples per micro-batch (default 1): forward, input-gradient and\n"
           "weight-gradient times, activation, output and parameter bytes.\n\n"
           "  --builtin NAME   generator; --list shows them with their knobs\n"
           "  --KNOB VALUE     a generator knob (--branches 8, --dtype fp16, ...)\n"
           "  -o, --output F   write the model JSON (atomically)\n"
           "  --cluster C      price ops on this cluster's device (roofline cost model)\n"
           "  --microbatch B   samples per micro-batch for the prices (default 1)\n"
           "  --per-op         list every op (text) / include \"ops\" (JSON)\n"
           "  --json           one JSON object\n");
}

static void list_builtins(int json)
{
    json_t *j = json_object();
    for (const char *const *n = pp_builtin_names(); *n; n++) {
        json_t *k = json_object();
        if (!json)
            printf("%s\n", *n);
        for (const pp_knob *kn = pp_builtin_knobs(*n); kn->name; kn++) {
            json_object_set_new(k, kn->name, json_loads(kn->def, JSON_DECODE_ANY, NULL));
            if (!json)
                printf("  --%-16s %-10s %s\n", kn->name, kn->def, kn->help);
        }
        json_object_set_new(j, *n, k);
    }
    if (json)
        ps_cli_print_json(j);
    json_decref(j);
}

/* A knob value: a number when it parses as one, else a string. */
static json_t *knob_value(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end != s && *end == 0 && isfinite(v))
        return v == floor(v) && fabs(v) < 9e15 ? json_integer((json_int_t)v) : json_real(v);
    return json_string(s);
}

static int cmd_model(int argc, char **argv)
{
    const char *builtin = NULL, *out = NULL, *cluster = NULL, *file = NULL;
    int json = 0, list = 0, per_op = 0;
    double mb = 1;
    json_t *params = json_object();
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        char key[128];
        const char *val = NULL;
        if (a[0] != '-' || !a[1]) {
            if (file) {
                rc = ps_cli_usage(argv[0], "more than one model file");
                break;
            }
            file = a;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            model_help();
            json_decref(params);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--list")) {
            list = 1;
            continue;
        }
        if (!strcmp(a, "--per-op")) {
            per_op = 1;
            continue;
        }
        if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a, '=');
            size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (kl >= sizeof key)
                kl = sizeof key - 1;
            memcpy(key, a + 2, kl);
            key[kl] = 0;
            val = eq ? eq + 1 : NULL;
        } else if (!strcmp(a, "-o")) {
            snprintf(key, sizeof key, "output");
        } else {
            rc = ps_cli_usage(argv[0], "unknown option '%s'", a);
            break;
        }
        if (!val) {
            if (i + 1 >= argc) {
                rc = ps_cli_usage(argv[0], "option '%s' needs a value", a);
                break;
            }
            val = argv[++i];
        }
        if (!strcmp(key, "builtin"))
            builtin = val;
        else if (!strcmp(key, "output"))
            out = val;
        else if (!strcmp(key, "cluster"))
            cluster = val;
        else if (!strcmp(key, "microbatch")) {
            if (ps_cli_double(argv[0], "--microbatch", val, &mb) || !(mb >= 1))
                rc = ps_cli_usage(argv[0], "--microbatch must be a number >= 1");
        } else {
            for (char *c = key; *c; c++)
                if (*c == '-')
                    *c = '_';
            json_object_set_new(params, key, knob_value(val));
        }
    }
    if (rc) {
        json_decref(params);
        return rc;
    }
    if (list) {
        json_decref(params);
        list_builtins(json);
        return 0;
    }
    if (!!builtin == !!file) {
        json_decref(params);
        return ps_cli_usage(argv[0], "give --builtin NAME or a model file (not both)");
    }
    if (file && json_object_size(params)) {
        json_decref(params);
        return ps_cli_usage(argv[0], "knobs apply to --builtin only");
    }
    ps_err e = {0};
    pp_model *m = builtin ? pp_model_builtin(builtin, params, &e) : pp_model_load(file, &e);
    json_decref(params);
    if (!m)
        return ps_cli_fail(&e);
    if (out && pp_model_save(m, out, &e)) {
        pp_model_free(m);
        return ps_cli_fail(&e);
    }
    int n = pp_model_nops(m), nsrc = 0, nsink = 0;
    for (int i = 0; i < n; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        nsrc += o->ninputs == 0;
        nsink += o->nconsumers == 0;
    }
    pp_op_cost *costs = NULL;
    pp_cluster c;
    double tf = 0, tbi = 0, tbw = 0, act = 0;
    if (cluster) {
        cm_model *cm = NULL;
        costs = malloc((size_t)n * sizeof *costs);
        if (!costs || pp_cluster_load(cluster, NULL, &c, &e) ||
            !(cm = pp_cluster_cost_model(&c, &e)) || pp_model_costs(m, cm, mb, costs, &e)) {
            if (!costs)
                ps_errf(&e, PS_ERUN, "out of memory");
            cm_model_free(cm);
            free(costs);
            pp_model_free(m);
            return ps_cli_fail(&e);
        }
        cm_model_free(cm);
        for (int i = 0; i < n; i++) {
            tf += costs[i].fwd_s;
            tbi += costs[i].bwd_input_s;
            tbw += costs[i].bwd_weight_s;
            act += costs[i].act_bytes;
        }
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(pp_model_name(m)));
        json_object_set_new(j, "num_ops", json_integer(n));
        json_object_set_new(j, "num_edges", json_integer(pp_model_nedges(m)));
        json_object_set_new(j, "num_sources", json_integer(nsrc));
        json_object_set_new(j, "num_sinks", json_integer(nsink));
        json_object_set_new(j, "param_bytes", json_real(pp_model_param_bytes(m)));
        if (out)
            json_object_set_new(j, "output", json_string(out));
        if (cluster) {
            json_object_set_new(j, "cluster", json_string(c.name));
            json_object_set_new(j, "device", json_string(c.device.name));
            json_object_set_new(j, "microbatch", json_real(mb));
            json_object_set_new(j, "fwd_s", json_real(tf));
            json_object_set_new(j, "bwd_input_s", json_real(tbi));
            json_object_set_new(j, "bwd_weight_s", json_real(tbw));
            json_object_set_new(j, "act_bytes", json_real(act));
        }
        if (per_op) {
            json_t *ops = json_array();
            for (int i = 0; i < n; i++) {
                const pp_model_op *o = pp_model_op_at(m, i);
                json_t *x = json_object();
                json_object_set_new(x, "id", json_string(o->id));
                json_object_set_new(x, "kind", json_string(o->kind));
                json_object_set_new(x, "param_bytes", json_real(o->param_bytes));
                json_object_set_new(x, "out_bytes_per_sample", json_real(o->out_bytes));
                json_object_set_new(x, "act_bytes_per_sample", json_real(o->act_bytes));
                if (costs) {
                    json_object_set_new(x, "fwd_s", json_real(costs[i].fwd_s));
                    json_object_set_new(x, "bwd_input_s", json_real(costs[i].bwd_input_s));
                    json_object_set_new(x, "bwd_weight_s", json_real(costs[i].bwd_weight_s));
                }
                json_array_append_new(ops, x);
            }
            json_object_set_new(j, "ops", ops);
        }
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("model %s: %d ops, %d edges, %d sources, %d sinks, %.4g MB of parameters\n",
               pp_model_name(m), n, pp_model_nedges(m), nsrc, nsink,
               pp_model_param_bytes(m) / 1e6);
        if (cluster)
            printf("on %s (%s), %g samples per micro-batch: forward %.6g s, backward %.6g s "
                   "(input %.6g + weight %.6g), activations %.4g MB\n",
                   c.name, c.device.name, mb, tf, tbi + tbw, tbi, tbw, act / 1e6);
        if (per_op) {
            printf("%-24s %-14s %12s %12s %12s", "id", "kind", "params_B", "out_B/smp",
                   "act_B/smp");
            if (costs)
                printf(" %12s %12s %12s", "fwd_s", "bwd_in_s", "bwd_w_s");
            printf("\n");
            for (int i = 0; i < n; i++) {
                const pp_model_op *o = pp_model_op_at(m, i);
                printf("%-24s %-14s %12.4g %12.4g %12.4g", o->id, o->kind, o->param_bytes,
                       o->out_bytes, o->act_bytes);
                if (costs)
                    printf(" %12.4g %12.4g %12.4g", costs[i].fwd_s, costs[i].bwd_input_s,
                           costs[i].bwd_weight_s);
                printf("\n");
            }
        }
        if (out)
            printf("%s\n", out);
    }
    free(costs);
    pp_model_free(m);
    return 0;
}

/* ------------------------------------------------------------ sim */

void pp_cli_result_json(const pp_plan_result *r, const pp_plan *p, json_t *j)
{
    json_object_set_new(j, "throughput_samples_per_s", json_real(r->throughput_samples_per_s));
    json_object_set_new(j, "iteration_s", json_real(r->iteration_s));
    json_object_set_new(j, "makespan_s", json_real(r->iteration_s));
    json_object_set_new(j, "ideal_s", json_real(r->ideal_s));
    json_object_set_new(j, "bubble_fraction", json_real(r->bubble_fraction));
    json_object_set_new(j, "bubble_ratio", json_real(r->bubble_ratio));
    json_object_set_new(j, "num_stages", json_integer(r->nstages));
    json_object_set_new(j, "num_devices", json_integer(r->ndevices));
    if (p) {
        json_object_set_new(j, "schedule", json_string(pp_schedule_name(p->schedule)));
        json_object_set_new(j, "minibatch", json_integer(p->minibatch));
    }
    json_object_set_new(j, "microbatches", json_integer(r->microbatches));
    json_object_set_new(j, "allreduce_s", json_real(r->allreduce_s));
    json_object_set_new(j, "p2p_bytes", json_real(r->p2p_bytes));
    json_t *inf = json_array(), *busy = json_array(), *ar = json_array(), *pk = json_array();
    json_t *mbs = json_array(), *dps = json_array();
    for (int i = 0; i < r->nstages; i++) {
        json_array_append_new(inf, json_integer(r->stage_peak_inflight[i]));
        json_array_append_new(busy, json_real(r->stage_busy_s[i]));
        json_array_append_new(ar, json_real(r->stage_allreduce_s[i]));
        json_array_append_new(pk, json_real(r->stage_peak_bytes[i]));
        if (p) {
            json_array_append_new(mbs, json_integer(p->stages[i].microbatch));
            json_array_append_new(dps, json_integer(p->stages[i].ndevices));
        }
    }
    json_object_set_new(j, "peak_inflight", inf);
    json_object_set_new(j, "stage_busy_s", busy);
    json_object_set_new(j, "stage_allreduce_s", ar);
    json_object_set_new(j, "stage_peak_bytes", pk);
    if (p) {
        json_object_set_new(j, "stage_microbatch", mbs);
        json_object_set_new(j, "stage_devices", dps);
    } else {
        json_decref(mbs);
        json_decref(dps);
    }
    json_object_set_new(j, "peak_device_bytes", json_real(r->peak_device_bytes));
    json_object_set_new(j, "peak_device", json_integer(r->peak_device));
    json_object_set_new(j, "memory_capacity_bytes", json_real(r->mem_capacity_bytes));
    json_object_set_new(j, "oom", json_boolean(r->oom));
    if (r->oom) {
        json_t *o = json_object();
        json_object_set_new(o, "device", json_integer(r->oom_device));
        json_object_set_new(o, "stage", json_integer(r->oom_stage));
        json_object_set_new(o, "shortfall_bytes", json_real(r->oom_shortfall_bytes));
        json_object_set_new(o, "time_s", json_real(r->oom_time_s));
        json_object_set_new(j, "oom_detail", o);
    }
    json_object_set_new(j, "events", json_integer((json_int_t)r->events));
    json_object_set_new(j, "sim_wall_s", json_real(r->sim_wall_s));
}

static void sim_help(void)
{
    printf("usage: plansim pipeline sim --plan PLAN.json [--cluster C] [--trace OUT.json] "
           "[--no-memory-limit] [--json]\n"
           "       plansim pipeline sim --uniform --stages P --microbatches M --t-fwd TF "
           "--t-bwd TB\n"
           "             [--schedule gpipe|1f1b|interleaved|zb-h1] [--chunks V] [--t-wgrad TW]\n"
           "             [--act-bytes A] [--p2p-bytes B --link-alpha S --link-bw BPS]\n"
           "             [--memory BYTES] [--trace OUT.json] [--json]\n\n"
           "Simulates one training iteration on the discrete-event engine.\n\n"
           "--plan: a plan file (its model and cluster are referenced or inline; --cluster\n"
           "overrides the cluster).  Per-stage times come from the cost model on the\n"
           "cluster's device (or from measured times in the model), transfers run on the\n"
           "cluster's links, gradients are all-reduced inside data-parallel stages, and\n"
           "every device's memory is tracked: a plan that does not fit reports the device\n"
           "and the shortfall (\"oom\": true; exit status 0, it is a result).\n\n"
           "--uniform: p equal stages, no cluster; prints the simulated numbers beside the\n"
           "closed forms.  TF and TB are per stage and micro-batch; interleaved splits them\n"
           "over V chunks; zb-h1 splits TB into input gradient TB - TW and weight gradient\n"
           "TW (default TB/2).\n\n"
           "JSON: makespan_s, bubble_fraction (idle share of wall time), bubble_ratio\n"
           "(bubble over ideal time), peak_inflight (per stage), and for --plan\n"
           "throughput_samples_per_s, per-stage busy/all-reduce/memory, oom; for --uniform\n"
           "closed_form {...}.\n");
}

typedef struct uni_opts {
    long p, m, v;
    double tf, tb, tw, act, p2p, alpha, bw, mem;
    pp_schedule sched;
} uni_opts;

static int closed_forms(const uni_opts *u, json_t *cf, int *peaks)
{
    int p = (int)u->p, m = (int)u->m, v = (int)u->v;
    double t = u->tf + u->tb, ms = NAN;
    int ok = u->p2p == 0;
    switch (u->sched) {
    case PP_GPIPE:
    case PP_1F1B:
        ms = (m + p - 1) * t;
        break;
    case PP_INTERLEAVED:
        ms = m * t + (p - 1) * t / v;
        break;
    case PP_ZB_H1: {
        double b = u->tb - u->tw, w = u->tw;
        /* The closed form holds when F, B and W are equal and m >= p. */
        if (fabs(u->tf - b) <= 1e-12 * u->tf && fabs(b - w) <= 1e-12 * u->tf && m >= p)
            ms = m * t + (p - 1) * u->tf;
        break;
    }
    }
    for (int i = 1; i <= p; i++) {
        int r = i - 1, pk = m;
        if (u->sched == PP_1F1B || (u->sched == PP_INTERLEAVED && v == 1))
            pk = m < p - i + 1 ? m : p - i + 1;
        else if (u->sched == PP_ZB_H1)
            pk = m < p ? m : p;
        else if (u->sched == PP_INTERLEAVED) {
            pk = m == p ? m * v : 2 * (p - r - 1) + (v - 1) * p + 1;
            if (pk > m * v)
                pk = m * v;
        }
        peaks[r] = pk;
    }
    if (ok && isfinite(ms)) {
        double ideal = m * t;
        json_object_set_new(cf, "makespan_s", json_real(ms));
        json_object_set_new(cf, "bubble_ratio", json_real(ideal > 0 ? (ms - ideal) / ideal : 0));
        json_object_set_new(cf, "bubble_fraction", json_real(ms > 0 ? 1 - ideal / ms : 0));
    }
    json_t *pa = json_array();
    for (int i = 0; i < p; i++)
        json_array_append_new(pa, json_integer(peaks[i]));
    json_object_set_new(cf, "peak_inflight", pa);
    return ok && isfinite(ms);
}

static int sim_uniform(const char *cmd, const uni_opts *u, const char *trace, int json)
{
    if (u->p < 1 || u->p > 100000 || u->m < 1 || u->m > 10000000)
        return ps_cli_usage(cmd, "--stages and --microbatches must be >= 1");
    if (u->v < 1 || u->v > 1024)
        return ps_cli_usage(cmd, "--chunks must be in 1..1024");
    if (!(u->tf >= 0) || !(u->tb >= 0) || !isfinite(u->tf) || !isfinite(u->tb))
        return ps_cli_usage(cmd, "--t-fwd and --t-bwd must be finite numbers >= 0");
    int p = (int)u->p;
    double *buf = calloc(6 * (size_t)p, sizeof *buf);
    int *peaks = calloc((size_t)p, sizeof *peaks);
    if (!buf || !peaks) {
        free(buf);
        free(peaks);
        ps_err e;
        ps_errf(&e, PS_ERUN, "out of memory");
        return ps_cli_fail(&e);
    }
    double *f = buf, *b = buf + p, *w = buf + 2 * p, *a = buf + 3 * p, *sf = buf + 4 * p;
    for (int i = 0; i < p; i++) {
        f[i] = u->tf;
        b[i] = u->tb;
        w[i] = isnan(u->tw) ? u->tb / 2 : u->tw;
        a[i] = u->act;
        sf[i] = u->p2p;
    }
    pp_chain c = {.stages = p, .microbatches = (int)u->m, .fwd_s = f, .bwd_s = b,
                  .act_bytes = u->act > 0 ? a : NULL, .send_fwd_bytes = u->p2p > 0 ? sf : NULL,
                  .send_bwd_bytes = u->p2p > 0 ? sf : NULL, .link_alpha_s = u->alpha,
                  .link_bytes_per_s = u->bw, .mem_capacity_bytes = u->mem, .wgrad_s = w,
                  .chunks = (int)u->v};
    ps_err e = {0};
    double t0 = ps_now_s();
    pp_sim *s = pp_sim_chain(&c, u->sched, &e);
    int rc = s ? pp_sim_run(s, &e) : (e.code ? e.code : PS_ERUN);
    double wall = ps_now_s() - t0;
    int oomed = rc == DES_OOM;
    if (oomed)
        rc = 0;
    if (!rc && trace)
        rc = des_write_trace(pp_sim_des(s), trace, &e);
    if (rc) {
        pp_sim_free(s);
        free(buf);
        free(peaks);
        return ps_cli_fail(&e);
    }
    const pp_result *r = pp_sim_result(s);
    uni_opts u2 = *u;
    u2.tw = w[0];
    json_t *cf = json_object();
    int have_cf = closed_forms(&u2, cf, peaks);
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "schedule", json_string(pp_schedule_name(u->sched)));
        json_object_set_new(j, "stages", json_integer(p));
        json_object_set_new(j, "microbatches", json_integer(u->m));
        if (u->sched == PP_INTERLEAVED)
            json_object_set_new(j, "chunks", json_integer(u->v));
        json_object_set_new(j, "makespan_s", json_real(r->makespan_s));
        json_object_set_new(j, "ideal_s", json_real(r->ideal_s));
        json_object_set_new(j, "bubble_fraction", json_real(r->bubble_fraction));
        json_object_set_new(j, "bubble_ratio", json_real(r->bubble_ratio));
        json_t *pk = json_array(), *bs = json_array(), *pm = json_array();
        for (int i = 0; i < p; i++) {
            json_array_append_new(pk, json_integer(r->peak_inflight[i]));
            json_array_append_new(bs, json_real(r->busy_s[i]));
            json_array_append_new(pm, json_real(r->peak_mem_bytes[i]));
        }
        json_object_set_new(j, "peak_inflight", pk);
        json_object_set_new(j, "busy_s", bs);
        json_object_set_new(j, "peak_mem_bytes", pm);
        json_object_set_new(j, "oom", json_boolean(oomed));
        if (oomed) {
            des_oom o;
            des_oom_get(pp_sim_des(s), &o);
            json_t *od = json_object();
            int stage = -1;
            for (int i = 0; i < p; i++)
                if (pp_sim_stage_pool(s, i) == o.pool)
                    stage = i;
            json_object_set_new(od, "stage", json_integer(stage));
            json_object_set_new(od, "shortfall_bytes", json_real(o.shortfall_bytes));
            json_object_set_new(od, "time_s", json_real(o.time_s));
            json_object_set_new(j, "oom_detail", od);
        }
        json_object_set(j, "closed_form", cf);
        json_object_set_new(j, "events", json_integer((json_int_t)des_event_count(pp_sim_des(s))));
        json_object_set_new(j, "tasks", json_integer(des_task_count(pp_sim_des(s))));
        json_object_set_new(j, "sim_wall_s", json_real(wall));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s, %d stages x %ld micro-batches%s: makespan %.9g s (ideal %.9g s)\n",
               pp_schedule_name(u->sched), p, u->m, oomed ? " (OUT OF MEMORY)" : "",
               r->makespan_s, r->ideal_s);
        if (have_cf)
            printf("  closed form makespan %.9g s\n",
                   json_real_value(json_object_get(cf, "makespan_s")));
        printf("  bubble fraction %.6g (idle share of wall time), bubble ratio %.6g (over "
               "ideal)\n", r->bubble_fraction, r->bubble_ratio);
        printf("  peak in-flight per stage:");
        for (int i = 0; i < p && i < 64; i++)
            printf(" %d", r->peak_inflight[i]);
        printf(p > 64 ? " ...\n" : "\n");
        printf("  %llu events in %.3f ms\n", (unsigned long long)des_event_count(pp_sim_des(s)),
               wall * 1e3);
    }
    json_decref(cf);
    pp_sim_free(s);
    free(buf);
    free(peaks);
    return 0;
}

static int sim_plan(const char *plan_path, const char *cluster, const char *trace, int nolimit,
                    int json)
{
    ps_err e = {0};
    pp_model *m = NULL;
    pp_cluster c;
    pp_plan *p = pp_plan_load(plan_path, &m, &c, &e);
    if (!p)
        return ps_cli_fail(&e);
    if (cluster) {
        if (pp_cluster_load(cluster, NULL, &c, &e) || pp_plan_finalize(p, m, &c, &e)) {
            pp_plan_free(p);
            pp_model_free(m);
            return ps_cli_fail(&e);
        }
    }
    pp_sim_opts o = {.trace_path = trace, .no_memory_limit = nolimit};
    pp_plan_result r;
    int rc = pp_plan_simulate(p, m, &c, &o, &r, &e);
    if (rc) {
        pp_plan_free(p);
        pp_model_free(m);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "plan", json_string(plan_path));
        json_object_set_new(j, "model", json_string(pp_model_name(m)));
        json_object_set_new(j, "cluster", json_string(c.name));
        if (p->planner[0])
            json_object_set_new(j, "planner", json_string(p->planner));
        if (isfinite(p->predicted_tps_s))
            json_object_set_new(j, "predicted_time_per_sample_s", json_real(p->predicted_tps_s));
        pp_cli_result_json(&r, p, j);
        if (trace)
            json_object_set_new(j, "trace", json_string(trace));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("plan %s: model %s on %s, %d stages, %d devices, %s, minibatch %d\n", plan_path,
               pp_model_name(m), c.name, r.nstages, r.ndevices, pp_schedule_name(p->schedule),
               p->minibatch);
        if (r.oom)
            printf("  OUT OF MEMORY: device %d (stage %d) is short by %.6g bytes at t = %.6g s "
                   "(capacity %.6g bytes)\n", r.oom_device, r.oom_stage, r.oom_shortfall_bytes,
                   r.oom_time_s, r.mem_capacity_bytes);
        else
            printf("  iteration %.6g s, throughput %.6g samples/s, bubble fraction %.4g, "
                   "ratio %.4g\n", r.iteration_s, r.throughput_samples_per_s, r.bubble_fraction,
                   r.bubble_ratio);
        printf("  %-6s %6s %4s %10s %12s %12s %9s\n", "stage", "ops", "dp", "microbatch",
               "busy_s", "allreduce_s", "inflight");
        for (int i = 0; i < r.nstages; i++)
            printf("  %-6d %6d %4d %10d %12.6g %12.6g %9d\n", i, p->stages[i].nops,
                   p->stages[i].ndevices, p->stages[i].microbatch, r.stage_busy_s[i],
                   r.stage_allreduce_s[i], r.stage_peak_inflight[i]);
        printf("  peak device memory %.6g bytes (device %d) of %.6g\n", r.peak_device_bytes,
               r.peak_device, r.mem_capacity_bytes);
        if (trace)
            printf("%s\n", trace);
    }
    pp_plan_result_free(&r);
    pp_plan_free(p);
    pp_model_free(m);
    return 0;
}

static int cmd_sim(int argc, char **argv)
{
    enum { O_PLAN = 256, O_TRACE, O_UNIFORM, O_STAGES, O_MB, O_TF, O_TB, O_TW, O_SCHED, O_CHUNKS,
           O_ACT, O_P2P, O_ALPHA, O_BW, O_MEM, O_CLUSTER, O_NOLIM, O_JSON };
    static const struct option lo[] = {
        {"plan", required_argument, 0, O_PLAN},      {"trace", required_argument, 0, O_TRACE},
        {"uniform", no_argument, 0, O_UNIFORM},      {"stages", required_argument, 0, O_STAGES},
        {"microbatches", required_argument, 0, O_MB}, {"t-fwd", required_argument, 0, O_TF},
        {"t-bwd", required_argument, 0, O_TB},       {"t-wgrad", required_argument, 0, O_TW},
        {"schedule", required_argument, 0, O_SCHED}, {"chunks", required_argument, 0, O_CHUNKS},
        {"act-bytes", required_argument, 0, O_ACT},  {"p2p-bytes", required_argument, 0, O_P2P},
        {"link-alpha", required_argument, 0, O_ALPHA}, {"link-bw", required_argument, 0, O_BW},
        {"memory", required_argument, 0, O_MEM},     {"cluster", required_argument, 0, O_CLUSTER},
        {"no-memory-limit", no_argument, 0, O_NOLIM}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    const char *plan = NULL, *trace = NULL, *cluster = NULL, *sched = "1f1b";
    int uniform = 0, json = 0, nolim = 0, c;
    uni_opts u = {.p = 0, .m = 0, .v = 1, .tf = NAN, .tb = NAN, .tw = NAN, .act = 1};
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_PLAN: plan = optarg; break;
        case O_TRACE: trace = optarg; break;
        case O_CLUSTER: cluster = optarg; break;
        case O_UNIFORM: uniform = 1; break;
        case O_NOLIM: nolim = 1; break;
        case O_JSON: json = 1; break;
        case O_SCHED: sched = optarg; break;
        case O_STAGES: bad = ps_cli_long(argv[0], "--stages", optarg, &u.p); break;
        case O_MB: bad = ps_cli_long(argv[0], "--microbatches", optarg, &u.m); break;
        case O_CHUNKS: bad = ps_cli_long(argv[0], "--chunks", optarg, &u.v); break;
        case O_TF: bad = ps_cli_double(argv[0], "--t-fwd", optarg, &u.tf); break;
        case O_TB: bad = ps_cli_double(argv[0], "--t-bwd", optarg, &u.tb); break;
        case O_TW: bad = ps_cli_double(argv[0], "--t-wgrad", optarg, &u.tw); break;
        case O_ACT: bad = ps_cli_double(argv[0], "--act-bytes", optarg, &u.act); break;
        case O_P2P: bad = ps_cli_double(argv[0], "--p2p-bytes", optarg, &u.p2p); break;
        case O_ALPHA: bad = ps_cli_double(argv[0], "--link-alpha", optarg, &u.alpha); break;
        case O_BW: bad = ps_cli_double(argv[0], "--link-bw", optarg, &u.bw); break;
        case O_MEM: bad = ps_cli_double(argv[0], "--memory", optarg, &u.mem); break;
        case 'h': sim_help(); return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
        if (bad)
            return bad;
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!!plan == !!uniform)
        return ps_cli_usage(argv[0], "give --plan PLAN.json or --uniform (one of them)");
    if (plan)
        return sim_plan(plan, cluster, trace, nolim, json);
    if (!(u.sched = pp_schedule_parse(sched)))
        return ps_cli_usage(argv[0], "--schedule: unknown '%s' (gpipe, 1f1b, interleaved, zb-h1)",
                            sched);
    if (!u.p || !u.m || isnan(u.tf) || isnan(u.tb))
        return ps_cli_usage(argv[0], "--uniform needs --stages, --microbatches, --t-fwd and "
                            "--t-bwd");
    if (!isnan(u.tw) && !(u.tw >= 0 && u.tw <= u.tb))
        return ps_cli_usage(argv[0], "--t-wgrad must be in [0, t-bwd]");
    if (u.p2p > 0 && !(u.bw > 0))
        return ps_cli_usage(argv[0], "--p2p-bytes needs --link-bw > 0");
    if (!(u.act >= 0) || !(u.mem >= 0) || !(u.p2p >= 0) || !(u.alpha >= 0))
        return ps_cli_usage(argv[0], "sizes and latencies must be >= 0");
    return sim_uniform(argv[0], &u, trace, json);
}

/* ------------------------------------------------------------ bench */

/* 64 stages x 1024 micro-batches, the size: a chain plan of one
 * measured op per stage on a DGX-H100 cluster, 1F1B. */
static int bench_plan(int stages, int mbs, int transfers, int reps, double *best_s,
                      double *median_s, uint64_t *events, ps_err *e)
{
    pp_cluster c;
    if (pp_cluster_load("dgx-h100", NULL, &c, e))
        return e->code;
    pp_model *m = pp_model_new("bench-chain", e);
    if (!m)
        return e->code;
    int rc = 0;
    for (int i = 0; i < stages && !rc; i++) {
        char id[32];
        snprintf(id, sizeof id, "op%d", i);
        pp_op_spec s = {.id = id, .kind = "opaque", .param_bytes = 1e6,
                        .out_bytes = transfers ? 1e5 : 0, .act_bytes = 1e6,
                        .measured = {1, 1, 1e-3, 1e-3, 1e-3}};
        if (pp_model_add_op(m, &s, e) < 0 || (i && pp_model_add_input(m, i, i - 1, e)))
            rc = e->code;
    }
    pp_plan *p = rc ? NULL : pp_plan_new(stages, e);
    if (!rc && !p)
        rc = e->code;
    if (!rc && !(rc = pp_model_finish(m, e))) {
        p->minibatch = mbs;
        for (int s = 0; s < stages && !rc; s++)
            rc = pp_plan_set_stage(p, s, &s, 1, 1, &s, 1, 0, e);
        if (!rc)
            rc = pp_plan_finalize(p, m, &c, e);
    }
    double *t = calloc((size_t)reps, sizeof *t);
    if (!rc && !t)
        rc = ps_errf(e, PS_ERUN, "out of memory");
    for (int r = 0; r < reps && !rc; r++) {
        pp_plan_result res;
        pp_sim_opts o = {.no_memory_limit = 1};
        if (!(rc = pp_plan_simulate(p, m, &c, &o, &res, e))) {
            t[r] = res.sim_wall_s;
            *events = res.events;
            pp_plan_result_free(&res);
        }
    }
    if (!rc) {
        for (int i = 1; i < reps; i++) /* insertion sort: reps is small */
            for (int k = i; k > 0 && t[k] < t[k - 1]; k--) {
                double x = t[k];
                t[k] = t[k - 1];
                t[k - 1] = x;
            }
        *best_s = t[0];
        *median_s = t[reps / 2];
    }
    free(t);
    pp_plan_free(p);
    pp_model_free(m);
    return rc;
}

static int cmd_bench(int argc, char **argv)
{
    static const char usage[] =
        "usage: plansim pipeline bench [--json] [--quick]\n\n"
        "Wall time to build and simulate a plan of 64 stages x 1024 micro-batches\n"
        "(1F1B, one measured op per stage, DGX-H100 cluster), with activation and\n"
        "gradient transfers on the links and without; best and median of 7 runs\n"
        "(3 with --quick, on 64 x 256).  The issue's target: under 100 ms.\n";
    int json = 0, quick = 0;
    int st = ps_cli_bench_opts(argc, argv, usage, &json, &quick);
    if (st >= 0)
        return st;
    int reps = quick ? 3 : 7, mbs = quick ? 256 : 1024;
    ps_err e = {0};
    double best[2], med[2];
    uint64_t ev[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        if (bench_plan(64, mbs, 1 - k, reps, &best[k], &med[k], &ev[k], &e))
            return ps_cli_fail(&e);
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "stages", json_integer(64));
        json_object_set_new(j, "microbatches", json_integer(mbs));
        json_object_set_new(j, "repetitions", json_integer(reps));
        json_object_set_new(j, "plan_sim_s", json_real(best[0]));
        json_object_set_new(j, "plan_sim_median_s", json_real(med[0]));
        json_object_set_new(j, "plan_sim_events", json_integer((json_int_t)ev[0]));
        json_object_set_new(j, "plan_sim_no_transfers_s", json_real(best[1]));
        json_object_set_new(j, "plan_sim_no_transfers_median_s", json_real(med[1]));
        json_object_set_new(j, "plan_sim_no_transfers_events", json_integer((json_int_t)ev[1]));
        json_object_set_new(j, "target_s", json_real(0.1));
        json_object_set_new(j, "meets_target", json_boolean(best[0] < 0.1));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("plan simulation, 64 stages x %d micro-batches, 1F1B (build + run):\n", mbs);
        printf("  with transfers     best %7.1f ms  median %7.1f ms  (%llu events)\n",
               best[0] * 1e3, med[0] * 1e3, (unsigned long long)ev[0]);
        printf("  without transfers  best %7.1f ms  median %7.1f ms  (%llu events)\n",
               best[1] * 1e3, med[1] * 1e3, (unsigned long long)ev[1]);
        printf("  target: under 100 ms\n");
    }
    return 0;
}

/* ------------------------------------------------------------ noun */

static const ps_verb verbs[] = {
    {"model", "build a built-in model graph or validate one; per-op costs", cmd_model},
    {"plan", "plan a model on a cluster (graphpipe | pipedream | piper | exhaustive)",
     pp_cli_plan},
    {"sim", "simulate a plan (or uniform stages) on the discrete-event engine", cmd_sim},
    {"bench", "time simulating a plan of 64 stages x 1024 micro-batches", cmd_bench},
    {"plan-bench", "search time of the planners on the paper models (GraphPipe vs PipeDream vs Piper)",
     pp_cli_plan_bench},
    {"import", "convert a peer planner's graph (PipeDream graph.txt, Piper JSON) to a model",
     pp_cli_import},
    {"replay", "execute a plan for real on pinned CPU workers; measured vs predicted",
     pp_cli_replay},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_pipeline = {"pipeline", "pipeline parallelism: models, plans, schedules",
                                  verbs};
