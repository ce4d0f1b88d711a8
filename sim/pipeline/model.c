/* Model graphs: JSON, validation, building, costs.  See model.h; the
 * generators are in model_builtin.c. */
#include "sim/pipeline/model.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

/* Which byte fields the user (or generator) gave; the others are derived
 * from the shape, and are not written back, so that a saved model whose
 * shape is edited by hand stays consistent. */
enum { GIVEN_PARAM = 1, GIVEN_OUT = 2, GIVEN_ACT = 4 };

typedef struct op_rec {
    pp_model_op pub;
    char *id;
    ps_op *parts;
    int *inputs;
    int ninputs, capinputs;
    int *consumers;
    int given;
    int order; /* position in the source (file / build order) */
} op_rec;

struct pp_model {
    char *name;
    op_rec *ops;
    int nops, capops;
    int nedges;
    int finished;
    /* id -> index, open addressing (size a power of two, -1 = empty) */
    int *hash;
    size_t hcap;
    json_t *piper; /* the "piper" extension (a Piper instance), or NULL */
};

static int nomem(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "model: out of host memory");
}

static int hash_rebuild(pp_model *m)
{
    size_t cap = 16;
    while (cap < (size_t)m->nops * 2 + 2)
        cap *= 2;
    int *h = malloc(cap * sizeof *h);
    if (!h)
        return -1;
    for (size_t i = 0; i < cap; i++)
        h[i] = -1;
    for (int i = 0; i < m->nops; i++) {
        size_t k = ps_fnv1a_str(PS_FNV1A_OFFSET, m->ops[i].id) & (cap - 1);
        while (h[k] >= 0)
            k = (k + 1) & (cap - 1);
        h[k] = i;
    }
    free(m->hash);
    m->hash = h;
    m->hcap = cap;
    return 0;
}

int pp_model_find(const pp_model *m, const char *id)
{
    if (!m->hash || !id)
        return -1;
    size_t k = ps_fnv1a_str(PS_FNV1A_OFFSET, id) & (m->hcap - 1);
    while (m->hash[k] >= 0) {
        if (strcmp(m->ops[m->hash[k]].id, id) == 0)
            return m->hash[k];
        k = (k + 1) & (m->hcap - 1);
    }
    return -1;
}

static int hash_insert(pp_model *m, int idx)
{
    if ((size_t)(m->nops * 2 + 2) > m->hcap)
        return hash_rebuild(m);
    size_t k = ps_fnv1a_str(PS_FNV1A_OFFSET, m->ops[idx].id) & (m->hcap - 1);
    while (m->hash[k] >= 0)
        k = (k + 1) & (m->hcap - 1);
    m->hash[k] = idx;
    return 0;
}

static void op_free(op_rec *o)
{
    free(o->id);
    free(o->parts);
    free(o->inputs);
    free(o->consumers);
}

void pp_model_free(pp_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nops; i++)
        op_free(&m->ops[i]);
    free(m->ops);
    free(m->hash);
    free(m->name);
    if (m->piper)
        json_decref(m->piper);
    free(m);
}

pp_model *pp_model_new(const char *name, ps_err *e)
{
    pp_model *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name ? name : "model")) || hash_rebuild(m)) {
        pp_model_free(m);
        nomem(e);
        return NULL;
    }
    return m;
}

/* ---- kinds ---- */

static int kind_class(const char *kind)
{
    if (ps_op_kind_valid(kind))
        return PP_K_SHAPED;
    if (!strcmp(kind, "block"))
        return PP_K_BLOCK;
    if (!strcmp(kind, "concat"))
        return PP_K_CONCAT;
    if (!strcmp(kind, "input"))
        return PP_K_INPUT;
    if (!strcmp(kind, "opaque"))
        return PP_K_OPAQUE;
    return -1;
}

static const char *kinds_list(void)
{
    return "gemm, batched_gemm, attention, conv2d, elementwise, reduction, embedding_bag, "
           "memcpy, block, concat, input, opaque";
}

/* The dimension a micro-batch multiplies (shapes are per sample). */
static int batch_dim(const ps_op *op)
{
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM: return 0;          /* m */
    case PS_OPK_BATCHED_GEMM: return 0;  /* b */
    case PS_OPK_ATTENTION: return 0;     /* b */
    case PS_OPK_CONV2D: return 0;        /* n */
    case PS_OPK_ELEMENTWISE: return 0;   /* n */
    case PS_OPK_REDUCTION: return 0;     /* rows */
    case PS_OPK_EMBEDDING_BAG: return 3; /* batch */
    case PS_OPK_MEMCPY: return 0;        /* bytes */
    }
    return 0;
}

/* Per-sample defaults from a shape: output bytes, bytes stashed for the
 * backward pass (the op's inputs that its gradients read), weights. */
