#include "suite.h"

#include <gsl/gsl_rng.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

#define MAX_VALUES 4096
#define MAX_SUITE_OPS 100000

/* One dim of a grid entry: a list of values, a range to sample from, or a
 * tie to another dim. */
typedef struct dim_spec {
    int64_t *vals;
    int nvals;
    int is_range; /* {"log"/"lin": ...}: sampling draws from [lo, hi] */
    int log;
    int64_t lo, hi;
    int tie; /* index of the dim this one copies, or -1 */
} dim_spec;

typedef struct entry_ctx {
    ps_suite *s;
    const char *where;
    const char *const *dtypes;
    int ndtypes;
    const char *const *variants;
    int nvariants;
    double max_flops, max_bytes;
    int warmup, repeats;
    double min_time_s;
    const char *backend;
    size_t added; /* new items */
    size_t valid; /* points that passed the constraints (duplicates too) */
} entry_ctx;

void ps_suite_free(ps_suite *s)
{
    if (!s)
        return;
    free(s->text);
    free(s->items);
    free(s);
}

static int push_item(entry_ctx *c, const ps_op *op, ps_err *e)
{
    ps_suite *s = c->s;
    if (c->max_flops > 0 && ps_op_flops(op) > c->max_flops)
        return 0;
    if (c->max_bytes > 0 && ps_op_bytes(op) > c->max_bytes)
        return 0;
    c->valid++;
    for (size_t i = 0; i < s->n; i++)
        if (ps_op_equal(&s->items[i].op, op))
            return 0;
    if (s->n >= MAX_SUITE_OPS)
        return ps_errf(e, PS_EINPUT, "%s: the suite expands to more than %d ops", c->where,
                       MAX_SUITE_OPS);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        ps_suite_item *it = realloc(s->items, cap * sizeof *it);
        if (!it)
            return ps_errf(e, PS_ERUN, "out of memory");
        s->items = it;
        s->cap = cap;
    }
    ps_suite_item *it = &s->items[s->n++];
    memset(it, 0, sizeof *it);
    it->op = *op;
    it->warmup = c->warmup;
    it->repeats = c->repeats;
    it->min_time_s = c->min_time_s;
    snprintf(it->backend, sizeof it->backend, "%s", c->backend ? c->backend : "");
    c->added++;
    return 0;
}

/* Every dtype x variant of a shape.  Cross-dim constraints (sq <= skv, a
 * filter that fits) drop the point: a grid over independent lists would
 * otherwise be unusable; bad single values were rejected while parsing. */
static int push_shape(entry_ctx *c, const char *kind, const int64_t *d, ps_err *e)
{
    for (int a = 0; a < c->ndtypes; a++)
        for (int b = 0; b < c->nvariants; b++) {
            ps_op op;
            ps_op_init(&op, kind, NULL);
            memcpy(op.d, d, sizeof op.d);
            snprintf(op.dtype, sizeof op.dtype, "%s", c->dtypes[a]);
            snprintf(op.variant, sizeof op.variant, "%s", c->variants[b]);
            ps_err tmp = {0};
            if (ps_op_validate(&op, c->where, &tmp))
                continue;
            int rc = push_item(c, &op, e);
            if (rc)
                return rc;
        }
    return 0;
}

static int parse_int_value(const json_t *v, const char *path, int64_t min, int64_t *out,
                           ps_err *e)
{
    long long x;
    int rc = ps_json_as_int(v, path, &x, e);
    if (rc)
        return rc;
    if (x < min)
        return ps_errf(e, PS_EINPUT, "%s: must be an integer >= %lld, got %lld", path,
                       (long long)min, x);
    if (x > ((long long)1 << 40))
        return ps_errf(e, PS_EINPUT, "%s: %lld is too large", path, x);
    *out = x;
    return 0;
}

