/* Importers for the peer planners' graph inputs (issue 9): PipeDream's
 * profiler graphs (graph.txt) and Piper's planner inputs (JSON), turned into
 * plansim models (sim/pipeline/model.h) that carry the peers' measured
 * per-op times and bytes.  docs/peer-graphs.md documents the formats, the
 * units and every conversion.
 *
 * Both return a finished model (pp_model_finish ran: validated, numbered
 * topologically) or NULL with PS_EINPUT naming the file and the line (graph
 * text) or JSON path (Piper) for malformed input, unknown node references,
 * duplicate ids, cycles, negative or non-finite sizes and times (also when
 * the file cannot be read); PS_ERUN for out of memory.
 *
 * Units in the model: seconds and bytes.  PipeDream's times are
 * milliseconds per profiled minibatch; they become measured.fwd_s /
 * bwd_input_s (all of the backward: bwd_weight_s = 0) in seconds at
 * measured.batch = opts->batch samples.  activation_size (bytes for the whole
 * profiled minibatch; a list [b1; b2; ...] sums) becomes out_bytes = act_bytes
 * per sample (divided by the batch); parameter_size becomes param_bytes. */
#ifndef PS_PP_IMPORT_H
#define PS_PP_IMPORT_H

#include "common/err.h"
#include "sim/pipeline/model.h"

/* PipeDream's optimizer's default bandwidth (-b, bytes/s). */
#define PP_PD_DEFAULT_BANDWIDTH_BPS 1e9

typedef struct pp_import_opts {
    /* Model name; NULL = the file's base name without .graph.txt / .json. */
    const char *name;
    /* PipeDream: samples per profiled minibatch (the file does not store it);
     * 0 = 128, what the image profiles' activation sizes imply.  Only the
     * per-sample scale of the model depends on it: planning at this many
     * samples per micro-batch reproduces the profiled times exactly. */
    double batch;
    /* PipeDream: 1 = keep the Input* sources and __getitem__ sinks (they
     * are dropped by default, as PipeDream's optimizer drops them). */
    int keep_bookkeeping;
    /* Piper: 1 = keep the inputs' units as they are (resnet.json and
     * gnmt.json: timePerSample in ms against communication in s), to
     * reproduce Piper's numbers; 0 = the importer's documented default
     * (see pp_import_piper in import_piper.c and docs/peer-graphs.md). */
    int piper_raw_units;
} pp_import_opts;

/* opts may be NULL (all defaults). */
pp_model *pp_import_pipedream(const char *path, const pp_import_opts *opts, ps_err *e);

/* Implemented in sim/pipeline/import_piper.c (helper P2). */
pp_model *pp_import_piper(const char *path, const pp_import_opts *opts, ps_err *e);

/* Write an imported model to out_path atomically (out_path.tmp, rename; no
 * half-written file on failure): the model JSON plus a "source" object
 * {"format": format, "file": src_path, "batch": batch (when > 0)} and a
 * "description".  `plansim pipeline plan` reads source.format: a
 * "pipedream" model planned by the pipedream planner defaults to
 * PipeDream's own cost model at micro-batch source.batch. */
int pp_import_save(const pp_model *m, const char *format, const char *src_path, double batch,
                   const char *out_path, ps_err *e);

#endif
