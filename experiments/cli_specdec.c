/* `plansim specdec ...`: token trees for speculative decoding (issue 6):
 * build a tree (expansion config, Medusa choice list, merge, Sequoia
 * optimum), its expected tokens per step under an acceptance model, the
 * optimal tree for a node budget, and the tiny models' training. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "experiments/cli.h"
#include "real/specmodels.h"
#include "sim/specdec/accept.h"
#include "sim/specdec/build.h"
#include "sim/specdec/tree.h"

#define MAX_RANKS 64
#define MAX_DEPTHS 64
#define MAX_MERGE 32

/* "1,1,3" -> ints (each >= lo); errors name the option. */
static int parse_int_list(const char *cmd, const char *opt, const char *s, int *out, int cap,
                          int lo, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ','))
            return ps_cli_usage(cmd, "%s: '%s' is not a comma-separated list of integers", opt, s);
        if (v < lo || v > 1000000)
            return ps_cli_usage(cmd, "%s: entry %d is %ld (must be >= %d)", opt, *n + 1, v, lo);
        if (*n == cap)
            return ps_cli_usage(cmd, "%s: more than %d entries", opt, cap);
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return ps_cli_usage(cmd, "%s: trailing comma in '%s'", opt, s);
    }
    if (*n == 0)
        return ps_cli_usage(cmd, "%s: empty list", opt);
    return 0;
}

static int parse_num_list(const char *cmd, const char *opt, const char *s, double *out, int cap,
                          int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ','))
            return ps_cli_usage(cmd, "%s: '%s' is not a comma-separated list of numbers", opt, s);
        if (!(v >= 0 && v <= 1))
            return ps_cli_usage(cmd, "%s: entry %d is %g (probabilities lie in [0, 1])", opt,
                                *n + 1, v);
        if (*n == cap)
            return ps_cli_usage(cmd, "%s: more than %d entries", opt, cap);
        out[(*n)++] = v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return ps_cli_usage(cmd, "%s: trailing comma in '%s'", opt, s);
    }
    if (*n == 0)
        return ps_cli_usage(cmd, "%s: empty list", opt);
    return 0;
}

/* A JSON argument: "@FILE" or a path to an existing file, else inline text. */
static json_t *json_arg(const char *opt, const char *arg, char *where, size_t wn, ps_err *e)
{
    const char *path = arg[0] == '@' ? arg + 1 : (ps_file_exists(arg) ? arg : NULL);
    if (path) {
        snprintf(where, wn, "%s", path);
        return ps_json_load_file(path, e);
    }
    snprintf(where, wn, "%s", opt);
    return ps_json_load_str(arg, opt, e);
}

/* The acceptance model of a verb: exactly one of a positional vector, a
 * depth x rank matrix, or a model JSON (any kind sd_accept_from_json reads). */
typedef struct acc_opts {
    const char *vec, *matrix, *model;
    double p[MAX_RANKS];
    int m;
    double P[MAX_DEPTHS * MAX_RANKS];
    int depths, mm;
    sd_accept *acc; /* --model */
} acc_opts;

static int acc_count(const acc_opts *a)
{
    return (a->vec != NULL) + (a->matrix != NULL) + (a->model != NULL);
}

