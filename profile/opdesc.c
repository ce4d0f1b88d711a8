#include "opdesc.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

typedef struct kind_def {
    const char *name;
    const char *dims[PS_OP_MAXDIM + 1];
    const char *variants[8];
} kind_def;

/* Indexed by ps_op_kind_id. */
static const kind_def KINDS[PS_OPK_COUNT] = {
    {"gemm", {"m", "n", "k", NULL}, {"nn", "nt", "tn", "tt", NULL}},
    {"batched_gemm", {"b", "m", "n", "k", NULL}, {"nn", "nt", "tn", "tt", NULL}},
    {"attention", {"b", "h", "sq", "skv", "d", NULL}, {"causal", "none", "tree", NULL}},
    {"conv2d",
     {"n", "c", "h", "w", "k", "r", "s", "stride", "pad", NULL},
     {"fwd", "bwd_input", "bwd_weight", NULL}},
    {"elementwise", {"n", NULL}, {"relu", "gelu", "add", "mul", "tanh", "sigmoid", NULL}},
    {"reduction", {"rows", "cols", NULL}, {"softmax", "layernorm", "sum", NULL}},
    {"embedding_bag", {"rows", "dim", "bag", "batch", NULL}, {"sum", "mean", NULL}},
    {"memcpy", {"bytes", NULL}, {"d2d", "h2d", "d2h", "peer", "host", NULL}},
};

static const struct {
    const char *name;
    double bytes;
} DTYPES[] = {{"fp32", 4}, {"fp64", 8}, {"fp16", 2}, {"bf16", 2},
              {"tf32", 4}, {"fp8", 1},  {"int8", 1}, {"int4", 0.5}};

int ps_op_kind_id_of(const char *kind)
{
    if (!kind)
        return -1;
    for (int i = 0; i < PS_OPK_COUNT; i++)
        if (strcmp(KINDS[i].name, kind) == 0)
            return i;
    return -1;
}

int ps_op_kind_valid(const char *kind)
{
    return ps_op_kind_id_of(kind) >= 0;
}

const char *ps_op_kind_name(int id)
{
    return id >= 0 && id < PS_OPK_COUNT ? KINDS[id].name : "?";
}

const char *ps_op_kind_list(void)
{
    return "gemm, batched_gemm, attention, conv2d, elementwise, reduction, embedding_bag, "
           "memcpy";
}

static const kind_def *def_of(const char *kind)
{
    int id = ps_op_kind_id_of(kind);
    return id < 0 ? NULL : &KINDS[id];
}

int ps_op_ndims(const char *kind)
{
    const kind_def *k = def_of(kind);
    int n = 0;
    if (k)
        while (k->dims[n])
            n++;
    return n;
}

const char *ps_op_dim_name(const char *kind, int i)
{
    const kind_def *k = def_of(kind);
    if (!k || i < 0 || i >= ps_op_ndims(kind))
        return NULL;
    return k->dims[i];
}

int ps_op_dim_index(const char *kind, const char *dim)
{
    const kind_def *k = def_of(kind);
    if (!k || !dim)
        return -1;
    for (int i = 0; k->dims[i]; i++)
        if (strcmp(k->dims[i], dim) == 0)
            return i;
    return -1;
}

int64_t ps_op_dim(const ps_op *op, const char *dim)
{
    int i = ps_op_dim_index(op->kind, dim);
    return i < 0 ? 0 : op->d[i];
}

const char *const *ps_op_variants(const char *kind)
{
    const kind_def *k = def_of(kind);
    return k ? k->variants : NULL;
}

double ps_op_dtype_bytes(const char *dtype)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (dtype && strcmp(DTYPES[i].name, dtype) == 0)
            return DTYPES[i].bytes;
    return 0;
}

int ps_op_dtype_valid(const char *dtype)
{
    return ps_op_dtype_bytes(dtype) > 0;
}

static int variant_valid(const kind_def *k, const char *v)
{
    for (int i = 0; k->variants[i]; i++)
        if (strcmp(k->variants[i], v) == 0)
            return 1;
    return 0;
}

static void join(const char *const *list, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; list[i]; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? ", " : "", list[i]);
    }
}

static const char *dtype_list(void)
{
    return "fp32, fp64, fp16, bf16, tf32, fp8, int8, int4";
}