static int parse_range(const json_t *v, const char *path, int64_t min, int is_log, dim_spec *ds,
                       ps_err *e)
{
    char p[512];
    if (!json_is_array(v) || json_array_size(v) < 2 || json_array_size(v) > 3)
        return ps_errf(e, PS_EINPUT, "%s: expected [from, to] or [from, to, count]", path);
    int64_t lo, hi, cnt = 8;
    snprintf(p, sizeof p, "%s[0]", path);
    int rc = parse_int_value(json_array_get(v, 0), p, min, &lo, e);
    snprintf(p, sizeof p, "%s[1]", path);
    if (!rc)
        rc = parse_int_value(json_array_get(v, 1), p, min, &hi, e);
    if (!rc && json_array_size(v) == 3) {
        snprintf(p, sizeof p, "%s[2]", path);
        rc = parse_int_value(json_array_get(v, 2), p, 1, &cnt, e);
    }
    if (rc)
        return rc;
    if (hi < lo)
        return ps_errf(e, PS_EINPUT, "%s: range from %lld to %lld is empty", path, (long long)lo,
                       (long long)hi);
    if (is_log && lo < 1)
        return ps_errf(e, PS_EINPUT, "%s: a log range must start at >= 1", path);
    if (cnt > MAX_VALUES)
        return ps_errf(e, PS_EINPUT, "%s: at most %d values", path, MAX_VALUES);
    ds->is_range = 1;
    ds->log = is_log;
    ds->lo = lo;
    ds->hi = hi;
    ds->vals = calloc((size_t)cnt, sizeof *ds->vals);
    if (!ds->vals)
        return ps_errf(e, PS_ERUN, "out of memory");
    for (int64_t i = 0; i < cnt; i++) {
        double f = cnt == 1 ? 0 : (double)i / (double)(cnt - 1), x;
        if (is_log)
            x = exp(log((double)lo) + f * (log((double)hi) - log((double)lo)));
        else
            x = lo + f * (double)(hi - lo);
        int64_t xi = llround(x);
        if (ds->nvals == 0 || ds->vals[ds->nvals - 1] != xi)
            ds->vals[ds->nvals++] = xi;
    }
    return 0;
}

static int parse_dim(const json_t *v, const char *path, const char *kind, int self, int64_t min,
                     dim_spec *ds, ps_err *e)
{
    memset(ds, 0, sizeof *ds);
    ds->tie = -1;
    char p[512];
    if (json_is_string(v)) {
        int t = ps_op_dim_index(kind, json_string_value(v));
        if (t < 0 || t == self)
            return ps_errf(e, PS_EINPUT, "%s: \"%s\" is not another dim of %s to tie to", path,
                           json_string_value(v), kind);
        ds->tie = t;
        return 0;
    }
    if (json_is_object(v)) {
        const json_t *lg = json_object_get(v, "log"), *ln = json_object_get(v, "lin");
        if (json_object_size(v) != 1 || (!lg && !ln))
            return ps_errf(e, PS_EINPUT, "%s: expected {\"log\": [from, to, count]} or "
                                         "{\"lin\": [from, to, count]}",
                           path);
        snprintf(p, sizeof p, "%s.%s", path, lg ? "log" : "lin");
        return parse_range(lg ? lg : ln, p, min, lg != NULL, ds, e);
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n == 0)
            return ps_errf(e, PS_EINPUT, "%s: empty list", path);
        if (n > MAX_VALUES)
            return ps_errf(e, PS_EINPUT, "%s: at most %d values", path, MAX_VALUES);
        ds->vals = calloc(n, sizeof *ds->vals);
        if (!ds->vals)
            return ps_errf(e, PS_ERUN, "out of memory");
        for (size_t i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            int rc = parse_int_value(json_array_get(v, i), p, min, &ds->vals[i], e);
            if (rc)
                return rc;
        }
        ds->nvals = (int)n;
        return 0;
    }
    ds->vals = calloc(1, sizeof *ds->vals);
    if (!ds->vals)
        return ps_errf(e, PS_ERUN, "out of memory");
    ds->nvals = 1;
    return parse_int_value(v, path, min, &ds->vals[0], e);
}

/* A string or a list of strings, each checked by ok(). */
static int parse_names(const json_t *v, const char *path, const char *what,
                       int (*ok)(const char *, const void *), const void *arg, const char **out,
                       int max, int *n, ps_err *e)
{
    if (!v)
        return 0;
    const json_t *items[32];
    int cnt = 0;
    if (json_is_string(v))
        items[cnt++] = v;
    else if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= 32) {
        for (size_t i = 0; i < json_array_size(v); i++)
            items[cnt++] = json_array_get(v, i);
    } else
        return ps_errf(e, PS_EINPUT, "%s: expected a %s or a non-empty list of them", path, what);
    if (cnt > max)
        return ps_errf(e, PS_EINPUT, "%s: too many values", path);
    for (int i = 0; i < cnt; i++) {
        if (!json_is_string(items[i]) || !ok(json_string_value(items[i]), arg))
            return ps_errf(e, PS_EINPUT, "%s[%d]: not a valid %s", path, i, what);
        out[i] = json_string_value(items[i]);
    }
    *n = cnt;
    return 0;
}

