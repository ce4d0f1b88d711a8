/* Pipeline replay on the CPU: see real/replay.h and docs/replay.md. */
#include "real/replay.h"
#include "real/replay_impl.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/table.h"
#include "common/util.h"
#include "kernels/cpu_blas.h"
#include "profile/db.h"
#include "profile/timer.h"
#include "sim/pipeline/schedule_impl.h"

static int nomem(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "replay: out of host memory");
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Pin the calling thread to one core (pthread_setaffinity_np); 0 on success. */
static int pin_core(int core)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* ------------------------------------------------------------ the model */


static int act_of(const char *variant, int *act)
{
    static const char *const names[] = {"add", "relu", "gelu", "tanh", "sigmoid", NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(variant, names[i]) == 0) {
            *act = i; /* A_IDENT = add (the inputs are summed on gather) */
            return 0;
        }
    return -1;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double urand(uint64_t *x)
{
    return (double)(splitmix(x) >> 11) * (1.0 / 9007199254740992.0);
}

static int part_from_shape(const ps_op *sh, const char *opid, int first, rpart *pt, ps_err *e)
{
    memset(pt, 0, sizeof *pt);
    if (strcmp(sh->dtype, "fp32") != 0)
        return ps_errf(e, PS_EINPUT, "replay: op \"%s\": dtype %s; the replay runs fp32 only",
                       opid, sh->dtype);
    if (strcmp(sh->kind, "gemm") == 0) {
        if (strcmp(sh->variant, "nn") != 0)
            return ps_errf(e, PS_EINPUT, "replay: op \"%s\": gemm variant %s; only nn", opid,
                           sh->variant);
        pt->type = PT_GEMM;
        pt->m = sh->d[0];
        pt->n = sh->d[1];
        pt->k = sh->d[2];
        pt->in_len = pt->m * pt->k;
        pt->out_len = pt->m * pt->n;
        return 0;
    }
    if (strcmp(sh->kind, "elementwise") == 0) {
        if (act_of(sh->variant, &pt->act))
            return ps_errf(e, PS_EINPUT, "replay: op \"%s\": elementwise %s is not supported "
                           "(add, relu, gelu, tanh, sigmoid)", opid, sh->variant);
        if (pt->act == A_IDENT && !first)
            return ps_errf(e, PS_EINPUT, "replay: op \"%s\": elementwise add inside a block",
                           opid);
        pt->type = PT_ACT;
        pt->in_len = pt->out_len = sh->d[0];
        return 0;
    }
    return ps_errf(e, PS_EINPUT, "replay: op \"%s\": kind %s is not supported by the replay "
                   "(input, gemm, elementwise, block of those, concat)", opid, sh->kind);
}

static float *falloc(rmodel *rm, size_t n)
{
    rm->bytes += n * sizeof(float);
    return calloc(n ? n : 1, sizeof(float));
}

static void rmodel_free(rmodel *rm)
{
    if (!rm->ops)
        return;
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        for (int q = 0; q < o->nparts; q++) {
            free(o->parts[q].w);
            free(o->parts[q].dw);
        }
        for (int j = 0; j < o->nmb; j++) {
            if (o->in)
                free(o->in[j]);
            if (o->po) {
                for (int q = 0; q < o->nparts; q++)
                    free(o->po[j][q]);
                free(o->po[j]);
            }
            if (o->dpo) {
                for (int q = 0; q < o->nparts; q++)
                    free(o->dpo[j][q]);
                free(o->dpo[j]);
            }
            if (o->din && o->cls != OC_CONCAT)
                free(o->din[j]);
        }
        free(o->in);
        free(o->po);
        free(o->dpo);
        free(o->din);
        free(o->parts);
        free(o->col_off);
        free(o->data);
        free(o->target);
        free(o->loss_mb);
    }
    free(rm->ops);
    rm->ops = NULL;
}

/* Shapes and classes only (no buffers): enough for the guards. */
static int rmodel_shapes(rmodel *rm, const pp_plan *p, const pp_model *m, ps_err *e)
{
    memset(rm, 0, sizeof *rm);
    rm->m = m;
    rm->p = p;
    rm->nops = pp_model_nops(m);
    rm->minibatch = p->minibatch;
    rm->zb = p->schedule == PP_ZB_H1;
    rm->ops = calloc((size_t)rm->nops, sizeof *rm->ops);
    if (!rm->ops)
        return nomem(e);
    for (int s = 0; s < p->nstages; s++) {
        const pp_stage *g = &p->stages[s];
        for (int k = 0; k < g->nops; k++) {
            rop *o = &rm->ops[g->ops[k]];
            o->stage = s;
            o->b = g->microbatch;
            o->nmb = p->minibatch / g->microbatch;
        }
    }
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        const pp_model_op *mo = pp_model_op_at(m, i);
        o->mo = mo;
        o->idx = i;
        o->sink = mo->nconsumers == 0;
        int rc = 0;
        switch (mo->cls) {
        case PP_K_INPUT:
            o->cls = OC_INPUT;
            o->nparts = 1;
            o->parts = calloc(1, sizeof *o->parts);
            if (!o->parts)
                return nomem(e);
            o->out_len = (int64_t)llround(mo->out_bytes / 4);
            if (o->out_len < 1)
                return ps_errf(e, PS_EINPUT, "replay: input op \"%s\": out_bytes %g; need >= 4",
                               mo->id, mo->out_bytes);
            o->parts[0] = (rpart){.type = PT_COPY, .in_len = o->out_len, .out_len = o->out_len};
            break;
        case PP_K_SHAPED:
        case PP_K_BLOCK: {
            o->cls = OC_COMPUTE;
            int np = mo->cls == PP_K_SHAPED ? 1 : mo->nparts;
            const ps_op *sh = mo->cls == PP_K_SHAPED ? &mo->shape : mo->parts;
            o->nparts = np;
            o->parts = calloc((size_t)np, sizeof *o->parts);
            if (!o->parts)
                return nomem(e);
            for (int q = 0; q < np && !rc; q++) {
                rc = part_from_shape(&sh[q], mo->id, q == 0, &o->parts[q], e);
                if (!rc && q > 0 && o->parts[q].in_len != o->parts[q - 1].out_len)
                    rc = ps_errf(e, PS_EINPUT, "replay: op \"%s\": block part %d takes %lld "
                                 "values per sample, part %d makes %lld", mo->id, q,
                                 (long long)o->parts[q].in_len, q - 1,
                                 (long long)o->parts[q - 1].out_len);
            }
            if (rc)
                return rc;
            if (mo->ninputs < 1)
                return ps_errf(e, PS_EINPUT, "replay: op \"%s\" (%s) has no inputs", mo->id,
                               mo->kind);
            o->in_len = o->parts[0].in_len;
            o->out_len = o->parts[np - 1].out_len;
            break;
        }
        case PP_K_CONCAT: {
            o->cls = OC_CONCAT;
            o->nparts = 1;
            o->parts = calloc(1, sizeof *o->parts);
            o->col_off = calloc((size_t)mo->ninputs + 1, sizeof *o->col_off);
            if (!o->parts || !o->col_off)
                return nomem(e);
            int64_t off = 0;
            for (int q = 0; q < mo->ninputs; q++) {
                o->col_off[q] = off;
                off += rm->ops[mo->inputs[q]].out_len;
            }
            o->col_off[mo->ninputs] = off;
            o->in_len = o->out_len = off;
            o->parts[0] = (rpart){.type = PT_COPY, .in_len = off, .out_len = off};
            break;
        }
        default:
            return ps_errf(e, PS_EINPUT, "replay: op \"%s\": kind %s is not supported by the "
                           "replay (input, gemm, elementwise, block of those, concat)",
                           mo->id, mo->kind);
        }
        for (int q = 0; q < mo->ninputs; q++)
            o->needs_din |= rm->ops[mo->inputs[q]].cls != OC_INPUT;
        o->direct = o->cls == OC_COMPUTE && mo->ninputs == 1 &&
                    rm->ops[mo->inputs[0]].stage == o->stage &&
                    rm->ops[mo->inputs[0]].out_len == o->in_len;
    }
    return 0;
}

static double rmodel_bytes_estimate(const rmodel *rm)
{
    double b = 0;
    for (int i = 0; i < rm->nops; i++) {
        const rop *o = &rm->ops[i];
        double per = o->in_len;
        for (int q = 0; q < o->nparts; q++) {
            per += 2.0 * o->parts[q].out_len;
            if (o->parts[q].type == PT_GEMM)
                b += 8.0 * o->parts[q].k * o->parts[q].n;
        }
        per += o->in_len;
        b += 4.0 * per * rm->minibatch;
    }
    return b;
}

static double rmodel_flops(const rmodel *rm)
{
    double f = 0;
    for (int i = 0; i < rm->nops; i++)
        for (int q = 0; q < rm->ops[i].nparts; q++) {
            const rpart *pt = &rm->ops[i].parts[q];
            f += pt->type == PT_GEMM ? 6.0 * pt->m * pt->n * pt->k : 4.0 * pt->out_len;
        }
    return f * rm->minibatch;
}

