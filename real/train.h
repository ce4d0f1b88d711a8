/* A generic mini-batch training loop for classifiers: shuffling from a seed,
 * SGD (momentum) or AdamW, a learning-rate schedule (constant, cosine or
 * step), a progress line (common/util.h), train and test accuracy per epoch.
 * On the CPU a seed gives the same losses and weights run after run (at a
 * fixed OpenBLAS thread count).
 *
 * The model is a small table of functions (train_model) so any classifier of
 * real/ plugs in; train_model_cnn() wraps real/cnn.h.  The data is a table
 * too (train_data): a fill function that writes a host batch (float or
 * double) and its labels for a list of example indices. */
#ifndef PS_REAL_TRAIN_H
#define PS_REAL_TRAIN_H

#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/rt.h"

#define TRAIN_MAXEPOCHS 256

typedef struct train_model {
    void *self;
    rt_param *params; /* the trainable ones: params[0 .. ntrain) */
    int ntrain;
    rt_dev *dev;
    rt_dtype dt; /* F32 or F64 */
    int64_t max_batch;
    /* forward on x [n, ...]; training selects batch statistics etc. */
    int (*forward)(void *self, const rt_tensor *x, int training, ps_err *e);
    /* mean loss of the last forward against y (I32 [n]) */
    int (*loss)(void *self, const rt_tensor *y, double *loss, ps_err *e);
    /* accumulate the gradients of the last forward + loss */
    int (*backward)(void *self, const rt_tensor *x, const rt_tensor *y, ps_err *e);
    /* arg-max class of each row of the last forward (host) */
    int (*predict)(void *self, int32_t *pred, ps_err *e);
} train_model;

train_model train_model_cnn(cnn *net);

typedef struct train_data {
    int64_t n;                        /* examples */
    int ndim;                         /* of one example: {1, 28, 28} -> 3 */
    int64_t shape[RT_MAXDIM - 1];
    const void *src;                  /* the fill function's data */
    /* x: b examples (dt F32: float, F64: double) packed; y: b labels */
    void (*fill)(const void *src, const int64_t *idx, int64_t b, rt_dtype dt, void *x,
                 int32_t *y);
} train_data;

/* Fashion-MNIST as train_data (normalised as fmnist_batch_f32). */
train_data train_data_fmnist(const fmnist_set *s);

typedef enum { TRAIN_LR_CONST = 0, TRAIN_LR_COSINE, TRAIN_LR_STEP } train_sched;

typedef struct train_opts {
    int epochs;          /* >= 1 */
    int64_t batch;       /* <= the model's max_batch */
    uint64_t seed;       /* shuffling */
    rt_opt opt;          /* kind, lr, momentum, betas, eps, weight_decay */
    train_sched sched;
    double lr_min;       /* cosine: final lr */
    int step_every;      /* step: multiply by step_gamma every step_every epochs */
    double step_gamma;
    int warmup_steps;    /* linear warm-up from 0 (any schedule) */
    int64_t max_steps;   /* > 0: stop each epoch after this many steps (bench) */
    int eval_every_epoch;/* 1: test accuracy after every epoch, else only after the last */
    int verbose;         /* 1: one line per epoch on stderr */
    const char *label;   /* progress label ("cnn") */
} train_opts;

/* Sensible defaults: 1 epoch, batch 128, AdamW lr 1e-3 wd 1e-4 (0.9, 0.999,
 * 1e-8), cosine to 0, no warm-up, test accuracy after the last epoch. */
train_opts train_opts_default(void);
const char *train_sched_name(train_sched s);
int train_sched_parse(const char *s); /* -1 when unknown */

typedef struct train_epoch {
    double loss;      /* mean training loss over the epoch's steps */
    double train_acc; /* on the training batches as they went (training mode) */
    double test_acc;  /* NAN when not evaluated */
    double lr;        /* at the epoch's last step */
    double seconds;   /* training steps only */
    double eval_s;    /* the test pass */
    int64_t steps, examples;
} train_epoch;

typedef struct train_result {
    int epochs;
    train_epoch ep[TRAIN_MAXEPOCHS];
    double train_s;  /* sum of the epochs' training seconds */
    double eval_s;   /* sum of the test passes */
    double test_acc; /* the last evaluation, NAN when none */
    double final_loss;
    int64_t steps;
} train_result;

/* Train on `train`, evaluate on `test` (NULL: no test accuracy). */
int train_classifier(const train_model *m, const train_data *train, const train_data *test,
                     const train_opts *o, train_result *r, ps_err *e);
/* Accuracy of the model in eval mode over all of `d` (batches of `batch`). */
int train_evaluate(const train_model *m, const train_data *d, int64_t batch, double *acc,
                   ps_err *e);

#endif
