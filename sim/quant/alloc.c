/* sim/quant: exact mixed-precision bit allocation (see alloc.h). */
#include "sim/quant/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "sim/specdec/rng.h"

static const char *const dim_name[PSQ_NCOST] = {"size", "latency", "BOPS"};
static const char *const dim_unit[PSQ_NCOST] = {"bytes", "s", "BOPS"};

psq_budget psq_budget_none(void)
{
    psq_budget b = {INFINITY, INFINITY, INFINITY};
    return b;
}

static double opt_cost(const psq_option *o, int d)
{
    return d == PSQ_COST_BYTES ? o->bytes : d == PSQ_COST_LATENCY ? o->latency_s : o->bops;
}

static double budget_of(const psq_budget *b, int d)
{
    if (!b)
        return INFINITY;
    return d == PSQ_COST_BYTES ? b->bytes : d == PSQ_COST_LATENCY ? b->latency_s : b->bops;
}

static int within(double c, double limit)
{
    if (isinf(limit))
        return 1;
    return c <= limit + PSQ_BUDGET_RTOL * fabs(limit);
}

/* ------------------------------------------------------------------ */
/* problem                                                              */

int psq_problem_init(psq_problem *p, int n_layers, ps_err *e)
{
    memset(p, 0, sizeof *p);
    if (n_layers < 1)
        return ps_errf(e, PS_EINPUT, "quant problem: need at least one layer (got %d)", n_layers);
    p->layers = calloc((size_t)n_layers, sizeof *p->layers);
    if (!p->layers)
        return ps_errf(e, PS_ERUN, "quant problem: out of memory (%d layers)", n_layers);
    p->n_layers = n_layers;
    for (int i = 0; i < n_layers; i++)
        snprintf(p->layers[i].name, PSQ_NAME_MAX, "L%d", i);
    return 0;
}

void psq_problem_free(psq_problem *p)
{
    if (!p)
        return;
    free(p->layers);
    p->layers = NULL;
    p->n_layers = 0;
}

static int find_opt(const psq_layer *l, int bits)
{
    for (int k = 0; k < l->n_opt; k++)
        if (l->opt[k].bits == bits)
            return k;
    return -1;
}

int psq_problem_check(const psq_problem *p, ps_err *e)
{
    if (!p || p->n_layers < 1 || !p->layers)
        return ps_errf(e, PS_EINPUT, "quant problem: no layers");
    for (int i = 0; i < p->n_layers; i++) {
        const psq_layer *l = &p->layers[i];
        if (l->n_opt < 1 || l->n_opt > PSQ_MAX_OPTIONS)
            return ps_errf(e, PS_EINPUT, "layers[%d] (%s): %d options (expected 1..%d)", i,
                           l->name, l->n_opt, PSQ_MAX_OPTIONS);
        for (int k = 0; k < l->n_opt; k++) {
            const psq_option *o = &l->opt[k];
            if (o->bits < 1 || o->bits > 64)
                return ps_errf(e, PS_EINPUT, "layers[%d].options[%d].bits: %d (expected 1..64)",
                               i, k, o->bits);
            for (int j = 0; j < k; j++)
                if (l->opt[j].bits == o->bits)
                    return ps_errf(e, PS_EINPUT,
                                   "layers[%d].options[%d].bits: %d appears twice in layer %s", i,
                                   k, o->bits, l->name);
            const double v[4] = {o->omega, o->bytes, o->latency_s, o->bops};
            static const char *const f[4] = {"omega", "bytes", "latency_s", "bops"};
            for (int q = 0; q < 4; q++)
                if (!isfinite(v[q]) || v[q] < 0)
                    return ps_errf(e, PS_EINPUT,
                                   "layers[%d].options[%d].%s: %g (expected a finite number >= 0)",
                                   i, k, f[q], v[q]);
        }
        if (l->fixed_bits && find_opt(l, l->fixed_bits) < 0)
            return ps_errf(e, PS_EINPUT, "layers[%d].fixed_bits: %d is not among the options of %s",
                           i, l->fixed_bits, l->name);
        if (l->fixed_bits < 0)
            return ps_errf(e, PS_EINPUT, "layers[%d].fixed_bits: %d (expected > 0)", i,
                           l->fixed_bits);
    }
    return 0;
}