static void shape_bytes(const ps_op *op, double *out, double *act, double *param)
{
    double w = ps_op_dtype_bytes(op->dtype);
    const int64_t *d = op->d;
    *out = *act = *param = 0;
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM:
        *out = w * d[0] * d[1];
        *act = w * d[0] * d[2];
        *param = w * d[2] * d[1];
        break;
    case PS_OPK_BATCHED_GEMM:
        /* Both operands are activations (attention scores x values). */
        *out = w * d[0] * d[1] * d[2];
        *act = w * d[0] * (d[1] * d[3] + d[3] * d[2]);
        break;
    case PS_OPK_ATTENTION: {
        /* FlashAttention keeps q, k, v and the output (plus row statistics,
         * negligible): no sq x skv scores. */
        double bh = (double)d[0] * d[1];
        *out = w * bh * d[2] * d[4];
        *act = w * bh * (2.0 * d[2] + 2.0 * d[3]) * d[4];
        break;
    }
    case PS_OPK_CONV2D:
        *out = w * d[0] * d[4] * ps_op_conv_out_h(op) * ps_op_conv_out_w(op);
        *act = w * d[0] * d[1] * d[2] * d[3];
        *param = w * d[4] * d[1] * d[5] * d[6];
        break;
    case PS_OPK_ELEMENTWISE:
        *out = w * d[0];
        *act = w * d[0] * (strcmp(op->variant, "add") == 0 ? 0 : 1);
        break;
    case PS_OPK_REDUCTION:
        *out = w * d[0] * (strcmp(op->variant, "sum") == 0 ? 1 : d[1]);
        *act = w * d[0] * d[1];
        if (!strcmp(op->variant, "layernorm"))
            *param = 2 * w * d[1];
        break;
    case PS_OPK_EMBEDDING_BAG:
        *out = w * d[3] * d[1];
        *act = 8.0 * d[3] * d[2]; /* the indices */
        *param = w * d[0] * d[1];
        break;
    case PS_OPK_MEMCPY:
        *out = (double)d[0];
        break;
    }
}

/* ---- building ---- */

static int check_bytes(double v, const char *field, const char *id, ps_err *e)
{
    if (!isfinite(v) || v < 0)
        return ps_errf(e, PS_EINPUT, "op \"%s\": %s = %g; must be a finite number >= 0", id,
                       field, v);
    return 0;
}

int pp_model_add_op(pp_model *m, const pp_op_spec *s, ps_err *e)
{
    if (m->finished)
        return ps_errf(e, PS_EINPUT, "model: add_op after finish"), -1;
    if (!s->id || !*s->id)
        return ps_errf(e, PS_EINPUT, "model: op %d has an empty id", m->nops), -1;
    if (!s->kind || kind_class(s->kind) < 0)
        return ps_errf(e, PS_EINPUT, "op \"%s\": unknown kind \"%s\" (expected one of: %s)",
                       s->id, s->kind ? s->kind : "", kinds_list()), -1;
    if (pp_model_find(m, s->id) >= 0)
        return ps_errf(e, PS_EINPUT, "op \"%s\": duplicate id", s->id), -1;
    int cls = kind_class(s->kind);
    char where[160];
    snprintf(where, sizeof where, "op \"%s\"", s->id);
    if (cls == PP_K_SHAPED) {
        if (!s->shape || strcmp(s->shape->kind, s->kind) != 0)
            return ps_errf(e, PS_EINPUT, "op \"%s\": kind %s needs its shape", s->id, s->kind), -1;
        if (ps_op_validate(s->shape, where, e))
            return -1;
    }
    if (cls == PP_K_BLOCK) {
        if (s->nparts < 1 || !s->parts)
            return ps_errf(e, PS_EINPUT, "op \"%s\": a block needs at least one part", s->id), -1;
        for (int i = 0; i < s->nparts; i++) {
            char w2[200];
            snprintf(w2, sizeof w2, "op \"%s\" part %d", s->id, i);
            if (ps_op_validate(&s->parts[i], w2, e))
                return -1;
        }
    }
    const pp_measured *ms = &s->measured;
    if (ms->has) {
        if (!(ms->batch > 0) || !isfinite(ms->batch))
            return ps_errf(e, PS_EINPUT, "op \"%s\": measured.batch = %g; must be > 0", s->id,
                           ms->batch), -1;
        if (check_bytes(ms->fwd_s, "measured.fwd_s", s->id, e) ||
            check_bytes(ms->bwd_input_s, "measured.bwd_input_s", s->id, e) ||
            (!isnan(ms->bwd_weight_s) &&
             check_bytes(ms->bwd_weight_s, "measured.bwd_weight_s", s->id, e)))
            return -1;
    } else if (cls == PP_K_OPAQUE) {
        return ps_errf(e, PS_EINPUT, "op \"%s\": an opaque op needs measured times", s->id), -1;
    }
    double pb[3] = {s->param_bytes, s->out_bytes, s->act_bytes};
    const char *pn[3] = {"param_bytes", "out_bytes", "act_bytes"};
    for (int i = 0; i < 3; i++)
        if (!(pb[i] < 0 && !isnan(pb[i])) && check_bytes(pb[i], pn[i], s->id, e))
            return -1;
    if (m->nops == m->capops) {
        int nc = m->capops ? 2 * m->capops : 64;
        op_rec *t = realloc(m->ops, (size_t)nc * sizeof *t);
        if (!t)
            return nomem(e), -1;
        m->ops = t;
        m->capops = nc;
    }
    op_rec *o = &m->ops[m->nops];
    memset(o, 0, sizeof *o);
    if (!(o->id = strdup(s->id)))
        return nomem(e), -1;
    snprintf(o->pub.kind, sizeof o->pub.kind, "%s", s->kind);
    o->pub.cls = cls;
    o->order = m->nops;
    double out = 0, act = 0, param = 0;
    if (cls == PP_K_SHAPED) {
        o->pub.shape = *s->shape;
        shape_bytes(s->shape, &out, &act, &param);
    } else if (cls == PP_K_BLOCK) {
        o->parts = malloc((size_t)s->nparts * sizeof *o->parts);
        if (!o->parts) {
            free(o->id);
            return nomem(e), -1;
        }
        memcpy(o->parts, s->parts, (size_t)s->nparts * sizeof *o->parts);
        o->pub.nparts = s->nparts;
        for (int i = 0; i < s->nparts; i++) {
            double a, b, c;
            shape_bytes(&s->parts[i], &a, &b, &c);
            out = a; /* the last part's output leaves the block */
            act += b;
            param += c;
        }
    }
    if (s->param_bytes >= 0) {
        param = s->param_bytes;
        o->given |= GIVEN_PARAM;
    }
    if (s->out_bytes >= 0) {
        out = s->out_bytes;
        o->given |= GIVEN_OUT;
    }
    if (s->act_bytes >= 0) {
        act = s->act_bytes;
        o->given |= GIVEN_ACT;
    }
    o->pub.param_bytes = param;
    o->pub.out_bytes = out;
    o->pub.act_bytes = act;
    o->pub.measured = *ms;
    m->nops++;
    if (hash_insert(m, m->nops - 1)) {
        m->nops--;
        op_free(o);
        return nomem(e), -1;
    }
    return m->nops - 1;
}