static int rmodel_alloc(rmodel *rm, unsigned long seed, ps_err *e)
{
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        int nmb = o->nmb, np = o->nparts;
        for (int q = 0; q < np; q++) {
            rpart *pt = &o->parts[q];
            if (pt->type != PT_GEMM)
                continue;
            size_t n = (size_t)(pt->k * pt->n);
            if (!(pt->w = falloc(rm, n)) || !(pt->dw = falloc(rm, n)))
                return nomem(e);
            uint64_t x = (uint64_t)seed * 0x100000001b3ull + (uint64_t)i * 131 + (uint64_t)q;
            double a = sqrt(6.0 / (double)pt->k); /* Kaiming-uniform (ReLU gain) */
            for (size_t t = 0; t < n; t++)
                pt->w[t] = (float)((2 * urand(&x) - 1) * a);
        }
        o->po = calloc((size_t)nmb, sizeof *o->po);
        o->dpo = calloc((size_t)nmb, sizeof *o->dpo);
        o->din = calloc((size_t)nmb, sizeof *o->din);
        o->in = calloc((size_t)nmb, sizeof *o->in);
        if (!o->po || !o->dpo || !o->din || !o->in)
            return nomem(e);
        for (int j = 0; j < nmb; j++) {
            o->po[j] = calloc((size_t)np, sizeof **o->po);
            o->dpo[j] = calloc((size_t)np, sizeof **o->dpo);
            if (!o->po[j] || !o->dpo[j])
                return nomem(e);
            for (int q = 0; q < np; q++) {
                size_t n = (size_t)o->b * (size_t)o->parts[q].out_len;
                if (!(o->po[j][q] = falloc(rm, n)) || !(o->dpo[j][q] = falloc(rm, n)))
                    return nomem(e);
            }
            if (o->cls == OC_CONCAT) {
                o->din[j] = o->dpo[j][0];
            } else if (o->cls == OC_COMPUTE) {
                if (!o->direct && !(o->in[j] = falloc(rm, (size_t)o->b * o->in_len)))
                    return nomem(e);
                if (o->needs_din && !(o->din[j] = falloc(rm, (size_t)o->b * o->in_len)))
                    return nomem(e);
            }
        }
        size_t full = (size_t)rm->minibatch * (size_t)o->out_len;
        if (o->cls == OC_INPUT) {
            if (!(o->data = falloc(rm, full)))
                return nomem(e);
            uint64_t x = (uint64_t)seed * 7919 + (uint64_t)i * 104729 + 17;
            for (size_t t = 0; t < full; t++)
                o->data[t] = (float)(2 * urand(&x) - 1);
        }
        if (o->sink) {
            if (!(o->target = falloc(rm, full)) ||
                !(o->loss_mb = calloc((size_t)nmb, sizeof *o->loss_mb)))
                return nomem(e);
            uint64_t x = (uint64_t)seed * 31337 + (uint64_t)i * 7 + 3;
            for (size_t t = 0; t < full; t++)
                o->target[t] = (float)(0.5 * (2 * urand(&x) - 1));
        }
    }
    return 0;
}

/* ------------------------------------------------------------ op execution */

/* The output row of producer op p holding global sample g. */
static inline const float *prod_row(const rop *p, int64_t g)
{
    int64_t j = g / p->b, r = g % p->b;
    return p->po[j][p->nparts - 1] + r * p->out_len;
}

/* y = act(x) over n floats (an elementwise part's forward). */
static void act_fwd(int act, const float *x, float *y, size_t n)
{
    switch (act) {
    case A_IDENT:
        memcpy(y, x, n * sizeof(float));
        break;
    case A_RELU:
        for (size_t t = 0; t < n; t++)
            y[t] = x[t] > 0 ? x[t] : 0;
        break;
    case A_GELU:
        for (size_t t = 0; t < n; t++) {
            float v = x[t];
            y[t] = 0.5f * v * (1 + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
        }
        break;
    case A_TANH:
        for (size_t t = 0; t < n; t++)
            y[t] = tanhf(x[t]);
        break;
    case A_SIGMOID:
        for (size_t t = 0; t < n; t++)
            y[t] = 1 / (1 + expf(-x[t]));
        break;
    }
}

/* dx = dy * act'(x) over n floats, given the forward's input x and output
 * y = act(x) (an elementwise part's input gradient). */
static void act_bwd(int act, const float *x, const float *y, const float *dy, float *dx,
                    size_t n)
{
    switch (act) {
    case A_IDENT:
        memcpy(dx, dy, n * sizeof(float));
        break;
    case A_RELU:
        for (size_t t = 0; t < n; t++)
            dx[t] = x[t] > 0 ? dy[t] : 0;
        break;
    case A_GELU:
        for (size_t t = 0; t < n; t++) {
            float v = x[t], u = 0.7978845608f * (v + 0.044715f * v * v * v);
            float th = tanhf(u);
            float du = 0.7978845608f * (1 + 3 * 0.044715f * v * v);
            dx[t] = dy[t] * (0.5f * (1 + th) + 0.5f * v * (1 - th * th) * du);
        }
        break;
    case A_TANH:
        for (size_t t = 0; t < n; t++)
            dx[t] = dy[t] * (1 - y[t] * y[t]);
        break;
    case A_SIGMOID:
        for (size_t t = 0; t < n; t++)
            dx[t] = dy[t] * y[t] * (1 - y[t]);
        break;
    }
}

static void op_fwd(rmodel *rm, rop *o, int j)
{
    const pp_model_op *mo = o->mo;
    int64_t b = o->b, g0 = (int64_t)j * b;
    if (o->cls == OC_INPUT) {
        memcpy(o->po[j][0], o->data + g0 * o->out_len, (size_t)(b * o->out_len) * sizeof(float));
        return;
    }
    if (o->cls == OC_CONCAT) {
        float *y = o->po[j][0];
        for (int64_t r = 0; r < b; r++)
            for (int q = 0; q < mo->ninputs; q++) {
                const rop *p = &rm->ops[mo->inputs[q]];
                memcpy(y + r * o->out_len + o->col_off[q], prod_row(p, g0 + r),
                       (size_t)p->out_len * sizeof(float));
            }
        return;
    }
    const float *x;
    if (o->direct) {
        x = rm->ops[mo->inputs[0]].po[j][rm->ops[mo->inputs[0]].nparts - 1];
    } else {
        /* Gather: the sum of the inputs, each tiled / truncated per sample
         * to in_len (a handoff copy when the producer is on another stage). */
        float *in = o->in[j];
        for (int q = 0; q < mo->ninputs; q++) {
            const rop *p = &rm->ops[mo->inputs[q]];
            for (int64_t r = 0; r < b; r++) {
                const float *src = prod_row(p, g0 + r);
                float *dst = in + r * o->in_len;
                for (int64_t c0 = 0; c0 < o->in_len; c0 += p->out_len) {
                    int64_t n = o->in_len - c0 < p->out_len ? o->in_len - c0 : p->out_len;
                    if (q == 0)
                        memcpy(dst + c0, src, (size_t)n * sizeof(float));
                    else
                        for (int64_t t = 0; t < n; t++)
                            dst[c0 + t] += src[t];
                }
            }
        }
        x = in;
    }
    for (int q = 0; q < o->nparts; q++) {
        rpart *pt = &o->parts[q];
        float *y = o->po[j][q];
        if (pt->type == PT_GEMM) {
            int64_t rows = b * pt->m;
            ps_cpu_sgemm(0, 0, rows, pt->n, pt->k, 1.f, x, pt->k, pt->w, pt->n, 0.f, y, pt->n);
        } else {
            act_fwd(pt->act, x, y, (size_t)(b * pt->out_len));
        }
        x = y;
    }
}

/* The gradient of o's output for micro-batch j: the loss's (sinks) plus
 * the adjoint of every consumer's gather, pulled from the consumers'
 * input gradients (a handoff when the consumer is on another stage). */
static void op_pull_dout(rmodel *rm, rop *o, int j)
{
    const pp_model_op *mo = o->mo;
    int64_t b = o->b, g0 = (int64_t)j * b, L = o->out_len;
    float *dy = o->dpo[j][o->nparts - 1];
    if (o->sink) {
        const float *y = o->po[j][o->nparts - 1], *t = o->target + g0 * L;
        double scale = 1.0 / ((double)rm->minibatch * (double)L), loss = 0;
        for (int64_t q = 0; q < b * L; q++) {
            double d = (double)y[q] - (double)t[q];
            loss += d * d;
            dy[q] = (float)(2 * d * scale);
        }
        o->loss_mb[j] = loss * scale;
    } else {
        memset(dy, 0, (size_t)(b * L) * sizeof(float));
    }
    for (int c = 0; c < mo->nconsumers; c++) {
        const rop *co = &rm->ops[mo->consumers[c]];
        const pp_model_op *cm = co->mo;
        if (co->cls == OC_COMPUTE && !co->needs_din)
            continue;
        int slot = 0;
        for (int q = 0; q < cm->ninputs; q++)
            if (cm->inputs[q] == o->idx)
                slot = q;
        for (int64_t r = 0; r < b; r++) {
            int64_t g = g0 + r, kc = g / co->b, rc = g % co->b;
            float *d = dy + r * L;
            if (co->cls == OC_CONCAT) {
                const float *src = co->din[kc] + rc * co->out_len + co->col_off[slot];
                for (int64_t t = 0; t < L; t++)
                    d[t] += src[t];
            } else if (co->direct) {
                const float *src = co->din[kc] + rc * co->in_len;
                for (int64_t t = 0; t < L; t++)
                    d[t] += src[t];
            } else {
                const float *src = co->din[kc] + rc * co->in_len;
                for (int64_t c0 = 0; c0 < co->in_len; c0 += L) {
                    int64_t n = co->in_len - c0 < L ? co->in_len - c0 : L;
                    for (int64_t t = 0; t < n; t++)
                        d[t] += src[c0 + t];
                }
            }
        }
    }
}

static const float *op_input(const rmodel *rm, const rop *o, int j)
{
    if (o->direct) {
        const rop *p = &rm->ops[o->mo->inputs[0]];
        return p->po[j][p->nparts - 1];
    }
    return o->in[j];
}

/* Input gradient: dout, then back through the parts (dpo kept for W). */
static void op_bwd_input(rmodel *rm, rop *o, int j)
{
    if (o->cls == OC_INPUT)
        return;
    op_pull_dout(rm, o, j);
    if (o->cls == OC_CONCAT)
        return; /* din aliases dout */
    int64_t b = o->b;
    for (int q = o->nparts - 1; q >= 0; q--) {
        rpart *pt = &o->parts[q];
        const float *x = q ? o->po[j][q - 1] : op_input(rm, o, j);
        const float *y = o->po[j][q];
        const float *dy = o->dpo[j][q];
        float *dx = q ? o->dpo[j][q - 1] : o->din[j];
        if (!dx)
            break; /* the first part's input gradient is not needed */
        if (pt->type == PT_GEMM) {
            ps_cpu_sgemm(0, 1, b * pt->m, pt->k, pt->n, 1.f, dy, pt->n, pt->w, pt->n, 0.f, dx,
                         pt->k);
        } else {
            act_bwd(pt->act, x, y, dy, dx, (size_t)(b * pt->out_len));
        }
    }
}

static void op_bwd_weight(rmodel *rm, rop *o, int j)
{
    if (o->cls != OC_COMPUTE)
        return;
    int64_t b = o->b;
    for (int q = 0; q < o->nparts; q++) {
        rpart *pt = &o->parts[q];
        if (pt->type != PT_GEMM)
            continue;
        const float *x = q ? o->po[j][q - 1] : op_input(rm, o, j);
        ps_cpu_sgemm(1, 0, pt->k, pt->n, b * pt->m, 1.f, x, pt->k, o->dpo[j][q], pt->n, 1.f,
                     pt->dw, pt->n);
    }
}

/* One task of a stage: F, B (input + weight gradients; ZB-H1: input only) or W. */
static void run_task(rmodel *rm, int stage, int kind, int j)
{
    const pp_stage *g = &rm->p->stages[stage];
    if (kind == PP_OP_FWD) {
        for (int k = 0; k < g->nops; k++)
            op_fwd(rm, &rm->ops[g->ops[k]], j);
    } else if (kind == PP_OP_BWD) {
        for (int k = g->nops - 1; k >= 0; k--) {
            rop *o = &rm->ops[g->ops[k]];
            op_bwd_input(rm, o, j);
            if (!rm->zb)
                op_bwd_weight(rm, o, j);
        }
    } else {
        for (int k = g->nops - 1; k >= 0; k--)
            op_bwd_weight(rm, &rm->ops[g->ops[k]], j);
    }
}

/* SGD with the gradient's global norm clipped to 1 (any replayed model
 * trains without tuning the step), then zero the gradients.  Returns the
 * iteration's loss. */
static double sgd_step(rmodel *rm)
{
    double loss = 0, sq = 0;
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        for (int q = 0; q < o->nparts; q++) {
            rpart *pt = &o->parts[q];
            if (pt->type != PT_GEMM)
                continue;
            size_t n = (size_t)(pt->k * pt->n);
            for (size_t t = 0; t < n; t++)
                sq += (double)pt->dw[t] * pt->dw[t];
        }
        if (o->sink)
            for (int j = 0; j < o->nmb; j++)
                loss += o->loss_mb[j];
    }
    double norm = sqrt(sq), clip = norm > 1 ? 1 / norm : 1;
    float lr = (float)(rm->lr * clip);
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        for (int q = 0; q < o->nparts; q++) {
            rpart *pt = &o->parts[q];
            if (pt->type != PT_GEMM)
                continue;
            size_t n = (size_t)(pt->k * pt->n);
            for (size_t t = 0; t < n; t++) {
                pt->w[t] -= lr * pt->dw[t];
                pt->dw[t] = 0;
            }
        }
    }
    return loss;
}