static int dtype_ok(const char *s, const void *arg)
{
    (void)arg;
    return ps_op_dtype_valid(s);
}

static int variant_ok(const char *s, const void *arg)
{
    const char *const *vs = ps_op_variants((const char *)arg);
    for (int i = 0; vs && vs[i]; i++)
        if (!strcmp(vs[i], s))
            return 1;
    return 0;
}

static void free_dims(dim_spec *ds, int n)
{
    for (int i = 0; i < n; i++)
        free(ds[i].vals);
}

static int expand_grid(entry_ctx *c, const char *kind, dim_spec *ds, int nd, ps_err *e)
{
    int idx[PS_OP_MAXDIM] = {0};
    for (;;) {
        int64_t d[PS_OP_MAXDIM] = {0};
        for (int i = 0; i < nd; i++)
            if (ds[i].tie < 0)
                d[i] = ds[i].vals[idx[i]];
        for (int i = 0; i < nd; i++)
            if (ds[i].tie >= 0)
                d[i] = d[ds[i].tie];
        int rc = push_shape(c, kind, d, e);
        if (rc)
            return rc;
        int i = nd - 1;
        for (; i >= 0; i--) {
            if (ds[i].tie >= 0)
                continue;
            if (++idx[i] < ds[i].nvals)
                break;
            idx[i] = 0;
        }
        if (i < 0)
            return 0;
    }
}

static int expand_sample(entry_ctx *c, const char *kind, dim_spec *ds, int nd,
                         const json_t *sample, const char *path, ps_err *e)
{
    static const char *const keys[] = {"count", "seed", "multiple", NULL};
    long long count = 0, seed = 1, mult = 1;
    int rc = ps_json_check_keys(sample, path, keys, e);
    if (!rc)
        rc = ps_json_get_int(sample, path, "count", 1, &count, e);
    if (!rc)
        rc = ps_json_get_int(sample, path, "seed", 0, &seed, e);
    if (!rc)
        rc = ps_json_get_int(sample, path, "multiple", 0, &mult, e);
    if (rc)
        return rc;
    if (count < 1 || count > MAX_SUITE_OPS)
        return ps_errf(e, PS_EINPUT, "%s.count: must be in [1, %d]", path, MAX_SUITE_OPS);
    if (mult < 1)
        return ps_errf(e, PS_EINPUT, "%s.multiple: must be >= 1", path);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r)
        return ps_errf(e, PS_ERUN, "out of memory");
    gsl_rng_set(r, (unsigned long)seed);
    size_t want = c->added + (size_t)count;
    for (long long tries = 0; c->added < want && tries < 50 * count; tries++) {
        int64_t d[PS_OP_MAXDIM] = {0};
        for (int i = 0; i < nd; i++) {
            if (ds[i].tie >= 0)
                continue;
            if (!ds[i].is_range) {
                d[i] = ds[i].vals[gsl_rng_uniform_int(r, (unsigned long)ds[i].nvals)];
                continue;
            }
            double u = gsl_rng_uniform(r), x;
            if (ds[i].log)
                x = exp(log((double)ds[i].lo) +
                        u * (log((double)ds[i].hi) - log((double)ds[i].lo)));
            else
                x = (double)ds[i].lo + u * (double)(ds[i].hi - ds[i].lo);
            int64_t v = llround(x / (double)mult) * mult;
            d[i] = v < ds[i].lo ? ds[i].lo : v > ds[i].hi ? ds[i].hi : v;
        }
        for (int i = 0; i < nd; i++)
            if (ds[i].tie >= 0)
                d[i] = d[ds[i].tie];
        if ((rc = push_shape(c, kind, d, e)))
            break;
    }
    gsl_rng_free(r);
    return rc;
}

