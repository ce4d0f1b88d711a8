/* A DCGAN-style generator and discriminator for Fashion-MNIST (1 x 28 x 28),
 * trained adversarially with the runtime (real/rt.h), llm.c style: explicit
 * forward functions that keep their activations and explicit backward
 * functions that walk them in reverse.  The projection study (issue 8,
 * real/project.h) freezes the trained generator.
 *
 *   G: z [n, zdim] ~ N(0, I) -> linear (zdim -> g_ch1*7*7, no bias) -> BN ->
 *      ReLU -> convt 4x4 s2 p1 (g_ch1 -> g_ch2, no bias) -> 14x14 -> BN ->
 *      ReLU -> convt 4x4 s2 p1 (g_ch2 -> 1, bias) -> 28x28 -> tanh
 *   D: x [n, 1, 28, 28] -> conv 4x4 s2 p1 (1 -> d_ch1, bias) -> 14x14 ->
 *      LeakyReLU(0.2) -> conv 4x4 s2 p1 (d_ch1 -> d_ch2) -> 7x7 -> [BN] ->
 *      LeakyReLU(0.2) -> linear (d_ch2*7*7 -> 1) -> logit
 *
 * Images: pixels in [-1, 1] (pixel / 127.5 - 1), host float arrays packed
 * [n, 28 * 28] row-major (the same bytes as [n, 1, 28, 28]).
 *
 * Training (gan_train): the non-saturating loss (D: softplus(-D(x)) +
 * softplus(D(G(z))); G: softplus(-D(G(z)))), Adam (AdamW with weight decay
 * 0) lr 2e-4, beta1 0.5, beta2 0.999, one D step then one G step per batch,
 * weights initialised N(0, 0.02) (BN gamma N(1, 0.02)) as in DCGAN.  On the
 * CPU in f32, deterministic for a seed (at a fixed OpenBLAS thread count).
 *
 * Frozen use (projection, per-image optimization): gan_gen_forward with
 * training 0 (BN uses its running statistics) and gan_gen_backward_z, the
 * gradient with respect to the generator's INPUT z, no parameter gradients.
 *
 * Caching (gan_load_or_train): DIR/gan-HASH.bin (rt_save: atomic,
 * checksummed; generator and discriminator parameters, BN running stats),
 * HASH = gan_config_hash in 16 hex digits; the meta holds the training report
 * as JSON.  A corrupt or mismatching cache warns on stderr and is retrained.
 * Default DIR: GAN_CACHE_DIR_DEFAULT ($PLANSIM_PROJECTION_MODELS overrides).
 *
 * Fréchet distance (gan_frechet*): between Gaussians fitted to features,
 *   FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1^{1/2} S2 S1^{1/2})),
 * the square roots through GSL's symmetric eigen-decomposition (eigenvalues
 * clamped at 0): S1^{1/2} = V diag(sqrt(l)) V^T, then the trace of the square
 * root of the symmetric PSD matrix M = S1^{1/2} S2 S1^{1/2} is the sum of the
 * square roots of M's eigenvalues.  (tr sqrt(S1 S2) equals this since S1 S2
 * is similar to M.)  Features: the penultimate layer of the Fashion-MNIST
 * classifier (real/cnn.h, cnn_features).  docs/real-gan.md. */
#ifndef PS_REAL_GAN_H
#define PS_REAL_GAN_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/rt.h"

#define GAN_IMG 28                 /* image side */
#define GAN_PIX (GAN_IMG * GAN_IMG) /* 784 */
#define GAN_CACHE_DIR_DEFAULT "results/projection_models"

typedef struct gan_config {
    int zdim;          /* 32 or 64 (any >= 1 works) */
    int g_ch1, g_ch2;  /* generator channels at 7x7 and 14x14 (DCGAN: 128, 64; default 64, 32) */
    int d_ch1, d_ch2;  /* discriminator channels at 14x14 and 7x7 (default 32, 64) */
    int d_bn;          /* 1: batch norm after D's second conv */
    int64_t batch;     /* training batch */
    int64_t steps;     /* training steps (one D and one G update each) */
    int64_t ntrain;    /* training images used (0: all 60000) */
    double lr, beta1, beta2; /* 2e-4, 0.5, 0.999 */
    uint64_t seed;
} gan_config;

/* Full (quick 0: 1500 steps of batch 64, about 4-7 minutes on one shared
 * core) or quick (300 steps, ~10 s unloaded) config: zdim 32 in both. */
