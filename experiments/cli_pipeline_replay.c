/* `plansim pipeline replay`: execute a plan for real on worker threads and
 * measure it beside the simulator's prediction (real/replay.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli_pipeline.h"
#include "kernels/cpu_blas.h"
#include "real/replay.h"

static void replay_help(void)
{
    printf(
        "usage: plansim pipeline replay --plan PLAN.json [--device cpu|cuda] [--iterations N]\n"
        "         [--warmup W] [--workers K] [--db DB.h5] [--db-out DB.h5] [-o OUT.h5]\n"
        "         [--trace T.json] [--max-seconds S] [--lr LR] [--seed S] [--json]\n"
        "\n"
        "Executes the plan for real: every stage's ops (GEMMs, activations, concat copies) on\n"
        "micro-batches of synthetic data, forward, backward and an SGD step per iteration, on\n"
        "worker threads pinned to cores (plan device d -> worker rank(d) mod K), each running\n"
        "its tasks in exactly the simulator's order.  The prediction is the simulator's, costed\n"
        "from a calibration on this CPU (every op, micro-batch size and phase the plan runs,\n"
        "timed alone on one pinned worker) unless --db gives a profile database.\n"
        "\n"
        "  --iterations N    measured iterations (default 5; the median is reported)\n"
        "  --warmup W        unmeasured iterations first (default 2)\n"
        "  --workers K       worker threads (default min(distinct plan devices, cores))\n"
        "  --db DB.h5        cost the prediction from this profile DB (cm_model_from_db)\n"
        "  --db-out DB.h5    write the calibration as a profile DB\n"
        "  -o OUT.h5         /replay/tasks, /replay/stages, /replay/summary\n"
        "  --trace T.json    Chrome trace: predicted and measured timelines\n"
        "  --max-seconds S   refuse plans predicted to take longer (default 120)\n"
        "  --lr LR           SGD step (default 0.03; the gradient norm is clipped to 1)\n"
        "  --seed S          weights, synthetic inputs and targets (default 1)\n"
        "  --device cuda     one CUDA stream per worker (default: one per plan device; GPU w\n"
        "                    mod GPUs), CUDA events between streams and for the timings\n"
        "\n"
        "JSON: measured_iteration_s, predicted_iteration_s, rel_err, throughput_measured,\n"
        "throughput_predicted, device, workers, stages, loss_first, loss_last, per-stage busy.\n");
}

enum { O_PLAN = 1000, O_DEV, O_IT, O_WARM, O_WORK, O_DB, O_DBOUT, O_TRACE, O_MAXS, O_LR,
       O_SEED, O_JSON };

int pp_cli_replay(int argc, char **argv)
{
    static const struct option lo[] = {
        {"plan", required_argument, 0, O_PLAN},       {"device", required_argument, 0, O_DEV},
        {"iterations", required_argument, 0, O_IT},   {"warmup", required_argument, 0, O_WARM},
        {"workers", required_argument, 0, O_WORK},    {"db", required_argument, 0, O_DB},
        {"db-out", required_argument, 0, O_DBOUT},    {"trace", required_argument, 0, O_TRACE},
        {"max-seconds", required_argument, 0, O_MAXS}, {"lr", required_argument, 0, O_LR},
        {"seed", required_argument, 0, O_SEED},       {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *plan = NULL, *out = NULL, *trace = NULL;
    ps_replay_opts o = {0};
    long it = 5, warm = 2, work = 0, seed = 1;
    double maxs = 120, lr = 0.03;
    int json = 0, c, bad = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            replay_help();
            return 0;
        }
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'h': replay_help(); return 0;
        case O_PLAN: plan = optarg; break;
        case O_DEV: o.device = optarg; break;
        case O_IT: bad = ps_cli_long(argv[0], "--iterations", optarg, &it); break;
        case O_WARM: bad = ps_cli_long(argv[0], "--warmup", optarg, &warm); break;
        case O_WORK: bad = ps_cli_long(argv[0], "--workers", optarg, &work); break;
        case O_DB: o.db_path = optarg; break;
        case O_DBOUT: o.db_out = optarg; break;
        case O_TRACE: trace = optarg; break;
        case O_MAXS: bad = ps_cli_double(argv[0], "--max-seconds", optarg, &maxs); break;
        case O_LR: bad = ps_cli_double(argv[0], "--lr", optarg, &lr); break;
        case O_SEED: bad = ps_cli_long(argv[0], "--seed", optarg, &seed); break;
        case O_JSON: json = 1; break;
        case 'o': out = optarg; break;
        default: return ps_cli_usage(argv[0], "bad option");
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!plan)
        return ps_cli_usage(argv[0], "--plan PLAN.json is required");
    if (it < 1 || it > 100000)
        return ps_cli_usage(argv[0], "--iterations: need 1..100000");
    if (warm < 0 || warm > 100000)
        return ps_cli_usage(argv[0], "--warmup: need 0..100000");
    if (work < 0 || work > 1024)
        return ps_cli_usage(argv[0], "--workers: need 0..1024 (0 = default)");
    if (!(maxs > 0))
        return ps_cli_usage(argv[0], "--max-seconds: need > 0");
    if (!(lr > 0))
        return ps_cli_usage(argv[0], "--lr: need > 0");
    o.iterations = (int)it;
    o.warmup = (int)warm;
    o.warmup_set = 1;
    o.workers = (int)work;
    o.max_seconds = maxs;
    o.lr = lr;
    o.seed = (unsigned long)(seed > 0 ? seed : 1);
    o.quiet = json;
    ps_err e = {0};
    ps_replay_result r;
    int rc = ps_replay_plan_file(plan, &o, &r, &e);
    if (rc)
        return ps_cli_fail(&e);
    if (out && (rc = ps_replay_write_h5(&r, plan, out, &e)))
        goto fail;
    if (trace && (rc = ps_replay_write_trace(&r, trace, &e)))
        goto fail;
    if (json) {
        json_t *j = ps_replay_to_json(&r);
        json_object_set_new(j, "plan", json_string(plan));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("plan %s: %d stages on %d workers (%s)\n", plan, r.nstages, r.workers, r.device);
        printf("  iteration: predicted %.6g s, measured %.6g s (median of %d), error %+.2f%%\n",
               r.predicted_iteration_s, r.measured_iteration_s, r.iterations, 100 * r.rel_err);
        printf("  throughput: predicted %.6g, measured %.6g samples/s\n", r.throughput_predicted,
               r.throughput_measured);
        printf("  loss: %.6g -> %.6g over %d iterations\n", r.loss_first, r.loss_last,
               r.iterations + r.warmup);
        for (int s = 0; s < r.nstages; s++)
            printf("  stage %d (worker %d): busy predicted %.6g s, measured %.6g s\n", s,
                   r.stage_worker[s], r.stage_pred_busy_s[s], r.stage_meas_busy_s[s]);
        if (r.cpu_fraction < 0.9)
            printf("  warning: the workers got %.0f%% of their cores while running tasks (other "
                   "processes took the rest); the measurement does not test the prediction\n",
                   100 * r.cpu_fraction);
    }
    ps_replay_result_free(&r);
    return 0;
fail:
    ps_replay_result_free(&r);
    return ps_cli_fail(&e);
}