static void zero_grads(rmodel *rm)
{
    for (int i = 0; i < rm->nops; i++)
        for (int q = 0; q < rm->ops[i].nparts; q++)
            if (rm->ops[i].parts[q].dw)
                memset(rm->ops[i].parts[q].dw, 0,
                       (size_t)(rm->ops[i].parts[q].k * rm->ops[i].parts[q].n) * sizeof(float));
}

static float *copy_weights(const rmodel *rm, size_t *n)
{
    size_t tot = 0;
    for (int i = 0; i < rm->nops; i++)
        for (int q = 0; q < rm->ops[i].nparts; q++)
            if (rm->ops[i].parts[q].type == PT_GEMM)
                tot += (size_t)(rm->ops[i].parts[q].k * rm->ops[i].parts[q].n);
    float *w = malloc((tot ? tot : 1) * sizeof *w);
    if (!w)
        return NULL;
    size_t off = 0;
    for (int i = 0; i < rm->nops; i++)
        for (int q = 0; q < rm->ops[i].nparts; q++) {
            const rpart *pt = &rm->ops[i].parts[q];
            if (pt->type != PT_GEMM)
                continue;
            memcpy(w + off, pt->w, (size_t)(pt->k * pt->n) * sizeof *w);
            off += (size_t)(pt->k * pt->n);
        }
    *n = tot;
    return w;
}

/* ------------------------------------------------------------ options */


static int resolve_opts(const ps_replay_opts *o, ropts *r, ps_err *e)
{
    ps_replay_opts z = {0};
    if (!o)
        o = &z;
    if (o->device && strcmp(o->device, "cpu") != 0) {
        if (strcmp(o->device, "cuda") != 0)
            return ps_errf(e, PS_EINPUT, "replay: --device %s; expected cpu or cuda", o->device);
    }
    r->iterations = o->iterations > 0 ? o->iterations : 5;
    r->warmup = o->warmup_set ? (o->warmup > 0 ? o->warmup : 0) : (o->warmup > 0 ? o->warmup : 2);
    r->workers = o->workers;
    r->reps = o->calib_reps > 0 ? o->calib_reps : 11;
    r->no_pin = o->no_pin;
    r->quiet = o->quiet || getenv("PLANSIM_QUIET");
    r->keep = o->keep_weights;
    r->max_s = o->max_seconds > 0 ? o->max_seconds : 120;
    r->lr = o->lr > 0 ? o->lr : 0.03;
    r->seed = o->seed ? o->seed : 1;
    r->db_path = o->db_path;
    r->corun = o->calib_corun;
    if (getenv("PLANSIM_REPLAY_CORUN"))
        r->corun = atoi(getenv("PLANSIM_REPLAY_CORUN"));
    r->db_out = o->db_out;
    r->cuda = o->device && strcmp(o->device, "cuda") == 0;
    if (r->workers < 0)
        return ps_errf(e, PS_EINPUT, "replay: --workers %d; need >= 0", r->workers);
    return 0;
}

/* ------------------------------------------------------------ tasks */


static void rsched_free(rsched *s)
{
    free(s->t);
    free(s->wstart);
    free(s->wcount);
    free(s->dep_off);
    free(s->deps);
    free(s->tid);
    free(s->tid_off);
    memset(s, 0, sizeof *s);
}

static int tid_of(const rsched *s, const pp_plan *p, int stage, int kind, int mb)
{
    int m = pp_plan_microbatches(p, stage);
    return s->tid[s->tid_off[stage] + kind * m + mb];
}

/* Dependencies of every task: the simulator's data edges (F along stage
 * edges, B against them, over overlapping sample ranges), plus F -> B -> W
 * of the same stage and micro-batch. */
static int build_deps(rsched *s, const pp_plan *p, ps_err *e)
{
    int n = s->ntasks;
    int cap = 4 * n + 16, cnt = 0;
    s->dep_off = malloc(((size_t)n + 1) * sizeof *s->dep_off);
    s->deps = malloc((size_t)cap * sizeof *s->deps);
    if (!s->dep_off || !s->deps)
        return nomem(e);
    for (int i = 0; i < n; i++) {
        const rtask *t = &s->t[i];
        s->dep_off[i] = cnt;
        int tmp[4096], nt = 0;
        if (t->kind == PP_OP_BWD)
            tmp[nt++] = tid_of(s, p, t->stage, PP_OP_FWD, t->mb);
        if (t->kind == PP_OP_WGRAD)
            tmp[nt++] = tid_of(s, p, t->stage, PP_OP_BWD, t->mb);
        for (int q = 0; q < p->nedges && t->kind != PP_OP_WGRAD; q++) {
            int u = p->edges[q].from, v = p->edges[q].to, other;
            if (t->kind == PP_OP_FWD && v == t->stage)
                other = u;
            else if (t->kind == PP_OP_BWD && u == t->stage)
                other = v;
            else
                continue;
            long long bs = p->stages[t->stage].microbatch, bo = p->stages[other].microbatch;
            long long lo = t->mb * bs, hi = lo + bs;
            for (long long k = lo / bo; k * bo < hi; k++)
                if (nt < 4096)
                    tmp[nt++] = tid_of(s, p, other, t->kind, (int)k);
        }
        if (cnt + nt > cap) {
            cap = 2 * (cnt + nt);
            int *d = realloc(s->deps, (size_t)cap * sizeof *d);
            if (!d)
                return nomem(e);
            s->deps = d;
        }
        memcpy(s->deps + cnt, tmp, (size_t)nt * sizeof *tmp);
        cnt += nt;
    }
    s->dep_off[n] = cnt;
    return 0;
}

/* ------------------------------------------------------------ workers */

/* An iteration counts as undisturbed when every worker ran on its core for at
 * least this share of the iteration's wall time. */