int ps_op_init(ps_op *op, const char *kind, ps_err *e)
{
    memset(op, 0, sizeof *op);
    const kind_def *k = def_of(kind);
    if (!k)
        return ps_errf(e, PS_EINPUT, "unknown op kind '%s' (expected one of: %s)",
                       kind ? kind : "(null)", ps_op_kind_list());
    snprintf(op->kind, sizeof op->kind, "%s", k->name);
    snprintf(op->dtype, sizeof op->dtype, "fp32");
    snprintf(op->variant, sizeof op->variant, "%s", k->variants[0]);
    if (ps_op_kind_id_of(kind) == PS_OPK_CONV2D)
        op->d[7] = 1; /* stride; pad stays 0 */
    return 0;
}

int64_t ps_op_conv_out_h(const ps_op *op)
{
    int64_t h = op->d[2], r = op->d[5], st = op->d[7], pad = op->d[8];
    if (st < 1 || h + 2 * pad < r)
        return 0;
    return (h + 2 * pad - r) / st + 1;
}

int64_t ps_op_conv_out_w(const ps_op *op)
{
    int64_t w = op->d[3], s = op->d[6], st = op->d[7], pad = op->d[8];
    if (st < 1 || w + 2 * pad < s)
        return 0;
    return (w + 2 * pad - s) / st + 1;
}

int ps_op_validate(const ps_op *op, const char *where, ps_err *e)
{
    if (!where)
        where = "op";
    int id = ps_op_kind_id_of(op->kind);
    if (id < 0)
        return ps_errf(e, PS_EINPUT, "%s.kind: unknown op kind '%s' (expected one of: %s)", where,
                       op->kind, ps_op_kind_list());
    const kind_def *k = &KINDS[id];
    for (int i = 0; k->dims[i]; i++) {
        int64_t min = (id == PS_OPK_CONV2D && i == 8) ? 0 : 1;
        if (op->d[i] < min)
            return ps_errf(e, PS_EINPUT, "%s.%s: must be an integer >= %lld, got %lld", where,
                           k->dims[i], (long long)min, (long long)op->d[i]);
        /* Keep products of a few dims inside int64 and double exactness. */
        if (op->d[i] > ((int64_t)1 << 40))
            return ps_errf(e, PS_EINPUT, "%s.%s: %lld is too large", where, k->dims[i],
                           (long long)op->d[i]);
    }
    if (!ps_op_dtype_valid(op->dtype))
        return ps_errf(e, PS_EINPUT, "%s.dtype: unknown dtype '%s' (expected one of: %s)", where,
                       op->dtype, dtype_list());
    if (!variant_valid(k, op->variant)) {
        char list[256];
        join(k->variants, list, sizeof list);
        return ps_errf(e, PS_EINPUT, "%s.variant: '%s' is not a %s variant (expected one of: %s)",
                       where, op->variant, k->name, list);
    }
    if (id == PS_OPK_ATTENTION && op->d[2] > op->d[3])
        return ps_errf(e, PS_EINPUT,
                       "%s.sq: %lld queries but only skv=%lld keys (queries are the last sq of "
                       "the skv positions)",
                       where, (long long)op->d[2], (long long)op->d[3]);
    if (id == PS_OPK_CONV2D) {
        if (ps_op_conv_out_h(op) < 1)
            return ps_errf(e, PS_EINPUT, "%s.r: filter height %lld exceeds h + 2 pad = %lld",
                           where, (long long)op->d[5], (long long)(op->d[2] + 2 * op->d[8]));
        if (ps_op_conv_out_w(op) < 1)
            return ps_errf(e, PS_EINPUT, "%s.s: filter width %lld exceeds w + 2 pad = %lld",
                           where, (long long)op->d[6], (long long)(op->d[3] + 2 * op->d[8]));
    }
    return 0;
}

int ps_op_make(ps_op *op, const char *kind, const char *dtype, const char *variant,
               const int64_t *dims, int ndims, ps_err *e)
{
    int rc = ps_op_init(op, kind, e);
    if (rc)
        return rc;
    if (dtype)
        snprintf(op->dtype, sizeof op->dtype, "%s", dtype);
    if (variant)
        snprintf(op->variant, sizeof op->variant, "%s", variant);
    int nd = ps_op_ndims(kind);
    if (ndims > nd)
        return ps_errf(e, PS_EINPUT, "%s takes %d dims, got %d", kind, nd, ndims);
    for (int i = 0; i < ndims; i++)
        op->d[i] = dims[i];
    return ps_op_validate(op, kind, e);
}

