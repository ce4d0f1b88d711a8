/* `plansim profile run`: measure a suite of ops on the CPU or a CUDA GPU
 * and write the profile database the cost model reads. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "experiments/cli.h"
#include "kernels/cpu_blas.h"
#include "profile/cpu_backend.h"
#include "profile/db.h"
#include "profile/suite.h"

#if defined(PS_HAVE_CUDA) && __has_include("profile/cuda_backend.h")
#include "profile/cuda_backend.h"
#define PS_PROFILE_CUDA 1
#endif

typedef struct run_ui {
    ps_progress prog;
    double t0;
    int quiet;
    const char *suite_name;
    double est_s;
} run_ui;

static void ui_progress(void *user, size_t done, size_t total, const ps_op *op)
{
    run_ui *u = user;
    (void)total;
    char desc[320] = "";
    if (op)
        ps_op_describe(op, desc, sizeof desc);
    ps_progress_update(&u->prog, done, desc);
}

static void ui_estimate(void *user, size_t nops, double est_s)
{
    run_ui *u = user;
    u->est_s = est_s;
    if (!u->quiet) {
        double peaks_s = ps_now_s() - u->t0;
        if (est_s >= 120)
            fprintf(stderr,
                    "plansim: suite %s: %zu ops, expected duration about %.1f min more (peaks "
                    "took %.0f s)\n",
                    u->suite_name, nops, est_s / 60, peaks_s);
        else
            fprintf(stderr,
                    "plansim: suite %s: %zu ops, expected duration about %.*f s more (peaks "
                    "took %.0f s)\n",
                    u->suite_name, nops, est_s < 10 ? 1 : 0, est_s, peaks_s);
        fflush(stderr);
    }
    ps_progress_start(&u->prog, "profile", nops);
}

/* "cpu" → -1; "cuda" → 0; "cuda:N" → N; anything else → -2. */
static int parse_device(const char *s)
{
    if (!strcmp(s, "cpu"))
        return -1;
    if (!strcmp(s, "cuda"))
        return 0;
    if (!strncmp(s, "cuda:", 5) && s[5]) {
        char *end;
        long n = strtol(s + 5, &end, 10);
        if (!*end && n >= 0 && n < 1024)
            return (int)n;
    }
    return -2;
}

