/* `plansim pipeline import`: a peer planner's graph (PipeDream's profiler
 * graph.txt, Piper's planner input JSON) to a plansim model file
 * (sim/pipeline/import.h, docs/peer-graphs.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "experiments/cli_pipeline.h"
#include "sim/pipeline/import.h"

static void import_help(void)
{
    printf("usage: plansim pipeline import --format pipedream|piper FILE -o M.json\n"
           "         [--name NAME] [--batch B] [--keep-bookkeeping] [--piper-raw-units] [--json]\n"
           "\n"
           "Converts a peer planner's measured operator graph into plansim's model format,\n"
           "keeping the measured per-op forward and backward times (seconds), activation and\n"
           "parameter bytes.  -o is written atomically.  docs/peer-graphs.md has the details.\n"
           "\n"
           "  --format pipedream  PipeDream's profiler graph.txt (times in ms per profiled\n"
           "                      minibatch, bytes per minibatch); Input* sources and\n"
           "                      __getitem__ sinks are dropped, as PipeDream's optimizer does\n"
           "  --format piper      Piper's planner input JSON\n"
           "  --batch B           pipedream: samples per profiled minibatch (default 128)\n"
           "  --keep-bookkeeping  pipedream: keep the Input* / __getitem__ nodes\n"
           "  --piper-raw-units   piper: keep the input's units as they are (reproduces Piper)\n"
           "  --name NAME         model name (default: the file's base name)\n"
           "  --json              print a summary as JSON\n");
}

void pp_cli_model_source(const char *model_path, char *format, size_t n, double *batch)
{
    if (n)
        format[0] = 0;
    *batch = 0;
    json_error_t je;
    json_t *doc = json_load_file(model_path, 0, &je);
    if (!doc)
        return;
    json_t *src = json_object_get(doc, "source");
    if (json_is_object(src)) {
        json_t *f = json_object_get(src, "format"), *b = json_object_get(src, "batch");
        if (json_is_string(f))
            snprintf(format, n, "%s", json_string_value(f));
        if (json_is_number(b))
            *batch = json_number_value(b);
    }
    json_decref(doc);
}

int pp_cli_import(int argc, char **argv)
{
    enum { O_FORMAT = 1000, O_NAME, O_BATCH, O_KEEP, O_RAW, O_JSON };
    static const struct option lo[] = {{"format", required_argument, 0, O_FORMAT},
                                       {"output", required_argument, 0, 'o'},
                                       {"name", required_argument, 0, O_NAME},
                                       {"batch", required_argument, 0, O_BATCH},
                                       {"keep-bookkeeping", no_argument, 0, O_KEEP},
                                       {"piper-raw-units", no_argument, 0, O_RAW},
                                       {"json", no_argument, 0, O_JSON},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *format = NULL, *out = NULL;
    pp_import_opts io = {0};
    int json = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_FORMAT: format = optarg; break;
        case 'o': out = optarg; break;
        case O_NAME: io.name = optarg; break;
        case O_BATCH: bad = ps_cli_double(argv[0], "--batch", optarg, &io.batch); break;
        case O_KEEP: io.keep_bookkeeping = 1; break;
        case O_RAW: io.piper_raw_units = 1; break;
        case O_JSON: json = 1; break;
        case 'h': import_help(); return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
        if (bad)
            return bad;
    }
    if (!format)
        return ps_cli_usage(argv[0], "--format is required (pipedream or piper)");
    int pd = !strcmp(format, "pipedream");
    if (!pd && strcmp(format, "piper"))
        return ps_cli_usage(argv[0], "--format: '%s' (pipedream or piper)", format);
    if (optind + 1 != argc)
        return ps_cli_usage(argv[0], optind >= argc ? "give the input FILE"
                                                    : "give one input FILE");
    if (!out)
        return ps_cli_usage(argv[0], "-o M.json is required");
    if (io.batch < 0 || !isfinite(io.batch) || (io.batch > 0 && io.batch < 1))
        return ps_cli_usage(argv[0], "--batch: need a number of samples >= 1");
    const char *in = argv[optind];
    ps_err e = {0};
    double t0 = ps_now_s();
    pp_model *m = pd ? pp_import_pipedream(in, &io, &e) : pp_import_piper(in, &io, &e);
    if (!m)
        return ps_cli_fail(&e);
    double batch = pd ? (io.batch > 0 ? io.batch : 128) : 0;
    if (pp_import_save(m, format, in, batch, out, &e)) {
        pp_model_free(m);
        return ps_cli_fail(&e);
    }
    double wall = ps_now_s() - t0;
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "format", json_string(format));
        json_object_set_new(j, "input", json_string(in));
        json_object_set_new(j, "output", json_string(out));
        json_object_set_new(j, "name", json_string(pp_model_name(m)));
        json_object_set_new(j, "ops", json_integer(pp_model_nops(m)));
        json_object_set_new(j, "edges", json_integer(pp_model_nedges(m)));
        json_object_set_new(j, "param_bytes", json_real(pp_model_param_bytes(m)));
        if (batch > 0)
            json_object_set_new(j, "batch", json_real(batch));
        json_object_set_new(j, "wall_s", json_real(wall));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s: %d ops, %d edges, %.6g parameter bytes -> %s\n", pp_model_name(m),
               pp_model_nops(m), pp_model_nedges(m), pp_model_param_bytes(m), out);
    }
    pp_model_free(m);
    return 0;
}