static int acc_load(const char *cmd, acc_opts *a, ps_err *e, int *usage_rc)
{
    *usage_rc = 0;
    if (acc_count(a) > 1) {
        *usage_rc = ps_cli_usage(cmd, "give one of --acceptance, --matrix, --model");
        return -1;
    }
    if (a->vec) {
        if ((*usage_rc = parse_num_list(cmd, "--acceptance", a->vec, a->p, MAX_RANKS, &a->m)))
            return -1;
        double s = 0;
        for (int k = 0; k < a->m; k++)
            s += a->p[k];
        if (s > 1 + 1e-9) {
            *usage_rc = ps_cli_usage(cmd,
                                     "--acceptance: the probabilities sum to %.6g; under greedy "
                                     "verification at most one child is accepted, so the sum "
                                     "must be <= 1",
                                     s);
            return -1;
        }
        return 0;
    }
    char where[512];
    if (a->matrix) {
        json_t *j = json_arg("--matrix", a->matrix, where, sizeof where, e);
        if (!j)
            return -1;
        int rc = 0;
        if (!json_is_array(j) || json_array_size(j) == 0 || json_array_size(j) > MAX_DEPTHS) {
            rc = ps_errf(e, PS_EINPUT, "%s: expected an array of 1..%d rows (one per depth)",
                         where, MAX_DEPTHS);
        } else {
            a->depths = (int)json_array_size(j);
            a->mm = 0;
            for (int d = 0; d < a->depths && !rc; d++) {
                json_t *row = json_array_get(j, (size_t)d);
                if (!json_is_array(row) || json_array_size(row) > MAX_RANKS) {
                    rc = ps_errf(e, PS_EINPUT, "%s[%d]: expected an array of at most %d numbers",
                                 where, d, MAX_RANKS);
                    break;
                }
                if ((int)json_array_size(row) > a->mm)
                    a->mm = (int)json_array_size(row);
            }
            memset(a->P, 0, sizeof a->P);
            for (int d = 0; d < a->depths && !rc; d++) {
                json_t *row = json_array_get(j, (size_t)d);
                for (size_t k = 0; k < json_array_size(row) && !rc; k++) {
                    char path[600];
                    snprintf(path, sizeof path, "%s[%d][%zu]", where, d, k);
                    rc = ps_json_as_num(json_array_get(row, k), path,
                                        &a->P[(size_t)d * (size_t)a->mm + k], e);
                }
            }
        }
        json_decref(j);
        return rc ? -1 : 0;
    }
    if (a->model) {
        json_t *j = json_arg("--model", a->model, where, sizeof where, e);
        if (!j)
            return -1;
        a->acc = sd_accept_from_json(j, where, e);
        json_decref(j);
        return a->acc ? 0 : -1;
    }
    return 0;
}

static int acc_expected(const acc_opts *a, const sd_tree *t, double *out, ps_err *e)
{
    if (a->vec)
        return sd_tree_expected_tokens(t, a->p, a->m, out, e);
    if (a->matrix)
        return sd_tree_expected_tokens_matrix(t, a->P, a->depths, a->mm, out, e);
    return sd_accept_expected(a->acc, t, out, e);
}

static const char *acc_kind(const acc_opts *a)
{
    return a->vec ? "positional" : a->matrix ? "matrix" : sd_acc_kind_name(sd_accept_kind(a->acc));
}

static sd_tree *tree_load(const char *arg, ps_err *e)
{
    char where[512];
    json_t *j = json_arg("--tree", arg, where, sizeof where, e);
    if (!j)
        return NULL;
    sd_tree *t = sd_tree_from_json(j, where, e);
    json_decref(j);
    return t;
}

static int write_tree(const char *path, const sd_tree *t, ps_err *e)
{
    json_t *j = sd_tree_to_json(t);
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!txt)
        return ps_errf(e, PS_ERUN, "%s: out of memory serialising the tree", path);
    size_t n = strlen(txt);
    char *buf = realloc(txt, n + 2);
    if (!buf) {
        free(txt);
        return ps_errf(e, PS_ERUN, "%s: out of memory", path);
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    int rc = ps_file_write_atomic(path, buf, n + 1, e);
    free(buf);
    return rc;
}

static void print_tree_text(const sd_tree *t)
{
    printf("nodes    %d (root included)\n", t->n);
    printf("depth    %d\n", t->depth);
    printf("parents ");
    for (int i = 0; i < t->n; i++)
        printf(" %d", t->parent[i]);
    printf("\n");
}

/* ---- tree ---------------------------------------------------------------- */

