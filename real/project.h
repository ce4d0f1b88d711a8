/* Projection onto a frozen generator's latent space (issue 8; arXiv
 * 1910.00579 as reproduced here — docs/real-gan.md says what is ours):
 *
 *  - a projector P: a small CNN encoder
 *      x [n, 1, r, r] -> conv 3x3 s2 p1 (ch1) -> LeakyReLU(0.2)
 *                     -> conv 3x3 s2 p1 (ch2) -> LeakyReLU(0.2)
 *                     -> linear (hidden) -> LeakyReLU(0.2) -> linear (zdim) -> z
 *    (hidden 0: one linear straight to z), trained WITHOUT labels;
 *  - per-image optimization (the Image2StyleGAN / PULSE baseline): Adam on z
 *    minimising the same reconstruction loss, image by image;
 *  - super-resolution: a linear down-sampling operator D (area or bicubic,
 *    28 -> 14 or 28 -> 7) inside the loss (PULSE's idea): P_D sees D(x) and
 *    is trained so that D(G(P_D(D(x)))) matches D(x); the output
 *    G(P_D(D(x))) is at full resolution.
 *
 * Training loss of P (mean over the batch; per-image sums over pixels /
 * latent coordinates divided by their counts, i.e. MSEs):
 *    lambda_z * ||P(D(G(z))) - z||^2 / zdim
 *  + lambda_x * ||D(G(P(D(G(z))))) - D(G(z))||^2 / npix_lr
 *  + lambda_real * ||D(G(P(D(x)))) - D(x)||^2 / npix_lr   (x: real training
 *    images, no labels; lambda_real 0 turns it off),
 * z ~ N(0, I) fresh every step, G frozen (eval-mode BN), the gradient of the
 * pixel terms back-propagated through G into P (gan_gen_backward_z).  D is
 * the identity for the plain projector.  Adam (AdamW, weight decay 0).
 *
 * Images are host float arrays in [-1, 1] as in real/gan.h: full resolution
 * [n, 784], low resolution [n, r * r] with r = 28 / factor. */
#ifndef PS_REAL_PROJECT_H
#define PS_REAL_PROJECT_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "real/data_fmnist.h"
#include "real/gan.h"
#include "real/rt.h"

/* ------------------------------------------------------------------ down-sampling D */

typedef enum { PJ_DOWN_NONE = 0, PJ_DOWN_AREA, PJ_DOWN_BICUBIC } pj_down_kind;

/* A separable linear down-sampling 28 -> r = 28 / factor: y = A x A^T with
 * A [r, 28] (area: A[i][j] = 1/f for j in [i f, (i+1) f); bicubic: Keys
 * a = -0.5 stretched by the factor (antialiased, as PIL's resize and PULSE's
 * BicubicDownSample), rows normalised to sum 1, border samples clamped).
 * NONE is the identity (factor 1).  Its adjoint dx = A^T dy A is the
 * backward. */
typedef struct pj_down {
    pj_down_kind kind;
    int factor; /* 1 (NONE), 2 (-> 14), 4 (-> 7) */
    int r;      /* output side */
    double A[GAN_IMG * GAN_IMG]; /* [r, 28] row-major */
} pj_down;

/* PS_EINPUT when factor is not 1, 2 or 4 (or NONE with factor != 1). */
int pj_down_init(pj_down *d, pj_down_kind kind, int factor, ps_err *e);
const char *pj_down_kind_name(pj_down_kind k); /* "none", "area", "bicubic" */
int pj_down_kind_parse(const char *s);         /* -1 when unknown */
int pj_down_npix(const pj_down *d);            /* r * r */
/* y[n * r * r] = D(x[n * 784]); the adjoint x[n * 784] = D^T(y). */
void pj_down_apply(const pj_down *d, const float *x, int64_t n, float *y);
void pj_down_adjoint(const pj_down *d, const float *y, int64_t n, float *x);

/* ------------------------------------------------------------------ projector */

