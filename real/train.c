/* The classifier training loop; see train.h. */
#include "real/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ------------------------------------------------------------------ adapters */

static int cnn_fwd_cb(void *s, const rt_tensor *x, int training, ps_err *e)
{
    return cnn_forward(s, x, training, e);
}
static int cnn_loss_cb(void *s, const rt_tensor *y, double *loss, ps_err *e)
{
    return cnn_loss(s, y, loss, e);
}
static int cnn_bwd_cb(void *s, const rt_tensor *x, const rt_tensor *y, ps_err *e)
{
    return cnn_backward(s, x, y, e);
}
static int cnn_pred_cb(void *s, int32_t *pred, ps_err *e)
{
    return cnn_predict(s, pred, e);
}

train_model train_model_cnn(cnn *net)
{
    train_model m = {.self = net,
                     .params = net->params,
                     .ntrain = net->ntrain,
                     .dev = net->dev,
                     .dt = net->dt,
                     .max_batch = net->max_batch,
                     .forward = cnn_fwd_cb,
                     .loss = cnn_loss_cb,
                     .backward = cnn_bwd_cb,
                     .predict = cnn_pred_cb};
    return m;
}

static void fmnist_fill(const void *src, const int64_t *idx, int64_t b, rt_dtype dt, void *x,
                        int32_t *y)
{
    if (dt == RT_F64)
        fmnist_batch_f64(src, idx, 0, b, x, y);
    else
        fmnist_batch_f32(src, idx, 0, b, x, y);
}

train_data train_data_fmnist(const fmnist_set *s)
{
    train_data d = {.n = s->n,
                    .ndim = 3,
                    .shape = {1, s->rows, s->cols},
                    .src = s,
                    .fill = fmnist_fill};
    return d;
}

/* ------------------------------------------------------------------ options */

train_opts train_opts_default(void)
{
    train_opts o = {.epochs = 1,
                    .batch = 128,
                    .seed = 1,
                    .opt = {.kind = RT_OPT_ADAMW,
                            .lr = 1e-3,
                            .beta1 = 0.9,
                            .beta2 = 0.999,
                            .eps = 1e-8,
                            .weight_decay = 1e-4},
                    .sched = TRAIN_LR_COSINE,
                    .step_every = 1,
                    .step_gamma = 0.5,
                    .label = "train"};
    return o;
}

static const char *sched_names[] = {"const", "cosine", "step"};

const char *train_sched_name(train_sched s)
{
    return (unsigned)s < 3 ? sched_names[s] : "?";
}

int train_sched_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, sched_names[i]))
            return i;
    return -1;
}

static double lr_at(const train_opts *o, int64_t step, int64_t total, int epoch)
{
    double lr = o->opt.lr;
    switch (o->sched) {
    case TRAIN_LR_COSINE:
        if (total > 1)
            lr = o->lr_min + 0.5 * (o->opt.lr - o->lr_min) *
                                 (1 + cos(M_PI * (double)step / (double)(total - 1)));
        break;
    case TRAIN_LR_STEP:
        if (o->step_every > 0)
            lr = o->opt.lr * pow(o->step_gamma, epoch / o->step_every);
        break;
    default: break;
    }
    if (o->warmup_steps > 0 && step < o->warmup_steps)
        lr *= (double)(step + 1) / o->warmup_steps;
    return lr;
}

/* ------------------------------------------------------------------ batches */

typedef struct batch_buf {
    rt_tensor x, y;  /* on the model's device, max_batch rows */
    void *hx;        /* host staging */
    int32_t *hy, *pred;
} batch_buf;

static void batch_free(batch_buf *b)
{
    rt_tensor_free(&b->x);
    rt_tensor_free(&b->y);
    free(b->hx);
    free(b->hy);
    free(b->pred);
    memset(b, 0, sizeof *b);
}