static const char tree_usage[] =
    "usage: plansim specdec tree SOURCE [--acceptance P1,P2,.. | --matrix M | --model F]\n"
    "                           [-o TREE.json] [--json]\n"
    "Build a token tree and print it (nodes in depth-first order; node 0 is the root, the\n"
    "last verified token, counted in num_nodes).  SOURCE is exactly one of:\n"
    "  --expansion K1,..,Kd   the root has K1 children, each depth-(i-1) node Ki children\n"
    "                         (SpecInfer's <1,1,3,1,1,1,1,1>: 21 nodes, depth 8)\n"
    "  --choices C            Medusa-style choice list: JSON [[0],[0,0],[1],...] of 0-based\n"
    "                         child ranks from the root (inline, or a file / @file)\n"
    "  --merge T1,T2,..       prefix union of trees (tree JSON files) by their tokens\n"
    "  --sequoia N            the tree of N nodes maximising expected tokens per step under\n"
    "                         the acceptance model (Sequoia's DP; --max-depth D bounds it)\n"
    "  --tree T               read a tree JSON (validates it)\n"
    "Acceptance (optional, adds tokens_per_step): --acceptance p1,p2,.. (P(rank-k child\n"
    "accepted | parent accepted), independent across nodes), --matrix [[..],..] (depth x\n"
    "rank), --model F (an acceptance-model JSON: positional, matrix, correlated, trace).\n"
    "Output JSON: num_nodes, depth, parents (-1 for the root), tokens, ranks\n"
    "[, tokens_per_step, acceptance_kind].  -o writes the tree JSON atomically.\n";

