/* `plansim quant ...`: mixed-precision bit allocation (sim/quant). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "sim/quant/alloc.h"

static const char allocate_usage[] =
    "usage: plansim quant allocate --omega OMEGA.json BUDGET... [--method M] [--frontier]\n"
    "                              [--seed N] [--draws N] [--max-states N] [--json]\n\n"
    "Picks one bit width per layer minimising the HAWQ-V2 metric sum(Omega) under the\n"
    "budgets (exact multiple-choice knapsack over the Pareto frontier; tied layers\n"
    "share their bits, fixed layers keep theirs).\n\n"
    "Budgets (at least one; several are all enforced):\n"
    "  --budget-bytes B     model size in bytes\n"
    "  --budget-latency S   summed per-layer latency in seconds\n"
    "  --budget-bops P      summed BOPS\n"
    "  --size-frac F        size budget min + F*(max - min), min/max the smallest and\n"
    "                       largest achievable sizes (HAWQ's ILP notebook: F of the way\n"
    "                       from all-4-bit to all-8-bit); also --latency-frac, --bops-frac\n\n"
    "Options:\n"
    "  --method M       exact (default), greedy (lower the layer with the smallest\n"
    "                   dOmega/dcost first), uniform (largest uniform bits that fit),\n"
    "                   random (largest of --draws seeded random feasible draws)\n"
    "  --frontier       also print the whole Pareto frontier over the budgeted\n"
    "                   dimensions (exact method only)\n"
    "  --seed N, --draws N   for --method random (default 1, 1000)\n"
    "  --max-states N   frontier size cap (default 1048576); beyond it: exit 1\n"
    "  --json           one JSON object: bits, omega_sum, size_bytes, latency_s, bops,\n"
    "                   layers (names), method, budget, frontier (with --frontier)\n\n"
    "OMEGA.json (full form; latency_s, bops, params, fixed_bits, tie optional):\n"
    "  {\"layers\": [{\"name\": \"conv1\", \"params\": 288, \"fixed_bits\": 8, \"tie\": \"g1\",\n"
    "               \"options\": [{\"bits\": 2, \"omega\": 0.3, \"bytes\": 74,\n"
    "                            \"latency_s\": 1e-5, \"bops\": 1e6}, ...]}, ...]}\n"
    "Compact form per layer (omega = trace_per_param * delta[b]):\n"
    "  {\"name\": \"conv1\", \"trace_per_param\": 0.07, \"delta\": {\"4\": 6.7, \"8\": 0.02},\n"
    "   \"bytes\": {\"4\": 144, \"8\": 288}, \"latency_s\": {...}, \"bops\": {...}}\n"
    "Layers with the same \"tie\" string take the same bits.  Top-level keys \"model\",\n"
    "\"source\" and \"comment\" are allowed and ignored.  See sim/quant/README.md.\n\n"
    "Exit codes: 0 success, 1 failure (frontier cap), 2 bad usage or input (the\n"
    "message names the file and JSON path) or an infeasible budget (the message\n"
    "names the smallest achievable size / latency / BOPS).\n";

static json_t *bits_json(const int *bits, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(bits[i]));
    return a;
}

static int cmd_allocate(int argc, char **argv)
{
    static const struct option lo[] = {{"omega", required_argument, 0, 'o'},
                                       {"budget-bytes", required_argument, 0, 'B'},
                                       {"budget-latency", required_argument, 0, 'L'},
                                       {"budget-bops", required_argument, 0, 'P'},
                                       {"size-frac", required_argument, 0, 'b'},
                                       {"latency-frac", required_argument, 0, 'l'},
                                       {"bops-frac", required_argument, 0, 'p'},
                                       {"method", required_argument, 0, 'm'},
                                       {"frontier", no_argument, 0, 'f'},
                                       {"seed", required_argument, 0, 's'},
                                       {"draws", required_argument, 0, 'd'},
                                       {"max-states", required_argument, 0, 'x'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *omega = NULL, *method = "exact";
    double budget[PSQ_NCOST] = {INFINITY, INFINITY, INFINITY};
    double frac[PSQ_NCOST] = {NAN, NAN, NAN};
    long seed = 1, draws = 1000, max_states = 0;
    int json = 0, frontier = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'o': omega = optarg; break;
        case 'B': rc = ps_cli_double(argv[0], "--budget-bytes", optarg, &budget[0]); break;
        case 'L': rc = ps_cli_double(argv[0], "--budget-latency", optarg, &budget[1]); break;
        case 'P': rc = ps_cli_double(argv[0], "--budget-bops", optarg, &budget[2]); break;
        case 'b': rc = ps_cli_double(argv[0], "--size-frac", optarg, &frac[0]); break;
        case 'l': rc = ps_cli_double(argv[0], "--latency-frac", optarg, &frac[1]); break;
        case 'p': rc = ps_cli_double(argv[0], "--bops-frac", optarg, &frac[2]); break;
        case 'm': method = optarg; break;
        case 'f': frontier = 1; break;
        case 's': rc = ps_cli_long(argv[0], "--seed", optarg, &seed); break;
        case 'd': rc = ps_cli_long(argv[0], "--draws", optarg, &draws); break;
        case 'x': rc = ps_cli_long(argv[0], "--max-states", optarg, &max_states); break;
        case 'j': json = 1; break;
        case 'h': fputs(allocate_usage, stdout); return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
        if (rc)
            return rc;
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!omega)
        return ps_cli_usage(argv[0], "--omega is required");
    static const char *const bname[PSQ_NCOST] = {"--budget-bytes", "--budget-latency",
                                                 "--budget-bops"};
    static const char *const fname[PSQ_NCOST] = {"--size-frac", "--latency-frac", "--bops-frac"};
    int any = 0;
    for (int d = 0; d < PSQ_NCOST; d++) {
        if (!isinf(budget[d]) && !isnan(frac[d]))
            return ps_cli_usage(argv[0], "%s and %s are exclusive", bname[d], fname[d]);
        if (!isinf(budget[d]) && !(budget[d] >= 0))
            return ps_cli_usage(argv[0], "%s: %g (expected >= 0)", bname[d], budget[d]);
        if (!isnan(frac[d]) && !(frac[d] >= 0 && frac[d] <= 1))
            return ps_cli_usage(argv[0], "%s: %g (expected 0..1)", fname[d], frac[d]);
        any |= !isinf(budget[d]) || !isnan(frac[d]);
    }
    if (!any)
        return ps_cli_usage(argv[0], "give a budget (--budget-bytes, --budget-latency, "
                                     "--budget-bops or a --*-frac)");
    if (max_states < 0 || max_states > (1L << 28))
        return ps_cli_usage(argv[0], "--max-states: %ld (expected 1..2^28)", max_states);
    if (draws < 1 || draws > 100000000)
        return ps_cli_usage(argv[0], "--draws: %ld (expected 1..1e8)", draws);
    int m = !strcmp(method, "exact")     ? 0
            : !strcmp(method, "greedy")  ? 1
            : !strcmp(method, "uniform") ? 2
            : !strcmp(method, "random")  ? 3
                                         : -1;
    if (m < 0)
        return ps_cli_usage(argv[0], "--method: '%s' is not exact, greedy, uniform or random",
                            method);
    if (frontier && m != 0)
        return ps_cli_usage(argv[0], "--frontier needs --method exact");

    ps_err e = {0};
    psq_problem p;
    if (psq_problem_load_json(&p, omega, &e))
        return ps_cli_fail(&e);
    double mn[PSQ_NCOST], mx[PSQ_NCOST];
    int rc = psq_cost_range(&p, mn, mx, &e);
    if (rc) {
        psq_problem_free(&p);
        ps_err_prefix(&e, "%s: ", omega);
        return ps_cli_fail(&e);
    }
    for (int d = 0; d < PSQ_NCOST; d++)
        if (!isnan(frac[d]))
            budget[d] = mn[d] + frac[d] * (mx[d] - mn[d]);
    psq_budget b = {budget[0], budget[1], budget[2]};
    psq_opts o = {.max_states = max_states};
    psq_solution s;
    switch (m) {
    case 0: rc = psq_solve(&p, &b, &o, &s, &e); break;
    case 1: rc = psq_greedy(&p, &b, &s, &e); break;
    case 2: rc = psq_uniform(&p, &b, &s, &e); break;
    default: rc = psq_random(&p, &b, (uint64_t)seed, (int)draws, &s, &e); break;
    }
    psq_frontier f = {0};
    if (!rc && frontier) {
        psq_budget none = psq_budget_none();
        psq_opts fo = o;
        for (int d = 0; d < PSQ_NCOST; d++)
            if (!isinf(budget[d]))
                fo.dims |= 1u << d;
        rc = psq_frontier_compute(&p, &none, &fo, &f, &e);
        if (rc)
            psq_solution_free(&s);
    }
    if (rc) {
        psq_problem_free(&p);
        ps_err_prefix(&e, "%s: ", omega);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "method", json_string(method));
        json_object_set_new(j, "bits", bits_json(s.bits, s.n_layers));
        json_object_set_new(j, "omega_sum", json_real(s.omega_sum));
        json_object_set_new(j, "size_bytes", json_real(s.bytes));
        json_object_set_new(j, "latency_s", json_real(s.latency_s));
        json_object_set_new(j, "bops", json_real(s.bops));
        json_t *names = json_array();
        for (int i = 0; i < p.n_layers; i++)
            json_array_append_new(names, json_string(p.layers[i].name));
        json_object_set_new(j, "layers", names);
        json_t *bj = json_object();
        static const char *const key[PSQ_NCOST] = {"bytes", "latency_s", "bops"};
        for (int d = 0; d < PSQ_NCOST; d++)
            json_object_set_new(bj, key[d], isinf(budget[d]) ? json_null() : json_real(budget[d]));
        json_object_set_new(j, "budget", bj);
        json_t *mnj = json_object();
        for (int d = 0; d < PSQ_NCOST; d++)
            json_object_set_new(mnj, key[d], json_real(mn[d]));
        json_object_set_new(j, "smallest", mnj);
        if (frontier) {
            json_t *fa = json_array();
            for (int i = 0; i < f.n_points; i++) {
                json_t *pt = json_object();
                json_object_set_new(pt, "size_bytes", json_real(f.bytes[i]));
                json_object_set_new(pt, "latency_s", json_real(f.latency_s[i]));
                json_object_set_new(pt, "bops", json_real(f.bops[i]));
                json_object_set_new(pt, "omega_sum", json_real(f.omega[i]));
                json_object_set_new(pt, "bits",
                                    bits_json(f.bits + (size_t)i * (size_t)f.n_layers, f.n_layers));
                json_array_append_new(fa, pt);
            }
            json_object_set_new(j, "frontier", fa);
        }
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        char str[4096];
        psq_bits_str(s.bits, s.n_layers, str, sizeof str);
        printf("method     %s\n", method);
        printf("bits       %s\n", str);
        printf("omega_sum  %.6g\n", s.omega_sum);
        printf("size       %.0f bytes (%.4f MiB)", s.bytes, s.bytes / 1048576.0);
        if (!isinf(budget[0]))
            printf(", budget %.0f", budget[0]);
        printf("\nlatency    %.6g s", s.latency_s);
        if (!isinf(budget[1]))
            printf(", budget %.6g", budget[1]);
        printf("\nbops       %.6g", s.bops);
        if (!isinf(budget[2]))
            printf(", budget %.6g", budget[2]);
        printf("\n\n%-24s %s\n", "layer", "bits");
        for (int i = 0; i < p.n_layers; i++)
            printf("%-24s %d%s\n", p.layers[i].name, s.bits[i],
                   p.layers[i].fixed_bits ? " (fixed)" : "");
        if (frontier) {
            printf("\nfrontier: %d points\n%14s %12s %12s %12s  %s\n", f.n_points, "size_bytes",
                   "latency_s", "bops", "omega_sum", "bits");
            for (int i = 0; i < f.n_points; i++) {
                psq_bits_str(f.bits + (size_t)i * (size_t)f.n_layers, f.n_layers, str,
                             sizeof str);
                printf("%14.0f %12.6g %12.6g %12.6g  %s\n", f.bytes[i], f.latency_s[i],
                       f.bops[i], f.omega[i], str);
            }
        }
    }
    psq_frontier_free(&f);
    psq_solution_free(&s);
    psq_problem_free(&p);
    return 0;
}

static const ps_verb verbs[] = {
    {"allocate", "bits per layer minimising sum(Omega) under a size/latency/BOPS budget",
     cmd_allocate},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_quant = {"quant", "mixed-precision quantization: bit allocation", verbs};