gan_config gan_config_default(int quick, uint64_t seed);
/* Tests: tiny channels, a handful of steps. */
gan_config gan_config_test(uint64_t seed);
int gan_config_check(const gan_config *c, ps_err *e);
/* FNV-1a over every field that changes the weights (and a format version). */
uint64_t gan_config_hash(const gan_config *c);
json_t *gan_config_to_json(const gan_config *c);

/* ------------------------------------------------------------------ generator */

typedef struct gan_gen {
    gan_config cfg;
    rt_dev *dev;
    rt_dtype dt;
    int64_t max_batch;
    rt_param *params; /* [0, ntrain) trainable; [ntrain, nparams) BN running stats */
    int nparams, ntrain;
    rt_param *fc_w, *bn0_g, *bn0_b, *ct1_w, *bn1_g, *bn1_b, *ct2_w, *ct2_b;
    rt_param *bn0_rm, *bn0_rv, *bn1_rm, *bn1_rv;
    /* activations [max_batch, ...] and their gradients */
    rt_tensor h0, b0, a0;   /* [B, g_ch1*49] linear out, BN out, ReLU out */
    rt_tensor h1, b1, a1;   /* [B, g_ch2, 14, 14] */
    rt_tensor h2, out;      /* [B, 1, 28, 28] pre-tanh, tanh */
    rt_tensor m0, r0, m1, r1; /* BN batch stats */
    rt_tensor dh0, da0, dh1, da1, dh2; /* gradients */
    rt_bn bn;               /* eps 1e-5, momentum 0.1 */
    int64_t cur_n;
    int training;
} gan_gen;

/* Parameters initialised from seed (DCGAN: N(0, 0.02) weights, BN gamma
 * N(1, 0.02), beta 0, biases 0), activations for up to max_batch rows. */
int gan_gen_init(gan_gen *g, const gan_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
                 uint64_t seed, ps_err *e);
void gan_gen_free(gan_gen *g);
/* z [n, zdim], n <= max_batch.  training: BN batch statistics (running ones
 * updated); 0: the frozen generator.  Output: gan_gen_output. */
int gan_gen_forward(gan_gen *g, const rt_tensor *z, int training, ps_err *e);
/* View [cur_n, 1, 28, 28] of the last forward's images. */
int gan_gen_output(const gan_gen *g, rt_tensor *view, ps_err *e);
/* Backward of the last forward given dout (its output's gradient, [n, 1, 28,
 * 28]): parameter gradients accumulated (+=) when param_grads != 0; dz [n,
 * zdim] overwritten when non-NULL. */
int gan_gen_backward(gan_gen *g, const rt_tensor *z, const rt_tensor *dout, rt_tensor *dz,
                     int param_grads, ps_err *e);
/* Frozen generator: dz = d(loss)/dz for the last forward (which must have
 * run with training 0); no parameter gradient touched. */
int gan_gen_backward_z(gan_gen *g, const rt_tensor *z, const rt_tensor *dout, rt_tensor *dz,
                       ps_err *e);
/* Host convenience: x[n * 784] = G(z[n * zdim]) with the frozen generator in
 * batches of max_batch (F32 generators). */
int gan_generate(gan_gen *g, const float *z, int64_t n, float *x, ps_err *e);
/* Floating-point operations of one frozen forward (2 per multiply-add;
 * convolutions and linears only) for a batch. */
double gan_gen_flops_fwd(const gan_config *c, int64_t batch);

/* ------------------------------------------------------------------ discriminator */

typedef struct gan_disc {
    gan_config cfg;
    rt_dev *dev;
    rt_dtype dt;
    int64_t max_batch;
    rt_param *params;
    int nparams, ntrain;
    rt_param *c1_w, *c1_b, *c2_w, *c2_b, *bn_g, *bn_b, *fc_w, *fc_b, *bn_rm, *bn_rv;
    rt_tensor h1, a1;        /* [B, d_ch1, 14, 14] */
    rt_tensor h2, b2, a2;    /* [B, d_ch2, 7, 7] */
    rt_tensor logit;         /* [B, 1] */
    rt_tensor m2, r2;
    rt_tensor da1, dh2, da2, dlogit;
    rt_bn bn;
    int64_t cur_n;
    int training;
} gan_disc;

int gan_disc_init(gan_disc *d, const gan_config *c, rt_dev *dev, rt_dtype dt, int64_t max_batch,
                  uint64_t seed, ps_err *e);