static int cmd_tree(int argc, char **argv)
{
    static const struct option lo[] = {{"expansion", required_argument, 0, 'x'},
                                       {"choices", required_argument, 0, 'c'},
                                       {"merge", required_argument, 0, 'g'},
                                       {"sequoia", required_argument, 0, 's'},
                                       {"tree", required_argument, 0, 't'},
                                       {"max-depth", required_argument, 0, 'D'},
                                       {"acceptance", required_argument, 0, 'a'},
                                       {"matrix", required_argument, 0, 'M'},
                                       {"model", required_argument, 0, 'm'},
                                       {"output", required_argument, 0, 'o'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *cmd = argv[0];
    const char *expansion = NULL, *choices = NULL, *merge = NULL, *sequoia = NULL, *tree = NULL,
               *out = NULL;
    long max_depth = 0;
    int json = 0, c;
    acc_opts a;
    memset(&a, 0, sizeof a);
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'x': expansion = optarg; break;
        case 'c': choices = optarg; break;
        case 'g': merge = optarg; break;
        case 's': sequoia = optarg; break;
        case 't': tree = optarg; break;
        case 'D':
            if (ps_cli_long(cmd, "--max-depth", optarg, &max_depth))
                return 2;
            break;
        case 'a': a.vec = optarg; break;
        case 'M': a.matrix = optarg; break;
        case 'm': a.model = optarg; break;
        case 'o': out = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(tree_usage, stdout); return 0;
        default: return ps_cli_usage(cmd, "unknown option");
        }
    }
    if (optind < argc)
        return ps_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    int nsrc = (expansion != NULL) + (choices != NULL) + (merge != NULL) + (sequoia != NULL) +
               (tree != NULL);
    if (nsrc != 1)
        return ps_cli_usage(cmd, "give exactly one of --expansion, --choices, --merge, "
                                 "--sequoia, --tree");
    if (sequoia && !a.vec && !a.matrix)
        return ps_cli_usage(cmd, "--sequoia needs --acceptance or --matrix");
    if (max_depth && !sequoia)
        return ps_cli_usage(cmd, "--max-depth applies to --sequoia only");
    ps_err e = {0};
    int urc = 0;
    if (acc_load(cmd, &a, &e, &urc))
        return urc ? urc : ps_cli_fail(&e);
    sd_tree *t = NULL;
    double value = 0;
    if (expansion) {
        int k[MAX_DEPTHS], d;
        int rc = parse_int_list(cmd, "--expansion", expansion, k, MAX_DEPTHS, 1, &d);
        if (rc) {
            sd_accept_free(a.acc);
            return rc;
        }
        t = sd_tree_from_expansion(k, d, &e);
    } else if (choices) {
        char where[512];
        json_t *j = json_arg("--choices", choices, where, sizeof where, &e);
        if (j) {
            t = sd_tree_from_choices_json(j, where, &e);
            json_decref(j);
        }
    } else if (merge) {
        sd_tree *ts[MAX_MERGE];
        int k = 0;
        char *list = strdup(merge), *save = NULL;
        int ok = list != NULL;
        for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok && ok;
             tok = strtok_r(NULL, ",", &save)) {
            if (k == MAX_MERGE) {
                ps_errf(&e, PS_EINPUT, "--merge: more than %d trees", MAX_MERGE);
                ok = 0;
            } else if (!(ts[k] = tree_load(tok, &e))) {
                ok = 0;
            } else {
                k++;
            }
        }
        free(list);
        if (ok)
            t = sd_tree_merge((const sd_tree *const *)ts, k, NULL, &e);
        for (int i = 0; i < k; i++)
            sd_tree_free(ts[i]);
    } else if (sequoia) {
        long n;
        if (ps_cli_long(cmd, "--sequoia", sequoia, &n)) {
            sd_accept_free(a.acc);
            return 2;
        }
        if (a.vec)
            t = sd_sequoia_opt(a.p, a.m, (int)n, (int)max_depth, &value, NULL, &e);
        else
            t = sd_sequoia_opt_matrix(a.P, a.depths, a.mm, (int)n, (int)max_depth, &value, NULL,
                                      &e);
    } else {
        t = tree_load(tree, &e);
    }
    if (!t) {
        sd_accept_free(a.acc);
        return ps_cli_fail(&e);
    }
    int have_e = acc_count(&a) == 1;
    double tps = 0;
    int rc = 0;
    if (have_e)
        rc = acc_expected(&a, t, &tps, &e);
    if (!rc && out)
        rc = write_tree(out, t, &e);
    if (rc) {
        sd_tree_free(t);
        sd_accept_free(a.acc);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = sd_tree_to_json(t);
        json_t *ranks = json_array();
        for (int i = 0; i < t->n; i++)
            json_array_append_new(ranks, json_integer(t->rank[i]));
        json_object_set_new(j, "ranks", ranks);
        if (have_e) {
            json_object_set_new(j, "tokens_per_step", json_real(tps));
            json_object_set_new(j, "acceptance_kind", json_string(acc_kind(&a)));
        }
        if (out)
            json_object_set_new(j, "output", json_string(out));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        print_tree_text(t);
        if (have_e)
            printf("tokens per step  %.6f (%s acceptance)\n", tps, acc_kind(&a));
        if (out)
            printf("wrote %s\n", out);
    }
    sd_tree_free(t);
    sd_accept_free(a.acc);
    return 0;
}

/* ---- expected ------------------------------------------------------------ */

static const char expected_usage[] =
    "usage: plansim specdec expected (--tree T | --expansion K1,..,Kd)\n"
    "                               (--acceptance P1,P2,.. | --matrix M | --model F)\n"
    "                               [--mc SAMPLES] [--seed S] [--json]\n"
    "Expected tokens per step (accepted draft tokens + the bonus token) of one verification\n"
    "step on the tree, in closed form (positional: 1 + sum over non-root nodes of the product\n"
    "of p_rank along the path; matrix likewise per depth; correlated: the stationary regime\n"
    "of the hidden chain; trace: exact replay).  --mc adds a Monte Carlo estimate with its\n"
    "standard error (positional and matrix: independent draws per node; other models: steps\n"
    "of the model's own sampler).\n"
    "Output JSON: tokens_per_step, num_nodes, depth, acceptance_kind [, mc_tokens_per_step,\n"
    "mc_stderr, mc_samples].\n";