int ps_op_from_json_ex(const json_t *j, const char *where, const char *const *extra, ps_op *op,
                       ps_err *e)
{
    if (!where)
        where = "op";
    if (!json_is_object(j))
        return ps_errf(e, PS_EINPUT, "%s: expected an op object like "
                                     "{\"kind\":\"gemm\",\"m\":512,\"n\":512,\"k\":512}, got %s",
                       where, j ? ps_json_type_name(j) : "nothing");
    const char *kind = NULL;
    int rc = ps_json_get_str(j, where, "kind", 1, &kind, e);
    if (rc)
        return rc;
    if (!ps_op_kind_valid(kind))
        return ps_errf(e, PS_EINPUT, "%s.kind: unknown op kind '%s' (expected one of: %s)", where,
                       kind, ps_op_kind_list());
    ps_op_init(op, kind, e);
    const kind_def *k = def_of(kind);

    const char *allowed[PS_OP_MAXDIM + 24];
    int na = 0;
    allowed[na++] = "kind";
    allowed[na++] = "dtype";
    allowed[na++] = "variant";
    for (int i = 0; k->dims[i]; i++)
        allowed[na++] = k->dims[i];
    for (int i = 0; extra && extra[i] && na < (int)(sizeof allowed / sizeof *allowed) - 1; i++)
        allowed[na++] = extra[i];
    allowed[na] = NULL;
    if ((rc = ps_json_check_keys(j, where, allowed, e)))
        return rc;

    for (int i = 0; k->dims[i]; i++) {
        long long v = op->d[i];
        int required = !(ps_op_kind_id_of(kind) == PS_OPK_CONV2D && i >= 7);
        if ((rc = ps_json_get_int(j, where, k->dims[i], required, &v, e)))
            return rc;
        op->d[i] = v;
    }
    const char *s = NULL;
    if ((rc = ps_json_get_str(j, where, "dtype", 0, &s, e)))
        return rc;
    if (s) {
        if (strlen(s) >= sizeof op->dtype || !ps_op_dtype_valid(s))
            return ps_errf(e, PS_EINPUT, "%s.dtype: unknown dtype '%s' (expected one of: %s)",
                           where, s, dtype_list());
        snprintf(op->dtype, sizeof op->dtype, "%s", s);
    }
    s = NULL;
    if ((rc = ps_json_get_str(j, where, "variant", 0, &s, e)))
        return rc;
    if (s) {
        if (strlen(s) >= sizeof op->variant || !variant_valid(k, s)) {
            char list[256];
            join(k->variants, list, sizeof list);
            return ps_errf(e, PS_EINPUT,
                           "%s.variant: '%s' is not a %s variant (expected one of: %s)", where, s,
                           kind, list);
        }
        snprintf(op->variant, sizeof op->variant, "%s", s);
    }
    return ps_op_validate(op, where, e);
}

int ps_op_from_json(const json_t *j, const char *where, ps_op *op, ps_err *e)
{
    return ps_op_from_json_ex(j, where, NULL, op, e);
}

json_t *ps_op_to_json(const ps_op *op)
{
    json_t *j = json_object();
    json_object_set_new(j, "kind", json_string(op->kind));
    int nd = ps_op_ndims(op->kind);
    for (int i = 0; i < nd; i++)
        json_object_set_new(j, ps_op_dim_name(op->kind, i), json_integer(op->d[i]));
    json_object_set_new(j, "dtype", json_string(op->dtype));
    json_object_set_new(j, "variant", json_string(op->variant));
    return j;
}

/* (query, key) pairs a causal mask allows when the sq queries are the last
 * sq of skv positions. */
static double causal_pairs(double sq, double skv)
{
    return sq * (skv - sq) + sq * (sq + 1) / 2;
}

static double elementwise_flops_per(const char *v)
{
    if (!strcmp(v, "gelu"))
        return 8;
    if (!strcmp(v, "tanh") || !strcmp(v, "sigmoid"))
        return 4;
    return 1;
}