int pp_model_add_input(pp_model *m, int consumer, int producer, ps_err *e)
{
    if (m->finished)
        return ps_errf(e, PS_EINPUT, "model: add_input after finish");
    if (consumer < 0 || consumer >= m->nops || producer < 0 || producer >= m->nops)
        return ps_errf(e, PS_EINPUT, "model: edge %d -> %d out of range", producer, consumer);
    op_rec *o = &m->ops[consumer];
    if (producer == consumer)
        return ps_errf(e, PS_EINPUT, "op \"%s\": lists itself as an input (a cycle)", o->id);
    for (int i = 0; i < o->ninputs; i++)
        if (o->inputs[i] == producer)
            return ps_errf(e, PS_EINPUT, "op \"%s\": input \"%s\" listed twice", o->id,
                           m->ops[producer].id);
    if (o->ninputs == o->capinputs) {
        int nc = o->capinputs ? 2 * o->capinputs : 2;
        int *t = realloc(o->inputs, (size_t)nc * sizeof *t);
        if (!t)
            return nomem(e);
        o->inputs = t;
        o->capinputs = nc;
    }
    o->inputs[o->ninputs++] = producer;
    return 0;
}

/* Name the ops of one cycle among those Kahn's algorithm left over. */
static int report_cycle(const pp_model *m, const int *left, ps_err *e)
{
    int n = m->nops, start = -1;
    for (int i = 0; i < n && start < 0; i++)
        if (left[i])
            start = i;
    /* Walk inputs that are also left over: every such op has one (else it
     * would have been freed), so the walk must revisit an op. */
    int *seen = calloc((size_t)n, sizeof *seen);
    if (!seen)
        return nomem(e);
    int cur = start, step = 1;
    while (!seen[cur]) {
        seen[cur] = step++;
        const op_rec *o = &m->ops[cur];
        int next = -1;
        for (int k = 0; k < o->ninputs && next < 0; k++)
            if (left[o->inputs[k]])
                next = o->inputs[k];
        cur = next;
    }
    /* cur starts the cycle; print it in data-flow order (producer first). */
    char buf[1600];
    size_t len = 0;
    int cnt = 0, first = cur, *path = malloc((size_t)n * sizeof *path);
    if (!path) {
        free(seen);
        return nomem(e);
    }
    int x = first;
    do {
        path[cnt++] = x;
        const op_rec *o = &m->ops[x];
        int next = -1;
        for (int k = 0; k < o->ninputs && next < 0; k++)
            if (left[o->inputs[k]] && seen[o->inputs[k]])
                next = o->inputs[k];
        x = next;
    } while (x != first && x >= 0 && cnt < n);
    for (int i = cnt - 1; i >= 0 && len < sizeof buf - 80; i--)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "\"%s\" -> ", m->ops[path[i]].id);
    snprintf(buf + len, sizeof buf - len, "\"%s\"", m->ops[path[cnt - 1]].id);
    free(seen);
    free(path);
    return ps_errf(e, PS_EINPUT, "the graph has a cycle: %s", buf);
}