static int cmd_expected(int argc, char **argv)
{
    static const struct option lo[] = {{"tree", required_argument, 0, 't'},
                                       {"expansion", required_argument, 0, 'x'},
                                       {"acceptance", required_argument, 0, 'a'},
                                       {"matrix", required_argument, 0, 'M'},
                                       {"model", required_argument, 0, 'm'},
                                       {"mc", required_argument, 0, 'n'},
                                       {"seed", required_argument, 0, 's'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *cmd = argv[0], *tree = NULL, *expansion = NULL;
    long mc = 0, seed = 1;
    int json = 0, c;
    acc_opts a;
    memset(&a, 0, sizeof a);
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 't': tree = optarg; break;
        case 'x': expansion = optarg; break;
        case 'a': a.vec = optarg; break;
        case 'M': a.matrix = optarg; break;
        case 'm': a.model = optarg; break;
        case 'n':
            if (ps_cli_long(cmd, "--mc", optarg, &mc))
                return 2;
            if (mc < 1)
                return ps_cli_usage(cmd, "--mc must be >= 1 (got %ld)", mc);
            break;
        case 's':
            if (ps_cli_long(cmd, "--seed", optarg, &seed))
                return 2;
            break;
        case 'j': json = 1; break;
        case 'h': fputs(expected_usage, stdout); return 0;
        default: return ps_cli_usage(cmd, "unknown option");
        }
    }
    if (optind < argc)
        return ps_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if ((tree != NULL) + (expansion != NULL) != 1)
        return ps_cli_usage(cmd, "give one of --tree, --expansion");
    if (acc_count(&a) != 1)
        return ps_cli_usage(cmd, "give one of --acceptance, --matrix, --model");
    ps_err e = {0};
    int urc = 0;
    if (acc_load(cmd, &a, &e, &urc))
        return urc ? urc : ps_cli_fail(&e);
    sd_tree *t = NULL;
    if (expansion) {
        int k[MAX_DEPTHS], d;
        int rc = parse_int_list(cmd, "--expansion", expansion, k, MAX_DEPTHS, 1, &d);
        if (rc) {
            sd_accept_free(a.acc);
            return rc;
        }
        t = sd_tree_from_expansion(k, d, &e);
    } else {
        t = tree_load(tree, &e);
    }
    double tps = 0, mean = 0, se = 0;
    int rc = t ? acc_expected(&a, t, &tps, &e) : -1;
    if (!rc && mc > 0) {
        if (a.vec) {
            rc = sd_tree_mc_tokens(t, a.p, a.m, mc, (uint64_t)seed, &mean, &se, &e);
        } else {
            sd_accept *acc = a.acc;
            if (a.matrix && !(acc = sd_accept_matrix(a.P, a.depths, a.mm, &e)))
                rc = -1;
            if (!rc) {
                sd_rng r;
                sd_rng_seed(&r, (uint64_t)seed);
                sd_acc_state st;
                sd_accept_state_init(acc, &st, &r);
                double s1 = 0, s2 = 0;
                for (long i = 0; i < mc; i++) {
                    double x = sd_accept_step(acc, &st, t, &r);
                    s1 += x;
                    s2 += x * x;
                }
                mean = s1 / (double)mc;
                double var = mc > 1 ? (s2 - s1 * mean) / (double)(mc - 1) : 0;
                se = var > 0 ? sqrt(var / (double)mc) : 0;
            }
            if (acc != a.acc)
                sd_accept_free(acc);
        }
    }
    if (rc) {
        sd_tree_free(t);
        sd_accept_free(a.acc);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "tokens_per_step", json_real(tps));
        json_object_set_new(j, "num_nodes", json_integer(t->n));
        json_object_set_new(j, "depth", json_integer(t->depth));
        json_object_set_new(j, "acceptance_kind", json_string(acc_kind(&a)));
        if (mc > 0) {
            json_object_set_new(j, "mc_tokens_per_step", json_real(mean));
            json_object_set_new(j, "mc_stderr", json_real(se));
            json_object_set_new(j, "mc_samples", json_integer(mc));
        }
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("tree             %d nodes, depth %d\n", t->n, t->depth);
        printf("tokens per step  %.6f (%s acceptance, closed form)\n", tps, acc_kind(&a));
        if (mc > 0)
            printf("Monte Carlo      %.6f +- %.6f (%ld steps)\n", mean, se, mc);
    }
    sd_tree_free(t);
    sd_accept_free(a.acc);
    return 0;
}