double ps_op_flops(const ps_op *op)
{
    const int64_t *d = op->d;
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM: return 2.0 * d[0] * d[1] * d[2];
    case PS_OPK_BATCHED_GEMM: return 2.0 * d[0] * d[1] * d[2] * d[3];
    case PS_OPK_ATTENTION: {
        double pairs = !strcmp(op->variant, "causal") ? causal_pairs(d[2], d[3])
                                                      : (double)d[2] * d[3];
        return 4.0 * d[0] * d[1] * pairs * d[4];
    }
    case PS_OPK_CONV2D:
        return 2.0 * d[0] * d[4] * ps_op_conv_out_h(op) * ps_op_conv_out_w(op) * d[1] * d[5] *
               d[6];
    case PS_OPK_ELEMENTWISE: return elementwise_flops_per(op->variant) * d[0];
    case PS_OPK_REDUCTION: {
        double f = !strcmp(op->variant, "softmax") ? 5 : !strcmp(op->variant, "layernorm") ? 8 : 1;
        return f * d[0] * d[1];
    }
    case PS_OPK_EMBEDDING_BAG: return (double)d[3] * d[2] * d[1];
    default: return 0;
    }
}

double ps_op_bytes(const ps_op *op)
{
    const int64_t *d = op->d;
    double w = ps_op_dtype_bytes(op->dtype);
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM: return w * ((double)d[0] * d[2] + (double)d[2] * d[1] + (double)d[0] * d[1]);
    case PS_OPK_BATCHED_GEMM:
        return w * d[0] *
               ((double)d[1] * d[3] + (double)d[3] * d[2] + (double)d[1] * d[2]);
    case PS_OPK_ATTENTION: {
        double b = w * d[0] * d[1] * (2.0 * d[2] * d[4] + 2.0 * d[3] * d[4]);
        if (!strcmp(op->variant, "tree"))
            b += (double)d[2] * d[3];
        return b;
    }
    case PS_OPK_CONV2D:
        return w * ((double)d[0] * d[1] * d[2] * d[3] + (double)d[4] * d[1] * d[5] * d[6] +
                    (double)d[0] * d[4] * ps_op_conv_out_h(op) * ps_op_conv_out_w(op));
    case PS_OPK_ELEMENTWISE: {
        int binary = !strcmp(op->variant, "add") || !strcmp(op->variant, "mul");
        return w * d[0] * (binary ? 3.0 : 2.0);
    }
    case PS_OPK_REDUCTION: {
        double rc = (double)d[0] * d[1];
        if (!strcmp(op->variant, "softmax"))
            return 2 * w * rc;
        if (!strcmp(op->variant, "layernorm"))
            return 2 * w * rc + 2 * w * d[1];
        return w * rc + w * d[0];
    }
    case PS_OPK_EMBEDDING_BAG:
        return w * d[3] * d[2] * d[1] + 8.0 * d[3] * d[2] + w * d[3] * d[1];
    case PS_OPK_MEMCPY: {
        int local = !strcmp(op->variant, "host") || !strcmp(op->variant, "d2d");
        return (local ? 2.0 : 1.0) * d[0];
    }
    default: return 0;
    }
}

void ps_op_shape_str(const ps_op *op, char *buf, size_t n)
{
    if (!n)
        return;
    buf[0] = '\0';
    int nd = ps_op_ndims(op->kind);
    for (int i = 0; i < nd; i++) {
        size_t l = strlen(buf);
        if (l >= n - 1)
            break;
        snprintf(buf + l, n - l, "%s%s=%lld", i ? "," : "", ps_op_dim_name(op->kind, i),
                 (long long)op->d[i]);
    }
}

void ps_op_describe(const ps_op *op, char *buf, size_t n)
{
    char shape[256];
    ps_op_shape_str(op, shape, sizeof shape);
    snprintf(buf, n, "%s %s %s %s", op->kind, op->dtype, op->variant, shape);
}

int ps_op_equal(const ps_op *a, const ps_op *b)
{
    if (strcmp(a->kind, b->kind) || strcmp(a->dtype, b->dtype) || strcmp(a->variant, b->variant))
        return 0;
    for (int i = 0; i < PS_OP_MAXDIM; i++)
        if (a->d[i] != b->d[i])
            return 0;
    return 1;
}
