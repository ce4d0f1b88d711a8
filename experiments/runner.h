/* The experiment runner: `plansim run CONFIG.json`. */
#ifndef PS_RUNNER_H
#define PS_RUNNER_H

#include "common/err.h"

typedef struct ps_run_opts {
    const char *config_path;
    const char *out_path; /* NULL: results/NAME.h5 */
    int force, resume, quick, json, no_plot;
} ps_run_opts;

/* Runs the experiment; prints results (text or one JSON object) on stdout.
 * Returns 0, PS_ERUN (a run failed or was interrupted: the partial file is
 * kept for --resume) or PS_EINPUT (bad config or options). */
int ps_run(const ps_run_opts *o, ps_err *e);

#endif
