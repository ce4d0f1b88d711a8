/* plansim — predict how a plan will perform, then prove it on hardware.
 * `plansim <noun> <verb> [options]`; see README.md for the reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "experiments/cli.h"
#include "experiments/info.h"
#include "experiments/plot.h"
#include "experiments/runner.h"
#include "kernels/cpu_blas.h"
#include "kernels/gpu.h"

extern const ps_noun ps_noun_des;
extern const ps_noun ps_noun_profile;
extern const ps_noun ps_noun_costmodel;
extern const ps_noun ps_noun_pipeline;
extern const ps_noun ps_noun_real;
extern const ps_noun ps_noun_specdec;
extern const ps_noun ps_noun_quant;

static int cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},
        {"resume", no_argument, 0, 'r'},       {"quick", no_argument, 0, 'q'},
        {"json", no_argument, 0, 'j'},         {"no-plot", no_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    ps_run_opts o = {0};
    int c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_path = optarg; break;
        case 'f': o.force = 1; break;
        case 'r': o.resume = 1; break;
        case 'q': o.quick = 1; break;
        case 'j': o.json = 1; break;
        case 'n': o.no_plot = 1; break;
        case 'h':
            printf("usage: plansim run CONFIG.json [-o OUT.h5] [--force] [--resume] [--quick] "
                   "[--json] [--no-plot]\n\n"
                   "Runs an experiment config: every point of its sweep (cartesian product) x\n"
                   "repeats, written to OUT.h5 (default results/NAME.h5) through OUT.h5.partial,\n"
                   "then draws its figures into results/NAME/ (PNG, SVG, .dat).\n\n"
                   "  -o, --output FILE  result file (default results/NAME.h5)\n"
                   "      --force        replace an existing result\n"
                   "      --resume       continue the points saved in OUT.h5.partial\n"
                   "      --quick        the config's reduced \"quick\" sweep (tests)\n"
                   "      --json         print one JSON object instead of the table\n"
                   "      --no-plot      do not draw the figures\n\n"
                   "Exit codes: 0 success, 1 a run failed (or was interrupted), 2 bad usage or "
                   "input.\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc - 1)
        return ps_cli_usage(argv[0], "expected exactly one CONFIG.json");
    o.config_path = argv[optind];
    ps_err e = {0};
    int rc = ps_run(&o, &e);
    return rc ? ps_cli_fail(&e) : 0;
}

static int cmd_plot(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, 0, 'o'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *dir = NULL;
    int json = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 'j': json = 1; break;
        case 'h':
            printf("usage: plansim plot RESULTS.h5 [-o DIR] [--json]\n\n"
                   "(Re)draws the figures declared in the file's config: exports .dat files and\n"
                   "runs gnuplot (scripts in plots/) to write PNG and SVG into DIR (default: the\n"
                   "file's path without .h5).\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc - 1)
        return ps_cli_usage(argv[0], "expected exactly one RESULTS.h5");
    ps_err e = {0};
    json_t *rep = json_array();
    int rc = ps_plot_results(argv[optind], dir, rep, &e);
    if (!rc) {
        if (json) {
            json_t *j = json_object();
            json_object_set(j, "figures", rep);
            ps_cli_print_json(j);
            json_decref(j);
        } else {
            size_t i;
            json_t *f;
            json_array_foreach(rep, i, f) {
                const char *png = json_string_value(json_object_get(f, "png"));
                const char *svg = json_string_value(json_object_get(f, "svg"));
                const char *skip = json_string_value(json_object_get(f, "skipped"));
                const char *fig = json_string_value(json_object_get(f, "figure"));
                if (skip)
                    printf("%s: skipped (%s)\n", fig, skip);
                else if (png && svg)
                    printf("%s\n%s\n", png, svg);
                else
                    printf("%s: not drawn; data in %s\n", fig,
                           json_string_value(json_object_get(f, "dat")));
            }
        }
    }
    json_decref(rep);
    return rc ? ps_cli_fail(&e) : 0;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option lo[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int json = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h':
            printf("usage: plansim info RESULTS.h5 [--json]\n\n"
                   "Prints what a result file holds: attributes, tables with row counts and\n"
                   "units, and its summary tables.\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc - 1)
        return ps_cli_usage(argv[0], "expected exactly one RESULTS.h5");
    ps_err e = {0};
    int rc = ps_info_print(argv[optind], json, &e);
    return rc ? ps_cli_fail(&e) : 0;
}

static const ps_verb run_verbs[] = {{"", "", cmd_run}, {NULL, NULL, NULL}};
static const ps_verb plot_verbs[] = {{"", "", cmd_plot}, {NULL, NULL, NULL}};
static const ps_verb info_verbs[] = {{"", "", cmd_info}, {NULL, NULL, NULL}};
static const ps_noun run_noun = {"run", "run an experiment config (sweep -> HDF5 -> plots)",
                                 run_verbs};
static const ps_noun plot_noun = {"plot", "(re)draw the figures of a result file", plot_verbs};
static const ps_noun info_noun = {"info", "show what a result file holds", info_verbs};

static const ps_noun *nouns[] = {&run_noun, &plot_noun, &info_noun, &ps_noun_des, &ps_noun_profile,
                                 &ps_noun_costmodel, &ps_noun_pipeline, &ps_noun_real,
                                 &ps_noun_specdec, &ps_noun_quant, NULL};

static void version(void)
{
    char gpu[256];
    ps_gpu_count(gpu, sizeof gpu);
    const char *st = getenv("PLANSIM_BLAS_REEXEC");
    printf("plansim %s (git %s)\ngpu: %s\nblas: %s, core %s%s\n", ps_version, ps_git_commit, gpu,
           ps_cpu_blas_config(), ps_cpu_blas_core(),
           st && !strcmp(st, "forced")    ? " (forced by plansim: OpenBLAS fell back to generic kernels)"
           : st && !strcmp(st, "generic") ? " (forced core failed the self-check)"
                                          : "");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: plansim <noun> <verb> [options]   (plansim <noun> --help for more)\n\n");
    for (const ps_noun *const *n = nouns; *n; n++)
        fprintf(f, "  %-12s %s\n", (*n)->name, (*n)->summary);
    fprintf(f, "\n  --version    version, git commit, and whether a GPU is usable\n"
               "  --help       this text\n\n"
               "Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input.\n");
}

static void noun_usage(const ps_noun *n, FILE *f)
{
    fprintf(f, "usage: plansim %s <verb> [options]   (plansim %s <verb> --help for more)\n\n",
            n->name, n->name);
    for (const ps_verb *v = n->verbs; v->name; v++)
        fprintf(f, "  %-12s %s\n", v->name, v->summary);
}

/* OpenBLAS 0.3.21 (Debian 12) runs its generic SSE3 kernels on CPUs it does
 * not recognise (this VM's Xeon), 3-5x slower at GEMM; the kernel set is
 * chosen when the library loads.  So plansim re-executes itself once with
 * OPENBLAS_CORETYPE set to what the CPU supports, and then checks the forced
 * kernels against a float64 loop; if they disagree it re-executes once more
 * with OpenBLAS's own choice (docs/DECISIONS.md).  A user's own
 * OPENBLAS_CORETYPE is never overridden; PLANSIM_NO_REEXEC=1 turns it off. */