int pp_model_finish(pp_model *m, ps_err *e)
{
    if (m->finished)
        return 0;
    int n = m->nops;
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "model \"%s\": no ops", m->name);
    /* Kahn's algorithm; the smallest source position among the ready ops
     * goes first (a binary heap keyed by position), so a file already in
     * topological order keeps its order. */
    int *indeg = calloc((size_t)n, sizeof *indeg), *heap = malloc((size_t)n * sizeof *heap);
    int *order = malloc((size_t)n * sizeof *order), *newidx = malloc((size_t)n * sizeof *newidx);
    int *ncons = calloc((size_t)n, sizeof *ncons);
    int rc = 0;
    if (!indeg || !heap || !order || !newidx || !ncons) {
        rc = nomem(e);
        goto out;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < m->ops[i].ninputs; k++) {
            indeg[i]++;
            ncons[m->ops[i].inputs[k]]++;
        }
    /* Consumer lists (build indices) for the sweep. */
    int **cons = calloc((size_t)n, sizeof *cons);
    int *cfill = calloc((size_t)n, sizeof *cfill);
    if (!cons || !cfill) {
        free(cons);
        free(cfill);
        rc = nomem(e);
        goto out;
    }
    for (int i = 0; i < n && !rc; i++)
        if (ncons[i] && !(cons[i] = malloc((size_t)ncons[i] * sizeof **cons)))
            rc = nomem(e);
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < m->ops[i].ninputs; k++) {
            int p = m->ops[i].inputs[k];
            cons[p][cfill[p]++] = i;
        }
    int hn = 0, done = 0;
#define HPUSH(v)                                                                            \
    do {                                                                                    \
        int c_ = hn++;                                                                      \
        heap[c_] = (v);                                                                     \
        while (c_ > 0 && heap[(c_ - 1) / 2] > heap[c_]) {                                   \
            int t_ = heap[c_];                                                              \
            heap[c_] = heap[(c_ - 1) / 2];                                                  \
            heap[(c_ - 1) / 2] = t_;                                                        \
            c_ = (c_ - 1) / 2;                                                              \
        }                                                                                   \
    } while (0)
    for (int i = 0; i < n && !rc; i++)
        if (!indeg[i])
            HPUSH(i);
    while (hn > 0 && !rc) {
        int top = heap[0];
        heap[0] = heap[--hn];
        for (int c = 0;;) {
            int l = 2 * c + 1, r = l + 1, s = c;
            if (l < hn && heap[l] < heap[s])
                s = l;
            if (r < hn && heap[r] < heap[s])
                s = r;
            if (s == c)
                break;
            int t = heap[c];
            heap[c] = heap[s];
            heap[s] = t;
            c = s;
        }
        order[done++] = top;
        for (int k = 0; k < ncons[top]; k++)
            if (--indeg[cons[top][k]] == 0)
                HPUSH(cons[top][k]);
    }
#undef HPUSH
    for (int i = 0; i < n; i++)
        free(cons[i]);
    free(cons);
    free(cfill);
    if (rc)
        goto out;
    if (done < n) {
        for (int i = 0; i < n; i++)
            indeg[i] = indeg[i] > 0;
        rc = report_cycle(m, indeg, e);
        goto out;
    }
    /* Renumber: ops[] in topological order, inputs remapped. */
    for (int i = 0; i < n; i++)
        newidx[order[i]] = i;
    op_rec *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        rc = nomem(e);
        goto out;
    }
    for (int i = 0; i < n; i++)
        sorted[i] = m->ops[order[i]];
    free(m->ops);
    m->ops = sorted;
    m->capops = n;
    m->nedges = 0;
    for (int i = 0; i < n; i++) {
        op_rec *o = &m->ops[i];
        for (int k = 0; k < o->ninputs; k++)
            o->inputs[k] = newidx[o->inputs[k]];
        m->nedges += o->ninputs;
        ncons[i] = 0;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < m->ops[i].ninputs; k++)
            ncons[m->ops[i].inputs[k]]++;
    for (int i = 0; i < n && !rc; i++)
        if (ncons[i] && !(m->ops[i].consumers = malloc((size_t)ncons[i] * sizeof(int))))
            rc = nomem(e);
    if (rc)
        goto out;
    for (int i = 0; i < n; i++)
        m->ops[i].pub.nconsumers = 0;
    for (int i = 0; i < n; i++) /* ascending consumers by construction */
        for (int k = 0; k < m->ops[i].ninputs; k++) {
            op_rec *p = &m->ops[m->ops[i].inputs[k]];
            p->consumers[p->pub.nconsumers++] = i;
        }
    for (int i = 0; i < n; i++) {
        op_rec *o = &m->ops[i];
        o->pub.id = o->id;
        o->pub.parts = o->parts;
        o->pub.ninputs = o->ninputs;
        o->pub.inputs = o->inputs;
        o->pub.consumers = o->consumers;
        /* A concat forwards what it joins. */
        if (o->pub.cls == PP_K_CONCAT && !(o->given & GIVEN_OUT)) {
            double sum = 0;
            for (int k = 0; k < o->ninputs; k++)
                sum += m->ops[o->inputs[k]].pub.out_bytes;
            o->pub.out_bytes = sum;
        }
    }
    if (hash_rebuild(m)) {
        rc = nomem(e);
        goto out;
    }
    m->finished = 1;