int psq_problem_from_deltas(psq_problem *p, int n_layers, int n_opt, const int *bits,
                            const double *trace_per_param, const double *delta,
                            const double *bytes, const double *latency_s, const double *bops,
                            const char *const *names, ps_err *e)
{
    if (n_opt < 1 || n_opt > PSQ_MAX_OPTIONS)
        return ps_errf(e, PS_EINPUT, "quant problem: %d options per layer (expected 1..%d)", n_opt,
                       PSQ_MAX_OPTIONS);
    if (psq_problem_init(p, n_layers, e))
        return e ? e->code : PS_EINPUT;
    for (int i = 0; i < n_layers; i++) {
        psq_layer *l = &p->layers[i];
        if (names && names[i])
            snprintf(l->name, PSQ_NAME_MAX, "%s", names[i]);
        l->n_opt = n_opt;
        for (int k = 0; k < n_opt; k++) {
            size_t ik = (size_t)i * (size_t)n_opt + (size_t)k;
            l->opt[k].bits = bits[k];
            l->opt[k].omega = trace_per_param[i] * delta[ik];
            l->opt[k].bytes = bytes[ik];
            l->opt[k].latency_s = latency_s ? latency_s[ik] : 0;
            l->opt[k].bops = bops ? bops[ik] : 0;
        }
    }
    if (psq_problem_check(p, e)) {
        psq_problem_free(p);
        return e ? e->code : PS_EINPUT;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* units: tie groups merged, fixed layers restricted, options by bits   */

typedef struct unit {
    int n_opt;
    int bits[PSQ_MAX_OPTIONS];
    double omega[PSQ_MAX_OPTIONS];
    double cost[PSQ_MAX_OPTIONS][PSQ_NCOST];
    int first_layer;
} unit;

typedef struct unitset {
    int n;
    unit *u;
    int *layer_unit; /* [n_layers] */
} unitset;

static void unitset_free(unitset *s)
{
    free(s->u);
    free(s->layer_unit);
    memset(s, 0, sizeof *s);
}

static int build_units(const psq_problem *p, unitset *s, ps_err *e)
{
    memset(s, 0, sizeof *s);
    if (psq_problem_check(p, e))
        return e ? e->code : PS_EINPUT;
    int L = p->n_layers;
    s->u = calloc((size_t)L, sizeof *s->u);
    s->layer_unit = malloc((size_t)L * sizeof *s->layer_unit);
    if (!s->u || !s->layer_unit) {
        unitset_free(s);
        return ps_errf(e, PS_ERUN, "quant problem: out of memory");
    }
    for (int i = 0; i < L; i++) {
        const psq_layer *l = &p->layers[i];
        int u = -1;
        if (l->tie[0])
            for (int j = 0; j < i; j++)
                if (strcmp(p->layers[j].tie, l->tie) == 0) {
                    u = s->layer_unit[j];
                    break;
                }
        if (u < 0) {
            u = s->n++;
            s->u[u].first_layer = i;
        }
        s->layer_unit[i] = u;
    }
    for (int u = 0; u < s->n; u++) {
        unit *x = &s->u[u];
        const psq_layer *l0 = &p->layers[x->first_layer];
        int fixed = 0, fixed_layer = -1;
        for (int i = 0; i < L; i++)
            if (s->layer_unit[i] == u && p->layers[i].fixed_bits) {
                if (fixed && fixed != p->layers[i].fixed_bits) {
                    int rc = ps_errf(e, PS_EINPUT,
                                     "layers[%d].fixed_bits: %d conflicts with fixed_bits %d of "
                                     "layer %s in tie group \"%s\"",
                                     i, p->layers[i].fixed_bits, fixed,
                                     p->layers[fixed_layer].name, l0->tie);
                    unitset_free(s);
                    return rc;
                }
                fixed = p->layers[i].fixed_bits;
                fixed_layer = i;
            }
        /* candidate bits: those of the first layer, ascending */
        int cand[PSQ_MAX_OPTIONS], nc = 0;
        for (int k = 0; k < l0->n_opt; k++)
            cand[nc++] = l0->opt[k].bits;
        for (int a = 1; a < nc; a++)
            for (int b = a; b > 0 && cand[b - 1] > cand[b]; b--) {
                int t = cand[b];
                cand[b] = cand[b - 1];
                cand[b - 1] = t;
            }
        for (int c = 0; c < nc; c++) {
            int b = cand[c], ok = !fixed || fixed == b;
            for (int i = 0; ok && i < L; i++)
                if (s->layer_unit[i] == u && find_opt(&p->layers[i], b) < 0)
                    ok = 0;
            if (!ok)
                continue;
            int k = x->n_opt++;
            x->bits[k] = b;
            for (int i = 0; i < L; i++)
                if (s->layer_unit[i] == u) {
                    const psq_option *o = &p->layers[i].opt[find_opt(&p->layers[i], b)];
                    x->omega[k] += o->omega;
                    for (int d = 0; d < PSQ_NCOST; d++)
                        x->cost[k][d] += opt_cost(o, d);
                }
        }
        if (x->n_opt == 0) {
            int rc = ps_errf(e, PS_EINPUT,
                             "tie group \"%s\" (first layer %s): no bit width is offered by "
                             "every member%s",
                             l0->tie, l0->name, fixed ? " at its fixed bits" : "");
            unitset_free(s);
            return rc;
        }
    }
    return 0;
}

/* Per-dimension minimum / maximum of the sum over units. */
static void unit_range(const unitset *s, double mn[PSQ_NCOST], double mx[PSQ_NCOST])
{
    for (int d = 0; d < PSQ_NCOST; d++) {
        mn[d] = 0;
        mx[d] = 0;
        for (int u = 0; u < s->n; u++) {
            double a = INFINITY, b = -INFINITY;
            for (int k = 0; k < s->u[u].n_opt; k++) {
                double c = s->u[u].cost[k][d];
                a = c < a ? c : a;
                b = c > b ? c : b;
            }
            mn[d] += a;
            mx[d] += b;
        }
    }
}

int psq_cost_range(const psq_problem *p, double min_cost[PSQ_NCOST], double max_cost[PSQ_NCOST],
                   ps_err *e)
{
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    unit_range(&s, min_cost, max_cost);
    unitset_free(&s);
    return 0;
}

/* Per-layer bits from per-unit option indices. */
static void unit_to_layer_bits(const unitset *s, const int *uopt, int n_layers, int *bits)
{
    for (int i = 0; i < n_layers; i++) {
        int u = s->layer_unit[i];
        bits[i] = s->u[u].bits[uopt[u]];
    }
}

/* ------------------------------------------------------------------ */
/* evaluation                                                           */

void psq_solution_free(psq_solution *s)
{
    if (!s)
        return;
    free(s->bits);
    memset(s, 0, sizeof *s);
}

void psq_frontier_free(psq_frontier *f)
{
    if (!f)
        return;
    free(f->omega);
    free(f->bytes);
    free(f->latency_s);
    free(f->bops);
    free(f->bits);
    memset(f, 0, sizeof *f);
}

int psq_evaluate(const psq_problem *p, const int *bits, psq_solution *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (psq_problem_check(p, e))
        return e ? e->code : PS_EINPUT;
    int L = p->n_layers;
    for (int i = 0; i < L; i++) {
        const psq_layer *l = &p->layers[i];
        if (find_opt(l, bits[i]) < 0)
            return ps_errf(e, PS_EINPUT, "bits[%d] = %d: not an option of layer %s", i, bits[i],
                           l->name);
        if (l->fixed_bits && bits[i] != l->fixed_bits)
            return ps_errf(e, PS_EINPUT, "bits[%d] = %d: layer %s is fixed at %d bits", i,
                           bits[i], l->name, l->fixed_bits);
        if (l->tie[0])
            for (int j = 0; j < i; j++)
                if (strcmp(p->layers[j].tie, l->tie) == 0 && bits[j] != bits[i])
                    return ps_errf(e, PS_EINPUT,
                                   "bits[%d] = %d: layer %s is tied (\"%s\") to layer %s at %d "
                                   "bits",
                                   i, bits[i], l->name, l->tie, p->layers[j].name, bits[j]);
    }
    out->bits = malloc((size_t)L * sizeof *out->bits);
    if (!out->bits)
        return ps_errf(e, PS_ERUN, "out of memory");
    out->n_layers = L;
    for (int i = 0; i < L; i++) {
        const psq_option *o = &p->layers[i].opt[find_opt(&p->layers[i], bits[i])];
        out->bits[i] = bits[i];
        out->omega_sum += o->omega;
        out->bytes += o->bytes;
        out->latency_s += o->latency_s;
        out->bops += o->bops;
    }
    return 0;
}

int psq_fits(const psq_solution *s, const psq_budget *b)
{
    return within(s->bytes, budget_of(b, PSQ_COST_BYTES)) &&
           within(s->latency_s, budget_of(b, PSQ_COST_LATENCY)) &&
           within(s->bops, budget_of(b, PSQ_COST_BOPS));
}

/* Evaluate from unit option indices. */
static int eval_units(const psq_problem *p, const unitset *s, const int *uopt, psq_solution *out,
                      ps_err *e)
{
    int *bits = malloc((size_t)p->n_layers * sizeof *bits);
    if (!bits)
        return ps_errf(e, PS_ERUN, "out of memory");
    unit_to_layer_bits(s, uopt, p->n_layers, bits);
    int rc = psq_evaluate(p, bits, out, e);
    free(bits);
    return rc;
}

/* Message for an infeasible budget: the smallest achievable cost of every
 * violated dimension. */
static int infeasible(const unitset *s, const psq_budget *b, ps_err *e)
{
    double mn[PSQ_NCOST], mx[PSQ_NCOST];
    unit_range(s, mn, mx);
    char msg[1024] = "";
    int n = 0;
    for (int d = 0; d < PSQ_NCOST; d++) {
        double B = budget_of(b, d);
        if (!within(mn[d], B)) {
            size_t len = strlen(msg);
            snprintf(msg + len, sizeof msg - len, "%s%s budget %.17g %s is below the smallest "
                     "achievable %s, %.17g %s",
                     n ? "; " : "", dim_name[d], B, dim_unit[d], dim_name[d], mn[d], dim_unit[d]);
            n++;
        }
    }
    if (n)
        return ps_errf(e, PS_EINPUT, "infeasible: %s", msg);
    size_t len = 0;
    for (int d = 0; d < PSQ_NCOST; d++)
        if (!isinf(budget_of(b, d))) {
            len = strlen(msg);
            snprintf(msg + len, sizeof msg - len, "%s%s %.17g %s (smallest alone %.17g)",
                     len ? ", " : "", dim_name[d], budget_of(b, d), dim_unit[d], mn[d]);
        }
    return ps_errf(e, PS_EINPUT, "infeasible: no configuration meets all budgets together (%s)",
                   msg);
}

/* ------------------------------------------------------------------ */
/* the frontier DP                                                       */

typedef struct cand {
    double key[4]; /* active costs (zero padded), then Ω */
    int parent;
    int opt;
} cand;

typedef struct back {
    int parent;
    int opt;
} back;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    for (int i = 0; i < 4; i++) {
        if (x->key[i] < y->key[i])
            return -1;
        if (x->key[i] > y->key[i])
            return 1;
    }
    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    return (x->opt > y->opt) - (x->opt < y->opt);
}

typedef struct dp_out {
    int n;           /* final states */
    cand *final;     /* [n] */
    back **stage;    /* [n_units] back-pointers per stage */
    int n_units;
} dp_out;

static void dp_free(dp_out *o)
{
    if (o->stage)
        for (int u = 0; u < o->n_units; u++)
            free(o->stage[u]);
    free(o->stage);
    free(o->final);
    memset(o, 0, sizeof *o);
}

/* Unit option indices of final state i. */
static void dp_trace(const dp_out *o, int i, int *uopt)
{
    for (int u = o->n_units - 1; u >= 0; u--) {
        uopt[u] = o->stage[u][i].opt;
        i = o->stage[u][i].parent;
    }
}

static int run_dp(const unitset *s, const int *dims, int nd, const double *limit, long max_states,
                  dp_out *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (max_states <= 0)
        max_states = PSQ_DEFAULT_MAX_STATES;
    int U = s->n;
    out->n_units = U;
    out->stage = calloc((size_t)U, sizeof *out->stage);
    /* suffix minimum costs, for pruning */
    double *suf = calloc((size_t)(U + 1) * 3, sizeof *suf);
    cand *cur = malloc(sizeof *cur), *nxt = NULL;
    if (!out->stage || !suf || !cur) {
        free(suf);
        free(cur);
        dp_free(out);
        return ps_errf(e, PS_ERUN, "quant solver: out of memory");
    }
    for (int u = U - 1; u >= 0; u--)
        for (int a = 0; a < nd; a++) {
            double m = INFINITY;
            for (int k = 0; k < s->u[u].n_opt; k++)
                m = fmin(m, s->u[u].cost[k][dims[a]]);
            suf[u * 3 + a] = suf[(u + 1) * 3 + a] + m;
        }
    memset(cur, 0, sizeof *cur);
    long ncur = 1;
    int rc = 0;
    for (int u = 0; u < U && !rc; u++) {
        const unit *x = &s->u[u];
        long ncand = ncur * x->n_opt;
        if (ncand > 4 * max_states) {
            rc = ps_errf(e, PS_ERUN,
                         "quant solver: frontier too large at unit %d of %d (%ld candidates > "
                         "4 x max_states %ld); raise max_states or add budgets",
                         u, U, ncand, max_states);
            break;
        }
        nxt = malloc((size_t)ncand * sizeof *nxt);
        if (!nxt) {
            rc = ps_errf(e, PS_ERUN, "quant solver: out of memory (%ld candidates)", ncand);
            break;
        }
        long m = 0;
        for (long i = 0; i < ncur; i++)
            for (int k = 0; k < x->n_opt; k++) {
                cand c = {{0, 0, 0, 0}, (int)i, k};
                int ok = 1;
                for (int a = 0; a < nd; a++) {
                    c.key[a] = cur[i].key[a] + x->cost[k][dims[a]];
                    /* loose prune (slack over the exact rule): safe */
                    if (!isinf(limit[a]) &&
                        c.key[a] + suf[(u + 1) * 3 + a] > limit[a] * (1 + 1e-9) + 1e-300)
                        ok = 0;
                }
                c.key[3] = cur[i].key[3] + x->omega[k];
                if (ok)
                    nxt[m++] = c;
            }
        qsort(nxt, (size_t)m, sizeof *nxt, cand_cmp);
        /* dominance sweep */
        long kept = 0;
        double best = INFINITY;
        for (long i = 0; i < m; i++) {
            int dom = 0;
            if (nd == 1) {
                dom = !(nxt[i].key[3] < best);
            } else {
                for (long j = 0; j < kept && !dom; j++) {
                    int le = nxt[j].key[3] <= nxt[i].key[3];
                    for (int a = 0; a < nd && le; a++)
                        le = nxt[j].key[a] <= nxt[i].key[a];
                    dom = le;
                }
            }
            if (dom)
                continue;
            best = nxt[i].key[3];
            nxt[kept++] = nxt[i];
        }
        if (kept > max_states) {
            rc = ps_errf(e, PS_ERUN,
                         "quant solver: frontier too large at unit %d of %d (%ld states > "
                         "max_states %ld)",
                         u, U, kept, max_states);
            break;
        }
        out->stage[u] = malloc((size_t)(kept ? kept : 1) * sizeof **out->stage);
        if (!out->stage[u]) {
            rc = ps_errf(e, PS_ERUN, "quant solver: out of memory");
            break;
        }
        for (long i = 0; i < kept; i++) {
            out->stage[u][i].parent = nxt[i].parent;
            out->stage[u][i].opt = nxt[i].opt;
        }
        free(cur);
        cur = nxt;
        nxt = NULL;
        ncur = kept;
    }
    free(nxt);
    free(suf);
    if (rc) {
        free(cur);
        dp_free(out);
        return rc;
    }
    /* drop final states that miss a budget under the exact rule */
    long n = 0;
    for (long i = 0; i < ncur; i++) {
        int ok = 1;
        for (int a = 0; a < nd; a++)
            ok = ok && within(cur[i].key[a], limit[a]);
        if (ok) {
            if (n != i) {
                cur[n] = cur[i];
                out->stage[U - 1][n] = out->stage[U - 1][i];
            }
            n++;
        }
    }
    out->final = cur;
    out->n = (int)n;
    return 0;
}

/* Active dimensions: finite budgets plus `extra` mask; none → bytes. */
static int active_dims(const psq_budget *b, unsigned extra, int *dims, double *limit)
{
    int nd = 0;
    for (int d = 0; d < PSQ_NCOST; d++)
        if (!isinf(budget_of(b, d)) || (extra & (1u << d))) {
            dims[nd] = d;
            limit[nd] = budget_of(b, d);
            nd++;
        }
    if (!nd) {
        dims[0] = PSQ_COST_BYTES;
        limit[0] = INFINITY;
        nd = 1;
    }
    return nd;
}

static int check_budget(const psq_budget *b, ps_err *e)
{
    for (int d = 0; d < PSQ_NCOST; d++) {
        double v = budget_of(b, d);
        if (isnan(v) || v < 0)
            return ps_errf(e, PS_EINPUT, "%s budget: %g (expected >= 0)", dim_name[d], v);
    }
    return 0;
}

int psq_solve(const psq_problem *p, const psq_budget *b, const psq_opts *o, psq_solution *out,
              ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (check_budget(b, e))
        return PS_EINPUT;
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    int dims[PSQ_NCOST], nd;
    double limit[PSQ_NCOST];
    nd = active_dims(b, 0, dims, limit);
    dp_out dp;
    int rc = run_dp(&s, dims, nd, limit, o ? o->max_states : 0, &dp, e);
    if (rc) {
        unitset_free(&s);
        return rc;
    }
    if (dp.n == 0) {
        rc = infeasible(&s, b, e);
    } else {
        /* frontier order is by active costs ascending: first minimum Ω wins */
        int best = 0;
        for (int i = 1; i < dp.n; i++)
            if (dp.final[i].key[3] < dp.final[best].key[3])
                best = i;
        int *uopt = malloc((size_t)s.n * sizeof *uopt);
        if (!uopt) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
        } else {
            dp_trace(&dp, best, uopt);
            rc = eval_units(p, &s, uopt, out, e);
            free(uopt);
        }
    }
    dp_free(&dp);
    unitset_free(&s);
    return rc;
}