#define REPLAY_CLEAN 0.97
#define REPLAY_MAX_TRIES 4

typedef struct rrun {
    rmodel *rm;
    rsched *sc;
    int K, iters;             /* total iterations incl. warm-up */
    int pin;
    int ncpu;
    _Atomic int *done;        /* [ntasks] iteration count finished */
    _Atomic int go;           /* iteration released by worker 0 */
    double t0;
    double *ts, *te;          /* [iters][ntasks] */
    double *tc;               /* [iters][ntasks] thread CPU time of the task */
    int *exec;                /* [ntasks]: order of execution (last iteration), per worker */
    double *wcpu, *wwall;     /* [iters][K]: each worker's thread CPU and wall time over the
                                 iteration (it spins while waiting, so they agree unless
                                 another process took its core) */
    _Atomic int stop;         /* set by the main thread: no more iterations */
    pthread_barrier_t bar;
    int fail;
} rrun;

typedef struct rworker {
    rrun *r;
    int w;
} rworker;

static int iter_clean(const struct rrun *r, int it)
{
    for (int w = 0; w < r->K; w++) {
        double wall = r->wwall[(size_t)it * r->K + w];
        if (wall > 0 && r->wcpu[(size_t)it * r->K + w] < REPLAY_CLEAN * wall)
            return 0;
    }
    return 1;
}

static void *worker_main(void *arg)
{
    rworker *wk = arg;
    rrun *r = wk->r;
    rsched *sc = r->sc;
    int w = wk->w;
    if (r->pin)
        pin_core(w % r->ncpu);
    for (int it = 0; it < r->iters; it++) {
        pthread_barrier_wait(&r->bar); /* the main thread finished the last step */
        if (atomic_load_explicit(&r->stop, memory_order_acquire))
            break;
        if (w == 0) {
            r->t0 = ps_timer_now_s();
            atomic_store_explicit(&r->go, it + 1, memory_order_release);
        } else {
            while (atomic_load_explicit(&r->go, memory_order_acquire) <= it)
                cpu_relax();
        }
        double t0 = r->t0;
        double wc0 = ps_timer_thread_cpu_s(), ww0 = ps_timer_now_s();
        double *ts = r->ts + (size_t)it * sc->ntasks, *te = r->te + (size_t)it * sc->ntasks;
        int nexec = 0;
        for (int k = 0; k < sc->wcount[w]; k++) {
            int i = sc->wstart[w] + k;
            const rtask *t = &sc->t[i];
            for (int d = sc->dep_off[i]; d < sc->dep_off[i + 1]; d++) {
                _Atomic int *f = &r->done[sc->deps[d]];
                for (long spin = 0; atomic_load_explicit(f, memory_order_acquire) <= it; spin++) {
                    if (spin < 20000)
                        cpu_relax();
                    else
                        sched_yield();
                }
            }
            double c0 = ps_timer_thread_cpu_s();
            ts[i] = ps_timer_now_s() - t0;
            run_task(r->rm, t->stage, t->kind, t->mb);
            te[i] = ps_timer_now_s() - t0;
            r->tc[(size_t)it * sc->ntasks + i] = ps_timer_thread_cpu_s() - c0;
            atomic_store_explicit(&r->done[i], it + 1, memory_order_release);
            r->exec[sc->wstart[w] + nexec++] = i;
        }
        r->wcpu[(size_t)it * r->K + w] = ps_timer_thread_cpu_s() - wc0;
        r->wwall[(size_t)it * r->K + w] = ps_timer_now_s() - ww0;
        pthread_barrier_wait(&r->bar); /* iteration done */
    }
    return NULL;
}

/* ------------------------------------------------------------ calibration */


static double median_of(double *v, int n)
{
    ps_stats st;
    ps_stats_compute(v, n, &st);
    return st.median_s;
}

typedef struct wake_arg {
    _Atomic int flag;
    _Atomic int ack;
    int n, pin;
    double *lat;
    double *sent;
} wake_arg;

static void *wake_peer(void *a)
{
    wake_arg *w = a;
    if (w->pin)
        pin_core(1 % ps_timer_ncpus());
    for (int i = 1; i <= w->n; i++) {
        for (long spin = 0; atomic_load_explicit(&w->flag, memory_order_acquire) < i; spin++)
            if (spin > 20000)
                sched_yield();
            else
                cpu_relax();
        w->lat[i - 1] = ps_timer_now_s() - w->sent[i - 1];
        atomic_store_explicit(&w->ack, i, memory_order_release);
    }
    return NULL;
}

/* Latency of a dependency handoff between two spinning workers. */
static double measure_wake(int pin)
{
    enum { N = 64 };
    double lat[N], sent[N];
    wake_arg w = {.n = N, .pin = pin, .lat = lat, .sent = sent};
    if (pin)
        pin_core(0);
    pthread_t th;
    if (pthread_create(&th, NULL, wake_peer, &w))
        return 0;
    for (int i = 1; i <= N; i++) {
        sent[i - 1] = ps_timer_now_s();
        atomic_store_explicit(&w.flag, i, memory_order_release);
        for (long spin = 0; atomic_load_explicit(&w.ack, memory_order_acquire) < i; spin++)
            if (spin > 20000)
                sched_yield();
            else
                cpu_relax();
    }
    pthread_join(th, NULL);
    return median_of(lat, N);
}

static double measure_copy_bps(void)
{
    size_t n = 1 << 20;
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return 1e10;
    }
    double v[9];
    for (int r = 0; r < 11; r++) {
        double t = ps_timer_now_s();
        memcpy(b, a, n * sizeof *a);
        t = ps_timer_now_s() - t;
        if (r >= 2)
            v[r - 2] = t;
        a[r] = (float)r;
    }
    double med = median_of(v, 9);
    free(a);
    free(b);
    return med > 0 ? (double)(n * sizeof(float)) / med : 1e10;
}

/* A GEMM loop on another core while calibrating: the replay's workers
 * share the memory system with a busy neighbour (docs/replay.md). */
typedef struct corun {
    _Atomic int stop;
    int core;
} corun;

static void *corun_main(void *a)
{
    corun *c = a;
    if (c->core >= 0)
        pin_core(c->core);
    int64_t M = 128, N = 512, K = 512;
    float *A = calloc((size_t)(M * K), sizeof *A), *B = calloc((size_t)(K * N), sizeof *B),
          *C = calloc((size_t)(M * N), sizeof *C);
    if (A && B && C)
        while (!atomic_load_explicit(&c->stop, memory_order_relaxed))
            ps_cpu_sgemm(0, 0, M, N, K, 1.f, A, K, B, N, 0.f, C, N);
    free(A);
    free(B);
    free(C);
    return NULL;
}

/* Every op timed on the core of the worker that runs it in the replay. */
static int calibrate(rmodel *rm, const ropts *ro, const int *stage_worker, int K, calib *c,
                     ps_err *e)
{
    cpu_set_t mask0;
    int have_mask = !pthread_getaffinity_np(pthread_self(), sizeof mask0, &mask0);
    c->fwd = calloc((size_t)rm->nops, sizeof(double));
    c->bi = calloc((size_t)rm->nops, sizeof(double));
    c->bw = calloc((size_t)rm->nops, sizeof(double));
    int reps = ro->reps > 64 ? 64 : ro->reps, warm = 2;
    double *v = malloc((size_t)rm->nops * 3 * 64 * sizeof *v);
    if (!c->fwd || !c->bi || !c->bw || !v) {
        free(v);
        return nomem(e);
    }
    int pinned = !ro->no_pin && !pin_core(0);
    corun cr = {.core = ro->no_pin ? -1 : 1 % ps_timer_ncpus()};
    pthread_t crt;
    int corunning = ro->corun && !pthread_create(&crt, NULL, corun_main, &cr);
    ps_progress pr;
    if (!ro->quiet)
        ps_progress_start(&pr, "replay calibrate", (size_t)(K * (ro->reps + 2)));
    /* One whole iteration first, sequentially: every buffer touched (no
     * first-touch page faults while timing) and holding real values. */
    const pp_plan *p = rm->p;
    for (int s = 0; s < p->nstages; s++)
        for (int j = 0; j < pp_plan_microbatches(p, s); j++)
            run_task(rm, s, PP_OP_FWD, j);
    for (int s = p->nstages - 1; s >= 0; s--)
        for (int j = 0; j < pp_plan_microbatches(p, s); j++) {
            run_task(rm, s, PP_OP_BWD, j);
            if (rm->zb)
                run_task(rm, s, PP_OP_WGRAD, j);
        }
    /* Round-robin over the repetitions: each repetition runs every op of a
     * worker once (forward in order, then backward in reverse, as a stage
     * does), on micro-batch r mod m, so that slow spells of the machine hit
     * every op alike and each op runs after its neighbours, as in the replay. */
    for (int w = 0; w < K; w++) {
        if (pinned && w > 0)
            pin_core(w % ps_timer_ncpus());
        for (int r = 0; r < warm + reps; r++) {
            for (int i = 0; i < rm->nops; i++) {
                rop *o = &rm->ops[i];
                if (stage_worker[o->stage] != w)
                    continue;
                double t = ps_timer_now_s();
                op_fwd(rm, o, r % o->nmb);
                if (r >= warm)
                    v[(i * 3 + 0) * 64 + r - warm] = ps_timer_now_s() - t;
            }
            for (int i = rm->nops - 1; i >= 0; i--) {
                rop *o = &rm->ops[i];
                if (stage_worker[o->stage] != w)
                    continue;
                double t = ps_timer_now_s();
                op_bwd_input(rm, o, r % o->nmb);
                double t1 = ps_timer_now_s();
                op_bwd_weight(rm, o, r % o->nmb);
                double t2 = ps_timer_now_s();
                if (r >= warm) {
                    v[(i * 3 + 1) * 64 + r - warm] = t1 - t;
                    v[(i * 3 + 2) * 64 + r - warm] = t2 - t1;
                }
            }
            if (!ro->quiet)
                ps_progress_update(&pr, (size_t)(w * (warm + reps) + r + 1), "");
        }
    }
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        c->fwd[i] = median_of(v + (i * 3 + 0) * 64, reps);
        c->bi[i] = o->cls == OC_INPUT ? 0 : median_of(v + (i * 3 + 1) * 64, reps);
        c->bw[i] = o->cls == OC_COMPUTE ? median_of(v + (i * 3 + 2) * 64, reps) : 0;
    }
    free(v);
    if (!ro->quiet)
        ps_progress_end(&pr);
    if (corunning) {
        atomic_store(&cr.stop, 1);
        pthread_join(crt, NULL);
    }
    zero_grads(rm);
    c->copy_bps = measure_copy_bps();
    c->wake_s = measure_wake(pinned);
    if (have_mask)
        pthread_setaffinity_np(pthread_self(), sizeof mask0, &mask0);
    return 0;
}