typedef struct pj_config {
    int zdim;              /* = the generator's zdim */
    pj_down_kind down;     /* NONE: the plain projector */
    int factor;            /* 1, 2, 4 */
    int ch1, ch2, hidden;  /* encoder widths: 32, 64, 256 */
    double lambda_z, lambda_x, lambda_real; /* 1, 1, 1 */
    int64_t batch, steps;  /* Adam steps */
    double lr;             /* 1e-3 (cosine to lr / 10) */
    int64_t nreal;         /* real training images for the lambda_real term (0: all) */
    uint64_t seed;
} pj_config;

/* Defaults for a generator config (zdim, and the generator's hash enters the
 * cache name): full or quick; down/factor set by the caller afterwards. */
pj_config pj_config_default(const gan_config *g, int quick, uint64_t seed);
pj_config pj_config_test(const gan_config *g, uint64_t seed);
int pj_config_check(const pj_config *c, ps_err *e);
/* FNV-1a of every field that changes the weights, and gan_hash. */
uint64_t pj_config_hash(const pj_config *c, uint64_t gan_hash);
json_t *pj_config_to_json(const pj_config *c);

typedef struct pj_net {
    pj_config cfg;
    pj_down down;
    rt_dev *dev;
    rt_dtype dt;
    int64_t max_batch;
    int r;             /* input side */
    int h1, h2;        /* spatial sides after the convs */
    int64_t flat;      /* ch2 * h2 * h2 */
    rt_param *params;
    int nparams;
    rt_param *c1_w, *c1_b, *c2_w, *c2_b, *f1_w, *f1_b, *f2_w, *f2_b;
    rt_tensor x1, a1, x2, a2, hh, ha, z;     /* activations */
    rt_tensor da1, da2, dha, dz;             /* gradients */
    int64_t cur_n;
} pj_net;

int pj_net_init(pj_net *p, const pj_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
                uint64_t seed, ps_err *e);
void pj_net_free(pj_net *p);
/* x [n, 1, r, r] -> z [n, zdim] (view: pj_net_output). */
int pj_net_forward(pj_net *p, const rt_tensor *x, ps_err *e);
int pj_net_output(const pj_net *p, rt_tensor *view, ps_err *e);
/* dz [n, zdim]: parameter gradients accumulated (+=). */
int pj_net_backward(pj_net *p, const rt_tensor *x, const rt_tensor *dz, ps_err *e);
double pj_net_flops_fwd(const pj_config *c, int64_t batch);

/* The loss of the header comment and the projector's gradient (accumulated)
 * on one batch: zb [n * zdim] latents, xreal [nr * 784] real images (NULL /
 * nr 0: no real term).  Frozen generator g (its max_batch >= n, nr).  Loss
 * parts (each the unweighted mean) into lz, lx, lr (may be NULL); total into
 * *loss.  Used by training and by the gradient check. */
int pj_loss_grad(pj_net *p, gan_gen *g, const float *zb, int64_t n, const float *xreal,
                 int64_t nr, double *loss, double *lz, double *lx, double *lr, ps_err *e);

typedef struct pj_report {
    int64_t params;
    double loss_first, loss_last;   /* mean of the first / last 10% of steps */
    double lz_first, lz_last, lx_first, lx_last, lr_first, lr_last;
    double heldout_lz;              /* latent MSE on 256 held-out z (seed + 99) */
    double heldout_lz_init;         /* the same before training */
    double train_s;
    int64_t steps;
} pj_report;

typedef struct pj_model {
    pj_net net;
    pj_report rep;
    int from_cache;
} pj_model;

/* Train P for the frozen generator g; train: real images (may be NULL when
 * lambda_real is 0).  out initialised here (CPU f32, max_batch
 * max(batch, 256)). */
int pj_train(const pj_config *cfg, gan_gen *g, const fmnist_set *train, int verbose,
             pj_model *out, ps_err *e);