out:
    free(indeg);
    free(heap);
    free(order);
    free(newidx);
    free(ncons);
    return rc;
}

/* ---- access ---- */

const char *pp_model_name(const pp_model *m) { return m->name; }
int pp_model_nops(const pp_model *m) { return m->nops; }
const pp_model_op *pp_model_op_at(const pp_model *m, int i)
{
    return i >= 0 && i < m->nops ? &m->ops[i].pub : NULL;
}
int pp_model_nedges(const pp_model *m) { return m->nedges; }
double pp_model_param_bytes(const pp_model *m)
{
    double s = 0;
    for (int i = 0; i < m->nops; i++)
        s += m->ops[i].pub.param_bytes;
    return s;
}

/* ---- JSON ---- */

static int get_bytes(const json_t *o, const char *where, const char *key, double *out, ps_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    char path[512];
    snprintf(path, sizeof path, "%s.%s", where, key);
    if (ps_json_as_num(v, path, out, e))
        return e ? e->code : PS_EINPUT;
    if (!isfinite(*out) || *out < 0)
        return ps_errf(e, PS_EINPUT, "%s: %g; must be a finite number >= 0", path, *out);
    return 0;
}

static int parse_measured(const json_t *j, const char *where, pp_measured *ms, ps_err *e)
{
    static const char *const keys[] = {"batch", "fwd_s", "bwd_s", "bwd_input_s", "bwd_weight_s",
                                       NULL};
    char w[512];
    snprintf(w, sizeof w, "%s.measured", where);
    if (!json_is_object(j))
        return ps_errf(e, PS_EINPUT, "%s: expected an object like {\"batch\": 32, \"fwd_s\": "
                       "0.001, \"bwd_s\": 0.002}", w);
    int rc = ps_json_check_keys(j, w, keys, e);
    double batch = 1, f = 0, b = NAN, bi = NAN, bw = NAN;
    if (rc || (rc = ps_json_get_num(j, w, "batch", 1, &batch, e)) ||
        (rc = ps_json_get_num(j, w, "fwd_s", 1, &f, e)) ||
        (rc = ps_json_get_num(j, w, "bwd_s", 0, &b, e)) ||
        (rc = ps_json_get_num(j, w, "bwd_input_s", 0, &bi, e)) ||
        (rc = ps_json_get_num(j, w, "bwd_weight_s", 0, &bw, e)))
        return rc;
    if (!(batch > 0))
        return ps_errf(e, PS_EINPUT, "%s.batch: %g; must be > 0", w, batch);
    double vals[4] = {f, b, bi, bw};
    const char *names[4] = {"fwd_s", "bwd_s", "bwd_input_s", "bwd_weight_s"};
    for (int i = 0; i < 4; i++)
        if (!isnan(vals[i]) && (!isfinite(vals[i]) || vals[i] < 0))
            return ps_errf(e, PS_EINPUT, "%s.%s: %g; must be a finite number >= 0", w, names[i],
                           vals[i]);
    ms->has = 1;
    ms->batch = batch;
    ms->fwd_s = f;
    if (!isnan(bi) || !isnan(bw)) {
        if (isnan(bi) || isnan(bw))
            return ps_errf(e, PS_EINPUT, "%s: give both bwd_input_s and bwd_weight_s, or bwd_s", w);
        if (!isnan(b) && fabs(bi + bw - b) > 1e-9 * fmax(1, b))
            return ps_errf(e, PS_EINPUT, "%s: bwd_s %g != bwd_input_s + bwd_weight_s %g", w, b,
                           bi + bw);
        ms->bwd_input_s = bi;
        ms->bwd_weight_s = bw;
    } else {
        if (isnan(b))
            return ps_errf(e, PS_EINPUT, "%s: missing bwd_s (or bwd_input_s and bwd_weight_s)", w);
        /* The split is resolved at finish time, when param bytes are known:
         * store the whole backward as input gradient, flagged by NaN. */
        ms->bwd_input_s = b;
        ms->bwd_weight_s = NAN;
    }
    return 0;
}