static void calib_free(calib *c)
{
    free(c->fwd);
    free(c->bi);
    free(c->bw);
}

/* The calibration as a standard profile DB: one row per distinct
 * (cost-model op, phase) at the micro-batch the plan runs it (forward
 * shapes; gemm backward phases under cm_phase_op's transposed shapes;
 * whole-op times for one-part ops only). */
static int write_db(const rmodel *rm, const calib *c, const char *path, const ps_db_meta *meta,
                    const char *backend, const char *timer, ps_err *e)
{
    int gpu = strcmp(meta->device_kind, "cuda") == 0;
    ps_db_writer *w = ps_db_writer_open(path, meta, 1, e);
    if (!w)
        return e ? e->code : PS_ERUN;
    int rc = 0, nw = 0;
    ps_op *written = malloc(((size_t)rm->nops * 3 + 1) * sizeof *written);
    if (!written) {
        ps_db_writer_abort(w);
        return nomem(e);
    }
    for (int i = 0; i < rm->nops && !rc; i++) {
        const rop *o = &rm->ops[i];
        if (o->cls != OC_COMPUTE || o->mo->cls != PP_K_SHAPED)
            continue;
        for (int ph = 0; ph < 3 && !rc; ph++) {
            double t = ph == 0 ? c->fwd[i] : ph == 1 ? c->bi[i] : c->bw[i];
            if (ph > 0 && strcmp(o->mo->shape.kind, "gemm") != 0)
                continue;
            ps_op op = o->mo->shape, q;
            op.d[0] *= o->b; /* gemm m, elementwise n: the batch dimension */
            if (cm_phase_op(&op, (cm_phase)ph, &q, e)) {
                rc = e ? e->code : PS_ERUN;
                break;
            }
            int dup = 0; /* one row per distinct op: the first measured */
            for (int k = 0; k < nw && !dup; k++)
                dup = ps_op_equal(&written[k], &q);
            if (dup)
                continue;
            written[nw++] = q;
            ps_stats st = {1, t, t, t, t, t};
            if (ps_db_writer_add_op(w, &q, backend, timer, &st, gpu ? t : NAN, e) < 0)
                rc = e ? e->code : PS_ERUN;
        }
    }
    free(written);
    if (!rc && meta->threads > 0)
        rc = ps_db_writer_add_peak(w, PS_PEAK_THREADS, meta->threads, "", e);
    if (!rc)
        rc = ps_db_writer_add_peak(w, PS_PEAK_MEMCPY, 2 * c->copy_bps, "B/s", e);
    if (rc) {
        ps_db_writer_abort(w);
        return rc;
    }
    return ps_db_writer_commit(w, e);
}

/* A copy of the model with every op's calibrated times as `measured`. */
static pp_model *measured_model(const rmodel *rm, const calib *c, ps_err *e)
{
    const pp_model *m = rm->m;
    pp_model *n = pp_model_new(pp_model_name(m), e);
    if (!n)
        return NULL;
    for (int i = 0; i < rm->nops; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        pp_op_spec sp = {.id = o->id, .kind = o->kind, .shape = &o->shape, .parts = o->parts,
                         .nparts = o->nparts, .param_bytes = o->param_bytes,
                         .out_bytes = o->out_bytes, .act_bytes = o->act_bytes};
        if (o->cls != PP_K_SHAPED)
            sp.shape = NULL;
        sp.measured = (pp_measured){1, rm->ops[i].b, c->fwd[i], c->bi[i], c->bw[i]};
        if (pp_model_add_op(n, &sp, e) < 0) {
            pp_model_free(n);
            return NULL;
        }
    }
    for (int i = 0; i < rm->nops; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        for (int q = 0; q < o->ninputs; q++)
            if (pp_model_add_input(n, i, o->inputs[q], e)) {
                pp_model_free(n);
                return NULL;
            }
    }
    if (pp_model_finish(n, e)) {
        pp_model_free(n);
        return NULL;
    }
    return n;
}

/* ------------------------------------------------------------ the run */