static int parse_entry(ps_suite *s, const json_t *ent, size_t idx, ps_err *e)
{
    char where[64], p[512];
    snprintf(where, sizeof where, "$.ops[%zu]", idx);
    static const char *const keys[] = {"kind",      "dtype",     "variant", "grid",
                                       "points",    "sample",    "max_flops", "max_bytes",
                                       "warmup",    "repeats",   "min_time_s", "backend",
                                       "comment",   NULL};
    if (!json_is_object(ent))
        return ps_errf(e, PS_EINPUT, "%s: expected an object", where);
    int rc = ps_json_check_keys(ent, where, keys, e);
    if (rc)
        return rc;
    const char *kind = NULL;
    if ((rc = ps_json_get_str(ent, where, "kind", 1, &kind, e)))
        return rc;
    if (!ps_op_kind_valid(kind))
        return ps_errf(e, PS_EINPUT, "%s.kind: unknown op kind '%s' (expected one of: %s)", where,
                       kind, ps_op_kind_list());
    entry_ctx c = {.s = s, .where = where};
    const char *dts[32] = {"fp32"}, *vars[32] = {ps_op_variants(kind)[0]};
    c.dtypes = dts;
    c.variants = vars;
    c.ndtypes = c.nvariants = 1;
    snprintf(p, sizeof p, "%s.dtype", where);
    if ((rc = parse_names(json_object_get(ent, "dtype"), p, "dtype", dtype_ok, NULL, dts, 32,
                          &c.ndtypes, e)))
        return rc;
    snprintf(p, sizeof p, "%s.variant", where);
    if ((rc = parse_names(json_object_get(ent, "variant"), p, "variant", variant_ok, kind, vars,
                          32, &c.nvariants, e)))
        return rc;
    c.warmup = s->warmup;
    c.repeats = s->repeats;
    c.min_time_s = s->min_time_s;
    long long ll;
    ll = c.warmup;
    if ((rc = ps_json_get_int(ent, where, "warmup", 0, &ll, e)))
        return rc;
    if (ll < 0 || ll > 1000)
        return ps_errf(e, PS_EINPUT, "%s.warmup: must be in [0, 1000]", where);
    c.warmup = (int)ll;
    ll = c.repeats;
    if ((rc = ps_json_get_int(ent, where, "repeats", 0, &ll, e)))
        return rc;
    if (ll < 1 || ll > 10000)
        return ps_errf(e, PS_EINPUT, "%s.repeats: must be in [1, 10000]", where);
    c.repeats = (int)ll;
    if ((rc = ps_json_get_num(ent, where, "min_time_s", 0, &c.min_time_s, e)))
        return rc;
    if (c.min_time_s < 0 || c.min_time_s > 60)
        return ps_errf(e, PS_EINPUT, "%s.min_time_s: must be in [0, 60]", where);
    if ((rc = ps_json_get_num(ent, where, "max_flops", 0, &c.max_flops, e)) ||
        (rc = ps_json_get_num(ent, where, "max_bytes", 0, &c.max_bytes, e)) ||
        (rc = ps_json_get_str(ent, where, "backend", 0, &c.backend, e)))
        return rc;
    if (c.backend && strlen(c.backend) >= sizeof s->items[0].backend)
        return ps_errf(e, PS_EINPUT, "%s.backend: too long", where);

    const json_t *grid = json_object_get(ent, "grid"), *points = json_object_get(ent, "points");
    const json_t *sample = json_object_get(ent, "sample");
    if (!!grid == !!points)
        return ps_errf(e, PS_EINPUT, "%s: give exactly one of \"grid\" and \"points\"", where);
    if (sample && !grid)
        return ps_errf(e, PS_EINPUT, "%s.sample: needs a \"grid\" to sample from", where);

    if (points) {
        if (!json_is_array(points) || json_array_size(points) == 0)
            return ps_errf(e, PS_EINPUT, "%s.points: expected a non-empty list of shapes", where);
        for (size_t i = 0; i < json_array_size(points); i++) {
            snprintf(p, sizeof p, "%s.points[%zu]", where, i);
            const json_t *pt = json_array_get(points, i);
            /* A point is an op object without kind/dtype/variant: reuse the
             * op parser for its messages. */
            json_t *tmp = json_is_object(pt) ? json_deep_copy(pt) : NULL;
            if (!tmp)
                return ps_errf(e, PS_EINPUT, "%s: expected an object of dims", p);
            if (json_object_get(tmp, "kind"))
                rc = ps_errf(e, PS_EINPUT, "%s.kind: give the kind on the entry, not the point",
                             p);
            else {
                json_object_set_new(tmp, "kind", json_string(kind));
                ps_op op;
                rc = ps_op_from_json(tmp, p, &op, e);
                if (!rc)
                    rc = push_shape(&c, kind, op.d, e);
            }
            json_decref(tmp);
            if (rc)
                return rc;
        }
    } else {
        if (!json_is_object(grid))
            return ps_errf(e, PS_EINPUT, "%s.grid: expected an object of dims", where);
        int nd = ps_op_ndims(kind);
        dim_spec ds[PS_OP_MAXDIM];
        memset(ds, 0, sizeof ds);
        const char *gk;
        json_t *gv;
        snprintf(p, sizeof p, "%s.grid", where);
        json_object_foreach((json_t *)grid, gk, gv) {
            if (ps_op_dim_index(kind, gk) < 0) {
                char list[256] = "";
                for (int i = 0; i < nd; i++) {
                    size_t l = strlen(list);
                    snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "",
                             ps_op_dim_name(kind, i));
                }
                return ps_errf(e, PS_EINPUT, "%s.%s: %s has no dim '%s' (dims: %s)", p, gk,
                               kind, gk, list);
            }
        }
        int is_conv = ps_op_kind_id_of(kind) == PS_OPK_CONV2D;
        for (int i = 0; i < nd && !rc; i++) {
            const char *dn = ps_op_dim_name(kind, i);
            const json_t *v = json_object_get(grid, dn);
            char dp[512];
            snprintf(dp, sizeof dp, "%s.grid.%s", where, dn);
            if (!v) {
                if (is_conv && i >= 7) {
                    ds[i].tie = -1;
                    ds[i].vals = calloc(1, sizeof *ds[i].vals);
                    if (!ds[i].vals) {
                        rc = ps_errf(e, PS_ERUN, "out of memory");
                        break;
                    }
                    ds[i].vals[0] = i == 7 ? 1 : 0;
                    ds[i].nvals = 1;
                    continue;
                }
                rc = ps_errf(e, PS_EINPUT, "%s: missing", dp);
                break;
            }
            rc = parse_dim(v, dp, kind, i, (is_conv && i == 8) ? 0 : 1, &ds[i], e);
        }
        for (int i = 0; i < nd && !rc; i++)
            if (ds[i].tie >= 0 && ds[ds[i].tie].tie >= 0)
                rc = ps_errf(e, PS_EINPUT, "%s.grid.%s: ties to '%s', which is itself a tie",
                             where, ps_op_dim_name(kind, i), ps_op_dim_name(kind, ds[i].tie));
        if (!rc) {
            if (sample) {
                snprintf(p, sizeof p, "%s.sample", where);
                rc = expand_sample(&c, kind, ds, nd, sample, p, e);
            } else
                rc = expand_grid(&c, kind, ds, nd, e);
        }
        free_dims(ds, nd);
        if (rc)
            return rc;
    }
    if (c.valid == 0)
        return ps_errf(e, PS_EINPUT,
                       "%s: no valid op point (max_flops/max_bytes or cross-dim constraints "
                       "such as sq <= skv removed all of them)",
                       where);
    return 0;
}