void gan_disc_free(gan_disc *d);
/* x [n, 1, 28, 28] -> logits [n, 1] (view: gan_disc_logits). */
int gan_disc_forward(gan_disc *d, const rt_tensor *x, int training, ps_err *e);
int gan_disc_logits(const gan_disc *d, rt_tensor *view, ps_err *e);
/* dlogit [n, 1]: parameter gradients += when param_grads; dx overwritten when
 * non-NULL. */
int gan_disc_backward(gan_disc *d, const rt_tensor *x, const rt_tensor *dlogit, rt_tensor *dx,
                      int param_grads, ps_err *e);

/* Non-saturating loss helpers on host logits l[n]: target 1 (real) gives
 * mean softplus(-l), target 0 gives mean softplus(l); dl[i] its gradient
 * (scale / n times the derivative); dl may be NULL. */
double gan_bce_logits(const float *l, int64_t n, int target, double scale, float *dl);

/* ------------------------------------------------------------------ training and cache */

typedef struct gan_report {
    int64_t g_params, d_params;
    double d_loss_first, g_loss_first; /* mean over the first 1% of steps (>= 1) */
    double d_loss_last, g_loss_last;   /* mean over the last 10% of steps (>= 1) */
    double d_real_last, d_fake_last;   /* mean sigmoid(D) on real / fake, last 10% */
    double train_s;
    int64_t steps;
} gan_report;

typedef struct gan_model {
    gan_config cfg;
    gan_gen g;
    gan_disc d;
    gan_report rep;
    int from_cache;
} gan_model;

/* Train on `train` (images scaled to [-1, 1]); progress on stderr when
 * verbose.  out initialised here (CPU, f32, generator max_batch
 * max(cfg.batch, 256)); gan_free it.  The trained generator's BN running
 * statistics are then re-estimated over 20 batches of fresh z in training
 * mode with momentum 1/k (a cumulative average), so the frozen G matches the
 * batch-statistics G that the discriminator saw. */
int gan_train(const gan_config *cfg, const fmnist_set *train, int verbose, gan_model *out,
              ps_err *e);
int gan_save(const char *path, const gan_model *m, ps_err *e);
/* Load into an initialised model of the same config; PS_EINPUT naming the
 * file on corruption or mismatch. */
int gan_load(const char *path, gan_model *m, ps_err *e);
/* dir NULL: $PLANSIM_PROJECTION_MODELS or GAN_CACHE_DIR_DEFAULT.  train may
 * be NULL (the Fashion-MNIST training split is then loaded). */
int gan_load_or_train(const char *dir, const gan_config *cfg, const fmnist_set *train,
                      int verbose, gan_model *out, ps_err *e);
void gan_cache_path(const char *dir, const gan_config *cfg, char *buf, size_t n);
const char *gan_cache_dir(const char *dir);
void gan_free(gan_model *m);
json_t *gan_report_to_json(const gan_model *m);

/* ------------------------------------------------------------------ data helpers */

/* Images first..first+n of s (idx NULL) or idx[0..n) as [-1, 1] floats. */
void gan_images_from_fmnist(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n,
                            float *x);
/* n samples z ~ N(0, I) [n * zdim] from rng. */
void gan_sample_z(rt_rng *rng, int64_t n, int zdim, float *z);

/* ------------------------------------------------------------------ Fréchet distance */

/* Mean mu[d] and covariance cov[d*d] (unbiased, n - 1) of f[n * d] (n >= 2). */
int gan_feature_stats(const float *f, int64_t n, int d, double *mu, double *cov, ps_err *e);
/* FD between N(mu1, c1) and N(mu2, c2) (as in the header comment). */
int gan_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2, int d,
                double *fd, ps_err *e);
/* FD between two feature sets fa[na * d], fb[nb * d]. */
int gan_frechet_features(const float *fa, int64_t na, const float *fb, int64_t nb, int d,
                         double *fd, ps_err *e);
/* Penultimate features of the classifier (eval mode) for [-1, 1] images
 * x[n * 784] (converted to the classifier's normalisation): f[n * dim],
 * dim = cnn_feature_dim(clf). */
int gan_classifier_features(cnn *clf, const float *x, int64_t n, float *f, ps_err *e);
/* FD of two image sets through the classifier's features. */
int gan_frechet_images(cnn *clf, const float *xa, int64_t na, const float *xb, int64_t nb,
                       double *fd, ps_err *e);

#endif