static int worker_map(const pp_plan *p, int K, int *stage_worker)
{
    int ids[4096], nd = 0;
    for (int s = 0; s < p->nstages; s++) {
        int d = p->stages[s].devices[0], seen = 0;
        for (int k = 0; k < nd && !seen; k++)
            seen = ids[k] == d;
        if (!seen && nd < 4096)
            ids[nd++] = d;
    }
    for (int a = 1; a < nd; a++)
        for (int b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            int t = ids[b];
            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    if (K <= 0)
        return nd;
    for (int s = 0; s < p->nstages; s++)
        for (int k = 0; k < nd; k++)
            if (ids[k] == p->stages[s].devices[0])
                stage_worker[s] = k % K;
    return nd;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Data-parallel stages run as one replica with the whole micro-batch (the
 * replay has no all-reduce): a copy of the plan with each stage on its
 * first device.  NULL with *rc = 0 when no stage is replicated. */
static pp_plan *collapse_dp(const pp_plan *p, const pp_model *m, int *rc, ps_err *e)
{
    *rc = 0;
    int any = 0;
    for (int s = 0; s < p->nstages; s++)
        any |= p->stages[s].ndevices > 1;
    if (!any)
        return NULL;
    pp_plan *q = pp_plan_new(p->nstages, e);
    if (!q) {
        *rc = e ? e->code : PS_ERUN;
        return NULL;
    }
    q->minibatch = p->minibatch;
    q->schedule = p->schedule;
    q->chunks = p->chunks;
    q->optimizer = p->optimizer;
    q->sequential = p->sequential;
    q->shared_devices = 1;
    for (int s = 0; s < p->nstages && !*rc; s++) {
        const pp_stage *g = &p->stages[s];
        *rc = pp_plan_set_stage(q, s, g->ops, g->nops, g->microbatch, g->devices, 1, g->inflight,
                                e);
    }
    if (!*rc)
        *rc = pp_plan_finalize(q, m, NULL, e);
    if (*rc) {
        pp_plan_free(q);
        return NULL;
    }
    return q;
}

static int replay_run(const pp_plan *p, const pp_model *m, const ps_replay_opts *o,
                      ps_replay_result *out, ps_err *e);

int ps_replay_run(const pp_plan *p, const pp_model *m, const ps_replay_opts *o,
                  ps_replay_result *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (p->nstages < 1 || !p->stages[0].ops)
        return ps_errf(e, PS_EINPUT, "replay: the plan is not finalized");
    int rc;
    pp_plan *q = collapse_dp(p, m, &rc, e);
    if (rc)
        return rc;
    rc = replay_run(q ? q : p, m, o, out, e);
    pp_plan_free(q);
    return rc;
}

static int replay_run(const pp_plan *p, const pp_model *m, const ps_replay_opts *o,
                      ps_replay_result *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    ropts ro;
    int rc = resolve_opts(o, &ro, e);
    if (rc)
        return rc;
    if (p->nstages < 1 || p->nedges < 0 || !p->stages[0].ops)
        return ps_errf(e, PS_EINPUT, "replay: the plan is not finalized");
    if (ro.cuda)
        return ps_rp_cuda_run(p, m, &ro, out, e); /* real/replay_cuda.c */
    int S = p->nstages;
    rmodel rm;
    rsched sc = {0};
    calib cal = {0};
    pp_model *mm = NULL;
    pp_sim *sim = NULL;
    cm_model *cmm = NULL;
    ps_db *db = NULL;
    rrun run = {0};
    pthread_t *th = NULL;
    rworker *wk = NULL;
    int bar_init = 0;
    char tmpdb[256] = "";
    int *stage_worker = calloc((size_t)S, sizeof *stage_worker);
    if (!stage_worker)
        return nomem(e);
    if ((rc = rmodel_shapes(&rm, p, m, e)))
        goto out;
    rm.lr = ro.lr;
    /* Guards before anything expensive. */
    {
        double bytes = rmodel_bytes_estimate(&rm);
        double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        if (ram > 0 && bytes > 0.5 * ram) {
            rc = ps_errf(e, PS_EINPUT, "replay: the plan needs about %.3g GB of buffers; more "
                         "than half of this machine's %.3g GB (a model too large for a CPU "
                         "replay)", bytes / 1e9, ram / 1e9);
            goto out;
        }
        /* An optimistic single-core rate: only refuses plans that are
         * clearly too long before calibrating. */
        double est = rmodel_flops(&rm) / 2e11 * (ro.warmup + ro.iterations + ro.reps + 3);
        if (est > ro.max_s) {
            rc = ps_errf(e, PS_EINPUT, "replay: the plan would take at least %.3g s to calibrate "
                         "and replay (%.3g GFLOP per iteration), over --max-seconds %g; shrink "
                         "the model or raise the limit", est, rmodel_flops(&rm) / 1e9, ro.max_s);
            goto out;
        }
    }
    int ncpu = ps_timer_ncpus();
    int nd = worker_map(p, 0, NULL);
    int K = ro.workers > 0 ? ro.workers : (nd < ncpu ? nd : ncpu);
    if (K < 1)
        K = 1;
    worker_map(p, K, stage_worker);
    int blas0 = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    if ((rc = rmodel_alloc(&rm, ro.seed, e)))
        goto out_blas;
    double tc = ps_timer_now_s();
    if ((rc = calibrate(&rm, &ro, stage_worker, K, &cal, e)))
        goto out_blas;
    out->calib_wall_s = ps_timer_now_s() - tc;
    /* The CPU cluster: devices = workers, links = the handoff latency (the
     * copies themselves run inside the consumer's calibrated task). */
    pp_cluster cl;
    memset(&cl, 0, sizeof cl);
    snprintf(cl.name, sizeof cl.name, "cpu-replay");
    cl.devices_per_node = 1 << 20;
    cl.nodes = 1;
    cl.mem_bytes = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    cl.intra = cl.inter = (cm_ab){cal.wake_s, 1e15};
    cl.allreduce = CM_ALG_RING;
    out->link_alpha_s = cal.wake_s;
    out->link_bytes_per_s = 1e15;
    const char *dbw = ro.db_out;
    if (!dbw && !ro.db_path) {
        snprintf(tmpdb, sizeof tmpdb, "/tmp/plansim-replay-%d.h5", (int)getpid());
        dbw = tmpdb;
    }
    ps_db_meta cpu_meta = {.device_kind = "cpu", .device_name = "cpu (replay calibration)",
                           .suite_json = "", .threads = 1, .pinned_core = 0};
    if (dbw && (rc = write_db(&rm, &cal, dbw, &cpu_meta, "openblas", "clock", e)))
        goto out_blas;
    pp_sim_opts so = {.no_memory_limit = 1, .device_of_stage = stage_worker};
    const pp_model *pm;
    if (ro.db_path) {
        if ((rc = ps_db_open(ro.db_path, &db, e)))
            goto out_blas;
        if (!(cmm = cm_model_from_db(db, NULL, NULL, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out_blas;
        }
        so.cm = cmm;
        pm = m;
    } else {
        if (!(mm = measured_model(&rm, &cal, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out_blas;
        }
        pm = mm;
    }
    if (!(sim = pp_sim_plan(p, pm, &cl, &so, e))) {
        rc = e ? e->code : PS_ERUN;
        goto out_blas;
    }
    rc = pp_sim_run(sim, e);
    if (rc)
        goto out_blas;
    pp_plan_result pres;
    if ((rc = pp_sim_plan_result(sim, &pres, e)))
        goto out_blas;
    out->predicted_iteration_s = pres.iteration_s;
    out->stage_pred_busy_s = pres.stage_busy_s;
    pres.stage_busy_s = NULL;
    pp_plan_result_free(&pres);
    if (out->predicted_iteration_s * (ro.warmup + ro.iterations) > ro.max_s) {
        rc = ps_errf(e, PS_EINPUT, "replay: predicted %.3g s per iteration x %d iterations is "
                     "over --max-seconds %g", out->predicted_iteration_s,
                     ro.warmup + ro.iterations, ro.max_s);
        goto out_blas;
    }
    /* Worker task lists in the simulator's per-device order. */
    {
        int nsl = pp_sim_ndevices(sim), tot = 0;
        sc.K = K;
        sc.wstart = calloc((size_t)K, sizeof(int));
        sc.wcount = calloc((size_t)K, sizeof(int));
        sc.tid_off = calloc((size_t)S, sizeof(int));
        int ntid = 0;
        for (int s = 0; s < S; s++) {
            sc.tid_off[s] = ntid;
            ntid += 3 * pp_plan_microbatches(p, s);
        }
        sc.tid = malloc((size_t)ntid * sizeof(int));
        if (!sc.wstart || !sc.wcount || !sc.tid_off || !sc.tid) {
            rc = nomem(e);
            goto out_blas;
        }
        for (int i = 0; i < ntid; i++)
            sc.tid[i] = -1;
        pp_dev_task **lists = calloc((size_t)nsl, sizeof *lists);
        int *lens = calloc((size_t)nsl, sizeof *lens);
        if (!lists || !lens) {
            free(lists);
            free(lens);
            rc = nomem(e);
            goto out_blas;
        }
        for (int k = 0; k < nsl && !rc; k++) {
            rc = pp_sim_device_order(sim, k, &lists[k], &lens[k], e);
            tot += lens[k];
        }
        if (!rc && !(sc.t = calloc((size_t)(tot ? tot : 1), sizeof *sc.t)))
            rc = nomem(e);
        int c = 0;
        for (int w = 0; w < K && !rc; w++) {
            sc.wstart[w] = c;
            for (int k = 0; k < nsl; k++) {
                if (pp_sim_device_id(sim, k) != w)
                    continue;
                for (int q = 0; q < lens[k]; q++) {
                    const pp_dev_task *d = &lists[k][q];
                    sc.t[c] = (rtask){w, d->node, d->kind, d->mb, c - sc.wstart[w], d->start_s,
                                      d->end_s};
                    sc.tid[sc.tid_off[d->node] + d->kind * pp_plan_microbatches(p, d->node) +
                           d->mb] = c;
                    c++;
                }
            }
            sc.wcount[w] = c - sc.wstart[w];
        }
        for (int k = 0; k < nsl; k++)
            free(lists[k]);
        free(lists);
        free(lens);
        sc.ntasks = c;
        if (rc)
            goto out_blas;
        if ((rc = build_deps(&sc, p, e)))
            goto out_blas;
    }
    /* Run. */
    run.rm = &rm;
    run.sc = &sc;
    run.K = K;
    /* Measure until ro.iterations undisturbed iterations (every worker had
     * its core: thread CPU >= REPLAY_CLEAN x wall), at most REPLAY_MAX_TRIES
     * times as many (and within --max-seconds); on a shared machine another
     * process's burst then costs time instead of accuracy. */
    run.iters = ro.warmup + ro.iterations * (o->exact_iterations ? 1 : REPLAY_MAX_TRIES);
    run.wcpu = calloc((size_t)run.iters * K + 1, sizeof(double));
    run.wwall = calloc((size_t)run.iters * K + 1, sizeof(double));
    atomic_store(&run.stop, 0);
    run.pin = !ro.no_pin;
    run.ncpu = ncpu;
    run.done = calloc((size_t)sc.ntasks + 1, sizeof *run.done);
    run.ts = malloc((size_t)run.iters * sc.ntasks * sizeof(double) + 8);
    run.te = malloc((size_t)run.iters * sc.ntasks * sizeof(double) + 8);
    run.tc = malloc((size_t)run.iters * sc.ntasks * sizeof(double) + 8);
    run.exec = malloc(((size_t)sc.ntasks + 1) * sizeof(int));
    out->loss = calloc((size_t)run.iters, sizeof(double));
    out->iteration_s = calloc((size_t)run.iters, sizeof(double));
    th = calloc((size_t)K, sizeof *th);
    wk = calloc((size_t)K, sizeof *wk);
    if (!run.done || !run.ts || !run.te || !run.tc || !run.exec || !run.wcpu || !run.wwall ||
        !out->loss || !out->iteration_s || !th ||
        !wk) {
        rc = nomem(e);
        goto out_blas;
    }
    if (pthread_barrier_init(&run.bar, NULL, (unsigned)K + 1)) {
        rc = ps_errf(e, PS_ERUN, "replay: pthread_barrier_init failed");
        goto out_blas;
    }
    bar_init = 1;
    double tr = ps_timer_now_s();
    int started = 0;
    for (int w = 0; w < K; w++) {
        wk[w] = (rworker){&run, w};
        if (pthread_create(&th[w], NULL, worker_main, &wk[w]))
            break;
        started++;
    }
    if (started < K) {
        /* Cannot run partially: the barrier counts K + 1. */
        rc = ps_errf(e, PS_ERUN, "replay: could not start %d worker threads", K);
        for (int w = 0; w < started; w++)
            pthread_cancel(th[w]);
        for (int w = 0; w < started; w++)
            pthread_join(th[w], NULL);
        goto out_blas;
    }
    ps_progress pr;
    if (!ro.quiet)
        ps_progress_start(&pr, "replay", (size_t)run.iters);
    int nrun = 0, nclean = 0;
    for (int it = 0; it < run.iters; it++) {
        pthread_barrier_wait(&run.bar); /* release iteration it */
        pthread_barrier_wait(&run.bar); /* wait for it to end */
        out->loss[it] = sgd_step(&rm);
        nrun = it + 1;
        if (it >= ro.warmup && iter_clean(&run, it))
            nclean++;
        double spent = ps_timer_now_s() - tr;
        if (it + 1 < run.iters && it + 1 >= ro.warmup + ro.iterations &&
            (nclean >= ro.iterations || spent > ro.max_s)) {
            atomic_store_explicit(&run.stop, 1, memory_order_release);
            pthread_barrier_wait(&run.bar); /* the workers see stop and leave */
            break;
        }
        if (!ro.quiet) {
            char det[64];
            snprintf(det, sizeof det, "loss %.5g", out->loss[it]);
            ps_progress_update(&pr, (size_t)it + 1, det);
        }
    }
    if (!ro.quiet)
        ps_progress_end(&pr);
    for (int w = 0; w < K; w++)
        pthread_join(th[w], NULL);
    out->replay_wall_s = ps_timer_now_s() - tr;
    /* Results. */
    int N = sc.ntasks, med_it = ro.warmup, M = nrun - ro.warmup;
    {
        double *mk = malloc((size_t)M * sizeof *mk);
        double *sorted = malloc((size_t)M * sizeof *sorted);
        if (!mk || !sorted) {
            free(mk);
            free(sorted);
            rc = nomem(e);
            goto out_blas;
        }
        /* The median over the undisturbed iterations (all of them when
         * none was). */
        int ns = 0;
        for (int i = 0; i < M; i++) {
            const double *te = run.te + (size_t)(ro.warmup + i) * N;
            double mx = 0;
            for (int t = 0; t < N; t++)
                if (te[t] > mx)
                    mx = te[t];
            mk[i] = out->iteration_s[i] = mx;
            if (nclean == 0 || iter_clean(&run, ro.warmup + i))
                sorted[ns++] = mx;
            else
                mk[i] = INFINITY; /* never the timeline */
        }
        qsort(sorted, (size_t)ns, sizeof *sorted, cmp_double);
        double med = sorted[(ns - 1) / 2];
        if (ns % 2 == 0)
            med = 0.5 * (sorted[ns / 2 - 1] + sorted[ns / 2]);
        out->measured_iteration_s = med;
        out->clean_iterations = nclean;
        /* the iteration closest to the median gives the timeline */
        double best = INFINITY;
        for (int i = 0; i < M; i++)
            if (fabs(mk[i] - med) < best) {
                best = fabs(mk[i] - med);
                med_it = ro.warmup + i;
            }
        free(mk);
        free(sorted);
    }
    snprintf(out->device, sizeof out->device, "cpu: %s, %d worker%s, 1 BLAS thread each",
             ps_cpu_blas_core(), K, K == 1 ? "" : "s");
    out->nstages = S;
    out->workers = K;
    out->minibatch = p->minibatch;
    out->iterations = M;
    out->warmup = ro.warmup;
    out->stage_worker = stage_worker;
    stage_worker = NULL;
    out->rel_err = (out->predicted_iteration_s - out->measured_iteration_s) /
                   out->measured_iteration_s;
    out->throughput_measured = p->minibatch / out->measured_iteration_s;
    out->throughput_predicted = p->minibatch / out->predicted_iteration_s;
    out->loss_first = out->loss[0];
    out->loss_last = out->loss[nrun - 1];
    out->ntasks = N;
    out->tasks = calloc((size_t)N + 1, sizeof *out->tasks);
    out->stage_meas_busy_s = calloc((size_t)S, sizeof(double));
    out->exec_order = calloc((size_t)K, sizeof *out->exec_order);
    out->worker_ntasks = calloc((size_t)K, sizeof(int));
    if (!out->tasks || !out->stage_meas_busy_s || !out->exec_order || !out->worker_ntasks) {
        rc = nomem(e);
        goto out_blas;
    }
    double wall = 0, cpu = 0;
    for (int i = 0; i < N; i++) {
        const rtask *t = &sc.t[i];
        double a = run.ts[(size_t)med_it * N + i], b = run.te[(size_t)med_it * N + i];
        out->tasks[i] = (ps_replay_task){t->worker, t->stage, t->kind, t->mb,
                                         p->schedule == PP_INTERLEAVED
                                             ? t->stage / (S / (p->chunks > 0 ? p->chunks : 1))
                                             : 0,
                                         t->seq, t->ps, t->pe, a, b};
        out->stage_meas_busy_s[t->stage] += b - a;
        wall += b - a;
        cpu += run.tc[(size_t)med_it * N + i];
    }
    out->cpu_fraction = wall > 0 ? cpu / wall : 1;
    for (int w = 0; w < K; w++) {
        out->worker_ntasks[w] = sc.wcount[w];
        out->exec_order[w] = malloc(((size_t)sc.wcount[w] + 1) * sizeof(int));
        if (!out->exec_order[w]) {
            rc = nomem(e);
            goto out_blas;
        }
        memcpy(out->exec_order[w], run.exec + sc.wstart[w], (size_t)sc.wcount[w] * sizeof(int));
    }
    out->dep_off = sc.dep_off;
    out->deps = sc.deps;
    sc.dep_off = sc.deps = NULL;
    if (ro.keep && !(out->weights = copy_weights(&rm, &out->nweights))) {
        rc = nomem(e);
        goto out_blas;
    }
out_blas:
    ps_cpu_blas_set_threads(blas0);
out:
    if (bar_init)
        pthread_barrier_destroy(&run.bar);
    free(th);
    free(wk);
    free((void *)run.done);
    free(run.ts);
    free(run.te);
    free(run.tc);
    free(run.wcpu);
    free(run.wwall);
    free(run.exec);
    if (tmpdb[0])
        unlink(tmpdb);
    pp_sim_free(sim);
    pp_model_free(mm);
    cm_model_free(cmm);
    ps_db_close(db);
    calib_free(&cal);
    rsched_free(&sc);
    rmodel_free(&rm);
    free(stage_worker);
    if (rc)
        ps_replay_result_free(out);
    return rc;
}

int ps_replay_plan_file(const char *plan_path, const ps_replay_opts *o, ps_replay_result *out,
                        ps_err *e)
{
    memset(out, 0, sizeof *out);
    pp_model *m = NULL;
    pp_cluster c;
    pp_plan *p = pp_plan_load(plan_path, &m, &c, e);
    if (!p) {
        pp_model_free(m);
        return e && e->code ? e->code : PS_EINPUT;
    }
    int rc = ps_replay_run(p, m, o, out, e);
    if (rc)
        ps_err_prefix(e, "%s: ", plan_path);
    pp_plan_free(p);
    pp_model_free(m);
    return rc;
}

void ps_replay_result_free(ps_replay_result *r)
{
    if (!r)
        return;
    free(r->stage_worker);
    free(r->iteration_s);
    free(r->loss);
    free(r->stage_pred_busy_s);
    free(r->stage_meas_busy_s);
    free(r->tasks);
    free(r->dep_off);
    free(r->deps);
    if (r->exec_order)
        for (int w = 0; w < r->workers; w++)
            free(r->exec_order[w]);
    free(r->exec_order);
    free(r->worker_ntasks);
    free(r->weights);
    memset(r, 0, sizeof *r);
}

int ps_replay_sequential(const pp_model *m, int minibatch, int steps, const ps_replay_opts *o,
                         float **weights, size_t *n, double *loss_last, ps_err *e)
{
    *weights = NULL;
    *n = 0;
    ropts ro;
    int rc = resolve_opts(o, &ro, e);
    if (rc)
        return rc;
    int nops = pp_model_nops(m);
    int *all = malloc((size_t)nops * sizeof *all), dev = 0;
    if (!all)
        return nomem(e);
    for (int i = 0; i < nops; i++)
        all[i] = i;
    pp_plan *p = pp_plan_new(1, e);
    if (!p) {
        free(all);
        return e ? e->code : PS_ERUN;
    }
    p->minibatch = minibatch;
    p->schedule = PP_GPIPE;
    p->optimizer = CM_OPT_SGD;
    rmodel rm;
    memset(&rm, 0, sizeof rm);
    if ((rc = pp_plan_set_stage(p, 0, all, nops, minibatch, &dev, 1, 0, e)) ||
        (rc = pp_plan_finalize(p, m, NULL, e)) || (rc = rmodel_shapes(&rm, p, m, e)))
        goto out;
    rm.lr = ro.lr;
    if ((rc = rmodel_alloc(&rm, ro.seed, e)))
        goto out;
    double loss = 0;
    for (int s = 0; s < steps; s++) {
        run_task(&rm, 0, PP_OP_FWD, 0);
        run_task(&rm, 0, PP_OP_BWD, 0);
        loss = sgd_step(&rm);
    }
    if (loss_last)
        *loss_last = loss;
    if (!(*weights = copy_weights(&rm, n)))
        rc = nomem(e);
out:
    rmodel_free(&rm);
    pp_plan_free(p);
    free(all);
    return rc;
}

/* ------------------------------------------------------------ output */

static const char *kind_name(int k)
{
    return k == PP_OP_FWD ? "F" : k == PP_OP_BWD ? "B" : "W";
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *ps_replay_to_json(const ps_replay_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "measured_iteration_s", jnum(r->measured_iteration_s));
    json_object_set_new(o, "predicted_iteration_s", jnum(r->predicted_iteration_s));
    json_object_set_new(o, "rel_err", jnum(r->rel_err));
    json_object_set_new(o, "throughput_measured", jnum(r->throughput_measured));
    json_object_set_new(o, "throughput_predicted", jnum(r->throughput_predicted));
    json_object_set_new(o, "device", json_string(r->device));
    json_object_set_new(o, "workers", json_integer(r->workers));
    json_object_set_new(o, "stages", json_integer(r->nstages));
    json_object_set_new(o, "minibatch", json_integer(r->minibatch));
    json_object_set_new(o, "iterations", json_integer(r->iterations));
    json_object_set_new(o, "warmup", json_integer(r->warmup));
    json_object_set_new(o, "loss_first", jnum(r->loss_first));
    json_object_set_new(o, "loss_last", jnum(r->loss_last));
    json_object_set_new(o, "link_alpha_s", jnum(r->link_alpha_s));
    json_object_set_new(o, "calibration_s", jnum(r->calib_wall_s));
    json_object_set_new(o, "replay_wall_s", jnum(r->replay_wall_s));
    json_object_set_new(o, "cpu_fraction", jnum(r->cpu_fraction));
    json_object_set_new(o, "clean_iterations", json_integer(r->clean_iterations));
    json_t *a = json_array(), *b = json_array(), *w = json_array(), *it = json_array();
    for (int s = 0; s < r->nstages; s++) {
        json_array_append_new(a, jnum(r->stage_pred_busy_s[s]));
        json_array_append_new(b, jnum(r->stage_meas_busy_s[s]));
        json_array_append_new(w, json_integer(r->stage_worker[s]));
    }
    for (int i = 0; i < r->iterations; i++)
        json_array_append_new(it, jnum(r->iteration_s[i]));
    json_object_set_new(o, "stage_predicted_busy_s", a);
    json_object_set_new(o, "stage_measured_busy_s", b);
    json_object_set_new(o, "stage_worker", w);
    json_object_set_new(o, "measured_iterations_s", it);
    json_t *ls = json_array();
    for (int i = 0; i < r->warmup + r->iterations; i++)
        json_array_append_new(ls, jnum(r->loss[i]));
    json_object_set_new(o, "loss", ls);
    return o;
}

int ps_replay_write_h5(const ps_replay_result *r, const char *plan_name, const char *path,
                       ps_err *e)
{
    ps_h5 *h = ps_h5_open_result(path, 1, 0, NULL, e);
    if (!h)
        return e ? e->code : PS_ERUN;
    hid_t f = ps_h5_file(h);
    ps_table *t = ps_table_new(), *st = ps_table_new(), *sm = ps_table_new();
    int rc = 0;
    if (!t || !st || !sm) {
        rc = nomem(e);
        goto out;
    }
    rc = ps_h5_attr_set_str(f, "/", "plan", plan_name ? plan_name : "", e);
    if (!rc)
        rc = ps_h5_attr_set_str(f, "/", "device", r->device, e);
    if (!rc)
        rc = ps_h5_attr_set_int(f, "/", "iterations", r->iterations, e);
    if (!rc)
        rc = ps_h5_attr_set_int(f, "/", "workers", r->workers, e);
    if (rc)
        goto out;
    int cw = ps_table_add_col(t, "worker", PS_COL_INT, ""),
        cs = ps_table_add_col(t, "stage", PS_COL_INT, ""),
        ck = ps_table_add_col(t, "kind", PS_COL_STR, ""),
        cm = ps_table_add_col(t, "mb", PS_COL_INT, ""),
        cq = ps_table_add_col(t, "seq", PS_COL_INT, ""),
        c1 = ps_table_add_col(t, "predicted_start_s", PS_COL_DOUBLE, "s"),
        c2 = ps_table_add_col(t, "predicted_end_s", PS_COL_DOUBLE, "s"),
        c3 = ps_table_add_col(t, "measured_start_s", PS_COL_DOUBLE, "s"),
        c4 = ps_table_add_col(t, "measured_end_s", PS_COL_DOUBLE, "s");
    for (int i = 0; i < r->ntasks; i++) {
        const ps_replay_task *x = &r->tasks[i];
        size_t row = ps_table_add_row(t);
        ps_table_set_i(t, row, cw, x->worker);
        ps_table_set_i(t, row, cs, x->stage);
        ps_table_set_s(t, row, ck, kind_name(x->kind));
        ps_table_set_i(t, row, cm, x->mb);
        ps_table_set_i(t, row, cq, x->seq);
        ps_table_set_d(t, row, c1, x->pred_start_s);
        ps_table_set_d(t, row, c2, x->pred_end_s);
        ps_table_set_d(t, row, c3, x->meas_start_s);
        ps_table_set_d(t, row, c4, x->meas_end_s);
    }
    int ss = ps_table_add_col(st, "stage", PS_COL_INT, ""),
        sw = ps_table_add_col(st, "worker", PS_COL_INT, ""),
        sp = ps_table_add_col(st, "predicted_busy_s", PS_COL_DOUBLE, "s"),
        sb = ps_table_add_col(st, "measured_busy_s", PS_COL_DOUBLE, "s");
    for (int s = 0; s < r->nstages; s++) {
        size_t row = ps_table_add_row(st);
        ps_table_set_i(st, row, ss, s);
        ps_table_set_i(st, row, sw, r->stage_worker[s]);
        ps_table_set_d(st, row, sp, r->stage_pred_busy_s[s]);
        ps_table_set_d(st, row, sb, r->stage_meas_busy_s[s]);
    }
    int m1 = ps_table_add_col(sm, "predicted_iteration_s", PS_COL_DOUBLE, "s"),
        m2 = ps_table_add_col(sm, "measured_iteration_s", PS_COL_DOUBLE, "s"),
        m3 = ps_table_add_col(sm, "rel_err", PS_COL_DOUBLE, ""),
        m4 = ps_table_add_col(sm, "throughput_predicted", PS_COL_DOUBLE, "samples/s"),
        m5 = ps_table_add_col(sm, "throughput_measured", PS_COL_DOUBLE, "samples/s"),
        m6 = ps_table_add_col(sm, "loss_first", PS_COL_DOUBLE, ""),
        m7 = ps_table_add_col(sm, "loss_last", PS_COL_DOUBLE, ""),
        m8 = ps_table_add_col(sm, "workers", PS_COL_INT, ""),
        m9 = ps_table_add_col(sm, "stages", PS_COL_INT, "");
    size_t row = ps_table_add_row(sm);
    ps_table_set_d(sm, row, m1, r->predicted_iteration_s);
    ps_table_set_d(sm, row, m2, r->measured_iteration_s);
    ps_table_set_d(sm, row, m3, r->rel_err);
    ps_table_set_d(sm, row, m4, r->throughput_predicted);
    ps_table_set_d(sm, row, m5, r->throughput_measured);
    ps_table_set_d(sm, row, m6, r->loss_first);
    ps_table_set_d(sm, row, m7, r->loss_last);
    ps_table_set_i(sm, row, m8, r->workers);
    ps_table_set_i(sm, row, m9, r->nstages);
    rc = ps_h5_table_write(f, "/replay/tasks", t, e);
    if (!rc)
        rc = ps_h5_table_write(f, "/replay/stages", st, e);
    if (!rc)
        rc = ps_h5_table_write(f, "/replay/summary", sm, e);
out:
    ps_table_free(t);
    ps_table_free(st);
    ps_table_free(sm);
    if (rc) {
        char partial[4200];
        snprintf(partial, sizeof partial, "%s", ps_h5_partial_path(h));
        ps_h5_close_partial(h);
        unlink(partial);
        return rc;
    }
    return ps_h5_commit(h, e);
}

int ps_replay_write_trace(const ps_replay_result *r, const char *path, ps_err *e)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return ps_errf(e, PS_EINPUT, "%s: cannot write the trace", path);
    fprintf(f, "{\"traceEvents\":[\n");
    fprintf(f, "{\"ph\":\"M\",\"pid\":0,\"name\":\"process_name\",\"args\":{\"name\":"
               "\"predicted\"}},\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":"
               "{\"name\":\"measured\"}}");
    for (int i = 0; i < r->ntasks; i++) {
        const ps_replay_task *x = &r->tasks[i];
        for (int pid = 0; pid < 2; pid++) {
            double a = pid ? x->meas_start_s : x->pred_start_s;
            double b = pid ? x->meas_end_s : x->pred_end_s;
            fprintf(f, ",\n{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":\"%s%d.%d\",\"ts\":%.3f,"
                       "\"dur\":%.3f}",
                    pid, x->worker, kind_name(x->kind), x->stage, x->mb, a * 1e6, (b - a) * 1e6);
        }
    }
    fprintf(f, "\n]}\n");
    if (fclose(f) || rename(tmp, path)) {
        unlink(tmp);
        return ps_errf(e, PS_ERUN, "%s: writing the trace failed", path);
    }
    return 0;
}

/* ------------------------------------------------------------ for real/replay_cuda.c */

int ps_rp_model_shapes(rmodel *rm, const pp_plan *p, const pp_model *m, ps_err *e)
{
    return rmodel_shapes(rm, p, m, e);
}

int ps_rp_model_alloc(rmodel *rm, unsigned long seed, ps_err *e)
{
    return rmodel_alloc(rm, seed, e);
}

void ps_rp_model_free(rmodel *rm)
{
    rmodel_free(rm);
}

double ps_rp_model_flops(const rmodel *rm)
{
    return rmodel_flops(rm);
}

double ps_rp_model_bytes(const rmodel *rm)
{
    return rmodel_bytes_estimate(rm);
}

int ps_rp_worker_map(const pp_plan *p, int K, int *stage_worker)
{
    return worker_map(p, K, stage_worker);
}

int ps_rp_build_deps(rsched *s, const pp_plan *p, ps_err *e)
{
    return build_deps(s, p, e);
}

void ps_rp_sched_free(rsched *s)
{
    rsched_free(s);
}

int ps_rp_write_db(const rmodel *rm, const calib *c, const char *path, const ps_db_meta *meta,
                   const char *backend, const char *timer, ps_err *e)
{
    return write_db(rm, c, path, meta, backend, timer, e);
}

pp_model *ps_rp_measured_model(const rmodel *rm, const calib *c, ps_err *e)
{
    return measured_model(rm, c, e);
}

double ps_rp_median(double *v, int n)
{
    return median_of(v, n);
}