static int batch_alloc(batch_buf *b, const train_model *m, const train_data *d, int64_t rows,
                       ps_err *e)
{
    memset(b, 0, sizeof *b);
    int64_t shape[RT_MAXDIM] = {rows};
    int64_t per = 1;
    for (int i = 0; i < d->ndim; i++) {
        shape[i + 1] = d->shape[i];
        per *= d->shape[i];
    }
    if (rt_tensor_alloc(&b->x, m->dev, m->dt, d->ndim + 1, shape, e) ||
        rt_tensor_new1(&b->y, m->dev, RT_I32, rows, e))
        goto fail;
    b->hx = malloc((size_t)(rows * per) * rt_dtype_size(m->dt));
    b->hy = malloc(sizeof(int32_t) * (size_t)rows);
    b->pred = malloc(sizeof(int32_t) * (size_t)rows);
    if (!b->hx || !b->hy || !b->pred) {
        ps_errf(e, PS_ERUN, "train: out of memory for a batch");
        goto fail;
    }
    return 0;
fail:
    batch_free(b);
    return e && e->code ? e->code : PS_ERUN;
}

/* Fill rows [0, n) of the batch from examples idx[0..n); xv, yv: views. */
static int batch_load(batch_buf *b, const train_data *d, const int64_t *idx, int64_t n,
                      rt_tensor *xv, rt_tensor *yv, ps_err *e)
{
    d->fill(d->src, idx, n, b->x.dtype, b->hx, b->hy);
    if (rt_tensor_rows(xv, &b->x, 0, n, e) || rt_tensor_rows(yv, &b->y, 0, n, e) ||
        rt_tensor_from_host(xv, b->hx, e) || rt_tensor_from_host(yv, b->hy, e))
        return e ? e->code : PS_ERUN;
    return 0;
}

static int check_data(const train_model *m, const train_data *d, const char *what, ps_err *e)
{
    if (!d || d->n < 1 || !d->fill || d->ndim < 1 || d->ndim > RT_MAXDIM - 1)
        return ps_errf(e, PS_EINPUT, "train: %s data is empty or malformed", what);
    (void)m;
    return 0;
}

int train_evaluate(const train_model *m, const train_data *d, int64_t batch, double *acc,
                   ps_err *e)
{
    if (check_data(m, d, "test", e))
        return e->code;
    if (batch < 1 || batch > m->max_batch)
        batch = m->max_batch;
    batch_buf b;
    if (batch_alloc(&b, m, d, batch, e))
        return e ? e->code : PS_ERUN;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)batch), correct = 0;
    int rc = 0;
    if (!idx) {
        batch_free(&b);
        return ps_errf(e, PS_ERUN, "train: out of memory");
    }
    for (int64_t s = 0; s < d->n && !rc; s += batch) {
        int64_t n = d->n - s < batch ? d->n - s : batch;
        for (int64_t i = 0; i < n; i++)
            idx[i] = s + i;
        rt_tensor xv, yv;
        rc = batch_load(&b, d, idx, n, &xv, &yv, e) || m->forward(m->self, &xv, 0, e) ||
             m->predict(m->self, b.pred, e);
        for (int64_t i = 0; i < n && !rc; i++)
            correct += b.pred[i] == b.hy[i];
    }
    free(idx);
    batch_free(&b);
    if (rc)
        return e && e->code ? e->code : PS_ERUN;
    *acc = (double)correct / (double)d->n;
    return 0;
}

