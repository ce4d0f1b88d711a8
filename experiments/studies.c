/* The study registry: every study the runner knows, by name. */
#include <stdio.h>
#include <string.h>

#include "experiments/study.h"

extern const ps_study ps_study_schedule;
extern const ps_study ps_study_pipeline;
extern const ps_study ps_study_pipeline_validation;
extern const ps_study ps_study_specdec_tiny;
extern const ps_study ps_study_specdec_serve;
extern const ps_study ps_study_specdec_tables;
extern const ps_study ps_study_quant_fmnist;
extern const ps_study ps_study_quant_latency;
extern const ps_study ps_study_quant_sim;
extern const ps_study ps_study_projection_fmnist;
extern const ps_study ps_study_projection_scale;
extern const ps_study ps_study_peer_graphs;

static const ps_study *const studies[] = {&ps_study_schedule, &ps_study_pipeline,
                                          &ps_study_pipeline_validation, &ps_study_specdec_tiny,
                                          &ps_study_specdec_serve, &ps_study_specdec_tables,
                                          &ps_study_quant_fmnist, &ps_study_quant_latency, &ps_study_quant_sim,
                                          &ps_study_projection_fmnist, &ps_study_projection_scale,
                                          &ps_study_peer_graphs, NULL};

const ps_study *ps_study_find(const char *name)
{
    for (const ps_study *const *s = studies; *s; s++)
        if (!strcmp((*s)->name, name))
            return *s;
    return NULL;
}

const char *ps_study_names(void)
{
    static char buf[512];
    buf[0] = '\0';
    for (const ps_study *const *s = studies; *s; s++) {
        strncat(buf, (*s)->name, sizeof buf - strlen(buf) - 3);
        if (s[1])
            strncat(buf, ", ", sizeof buf - strlen(buf) - 1);
    }
    return buf;
}