pp_model *pp_model_from_json(const json_t *doc, const char *what, ps_err *e)
{
    static const char *const top_keys[] = {"name", "ops", "description", "source", "generator",
                                           "piper", NULL};
    static const char *const common_keys[] = {"id", "kind", "inputs", "param_bytes", "out_bytes",
                                              "act_bytes", "measured", "parts", NULL};
    if (!what)
        what = "model";
    if (!json_is_object(doc)) {
        ps_errf(e, PS_EINPUT, "%s: $: expected an object with \"ops\"", what);
        return NULL;
    }
    if (ps_json_check_keys(doc, "$", top_keys, e)) {
        ps_err_prefix(e, "%s: ", what);
        return NULL;
    }
    const char *name = "model";
    if (ps_json_get_str(doc, "$", "name", 0, &name, e)) {
        ps_err_prefix(e, "%s: ", what);
        return NULL;
    }
    json_t *ops = json_object_get(doc, "ops");
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        ps_errf(e, PS_EINPUT, "%s: $.ops: expected a non-empty array of ops", what);
        return NULL;
    }
    pp_model *m = pp_model_new(name, e);
    if (!m)
        return NULL;
    size_t n = json_array_size(ops);
    int rc = 0;
    char where[160];
    /* Pass 1: ops.  Pass 2: inputs (ids may refer forward). */
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = json_array_get(ops, i);
        snprintf(where, sizeof where, "$.ops[%zu]", i);
        if (!json_is_object(o)) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s: expected an op object", what, where);
            break;
        }
        const char *id = NULL, *kind = NULL;
        if ((rc = ps_json_get_str(o, where, "id", 1, &id, e)) ||
            (rc = ps_json_get_str(o, where, "kind", 1, &kind, e))) {
            ps_err_prefix(e, "%s: ", what);
            break;
        }
        char w2[400];
        snprintf(w2, sizeof w2, "%s (op \"%s\")", where, id);
        int cls = kind_class(kind);
        if (cls < 0) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s.kind: unknown kind \"%s\" (expected one of: %s)",
                         what, w2, kind, kinds_list());
            break;
        }
        pp_op_spec s = {.id = id, .kind = kind, .param_bytes = -1, .out_bytes = -1,
                        .act_bytes = -1};
        ps_op shape, *parts = NULL;
        if (cls == PP_K_SHAPED) {
            if ((rc = ps_op_from_json_ex(o, w2, common_keys, &shape, e))) {
                ps_err_prefix(e, "%s: ", what);
                break;
            }
            s.shape = &shape;
        } else if ((rc = ps_json_check_keys(o, w2, common_keys, e))) {
            ps_err_prefix(e, "%s: ", what);
            break;
        }
        json_t *jp = json_object_get(o, "parts");
        if (cls == PP_K_BLOCK) {
            if (!json_is_array(jp) || json_array_size(jp) == 0) {
                rc = ps_errf(e, PS_EINPUT, "%s: %s.parts: a block needs a non-empty array of "
                             "op shapes", what, w2);
                break;
            }
            s.nparts = (int)json_array_size(jp);
            parts = malloc((size_t)s.nparts * sizeof *parts);
            if (!parts) {
                rc = nomem(e);
                break;
            }
            for (int k = 0; k < s.nparts && !rc; k++) {
                char w3[440];
                snprintf(w3, sizeof w3, "%s.parts[%d]", w2, k);
                if ((rc = ps_op_from_json(json_array_get(jp, (size_t)k), w3, &parts[k], e)))
                    ps_err_prefix(e, "%s: ", what);
            }
            s.parts = parts;
        } else if (jp) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s.parts: only a block has parts", what, w2);
        }
        if (!rc && ((rc = get_bytes(o, w2, "param_bytes", &s.param_bytes, e)) ||
                    (rc = get_bytes(o, w2, "out_bytes", &s.out_bytes, e)) ||
                    (rc = get_bytes(o, w2, "act_bytes", &s.act_bytes, e))))
            ps_err_prefix(e, "%s: ", what);
        json_t *jm = json_object_get(o, "measured");
        if (!rc && jm && (rc = parse_measured(jm, w2, &s.measured, e)))
            ps_err_prefix(e, "%s: ", what);
        if (!rc && pp_model_add_op(m, &s, e) < 0) {
            rc = e ? e->code : PS_EINPUT;
            ps_err_prefix(e, "%s: %s: ", what, where);
        }
        free(parts);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = json_array_get(ops, i);
        json_t *in = json_object_get(o, "inputs");
        const char *id = json_string_value(json_object_get(o, "id"));
        if (!in)
            continue;
        if (!json_is_array(in)) {
            rc = ps_errf(e, PS_EINPUT, "%s: $.ops[%zu] (op \"%s\").inputs: expected an array of "
                         "op ids", what, i, id);
            break;
        }
        for (size_t k = 0; k < json_array_size(in) && !rc; k++) {
            const char *src = json_string_value(json_array_get(in, k));
            if (!src) {
                rc = ps_errf(e, PS_EINPUT, "%s: $.ops[%zu] (op \"%s\").inputs[%zu]: expected an "
                             "op id string", what, i, id, k);
                break;
            }
            int p = pp_model_find(m, src);
            if (p < 0) {
                rc = ps_errf(e, PS_EINPUT, "%s: $.ops[%zu] (op \"%s\"): input \"%s\" is not an "
                             "op id", what, i, id, src);
                break;
            }
            if ((rc = pp_model_add_input(m, (int)i, p, e)))
                ps_err_prefix(e, "%s: $.ops[%zu]: ", what, i);
        }
    }
    if (!rc && (rc = pp_model_finish(m, e)))
        ps_err_prefix(e, "%s: ", what);
    if (!rc && json_object_get(doc, "piper")) {
        /* kept verbatim; sim/pipeline/piper_dp.c validates it when planning */
        json_t *jp = json_object_get(doc, "piper");
        if (!json_is_object(jp))
            rc = ps_errf(e, PS_EINPUT, "%s: $.piper: expected an object (a Piper instance)", what);
        else
            m->piper = json_deep_copy(jp);
    }
    if (rc) {
        pp_model_free(m);
        return NULL;
    }
    return m;
}

