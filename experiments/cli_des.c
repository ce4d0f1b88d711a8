/* `plansim des ...`: the discrete-event engine's own commands. */
#include <stdio.h>
#include <string.h>

#include "experiments/cli.h"
#include "sim/des/bench.h"

static json_t *workload_json(const des_bench_workload *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(w->name));
    if (w->stages) {
        json_object_set_new(o, "stages", json_integer(w->stages));
        json_object_set_new(o, "microbatches", json_integer(w->microbatches));
    }
    json_object_set_new(o, "tasks", json_integer((json_int_t)w->tasks));
    json_object_set_new(o, "events", json_integer((json_int_t)w->events));
    json_object_set_new(o, "repetitions", json_integer(w->reps));
    json_object_set_new(o, "build_s", json_real(w->build_s));
    json_object_set_new(o, "median_s", json_real(w->seconds));
    json_object_set_new(o, "best_s", json_real(w->best_s));
    json_object_set_new(o, "events_per_s", json_real(w->events_per_s));
    return o;
}

static int cmd_bench(int argc, char **argv)
{
    static const char usage[] =
        "usage: plansim des bench [--json] [--quick]\n\n"
        "Events per second of the discrete-event engine (an event is one pop from\n"
        "the event queue), on one core:\n"
        "  pipeline  the task graph of 1F1B, 64 stages x 1024 micro-batches, with its\n"
        "            activation and gradient transfers on alpha-beta links\n"
        "  hold      the hold model with 10^5 pending events\n"
        "  scaling   the pipeline workload from ~10^4 to ~10^7 events: ns per event\n"
        "            and ns per (event * log2 events), to show O(E log E)\n"
        "--quick uses small sizes (about a second). events_per_s in the JSON is the\n"
        "pipeline workload's.\n";
    int json = 0, quick = 0;
    int st = ps_cli_bench_opts(argc, argv, usage, &json, &quick);
    if (st >= 0)
        return st;
    des_bench_opts o = {0};
    o.quick = quick;
    des_bench_result r;
    ps_err e = {0};
    if (des_bench(&o, &r, &e))
        return ps_cli_fail(&e);
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "events_per_s", json_real(r.pipeline.events_per_s));
        json_object_set_new(j, "hold_events_per_s", json_real(r.hold.events_per_s));
        json_object_set_new(j, "quick", json_boolean(o.quick));
        json_object_set_new(j, "pipeline", workload_json(&r.pipeline));
        json_object_set_new(j, "hold", workload_json(&r.hold));
        json_t *sc = json_array();
        for (int i = 0; i < r.npoints; i++) {
            const des_bench_point *p = &r.scaling[i];
            json_t *o2 = json_object();
            json_object_set_new(o2, "stages", json_integer(p->stages));
            json_object_set_new(o2, "microbatches", json_integer(p->microbatches));
            json_object_set_new(o2, "events", json_integer((json_int_t)p->events));
            json_object_set_new(o2, "median_s", json_real(p->seconds));
            json_object_set_new(o2, "ns_per_event", json_real(p->ns_per_event));
            json_object_set_new(o2, "ns_per_event_log2", json_real(p->ns_per_event_log2));
            json_array_append_new(sc, o2);
        }
        json_object_set_new(j, "scaling", sc);
        json_object_set_new(j, "total_s", json_real(r.total_s));
        ps_cli_print_json(j);
        json_decref(j);
        return 0;
    }
    const des_bench_workload *w[2] = {&r.pipeline, &r.hold};
    printf("%-10s %12s %12s %6s %11s %14s\n", "workload", "tasks", "events", "reps", "median_s",
           "events_per_s");
    for (int i = 0; i < 2; i++)
        printf("%-10s %12llu %12llu %6d %11.4f %14.4g\n", w[i]->name,
               (unsigned long long)w[i]->tasks, (unsigned long long)w[i]->events, w[i]->reps,
               w[i]->seconds, w[i]->events_per_s);
    printf("\nscaling (pipeline, 64 stages):\n%8s %12s %11s %12s %18s\n", "mb", "events",
           "median_s", "ns/event", "ns/(event*log2E)");
    for (int i = 0; i < r.npoints; i++) {
        const des_bench_point *p = &r.scaling[i];
        printf("%8d %12llu %11.4f %12.2f %18.3f\n", p->microbatches,
               (unsigned long long)p->events, p->seconds, p->ns_per_event, p->ns_per_event_log2);
    }
    printf("\ntotal %.1f s\n", r.total_s);
    return 0;
}

static const ps_verb verbs[] = {
    {"bench", "events per second of the engine (make bench runs it)", cmd_bench},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_des = {"des", "the discrete-event engine shared by every simulator", verbs};