int train_classifier(const train_model *m, const train_data *train, const train_data *test,
                     const train_opts *o, train_result *r, ps_err *e)
{
    memset(r, 0, sizeof *r);
    r->test_acc = NAN;
    if (check_data(m, train, "training", e) || (test && check_data(m, test, "test", e)))
        return e->code;
    if (o->epochs < 1 || o->epochs > TRAIN_MAXEPOCHS)
        return ps_errf(e, PS_EINPUT, "train: epochs %d outside [1, %d]", o->epochs,
                       TRAIN_MAXEPOCHS);
    if (o->batch < 2 || o->batch > m->max_batch)
        return ps_errf(e, PS_EINPUT, "train: batch %lld outside [2, %lld] (the model's max)",
                       (long long)o->batch, (long long)m->max_batch);
    batch_buf b;
    if (batch_alloc(&b, m, train, o->batch, e))
        return e ? e->code : PS_ERUN;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)train->n);
    if (!perm) {
        batch_free(&b);
        return ps_errf(e, PS_ERUN, "train: out of memory");
    }
    for (int64_t i = 0; i < train->n; i++)
        perm[i] = i;
    rt_rng rng;
    rt_rng_seed(&rng, o->seed ^ 0x5eed5eedULL);
    rt_opt opt = o->opt;
    /* batches per epoch; a last batch of one example is dropped (batch norm
     * cannot normalise it) */
    int64_t per_epoch = train->n / o->batch + (train->n % o->batch >= 2);
    if (o->max_steps > 0 && per_epoch > o->max_steps)
        per_epoch = o->max_steps;
    int64_t total = per_epoch * o->epochs, step = 0;
    int rc = 0;
    for (int ep = 0; ep < o->epochs && !rc; ep++) {
        train_epoch *te = &r->ep[ep];
        te->test_acc = NAN;
        /* Fisher-Yates from the seeded generator */
        for (int64_t i = train->n - 1; i > 0; i--) {
            int64_t j = (int64_t)(rt_rng_next(&rng) % (uint64_t)(i + 1));
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        char label[64];
        snprintf(label, sizeof label, "%s epoch %d/%d", o->label ? o->label : "train", ep + 1,
                 o->epochs);
        ps_progress pr;
        ps_progress_start(&pr, label, (size_t)per_epoch);
        double t0 = ps_now_s(), loss_sum = 0;
        int64_t correct = 0, seen = 0;
        for (int64_t s = 0; s < per_epoch; s++, step++) {
            int64_t first = s * o->batch;
            int64_t n = train->n - first < o->batch ? train->n - first : o->batch;
            rt_tensor xv, yv;
            double loss = 0;
            opt.lr = lr_at(o, step, total, ep);
            if (batch_load(&b, train, perm + first, n, &xv, &yv, e) ||
                rt_params_zero_grad(m->params, m->ntrain, e) ||
                m->forward(m->self, &xv, 1, e) || m->loss(m->self, &yv, &loss, e) ||
                m->predict(m->self, b.pred, e) || m->backward(m->self, &xv, &yv, e) ||
                rt_opt_step(&opt, m->params, m->ntrain, e)) {
                rc = e && e->code ? e->code : PS_ERUN;
                break;
            }
            if (!isfinite(loss)) {
                rc = ps_errf(e, PS_ERUN, "train: loss is %g at epoch %d step %lld (lr %g)", loss,
                             ep + 1, (long long)s, opt.lr);
                break;
            }
            loss_sum += loss * (double)n;
            for (int64_t i = 0; i < n; i++)
                correct += b.pred[i] == b.hy[i];
            seen += n;
            if (pr.enabled) {
                char det[96];
                snprintf(det, sizeof det, "loss %.4f acc %.1f%%", loss_sum / (double)seen,
                         100.0 * (double)correct / (double)seen);
                ps_progress_update(&pr, (size_t)s + 1, det);
            }
        }
        ps_progress_end(&pr);
        if (rc)
            break;
        /* wait for queued device work before reading the clock */
        if (rt_dev_sync(m->dev, e)) {
            rc = e->code;
            break;
        }
        te->seconds = ps_now_s() - t0;
        te->steps = per_epoch;
        te->examples = seen;
        te->loss = loss_sum / (double)seen;
        te->train_acc = (double)correct / (double)seen;
        te->lr = opt.lr;
        r->train_s += te->seconds;
        r->steps += per_epoch;
        r->epochs = ep + 1;
        r->final_loss = te->loss;
        if (test && (o->eval_every_epoch || ep == o->epochs - 1)) {
            double t1 = ps_now_s();
            rc = train_evaluate(m, test, o->batch, &te->test_acc, e);
            te->eval_s = ps_now_s() - t1;
            r->eval_s += te->eval_s;
            r->test_acc = te->test_acc;
        }
        if (!rc && o->verbose)
            fprintf(stderr,
                    "%s epoch %d/%d: loss %.4f train acc %.2f%% test acc %.2f%% lr %.2e "
                    "(%.1f s + eval %.1f s)\n",
                    o->label ? o->label : "train", ep + 1, o->epochs, te->loss,
                    100 * te->train_acc, 100 * te->test_acc, te->lr, te->seconds, te->eval_s);
    }
    free(perm);
    batch_free(&b);
    return rc;
}