/* ---- optimize ------------------------------------------------------------ */

static const char optimize_usage[] =
    "usage: plansim specdec optimize --nodes N (--acceptance P1,P2,.. | --matrix M)\n"
    "                               [--max-depth D] [--curve] [-o TREE.json] [--json]\n"
    "The tree of exactly N nodes (root included) that maximises expected tokens per step\n"
    "under the acceptance model, by Sequoia's dynamic program (exact; equal to brute force\n"
    "on every tree of up to 12 nodes in the tests).  --max-depth bounds node depth (the root\n"
    "has depth 0).  --curve adds the optimum for every node count 1..N.\n"
    "Output JSON: tokens_per_step, num_nodes, depth, parents, ranks [, curve].\n";

static int cmd_optimize(int argc, char **argv)
{
    static const struct option lo[] = {{"nodes", required_argument, 0, 'n'},
                                       {"max-depth", required_argument, 0, 'D'},
                                       {"acceptance", required_argument, 0, 'a'},
                                       {"matrix", required_argument, 0, 'M'},
                                       {"curve", no_argument, 0, 'c'},
                                       {"output", required_argument, 0, 'o'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *cmd = argv[0], *out = NULL;
    long n = 0, max_depth = 0;
    int json = 0, curve = 0, c;
    acc_opts a;
    memset(&a, 0, sizeof a);
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (ps_cli_long(cmd, "--nodes", optarg, &n))
                return 2;
            break;
        case 'D':
            if (ps_cli_long(cmd, "--max-depth", optarg, &max_depth))
                return 2;
            break;
        case 'a': a.vec = optarg; break;
        case 'M': a.matrix = optarg; break;
        case 'c': curve = 1; break;
        case 'o': out = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(optimize_usage, stdout); return 0;
        default: return ps_cli_usage(cmd, "unknown option");
        }
    }
    if (optind < argc)
        return ps_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (n < 1 || n > SD_TREE_MAX_NODES)
        return ps_cli_usage(cmd, "--nodes must be 1..%d (got %ld)", SD_TREE_MAX_NODES, n);
    if (max_depth < 0)
        return ps_cli_usage(cmd, "--max-depth must be >= 0 (0: unbounded; got %ld)", max_depth);
    if ((a.vec != NULL) + (a.matrix != NULL) != 1)
        return ps_cli_usage(cmd, "give one of --acceptance, --matrix");
    ps_err e = {0};
    int urc = 0;
    if (acc_load(cmd, &a, &e, &urc))
        return urc ? urc : ps_cli_fail(&e);
    double value = 0;
    double *cv = curve ? calloc((size_t)n, sizeof *cv) : NULL;
    if (curve && !cv)
        return ps_cli_usage(cmd, "out of memory");
    double t0 = ps_now_s();
    sd_tree *t = a.vec ? sd_sequoia_opt(a.p, a.m, (int)n, (int)max_depth, &value, cv, &e)
                       : sd_sequoia_opt_matrix(a.P, a.depths, a.mm, (int)n, (int)max_depth,
                                               &value, cv, &e);
    double secs = ps_now_s() - t0;
    int rc = t ? 0 : -1;
    if (!rc && out)
        rc = write_tree(out, t, &e);
    if (rc) {
        free(cv);
        sd_tree_free(t);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = sd_tree_to_json(t);
        json_t *ranks = json_array();
        for (int i = 0; i < t->n; i++)
            json_array_append_new(ranks, json_integer(t->rank[i]));
        json_object_set_new(j, "ranks", ranks);
        json_object_set_new(j, "tokens_per_step", json_real(value));
        json_object_set_new(j, "acceptance_kind", json_string(acc_kind(&a)));
        json_object_set_new(j, "max_depth", json_integer(max_depth));
        json_object_set_new(j, "solve_s", json_real(secs));
        if (cv) {
            json_t *arr = json_array();
            for (long i = 0; i < n; i++)
                json_array_append_new(arr, json_real(cv[i]));
            json_object_set_new(j, "curve", arr);
        }
        if (out)
            json_object_set_new(j, "output", json_string(out));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        print_tree_text(t);
        printf("tokens per step  %.6f (optimal for %ld nodes%s)\n", value, n,
               max_depth ? ", depth-bounded" : "");
        if (cv) {
            printf("curve (nodes: tokens per step)\n");
            for (long i = 0; i < n; i++)
                printf("  %ld: %.6f\n", i + 1, cv[i]);
        }
        if (out)
            printf("wrote %s\n", out);
    }
    free(cv);
    sd_tree_free(t);
    return 0;
}