static int cmd_profile_run(int argc, char **argv)
{
    static const struct option lo[] = {
        {"device", required_argument, 0, 'd'}, {"suite", required_argument, 0, 's'},
        {"quick", no_argument, 0, 'q'},        {"threads", required_argument, 0, 't'},
        {"pin", required_argument, 0, 'p'},    {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *device = "cpu", *suite_path = NULL, *out = NULL;
    int quick = 0, force = 0, json = 0, c;
    long threads = 1, pin = -1;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 's': suite_path = optarg; break;
        case 'q': quick = 1; break;
        case 't':
            if (ps_cli_long(argv[0], "--threads", optarg, &threads))
                return 2;
            if (threads < 1 || threads > 1024)
                return ps_cli_usage(argv[0], "--threads: must be in [1, 1024]");
            break;
        case 'p':
            if (ps_cli_long(argv[0], "--pin", optarg, &pin))
                return 2;
            if (pin < 0)
                return ps_cli_usage(argv[0], "--pin: a core number >= 0");
            break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'j': json = 1; break;
        case 'h':
            printf(
                "usage: plansim profile run --device cpu|cuda[:N] [--suite SUITE.json | --quick]\n"
                "                           [--threads N] [--pin CORE] -o DB.h5 [--force] "
                "[--json]\n\n"
                "Measures every op of a microbenchmark suite (GEMM, batched GEMM, attention,\n"
                "conv2d, elementwise, reductions, embedding-bag, memcpy over declared shape\n"
                "grids) on one device and writes the profile database the cost model reads\n"
                "(layout: profile/README.md).  The device's peaks (GEMM FLOP/s, memcpy\n"
                "bandwidth, launch overhead) are measured first; the expected duration is\n"
                "printed before the ops start.\n\n"
                "  --device D     cpu (default), cuda or cuda:N\n"
                "  --suite FILE   suite JSON (default: the built-in standard suite)\n"
                "  --quick        the built-in quick suite (under a minute on a CPU)\n"
                "  --threads N    OpenBLAS threads on the CPU (default 1: one core, the\n"
                "                 least noisy; the peaks also record every core)\n"
                "  --pin CORE     pin the measuring thread to one core (needs --threads 1)\n"
                "  -o, --output   the database to write (through DB.h5.partial)\n"
                "  --force        replace an existing database\n"
                "  --json         print a JSON summary (path, ops, peaks, wall_s)\n\n"
                "Built-in suites are found in $PLANSIM_SUITES, next to the binary\n"
                "(../profile/suites), or in ./profile/suites.\n\n"
                "Exit codes: 0 success, 1 a measurement failed, 2 bad usage or input.\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!out)
        return ps_cli_usage(argv[0], "-o DB.h5 is required");
    if (quick && suite_path)
        return ps_cli_usage(argv[0], "--quick and --suite exclude each other");
    int dev = parse_device(device);
    if (dev == -2)
        return ps_cli_usage(argv[0], "--device: '%s' is not cpu, cuda or cuda:N", device);
    if (pin >= 0 && threads > 1)
        return ps_cli_usage(argv[0], "--pin keeps one core: use it with --threads 1");

    ps_err e = {0};
    char path[4200];
    if (!suite_path) {
        if (ps_suite_builtin_path(quick ? "quick" : "standard", path, sizeof path, &e))
            return ps_cli_fail(&e);
        suite_path = path;
    }
    ps_suite *s = ps_suite_load_file(suite_path, &e);
    if (!s)
        return ps_cli_fail(&e);

    /* The estimate and warnings go to stderr, with --json too: a long run
     * states its duration up front whoever reads it. */
    run_ui ui = {.quiet = getenv("PLANSIM_QUIET") && *getenv("PLANSIM_QUIET") &&
                          strcmp(getenv("PLANSIM_QUIET"), "0"),
                 .suite_name = s->name};
    double t0 = ps_now_s();
    ui.t0 = t0;
    char devname[512];
    int rc = 0;
    ps_db_writer *w = NULL;
    if (!ui.quiet) {
        fprintf(stderr, "plansim: suite %s: %zu ops on %s; measuring the device's peaks first\n",
                s->name, s->n, device);
        fflush(stderr);
    }
    if (dev == -1) {
        ps_cpu_device_name(devname, sizeof devname);
        const char *better = ps_cpu_blas_better_core();
        if (better && !ui.quiet)
            fprintf(stderr,
                    "plansim: warning: OpenBLAS runs its generic %s kernels on this CPU (it does "
                    "not recognise the model); GEMM would be several times faster with "
                    "OPENBLAS_CORETYPE=%s in the environment\n",
                    ps_cpu_blas_core(), better);
        ps_db_meta m = {"cpu", devname, s->text, (int)threads, (int)pin};
        w = ps_db_writer_open(out, &m, force, &e);
        if (!w) {
            ps_suite_free(s);
            return ps_cli_fail(&e);
        }
        ps_db_writer_set_attr_str(w, "suite_name", s->name, NULL);
        ps_cpu_profile_opts o = {.threads = (int)threads,
                                 .pin_core = (int)pin,
                                 .progress = ui_progress,
                                 .estimate = ui_estimate,
                                 .user = &ui};
        rc = ps_profile_run_cpu(s, &o, w, &e);
        ps_progress_end(&ui.prog);
    } else {
#ifdef PS_PROFILE_CUDA
        snprintf(devname, sizeof devname, "cuda:%d", dev);
        ps_db_meta m = {"cuda", devname, s->text, 0, -1};
        w = ps_db_writer_open(out, &m, force, &e);
        if (!w) {
            ps_suite_free(s);
            return ps_cli_fail(&e);
        }
        ps_db_writer_set_attr_str(w, "suite_name", s->name, NULL);
        rc = ps_profile_run_cuda(s, dev, w, &e);
#else
        rc = ps_errf(&e, PS_EINPUT,
                     "--device %s: this plansim was built without CUDA support (build with nvcc "
                     "on PATH to profile a GPU)",
                     device);
#endif
    }
    size_t nops = w ? ps_db_writer_nops(w) : 0;
    if (!rc && w) {
        rc = ps_db_writer_commit(w, &e);
        w = NULL;
    }
    if (w)
        ps_db_writer_abort(w);
    double wall = ps_now_s() - t0;
    if (rc) {
        ps_suite_free(s);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "db", json_string(out));
        json_object_set_new(j, "device", json_string(device));
        json_object_set_new(j, "suite", json_string(s->name));
        json_object_set_new(j, "ops", json_integer((json_int_t)nops));
        json_object_set_new(j, "threads", json_integer(threads));
        json_object_set_new(j, "pinned_core", json_integer(pin));
        json_object_set_new(j, "estimate_s", json_real(ui.est_s));
        json_object_set_new(j, "wall_s", json_real(wall));
        ps_db *db = NULL;
        ps_err e2 = {0};
        if (!ps_db_open(out, &db, &e2)) {
            json_object_set_new(j, "device_name", json_string(ps_db_attr(db, "device_name")
                                                                  ? ps_db_attr(db, "device_name")
                                                                  : ""));
            json_t *pk = json_object();
            for (size_t i = 0; i < ps_db_npeaks(db); i++)
                json_object_set_new(pk, ps_db_peak_at(db, i)->name,
                                    json_real(ps_db_peak_at(db, i)->value));
            json_object_set_new(j, "peaks", pk);
            ps_db_close(db);
        }
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s: %zu ops of suite %s on %s in %.1f s\n", out, nops, s->name, device, wall);
    }
    ps_suite_free(s);
    return 0;
}

static const ps_verb profile_verbs[] = {
    {"run", "measure a suite of ops on a device into a profile database (HDF5)",
     cmd_profile_run},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_profile = {"profile", "measure op timings into a profile database",
                                 profile_verbs};