static ps_suite *parse(const json_t *root, const char *text, ps_err *e)
{
    static const char *const keys[] = {"name",  "description", "warmup", "repeats", "min_time_s",
                                       "peaks", "ops",         "comment", NULL};
    if (!json_is_object(root)) {
        ps_errf(e, PS_EINPUT, "$: expected a suite object");
        return NULL;
    }
    if (ps_json_check_keys(root, "$", keys, e))
        return NULL;
    ps_suite *s = calloc(1, sizeof *s);
    if (!s || !(s->text = strdup(text))) {
        free(s);
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    const char *name = "suite";
    long long warm = 1, rep = 5, gn = 1024, mb = 64ll << 20;
    s->min_time_s = 0.002;
    int rc = ps_json_get_str(root, "$", "name", 0, &name, e);
    if (!rc)
        rc = ps_json_get_int(root, "$", "warmup", 0, &warm, e);
    if (!rc)
        rc = ps_json_get_int(root, "$", "repeats", 0, &rep, e);
    if (!rc)
        rc = ps_json_get_num(root, "$", "min_time_s", 0, &s->min_time_s, e);
    if (!rc && (warm < 0 || warm > 1000))
        rc = ps_errf(e, PS_EINPUT, "$.warmup: must be in [0, 1000]");
    if (!rc && (rep < 1 || rep > 10000))
        rc = ps_errf(e, PS_EINPUT, "$.repeats: must be in [1, 10000]");
    if (!rc && (s->min_time_s < 0 || s->min_time_s > 60))
        rc = ps_errf(e, PS_EINPUT, "$.min_time_s: must be in [0, 60]");
    const json_t *pk = json_object_get(root, "peaks");
    if (!rc && pk) {
        static const char *const pkeys[] = {"gemm_n", "memcpy_bytes", NULL};
        rc = ps_json_check_keys(pk, "$.peaks", pkeys, e);
        if (!rc)
            rc = ps_json_get_int(pk, "$.peaks", "gemm_n", 0, &gn, e);
        if (!rc)
            rc = ps_json_get_int(pk, "$.peaks", "memcpy_bytes", 0, &mb, e);
        if (!rc && (gn < 16 || gn > 65536))
            rc = ps_errf(e, PS_EINPUT, "$.peaks.gemm_n: must be in [16, 65536]");
        if (!rc && (mb < 4096 || mb > (16ll << 30)))
            rc = ps_errf(e, PS_EINPUT, "$.peaks.memcpy_bytes: must be in [4096, 16 GiB]");
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->warmup = (int)warm;
    s->repeats = (int)rep;
    s->peak_gemm_n = gn;
    s->peak_memcpy_bytes = mb;
    const json_t *ops = json_object_get(root, "ops");
    if (!rc && !json_is_array(ops))
        rc = ps_errf(e, PS_EINPUT, "$.ops: %s", ops ? "expected a list of op entries"
                                                    : "missing (required)");
    for (size_t i = 0; !rc && i < json_array_size(ops); i++)
        rc = parse_entry(s, json_array_get(ops, i), i, e);
    if (!rc && s->n == 0)
        rc = ps_errf(e, PS_EINPUT, "$.ops: the suite has no ops");
    if (rc) {
        ps_suite_free(s);
        return NULL;
    }
    return s;
}

ps_suite *ps_suite_load_str(const char *text, const char *what, ps_err *e)
{
    json_t *root = ps_json_load_str(text, what, e);
    if (!root)
        return NULL;
    ps_suite *s = parse(root, text, e);
    json_decref(root);
    if (!s)
        ps_err_prefix(e, "%s: ", what);
    return s;
}

ps_suite *ps_suite_load_file(const char *path, ps_err *e)
{
    size_t len;
    char *text = ps_file_read(path, &len, e);
    if (!text) {
        if (e)
            e->code = PS_EINPUT;
        return NULL;
    }
    ps_suite *s = ps_suite_load_str(text, path, e);
    free(text);
    return s;
}

int ps_suite_builtin_path(const char *name, char *out, size_t n, ps_err *e)
{
    char cand[4][PATH_MAX + 64];
    int nc = 0;
    const char *env = getenv("PLANSIM_SUITES");
    if (env && *env)
        snprintf(cand[nc++], sizeof cand[0], "%s/%s.json", env, name);
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char dir[PATH_MAX];
        ps_path_dir(exe, dir, sizeof dir);
        snprintf(cand[nc++], sizeof cand[0], "%s/../profile/suites/%s.json", dir, name);
        snprintf(cand[nc++], sizeof cand[0], "%s/../share/plansim/suites/%s.json", dir, name);
    }
    snprintf(cand[nc++], sizeof cand[0], "profile/suites/%s.json", name);
    for (int i = 0; i < nc; i++)
        if (ps_file_exists(cand[i])) {
            snprintf(out, n, "%s", cand[i]);
            return 0;
        }
    char list[4 * (PATH_MAX + 64)] = "";
    for (int i = 0; i < nc; i++) {
        size_t ll = strlen(list);
        snprintf(list + ll, sizeof list - ll, "%s%s", i ? ", " : "", cand[i]);
    }
    return ps_errf(e, PS_EINPUT, "built-in suite '%s' not found (looked in: %s; set "
                                 "PLANSIM_SUITES to the folder holding it)",
                   name, list);
}

double ps_suite_estimate_s(const ps_suite *s, double flops_per_s, double bytes_per_s,
                           double overhead_s)
{
    double total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const ps_suite_item *it = &s->items[i];
        double f = ps_op_flops(&it->op), b = ps_op_bytes(&it->op);
        double t = overhead_s;
        double tf = flops_per_s > 0 ? f / flops_per_s : 0, tb = bytes_per_s > 0 ? b / bytes_per_s : 0;
        t += tf > tb ? tf : tb;
        double meas = t > it->min_time_s ? t : it->min_time_s;
        /* Warm-up runs, the calibration runs (about a tenth of a
         * measurement), the repeats, and filling the inputs with random data
         * (about 1 GB/s). */
        total += (it->warmup + 1) * t + 0.15 * meas + it->repeats * meas + b / 1e9;
    }
    return total;
}