const json_t *pp_model_piper(const pp_model *m)
{
    return m->piper;
}

int pp_model_set_piper(pp_model *m, const json_t *piper, ps_err *e)
{
    if (piper && !json_is_object(piper))
        return ps_errf(e, PS_EINPUT, "model: the piper extension must be an object");
    if (m->piper)
        json_decref(m->piper);
    m->piper = piper ? json_deep_copy(piper) : NULL;
    if (piper && !m->piper)
        return nomem(e);
    return 0;
}

pp_model *pp_model_load(const char *path, ps_err *e)
{
    json_t *doc = ps_json_load_file(path, e);
    if (!doc)
        return NULL;
    pp_model *m = pp_model_from_json(doc, path, e);
    json_decref(doc);
    return m;
}

json_t *pp_model_to_json(const pp_model *m)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "name", json_string(m->name));
    json_t *ops = json_array();
    for (int i = 0; i < m->nops; i++) {
        const op_rec *o = &m->ops[i];
        json_t *j;
        if (o->pub.cls == PP_K_SHAPED) {
            j = ps_op_to_json(&o->pub.shape);
        } else {
            j = json_object();
            json_object_set_new(j, "kind", json_string(o->pub.kind));
        }
        json_object_set_new(j, "id", json_string(o->id));
        if (o->pub.cls == PP_K_BLOCK) {
            json_t *parts = json_array();
            for (int k = 0; k < o->pub.nparts; k++)
                json_array_append_new(parts, ps_op_to_json(&o->parts[k]));
            json_object_set_new(j, "parts", parts);
        }
        if (o->ninputs) {
            json_t *in = json_array();
            for (int k = 0; k < o->ninputs; k++)
                json_array_append_new(in, json_string(m->ops[o->inputs[k]].id));
            json_object_set_new(j, "inputs", in);
        }
        if (o->given & GIVEN_PARAM)
            json_object_set_new(j, "param_bytes", json_real(o->pub.param_bytes));
        if (o->given & GIVEN_OUT)
            json_object_set_new(j, "out_bytes", json_real(o->pub.out_bytes));
        if (o->given & GIVEN_ACT)
            json_object_set_new(j, "act_bytes", json_real(o->pub.act_bytes));
        const pp_measured *ms = &o->pub.measured;
        if (ms->has) {
            json_t *jm = json_object();
            json_object_set_new(jm, "batch", json_real(ms->batch));
            json_object_set_new(jm, "fwd_s", json_real(ms->fwd_s));
            if (isnan(ms->bwd_weight_s)) {
                json_object_set_new(jm, "bwd_s", json_real(ms->bwd_input_s));
            } else {
                json_object_set_new(jm, "bwd_input_s", json_real(ms->bwd_input_s));
                json_object_set_new(jm, "bwd_weight_s", json_real(ms->bwd_weight_s));
            }
            json_object_set_new(j, "measured", jm);
        }
        json_array_append_new(ops, j);
    }
    json_object_set_new(doc, "ops", ops);
    if (m->piper)
        json_object_set_new(doc, "piper", json_deep_copy(m->piper));
    return doc;
}

