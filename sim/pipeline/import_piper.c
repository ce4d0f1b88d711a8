/* Piper's planner input (msr-fiddle/piper @d7fc8cf inputs/NAME.json) -> a
 * plansim model.  docs/peer-graphs.md ("Piper") is the reference; in short:
 *
 * - One op per Piper node, id "n<id>", kind "opaque", inputs from the edges.
 *   One model SAMPLE is one Piper MICRO-BATCH (Piper's timePerSample, edge
 *   bytes and memoryUsageA are all per micro-batch; the micro-batch size is
 *   not in the file).
 * - measured (batch 1): fwd_s = timePerSample / 3, bwd_input_s = 2/3 of it,
 *   bwd_weight_s = 0, from the fastest TMPC at tensor-parallel degree 1
 *   (Piper gives fwd + bwd together; the 1:2 split is plansim's assumption).
 *   param_bytes = its parameterSize; act_bytes = its memoryUsageA (bytes
 *   stashed per in-flight micro-batch); out_bytes = the largest
 *   communicationCost of the node's outgoing edges (plansim has one output
 *   size per op; Piper one per edge).
 * - Units.  timePerSample is in seconds in bert32a100.json but in
 *   MILLISECONDS in resnet.json and gnmt.json (converted from PipeDream
 *   profiles), while Piper divides edge bytes by a bandwidth in bytes/s:
 *   communication weighs ~1000x too little there.  The importer reads an
 *   explicit top-level "timeUnit" ("s" | "ms") when present, else takes
 *   "ms" when some timePerSample is >= 1 (one op taking a second or more per
 *   micro-batch does not occur in these inputs; bert's largest is 0.041).
 *   By default the model's measured times are in seconds (ms / 1000): the
 *   mismatch is CORRECTED for plansim's own planners and simulator.  With
 *   piper_raw_units the numbers are kept as they are and treated as
 *   seconds (the mismatch reproduced everywhere).
 * - The whole Piper instance is kept in the model's "piper" extension
 *   (pp_model_piper) with "timeUnit" set, so the `piper` planner can run
 *   Piper's own DP on it: by default exactly as Piper (its units, numbers
 *   and settings), or corrected to seconds on the cluster (piper_cost). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "sim/pipeline/import.h"
#include "sim/pipeline/piper_dp.h"

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = strdup(b);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n > 5 && !strcmp(s + n - 5, ".json"))
        s[n - 5] = 0;
    return s;
}

pp_model *pp_import_piper(const char *path, const pp_import_opts *opts, ps_err *e)
{
    pp_import_opts z = {0};
    if (!opts)
        opts = &z;
    json_t *doc = ps_json_load_file(path, e);
    if (!doc)
        return NULL;
    pp_model *m = NULL;
    pp_piper_inst *in = NULL;
    char *name = NULL;
    int *bidx = NULL;
    int rc = 0;
    if (!json_is_object(doc)) {
        ps_errf(e, PS_EINPUT, "%s: $: expected a Piper instance object", path);
        goto fail;
    }
    /* the unit of timePerSample */
    const char *unit = json_string_value(json_object_get(doc, "timeUnit"));
    if (!unit) {
        double mx = 0;
        json_t *nodes = json_object_get(doc, "nodes");
        size_t i;
        json_t *nd;
        json_array_foreach(nodes, i, nd)
        {
            const char *k;
            json_t *arr;
            json_object_foreach(json_object_get(nd, "TMPCs"), k, arr)
            {
                size_t l;
                json_t *t;
                json_array_foreach(arr, l, t)
                {
                    double v = json_number_value(json_object_get(t, "timePerSample"));
                    if (v > mx)
                        mx = v;
                }
            }
        }
        unit = mx >= 1 ? "ms" : "s";
    }
    if (opts->piper_raw_units)
        unit = "s";
    json_t *ext = json_deep_copy(doc);
    if (!ext) {
        ps_errf(e, PS_ERUN, "%s: out of memory", path);
        goto fail;
    }
    json_object_set_new(ext, "timeUnit", json_string(unit));
    in = pp_piper_from_json(ext, path, e);
    if (!in) {
        json_decref(ext);
        goto fail;
    }
    double scale = pp_piper_time_unit_s(in);
    name = opts->name ? strdup(opts->name) : base_name(path);
    if (!name || !(m = pp_model_new(name, e))) {
        json_decref(ext);
        if (!name)
            ps_errf(e, PS_ERUN, "%s: out of memory", path);
        goto fail;
    }
    int n = pp_piper_nnodes(in), ne = pp_piper_nedges(in);
    bidx = malloc((size_t)n * sizeof(int));
    double *outb = calloc((size_t)n, sizeof(double));
    if (!bidx || !outb) {
        free(outb);
        json_decref(ext);
        ps_errf(e, PS_ERUN, "%s: out of memory", path);
        goto fail;
    }
    for (int k = 0; k < ne; k++) {
        int s, d;
        double bytes;
        pp_piper_edge(in, k, &s, &d, &bytes);
        if (bytes > outb[s])
            outb[s] = bytes;
    }
    for (int i = 0; i < n && !rc; i++) {
        /* the smallest tensor-parallel degree with TMPCs (1 in Piper's
         * inputs), its fastest TMPC */
        int t = 1;
        while (t <= 10000 && !pp_piper_ntmpcs(in, i, t))
            t++;
        pp_piper_tmpc_info best = {0}, cur;
        int have = 0;
        for (int l = 0; l < pp_piper_ntmpcs(in, i, t); l++)
            if (!pp_piper_tmpc(in, i, t, l, &cur) &&
                (!have || cur.time_per_sample < best.time_per_sample)) {
                best = cur;
                have = 1;
            }
        if (!have) {
            rc = ps_errf(e, PS_EINPUT, "%s: $.nodes[%d]: node %d has no TMPC", path, i,
                         pp_piper_node_id(in, i));
            break;
        }
        char id[32];
        snprintf(id, sizeof id, "n%d", pp_piper_node_id(in, i));
        double tt = best.time_per_sample * scale * t; /* t > 1: one device's share x t */
        pp_op_spec sp = {.id = id,
                         .kind = "opaque",
                         .param_bytes = best.parameter_size * t,
                         .out_bytes = outb[i],
                         .act_bytes = best.memory_a * t,
                         .measured = {.has = 1,
                                      .batch = 1,
                                      .fwd_s = tt / 3,
                                      .bwd_input_s = tt * 2 / 3,
                                      .bwd_weight_s = 0}};
        bidx[i] = pp_model_add_op(m, &sp, e);
        if (bidx[i] < 0) {
            rc = e && e->code ? e->code : PS_EINPUT;
            ps_err_prefix(e, "%s: $.nodes[%d]: ", path, i);
        }
    }
    free(outb);
    for (int k = 0; k < ne && !rc; k++) {
        int s, d;
        double bytes;
        pp_piper_edge(in, k, &s, &d, &bytes);
        if ((rc = pp_model_add_input(m, bidx[d], bidx[s], e)))
            ps_err_prefix(e, "%s: $.edges[%d]: ", path, k);
    }
    if (!rc && (rc = pp_model_finish(m, e)))
        ps_err_prefix(e, "%s: ", path);
    if (!rc)
        rc = pp_model_set_piper(m, ext, e);
    json_decref(ext);
    if (rc)
        goto fail;
    free(bidx);
    free(name);
    pp_piper_free(in);
    json_decref(doc);
    return m;
fail:
    free(bidx);
    free(name);
    pp_piper_free(in);
    pp_model_free(m);
    json_decref(doc);
    return NULL;
}
