/* `plansim pipeline ...`: the pipeline study's commands.  The noun lives in
 * experiments/cli_pipeline.c (verbs model, sim, plan); the `plan` verb is
 * implemented in experiments/cli_pipeline_plan.c. */
#ifndef PS_CLI_PIPELINE_H
#define PS_CLI_PIPELINE_H

#include <jansson.h>

#include "experiments/cli.h"
#include "sim/pipeline/plan.h"

extern const ps_noun ps_noun_pipeline;

/* plansim pipeline plan --model M.json --cluster C --devices N --planner P
 *   [--microbatch B] [--minibatch B] -o PLAN.json [--json]
 * (experiments/cli_pipeline_plan.c) */
int pp_cli_plan(int argc, char **argv);
/* `plansim pipeline plan-bench` (experiments/cli_pipeline_plan.c). */
int pp_cli_plan_bench(int argc, char **argv);
/* `plansim pipeline import --format pipedream|piper FILE -o M.json`
 * (experiments/cli_pipeline_import.c). */
int pp_cli_import(int argc, char **argv);
/* The "source" of a model file written by the import verb: format
 * ("pipedream", "piper"; "" when none or unreadable) and batch (0 when
 * none).  Never fails: a bad file is reported later by the model loader. */
void pp_cli_model_source(const char *model_path, char *format, size_t n, double *batch);
/* `plansim pipeline replay` (experiments/cli_pipeline_replay.c). */
int pp_cli_replay(int argc, char **argv);

/* Shared by the verbs: the simulation result as JSON fields (makespan_s =
 * iteration_s, throughput_samples_per_s, bubble_fraction, bubble_ratio,
 * peak_inflight [per stage], stage_busy_s, peak_device_bytes, oom {...}),
 * set into obj. */
void pp_cli_result_json(const pp_plan_result *r, const pp_plan *p, json_t *obj);

#endif