int pp_model_save(const pp_model *m, const char *path, ps_err *e)
{
    json_t *j = pp_model_to_json(m);
    char *txt = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!txt)
        return nomem(e);
    size_t len = strlen(txt);
    int rc = ps_file_write_atomic(path, txt, len, e);
    if (!rc && len && txt[len - 1] != '\n') {
        /* jansson leaves no final newline; files read better with one. */
        char *t2 = malloc(len + 2);
        if (t2) {
            memcpy(t2, txt, len);
            t2[len] = '\n';
            t2[len + 1] = 0;
            rc = ps_file_write_atomic(path, t2, len + 1, e);
            free(t2);
        }
    }
    free(txt);
    return rc;
}

/* ---- costs ---- */

static int scaled(const ps_op *op, double samples, ps_op *out, ps_err *e)
{
    *out = *op;
    int d = batch_dim(op);
    double v = (double)op->d[d] * samples;
    if (!(v >= 1) || v > 9e18)
        return ps_errf(e, PS_EINPUT, "model: %s batch dimension %g x %g samples is out of range",
                       op->kind, (double)op->d[d], samples);
    out->d[d] = (int64_t)llround(v);
    return 0;
}

static int op_phases(const cm_model *cm, const ps_op *op, double samples, double t[3], ps_err *e)
{
    ps_op s;
    if (scaled(op, samples, &s, e))
        return e ? e->code : PS_EINPUT;
    for (int ph = 0; ph < 3; ph++) {
        cm_pred pr;
        if (ps_op_kind_id_of(s.kind) == PS_OPK_MEMCPY && ph > 0) {
            /* A copy's gradient is a copy back; no weights. */
            t[ph] = ph == 1 ? t[0] : 0;
            continue;
        }
        if (cm_op_time_phase(cm, &s, (cm_phase)ph, &pr, e))
            return e ? e->code : PS_EINPUT;
        t[ph] = pr.time_s;
    }
    return 0;
}

int pp_model_costs(const pp_model *m, const cm_model *cm, double samples, pp_op_cost *out,
                   ps_err *e)
{
    if (!(samples > 0) || !isfinite(samples))
        return ps_errf(e, PS_EINPUT, "model: %g samples per micro-batch; need > 0", samples);
    for (int i = 0; i < m->nops; i++) {
        const pp_model_op *o = &m->ops[i].pub;
        pp_op_cost *c = &out[i];
        memset(c, 0, sizeof *c);
        c->act_bytes = o->act_bytes * samples;
        c->out_bytes = o->out_bytes * samples;
        c->param_bytes = o->param_bytes;
        if (o->measured.has) {
            double f = samples / o->measured.batch;
            c->fwd_s = o->measured.fwd_s * f;
            if (isnan(o->measured.bwd_weight_s)) {
                /* Only a whole backward was measured: ops with weights
                 * split it evenly between input and weight gradients (the
                 * two GEMMs of a linear layer cost the same), others spend
                 * it all on the input gradient. */
                double b = o->measured.bwd_input_s * f;
                c->bwd_input_s = o->param_bytes > 0 ? b / 2 : b;
                c->bwd_weight_s = o->param_bytes > 0 ? b / 2 : 0;
            } else {
                c->bwd_input_s = o->measured.bwd_input_s * f;
                c->bwd_weight_s = o->measured.bwd_weight_s * f;
            }
            continue;
        }
        if (o->cls == PP_K_INPUT || (o->cls == PP_K_CONCAT && o->out_bytes == 0))
            continue;
        if (!cm)
            return ps_errf(e, PS_EINPUT, "op \"%s\": no measured times and no cost model", o->id);
        double t[3];
        int rc = 0;
        if (o->cls == PP_K_SHAPED) {
            rc = op_phases(cm, &o->shape, samples, t, e);
        } else if (o->cls == PP_K_BLOCK) {
            double acc[3] = {0, 0, 0};
            for (int k = 0; k < o->nparts && !rc; k++) {
                rc = op_phases(cm, &o->parts[k], samples, t, e);
                for (int q = 0; q < 3; q++)
                    acc[q] += t[q];
            }
            memcpy(t, acc, sizeof t);
        } else { /* concat: a device copy of its output, and of the gradient back */
            ps_op cp;
            int64_t bytes = (int64_t)llround(o->out_bytes);
            rc = ps_op_make(&cp, "memcpy", NULL, "d2d", &bytes, 1, e);
            if (!rc)
                rc = op_phases(cm, &cp, samples, t, e);
        }
        if (rc) {
            ps_err_prefix(e, "op \"%s\": ", o->id);
            return rc;
        }
        c->fwd_s = t[0];
        c->bwd_input_s = t[1];
        c->bwd_weight_s = t[2];
    }
    return 0;
}