int pj_save(const char *path, const pj_model *m, ps_err *e);
int pj_load(const char *path, pj_model *m, ps_err *e);
/* pj_save writes the params with the report and the projector's own config
 * hash as meta; pj_load (into a net initialised with the same config) checks
 * checksum, shapes and that hash: PS_EINPUT naming the file otherwise.
 * Cache as gan_load_or_train: DIR/projector-KIND FACTOR-HASH.bin, HASH from
 * the config and the generator's config hash; unusable files are retrained
 * with a warning. */
int pj_load_or_train(const char *dir, const pj_config *cfg, gan_model *gan,
                     const fmnist_set *train, int verbose, pj_model *out, ps_err *e);
void pj_cache_path(const char *dir, const pj_config *cfg, uint64_t gan_hash, char *buf,
                   size_t n);
void pj_free(pj_model *m);
json_t *pj_report_to_json(const pj_model *m);

/* ------------------------------------------------------------------ batch API for the study */

/* Latent latent MSE on held-out z: mean ||P(D(G(z))) - z||^2 / zdim over n
 * fresh z drawn from seed. */
int pj_heldout_latent_mse(pj_net *p, gan_gen *g, int64_t n, uint64_t seed, double *mse,
                          ps_err *e);
/* Project a batch: x_lr [n * r * r] (already down-sampled; r = the
 * projector's input side) -> z[n * zdim].  seconds (may be NULL): wall time. */
int pj_project(pj_net *p, const float *x_lr, int64_t n, float *z, double *seconds, ps_err *e);
/* Project and generate: x_out[n * 784] = G(P(x_lr)) at full resolution;
 * z_out may be NULL; seconds = wall time of both (the projector's time per
 * image is seconds / n). */
int pj_reconstruct(pj_net *p, gan_gen *g, const float *x_lr, int64_t n, float *z_out,
                   float *x_out, double *seconds, ps_err *e);

/* Per-image optimization: Adam on each image's z minimising
 * ||D(G(z)) - y||^2 / npix (y = the target at D's resolution), images
 * independent (batched: the summed loss's gradient w.r.t. z_i depends on
 * image i only, and Adam is elementwise).  Start: z = 0 (init 0), N(0, I)
 * from seed (init 1) or z_init (init 2, e.g. the projector's output).  With
 * restarts > 1 (init 1 only) each image keeps the best of `restarts` random
 * starts (cost multiplied). */
typedef struct pj_opt_opts {
    int64_t iters;     /* Adam steps (>= 0) */
    double lr;         /* 0.05 */
    double beta1, beta2;
    int init;          /* 0 zero, 1 random, 2 z_init */
    int restarts;      /* >= 1 */
    uint64_t seed;
    int64_t batch;     /* images per batch (<= the generator's max_batch) */
} pj_opt_opts;

pj_opt_opts pj_opt_opts_default(void); /* 200 iters, lr 0.05, (0.9, 0.999), z = 0, 1, batch 64 */

typedef struct pj_opt_result {
    double seconds;      /* wall time of the whole optimization */
    double time_per_image_s;
    double final_loss;   /* mean per-image loss at the end */
    /* curve (optional; caller-owned arrays of iters + 1 entries or NULL):
     * mean loss over the images before step k (k = 0..iters; entry iters =
     * final) and the cumulative wall seconds at that point (time per image
     * at k iterations = curve_s[k] / n). */
    double *curve, *curve_s;
} pj_opt_result;

/* y [n * npix(d)] targets; z_init [n * zdim] (init 2, else NULL); outputs
 * z_out [n * zdim], loss_out [n] (per-image final loss; may be NULL).  D may
 * be NULL (identity). */
int pj_optimize(gan_gen *g, const pj_down *d, const float *y, int64_t n, const float *z_init,
                const pj_opt_opts *o, float *z_out, double *loss_out, pj_opt_result *res,
                ps_err *e);

/* Per-image MSE of a[n * npix] vs b[n * npix] into out[n] (may be NULL);
 * returns the mean. */
double pj_mse(const float *a, const float *b, int64_t n, int npix, double *out);

#endif