static void blas_reexec(char **argv)
{
    const char *state = getenv("PLANSIM_BLAS_REEXEC");
    if (getenv("PLANSIM_NO_REEXEC"))
        return;
    if (state && !strcmp(state, "forced")) {
        if (ps_cpu_blas_selfcheck() == 0)
            return;
        fprintf(stderr, "plansim: warning: OpenBLAS gives wrong results with OPENBLAS_CORETYPE=%s;"
                        " using its generic kernels\n",
                getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "?");
        unsetenv("OPENBLAS_CORETYPE");
        setenv("PLANSIM_BLAS_REEXEC", "generic", 1);
        execv("/proc/self/exe", argv);
        return;
    }
    if (state)
        return;
    const char *better = ps_cpu_blas_better_core();
    if (!better)
        return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    setenv("PLANSIM_BLAS_REEXEC", "forced", 1);
    execv("/proc/self/exe", argv); /* on failure: carry on with the generic kernels */
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv)
{
    blas_reexec(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        version();
        return 0;
    }
    const ps_noun *n = NULL;
    for (const ps_noun *const *p = nouns; *p; p++)
        if (!strcmp((*p)->name, argv[1]))
            n = *p;
    if (!n) {
        fprintf(stderr, "plansim: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    char cmd[128];
    if (n->verbs[0].name[0] == '\0') {
        snprintf(cmd, sizeof cmd, "plansim %s", n->name);
        argv[1] = cmd;
        return n->verbs[0].fn(argc - 1, argv + 1);
    }
    if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
        noun_usage(n, argc < 3 ? stderr : stdout);
        return argc < 3 ? 2 : 0;
    }
    for (const ps_verb *v = n->verbs; v->name; v++)
        if (!strcmp(v->name, argv[2])) {
            snprintf(cmd, sizeof cmd, "plansim %s %s", n->name, v->name);
            argv[2] = cmd;
            return v->fn(argc - 2, argv + 2);
        }
    fprintf(stderr, "plansim: %s: unknown verb '%s'\n\n", n->name, argv[2]);
    noun_usage(n, stderr);
    return 2;
}