int psq_frontier_compute(const psq_problem *p, const psq_budget *b, const psq_opts *o,
                         psq_frontier *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    psq_budget none = psq_budget_none();
    if (!b)
        b = &none;
    if (check_budget(b, e))
        return PS_EINPUT;
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    int dims[PSQ_NCOST], nd;
    double limit[PSQ_NCOST];
    nd = active_dims(b, o ? o->dims : 0, dims, limit);
    dp_out dp;
    int rc = run_dp(&s, dims, nd, limit, o ? o->max_states : 0, &dp, e);
    if (rc) {
        unitset_free(&s);
        return rc;
    }
    if (dp.n == 0) {
        rc = infeasible(&s, b, e);
        dp_free(&dp);
        unitset_free(&s);
        return rc;
    }
    int L = p->n_layers, n = dp.n;
    out->n_points = n;
    out->n_layers = L;
    out->omega = malloc((size_t)n * sizeof(double));
    out->bytes = malloc((size_t)n * sizeof(double));
    out->latency_s = malloc((size_t)n * sizeof(double));
    out->bops = malloc((size_t)n * sizeof(double));
    out->bits = malloc((size_t)n * (size_t)L * sizeof(int));
    int *uopt = malloc((size_t)s.n * sizeof *uopt);
    if (!out->omega || !out->bytes || !out->latency_s || !out->bops || !out->bits || !uopt) {
        rc = ps_errf(e, PS_ERUN, "quant frontier: out of memory (%d points)", n);
    } else {
        for (int i = 0; i < n && !rc; i++) {
            dp_trace(&dp, i, uopt);
            psq_solution sol;
            rc = eval_units(p, &s, uopt, &sol, e);
            if (rc)
                break;
            out->omega[i] = sol.omega_sum;
            out->bytes[i] = sol.bytes;
            out->latency_s[i] = sol.latency_s;
            out->bops[i] = sol.bops;
            memcpy(out->bits + (size_t)i * (size_t)L, sol.bits, (size_t)L * sizeof(int));
            psq_solution_free(&sol);
        }
    }
    free(uopt);
    dp_free(&dp);
    unitset_free(&s);
    if (rc)
        psq_frontier_free(out);
    return rc;
}