/* ---- train --------------------------------------------------------------- */

static const char train_usage[] =
    "usage: plansim specdec train [-o DIR] [--seed S] [--quick] [--json]\n"
    "Train the speculative-decoding tiny models from a seed on the text corpus: the\n"
    "\"LLM\" (a 4-layer transformer) and the boost-tuned \"SSMs\" (1-layer), each SSM after\n"
    "the first trained on the positions where the earlier ones disagree with the LLM.  The\n"
    "weights go to DIR (default results/specdec_models), named by a hash of the config, so\n"
    "experiments/specdec_tiny.json finds them; models already there are kept (delete them to\n"
    "retrain).  --quick trains the reduced models the quick experiments use.  Prints the\n"
    "report: sizes, FLOPs per token, validation losses, top-1 agreement, Table 1.\n";

static int cmd_train(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, 0, 'o'},
                                       {"seed", required_argument, 0, 's'},
                                       {"quick", no_argument, 0, 'q'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *cmd = argv[0], *dir = "results/specdec_models";
    long seed = 1;
    int json = 0, quick = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 's':
            if (ps_cli_long(cmd, "--seed", optarg, &seed))
                return 2;
            break;
        case 'q': quick = 1; break;
        case 'j': json = 1; break;
        case 'h': fputs(train_usage, stdout); return 0;
        default: return ps_cli_usage(cmd, "unknown option");
        }
    }
    if (optind < argc)
        return ps_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    ps_err e = {0};
    json_t *rep = NULL;
    if (sm_cli_train(dir, quick, (uint64_t)seed, &rep, &e))
        return ps_cli_fail(&e);
    if (json) {
        ps_cli_print_json(rep);
    } else {
        char *txt = json_dumps(rep, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (txt)
            printf("%s\n", txt);
        free(txt);
    }
    json_decref(rep);
    return 0;
}

static const ps_verb verbs[] = {
    {"tree", "build a token tree (expansion, choices, merge, Sequoia optimum) as JSON", cmd_tree},
    {"expected", "expected tokens per step of a tree under an acceptance model", cmd_expected},
    {"optimize", "the optimal tree for a node budget (Sequoia DP)", cmd_optimize},
    {"train", "train the tiny LLM and boost-tuned SSMs from a seed", cmd_train},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_specdec = {"specdec", "speculative decoding: token trees, acceptance, "
                                            "optimal trees, the tiny models",
                                 verbs};