int psq_brute_force(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (check_budget(b, e))
        return PS_EINPUT;
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    double total = 1;
    for (int u = 0; u < s.n; u++)
        total *= s.u[u].n_opt;
    if (total > (double)(1 << 26)) {
        unitset_free(&s);
        return ps_errf(e, PS_EINPUT, "brute force: %.0f configurations (limit 2^26)", total);
    }
    int dims[PSQ_NCOST], nd;
    double limit[PSQ_NCOST];
    nd = active_dims(b, 0, dims, limit);
    int *idx = calloc((size_t)s.n, sizeof *idx), *best = malloc((size_t)s.n * sizeof *best);
    if (!idx || !best) {
        free(idx);
        free(best);
        unitset_free(&s);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    int found = 0;
    double bkey[4] = {0};
    for (;;) {
        double key[4] = {0, 0, 0, 0};
        for (int u = 0; u < s.n; u++) {
            for (int a = 0; a < nd; a++)
                key[a] += s.u[u].cost[idx[u]][dims[a]];
            key[3] += s.u[u].omega[idx[u]];
        }
        int ok = 1;
        for (int a = 0; a < nd; a++)
            ok = ok && within(key[a], limit[a]);
        if (ok) {
            int better = !found || key[3] < bkey[3];
            if (found && key[3] == bkey[3]) {
                for (int a = 0; a < nd; a++)
                    if (key[a] != bkey[a]) {
                        better = key[a] < bkey[a];
                        break;
                    }
            }
            if (better) {
                found = 1;
                memcpy(bkey, key, sizeof key);
                memcpy(best, idx, (size_t)s.n * sizeof *idx);
            }
        }
        int u = 0;
        while (u < s.n && ++idx[u] == s.u[u].n_opt)
            idx[u++] = 0;
        if (u == s.n)
            break;
    }
    int rc = found ? eval_units(p, &s, best, out, e) : infeasible(&s, b, e);
    free(idx);
    free(best);
    unitset_free(&s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* baselines                                                            */

static int fits_units(const unitset *s, const int *uopt, const psq_budget *b)
{
    for (int d = 0; d < PSQ_NCOST; d++) {
        double B = budget_of(b, d);
        if (isinf(B))
            continue;
        double c = 0;
        for (int u = 0; u < s->n; u++)
            c += s->u[u].cost[uopt[u]][d];
        if (!within(c, B))
            return 0;
    }
    return 1;
}

int psq_uniform(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (check_budget(b, e))
        return PS_EINPUT;
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    int *uopt = malloc((size_t)s.n * sizeof *uopt);
    if (!uopt) {
        unitset_free(&s);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    /* every bit width offered anywhere, descending */
    int cand[64 * 2], nc = 0;
    for (int u = 0; u < s.n; u++)
        for (int k = 0; k < s.u[u].n_opt; k++) {
            int bb = s.u[u].bits[k], dup = 0;
            for (int c = 0; c < nc; c++)
                dup |= cand[c] == bb;
            if (!dup && nc < (int)(sizeof cand / sizeof *cand))
                cand[nc++] = bb;
        }
    for (int a = 1; a < nc; a++)
        for (int c = a; c > 0 && cand[c - 1] < cand[c]; c--) {
            int t = cand[c];
            cand[c] = cand[c - 1];
            cand[c - 1] = t;
        }
    int rc = -1;
    for (int c = 0; c < nc && rc < 0; c++) {
        for (int u = 0; u < s.n; u++) {
            int k = 0; /* options ascending: largest offered <= cand, else smallest */
            for (int j = 0; j < s.u[u].n_opt; j++)
                if (s.u[u].bits[j] <= cand[c])
                    k = j;
            uopt[u] = k;
        }
        if (fits_units(&s, uopt, b))
            rc = eval_units(p, &s, uopt, out, e);
    }
    if (rc < 0)
        rc = infeasible(&s, b, e);
    free(uopt);
    unitset_free(&s);
    return rc;
}

int psq_random(const psq_problem *p, const psq_budget *b, uint64_t seed, int n_draws,
               psq_solution *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (check_budget(b, e))
        return PS_EINPUT;
    if (n_draws < 1)
        return ps_errf(e, PS_EINPUT, "random allocation: n_draws %d (expected >= 1)", n_draws);
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    int dims[PSQ_NCOST];
    double limit[PSQ_NCOST];
    active_dims(b, 0, dims, limit);
    int rank = dims[0]; /* "largest": bytes when constrained, else the first active */
    if (!isinf(budget_of(b, PSQ_COST_BYTES)))
        rank = PSQ_COST_BYTES;
    int *cur = malloc((size_t)s.n * sizeof *cur), *best = malloc((size_t)s.n * sizeof *best);
    if (!cur || !best) {
        free(cur);
        free(best);
        unitset_free(&s);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    sd_rng r;
    sd_rng_seed(&r, seed);
    int found = 0;
    double bc = 0, bo = 0;
    for (int t = 0; t < n_draws; t++) {
        double c = 0, om = 0;
        for (int u = 0; u < s.n; u++) {
            cur[u] = (int)(sd_rng_u01(&r) * s.u[u].n_opt);
            if (cur[u] >= s.u[u].n_opt)
                cur[u] = s.u[u].n_opt - 1;
            c += s.u[u].cost[cur[u]][rank];
            om += s.u[u].omega[cur[u]];
        }
        if (!fits_units(&s, cur, b))
            continue;
        if (!found || c > bc || (c == bc && om < bo)) {
            found = 1;
            bc = c;
            bo = om;
            memcpy(best, cur, (size_t)s.n * sizeof *cur);
        }
    }
    int rc;
    if (found) {
        rc = eval_units(p, &s, best, out, e);
    } else {
        double mn[PSQ_NCOST], mx[PSQ_NCOST];
        unit_range(&s, mn, mx);
        int any = 0;
        for (int d = 0; d < PSQ_NCOST; d++)
            any |= !within(mn[d], budget_of(b, d));
        rc = any ? infeasible(&s, b, e)
                 : ps_errf(e, PS_EINPUT,
                           "random allocation: none of %d draws (seed %llu) meets the budget",
                           n_draws, (unsigned long long)seed);
    }
    free(cur);
    free(best);
    unitset_free(&s);
    return rc;
}

int psq_greedy(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (check_budget(b, e))
        return PS_EINPUT;
    unitset s;
    if (build_units(p, &s, e))
        return e ? e->code : PS_EINPUT;
    int *cur = malloc((size_t)s.n * sizeof *cur);
    if (!cur) {
        unitset_free(&s);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    for (int u = 0; u < s.n; u++)
        cur[u] = s.u[u].n_opt - 1;
    int rc = -1;
    for (;;) {
        double c[PSQ_NCOST] = {0, 0, 0};
        for (int u = 0; u < s.n; u++)
            for (int d = 0; d < PSQ_NCOST; d++)
                c[d] += s.u[u].cost[cur[u]][d];
        int viol[PSQ_NCOST], nv = 0;
        for (int d = 0; d < PSQ_NCOST; d++) {
            viol[d] = !within(c[d], budget_of(b, d));
            nv += viol[d];
        }
        if (!nv) {
            rc = eval_units(p, &s, cur, out, e);
            break;
        }
        int pick = -1;
        double pr = INFINITY;
        for (int u = 0; u < s.n; u++) {
            int k = cur[u];
            if (k == 0)
                continue;
            double save = 0;
            for (int d = 0; d < PSQ_NCOST; d++)
                if (viol[d])
                    save += (s.u[u].cost[k][d] - s.u[u].cost[k - 1][d]) / budget_of(b, d);
            if (!(save > 0))
                continue;
            double ratio = (s.u[u].omega[k - 1] - s.u[u].omega[k]) / save;
            if (pick < 0 || ratio < pr) {
                pick = u;
                pr = ratio;
            }
        }
        if (pick < 0) {
            double mn[PSQ_NCOST], mx[PSQ_NCOST];
            unit_range(&s, mn, mx);
            int alone = 0;
            for (int d = 0; d < PSQ_NCOST; d++)
                alone |= !within(mn[d], budget_of(b, d));
            rc = alone ? infeasible(&s, b, e)
                       : ps_errf(e, PS_EINPUT,
                                 "greedy allocation: no step down lowers the violated budget(s) "
                                 "any further; greedy found no feasible configuration");
            break;
        }
        cur[pick]--;
    }
    free(cur);
    unitset_free(&s);
    return rc;
}

void psq_bits_str(const int *bits, int n, char *buf, int cap)
{
    if (cap <= 0)
        return;
    buf[0] = 0;
    int small = 1;
    for (int i = 0; i < n; i++)
        small &= bits[i] >= 0 && bits[i] < 10;
    int len = 0;
    for (int i = 0; i < n && len < cap - 1; i++) {
        int w = small ? snprintf(buf + len, (size_t)(cap - len), "%d", bits[i])
                      : snprintf(buf + len, (size_t)(cap - len), "%s%d", i ? "," : "", bits[i]);
        if (w < 0)
            break;
        len += w;
    }
    if (len >= cap)
        buf[cap - 1] = 0;
}

/* ------------------------------------------------------------------ */
/* OMEGA.json                                                           */

static int load_num(const json_t *v, const char *path, double *out, ps_err *e)
{
    if (ps_json_as_num(v, path, out, e))
        return PS_EINPUT;
    if (!isfinite(*out) || *out < 0)
        return ps_errf(e, PS_EINPUT, "%s: %g (expected a finite number >= 0)", path, *out);
    return 0;
}

static int parse_bits_key(const char *key, const char *path, int *bits, ps_err *e)
{
    char *end = NULL;
    long v = strtol(key, &end, 10);
    if (!*key || *end || v < 1 || v > 64)
        return ps_errf(e, PS_EINPUT, "%s: key \"%s\" is not a bit width (expected 1..64)", path,
                       key);
    *bits = (int)v;
    return 0;
}

static int load_layer(psq_layer *l, const json_t *jl, int i, ps_err *e)
{
    char where[128], path[256];
    snprintf(where, sizeof where, "layers[%d]", i);
    static const char *const keys[] = {"name",      "params", "fixed_bits", "tie",
                                       "options",   "trace_per_param", "delta", "bytes",
                                       "latency_s", "bops",   NULL};
    if (!json_is_object(jl))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                       ps_json_type_name(jl));
    if (ps_json_check_keys(jl, where, keys, e))
        return PS_EINPUT;
    const char *name = NULL, *tie = NULL;
    if (ps_json_get_str(jl, where, "name", 0, &name, e) ||
        ps_json_get_str(jl, where, "tie", 0, &tie, e))
        return PS_EINPUT;
    if (name) {
        if (strlen(name) >= PSQ_NAME_MAX || !*name)
            return ps_errf(e, PS_EINPUT, "%s.name: length %zu (expected 1..%d characters)", where,
                           strlen(name), PSQ_NAME_MAX - 1);
        snprintf(l->name, PSQ_NAME_MAX, "%s", name);
    }
    if (tie) {
        if (strlen(tie) >= PSQ_NAME_MAX)
            return ps_errf(e, PS_EINPUT, "%s.tie: longer than %d characters", where,
                           PSQ_NAME_MAX - 1);
        snprintf(l->tie, PSQ_NAME_MAX, "%s", tie);
    }
    double params = 0;
    long long fixed = 0;
    if (ps_json_get_num(jl, where, "params", 0, &params, e) ||
        ps_json_get_int(jl, where, "fixed_bits", 0, &fixed, e))
        return PS_EINPUT;
    if (!isfinite(params) || params < 0)
        return ps_errf(e, PS_EINPUT, "%s.params: %g (expected >= 0)", where, params);
    if (fixed < 0 || fixed > 64)
        return ps_errf(e, PS_EINPUT, "%s.fixed_bits: %lld (expected 1..64, or absent)", where,
                       fixed);
    l->params = params;
    l->fixed_bits = (int)fixed;
    const json_t *opts = json_object_get(jl, "options");
    const json_t *delta = json_object_get(jl, "delta");
    if (opts) {
        static const char *const compact[] = {"trace_per_param", "delta", "bytes", "latency_s",
                                              "bops", NULL};
        for (const char *const *k = compact; *k; k++)
            if (json_object_get(jl, *k))
                return ps_errf(e, PS_EINPUT,
                               "%s.%s: not allowed together with %s.options (use one form)",
                               where, *k, where);
        if (!json_is_array(opts))
            return ps_errf(e, PS_EINPUT, "%s.options: expected an array, got %s", where,
                           ps_json_type_name(opts));
        size_t n = json_array_size(opts);
        if (n < 1 || n > PSQ_MAX_OPTIONS)
            return ps_errf(e, PS_EINPUT, "%s.options: %zu entries (expected 1..%d)", where, n,
                           PSQ_MAX_OPTIONS);
        static const char *const okeys[] = {"bits", "omega", "bytes", "latency_s", "bops", NULL};
        for (size_t k = 0; k < n; k++) {
            const json_t *jo = json_array_get(opts, k);
            char ow[160];
            snprintf(ow, sizeof ow, "%s.options[%zu]", where, k);
            if (!json_is_object(jo))
                return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", ow,
                               ps_json_type_name(jo));
            if (ps_json_check_keys(jo, ow, okeys, e))
                return PS_EINPUT;
            psq_option *o = &l->opt[k];
            long long bits = 0;
            if (ps_json_get_int(jo, ow, "bits", 1, &bits, e))
                return PS_EINPUT;
            if (bits < 1 || bits > 64)
                return ps_errf(e, PS_EINPUT, "%s.bits: %lld (expected 1..64)", ow, bits);
            o->bits = (int)bits;
            static const char *const nk[4] = {"omega", "bytes", "latency_s", "bops"};
            double *dst[4] = {&o->omega, &o->bytes, &o->latency_s, &o->bops};
            for (int q = 0; q < 4; q++) {
                const json_t *v = json_object_get(jo, nk[q]);
                snprintf(path, sizeof path, "%s.%s", ow, nk[q]);
                if (!v) {
                    if (q < 2)
                        return ps_errf(e, PS_EINPUT, "%s: missing (required)", path);
                    continue;
                }
                if (load_num(v, path, dst[q], e))
                    return PS_EINPUT;
            }
        }
        l->n_opt = (int)n;
        return 0;
    }
    /* compact form */
    double tpp = 0;
    if (!delta)
        return ps_errf(e, PS_EINPUT,
                       "%s: needs \"options\" (full form) or \"trace_per_param\", \"delta\" and "
                       "\"bytes\" (compact form)",
                       where);
    if (ps_json_get_num(jl, where, "trace_per_param", 1, &tpp, e))
        return PS_EINPUT;
    if (!isfinite(tpp) || tpp < 0)
        return ps_errf(e, PS_EINPUT, "%s.trace_per_param: %g (expected a finite number >= 0)",
                       where, tpp);
    static const char *const maps[4] = {"delta", "bytes", "latency_s", "bops"};
    for (int q = 0; q < 4; q++) {
        const json_t *m = json_object_get(jl, maps[q]);
        snprintf(path, sizeof path, "%s.%s", where, maps[q]);
        if (!m) {
            if (q < 2)
                return ps_errf(e, PS_EINPUT, "%s: missing (required)", path);
            continue;
        }
        if (!json_is_object(m))
            return ps_errf(e, PS_EINPUT, "%s: expected an object keyed by bits, got %s", path,
                           ps_json_type_name(m));
        if (q == 0) {
            size_t n = json_object_size(m);
            if (n < 1 || n > PSQ_MAX_OPTIONS)
                return ps_errf(e, PS_EINPUT, "%s: %zu entries (expected 1..%d)", path, n,
                               PSQ_MAX_OPTIONS);
            const char *key;
            const json_t *v;
            int k = 0;
            json_object_foreach((json_t *)m, key, v) {
                char kp[300];
                snprintf(kp, sizeof kp, "%s.%s", path, key);
                if (parse_bits_key(key, path, &l->opt[k].bits, e))
                    return PS_EINPUT;
                double d;
                if (load_num(v, kp, &d, e))
                    return PS_EINPUT;
                l->opt[k].omega = tpp * d;
                k++;
            }
            l->n_opt = k;
        } else {
            if (json_object_size(m) != (size_t)l->n_opt)
                return ps_errf(e, PS_EINPUT, "%s: %zu entries but %s.delta has %d (same bit "
                               "widths expected)",
                               path, json_object_size(m), where, l->n_opt);
            const char *key;
            const json_t *v;
            json_object_foreach((json_t *)m, key, v) {
                char kp[300];
                snprintf(kp, sizeof kp, "%s.%s", path, key);
                int bits;
                if (parse_bits_key(key, path, &bits, e))
                    return PS_EINPUT;
                int k = find_opt(l, bits);
                if (k < 0)
                    return ps_errf(e, PS_EINPUT, "%s: bit width %d has no %s.delta entry", kp,
                                   bits, where);
                double d;
                if (load_num(v, kp, &d, e))
                    return PS_EINPUT;
                if (q == 1)
                    l->opt[k].bytes = d;
                else if (q == 2)
                    l->opt[k].latency_s = d;
                else
                    l->opt[k].bops = d;
            }
        }
    }
    return 0;
}

int psq_problem_load_json(psq_problem *p, const char *file, ps_err *e)
{
    memset(p, 0, sizeof *p);
    json_t *root = ps_json_load_file(file, e);
    if (!root)
        return PS_EINPUT;
    int rc = 0;
    static const char *const keys[] = {"layers", "model", "source", "comment", NULL};
    const json_t *layers = NULL;
    if (!json_is_object(root)) {
        rc = ps_errf(e, PS_EINPUT, "$: expected an object, got %s", ps_json_type_name(root));
    } else if (ps_json_check_keys(root, "$", keys, e)) {
        rc = PS_EINPUT;
    } else if (!(layers = json_object_get(root, "layers"))) {
        rc = ps_errf(e, PS_EINPUT, "layers: missing (required)");
    } else if (!json_is_array(layers) || json_array_size(layers) == 0) {
        rc = ps_errf(e, PS_EINPUT, "layers: expected a non-empty array, got %s",
                     json_is_array(layers) ? "an empty array" : ps_json_type_name(layers));
    } else if (!(rc = psq_problem_init(p, (int)json_array_size(layers), e))) {
        for (int i = 0; i < p->n_layers && !rc; i++)
            rc = load_layer(&p->layers[i], json_array_get(layers, (size_t)i), i, e);
        if (!rc)
            rc = psq_problem_check(p, e);
    }
    json_decref(root);
    if (rc) {
        psq_problem_free(p);
        ps_err_prefix(e, "%s: ", file);
    }
    return rc;
}
