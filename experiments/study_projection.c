/* Study projection_fmnist (issue 8, experiments 1-3): a DCGAN generator
 * trained on Fashion-MNIST and frozen (real/gan.h), projection networks P
 * (28 -> z) and P_D (D(x) at 14^2 or 7^2 -> z) trained without labels
 * (real/project.h), per-image optimization as the baseline, on real test
 * images the models never saw:
 *
 *  - reconstruction: MSE / PSNR / SSIM of G(P(x)) vs G(z*) with z* from
 *    Adam on ||G(z) - x||^2, and time per image at the same batch size; the
 *    optimization's error at increasing iteration counts against its time
 *    (the encoder is one point);
 *  - super-resolution at 28 -> 14 and 28 -> 7: bicubic up-sampling of D(x),
 *    G(P_D(D(x))), G(z*) with z* from Adam on ||D(G(z)) - D(x)||^2: PSNR and
 *    SSIM against x, low-resolution consistency PSNR(D(output), D(x)), time
 *    per image; a picture grid;
 *  - clustering: k-means (k = 10) on P(x), on raw pixels, on the optimized
 *    latents; NMI and purity against the labels (never used for training);
 *    a grid of samples per cluster;
 *  - the generator's Fréchet distance (classifier features) against the
 *    test set, beside real training images' distance as the floor.
 *
 * PSNR of a method over a set: 10 log10(range^2 / mean MSE) with images in
 * [-1, 1] (range 2; identical to [0, 1] images with range 1).  SSIM: mean
 * over images, 7 x 7 Gaussian window (sigma 1.5) for 28 x 28 images
 * (real/imgops.h).  Times are wall seconds on this CPU (shared machine: they
 * are noisy); projector and optimization run at the same batch size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cluster.h"
#include "common/util.h"
#include "experiments/plot.h"
#include "experiments/study.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/gan.h"
#include "real/imgops.h"
#include "real/project.h"
#include "real/train.h"

static const ps_param_spec params[] = {
    {"models_dir", PS_PARAM_STR, "\"results/projection_models\"", "",
     "cache of the generator, projectors and classifier (relative to the current directory); "
     "trained when missing"},
    {"model_size", PS_PARAM_STR, "\"full\"", "", "full | quick | test (gan_config_default / _test)"},
    {"model_seed", PS_PARAM_INT, "1", "", "training seed of every model"},
    {"gan_steps", PS_PARAM_INT, "0", "", "generator training steps (0: model_size's default)"},
    {"proj_steps", PS_PARAM_INT, "0", "", "projector training steps (0: model_size's default)"},
    {"clf_epochs", PS_PARAM_INT, "2", "", "epochs of the small FD classifier when it is trained"},
    {"down", PS_PARAM_STR, "\"area\"", "", "down-sampling operator D: area | bicubic"},
    {"n_test", PS_PARAM_INT, "2000", "", "test images for the projector, bicubic and pixels"},
    {"n_opt", PS_PARAM_INT, "256", "",
     "test images (the first n_opt of n_test) for per-image optimization"},
    {"opt_iters", PS_PARAM_INT, "300", "", "Adam iterations of per-image optimization"},
    {"opt_lr", PS_PARAM_NUM, "0.05", "", "Adam learning rate of per-image optimization"},
    {"batch", PS_PARAM_INT, "64", "", "images per batch (projector and optimization alike)"},
    {"k", PS_PARAM_INT, "10", "", "k-means clusters"},
    {"kmeans_restarts", PS_PARAM_INT, "4", "", "k-means++ restarts (best inertia kept)"},
    {"n_fd", PS_PARAM_INT, "2000", "", "images per side of the Fréchet distances"},
    {"ssim_win", PS_PARAM_INT, "7", "px", "SSIM Gaussian window side (odd)"},
    {"classifier", PS_PARAM_STR, "\"models/cnn_fmnist.bin\"", "",
     "Fashion-MNIST classifier for the FD (cnn_config_default weights, `make models`); when "
     "missing a small one is trained and cached in models_dir"},
    {"grid_n", PS_PARAM_INT, "8", "", "images per picture grid (SR rows, samples per cluster)"},
    {"verbose", PS_PARAM_BOOL, "false", "", "training progress on stderr"},
    {NULL, 0, NULL, NULL, NULL}};

/* Metric columns: declared through one X-macro list so names and indices
 * cannot drift apart. */
#define METRICS(X)                                                                                \
    X(FD_GAN, "fd_gan", "", "Fréchet distance G(z) vs test (classifier features)")               \
    X(FD_FLOOR, "fd_real_floor", "", "Fréchet distance real train images vs test (floor)")       \
    X(CLF_ACC, "classifier_test_acc", "", "accuracy of the FD classifier on the test images")    \
    X(GAN_S, "gan_train_s", "s", "generator training time (0 when cached)")                      \
    X(PJ_LZ, "proj_heldout_latent_mse", "", "||P(G(z)) - z||^2 / zdim on held-out z")            \
    X(R_P_MSE, "recon_projector_mse", "", "reconstruction MSE of G(P(x)) on test images")        \
    X(R_P_PSNR, "recon_projector_psnr_db", "dB", "PSNR of G(P(x))")                              \
    X(R_P_SSIM, "recon_projector_ssim", "", "SSIM of G(P(x))")                                   \
    X(R_P_T, "recon_projector_s_per_image", "s", "projector + generator per image")              \
    X(R_P_MSE_SUB, "recon_projector_mse_opt_subset", "", "projector MSE on the n_opt subset")    \
    X(R_O_MSE, "recon_opt_mse", "", "reconstruction MSE of per-image optimization (n_opt)")      \
    X(R_O_PSNR, "recon_opt_psnr_db", "dB", "PSNR of optimization")                               \
    X(R_O_SSIM, "recon_opt_ssim", "", "SSIM of optimization")                                    \
    X(R_O_T, "recon_opt_s_per_image", "s", "optimization time per image")                        \
    X(R_H_PSNR, "recon_hybrid_psnr_db", "dB",                                                    \
      "optimization started from P(x) (same iterations): PSNR")                                 \
    X(R_H_T, "recon_hybrid_s_per_image", "s", "projector + that optimization, per image")        \
    X(R_H_HALF_PSNR, "recon_hybrid_half_psnr_db", "dB",                                          \
      "optimization from P(x) with half the iterations: PSNR")                                  \
    X(R_SPEEDUP, "recon_speedup", "", "optimization / projector time per image")                 \
    X(R_ERR_RATIO, "recon_mse_ratio", "", "projector MSE / optimization MSE (same images)")      \
    X(S2_B_PSNR, "sr2_bicubic_psnr_db", "dB", "28->14->28: bicubic up-sampling")                 \
    X(S2_B_SSIM, "sr2_bicubic_ssim", "", "")                                                     \
    X(S2_B_LR, "sr2_bicubic_lr_psnr_db", "dB", "PSNR(D(output), D(x))")                          \
    X(S2_B_T, "sr2_bicubic_s_per_image", "s", "")                                                \
    X(S2_P_PSNR, "sr2_projector_psnr_db", "dB", "G(P_D(D(x)))")                                  \
    X(S2_P_SSIM, "sr2_projector_ssim", "", "")                                                   \
    X(S2_P_LR, "sr2_projector_lr_psnr_db", "dB", "")                                             \
    X(S2_P_T, "sr2_projector_s_per_image", "s", "")                                              \
    X(S2_O_PSNR, "sr2_opt_psnr_db", "dB", "optimization with D in the loss (n_opt)")            \
    X(S2_O_SSIM, "sr2_opt_ssim", "", "")                                                         \
    X(S2_O_LR, "sr2_opt_lr_psnr_db", "dB", "")                                                   \
    X(S2_O_T, "sr2_opt_s_per_image", "s", "")                                                    \
    X(S4_B_PSNR, "sr4_bicubic_psnr_db", "dB", "28->7->28: bicubic up-sampling")                  \
    X(S4_B_SSIM, "sr4_bicubic_ssim", "", "")                                                     \
    X(S4_B_LR, "sr4_bicubic_lr_psnr_db", "dB", "")                                               \
    X(S4_B_T, "sr4_bicubic_s_per_image", "s", "")                                                \
    X(S4_P_PSNR, "sr4_projector_psnr_db", "dB", "")                                              \
    X(S4_P_SSIM, "sr4_projector_ssim", "", "")                                                   \
    X(S4_P_LR, "sr4_projector_lr_psnr_db", "dB", "")                                             \
    X(S4_P_T, "sr4_projector_s_per_image", "s", "")                                              \
    X(S4_O_PSNR, "sr4_opt_psnr_db", "dB", "")                                                    \
    X(S4_O_SSIM, "sr4_opt_ssim", "", "")                                                         \
    X(S4_O_LR, "sr4_opt_lr_psnr_db", "dB", "")                                                   \
    X(S4_O_T, "sr4_opt_s_per_image", "s", "")                                                    \
    X(C_NMI_P, "nmi_projector", "", "k-means on P(x), n_test images")                            \
    X(C_NMI_X, "nmi_pixels", "", "k-means on raw pixels, n_test images")                         \
    X(C_NMI_O, "nmi_opt", "", "k-means on optimized latents, n_opt images")                      \
    X(C_PUR_P, "purity_projector", "", "")                                                       \
    X(C_PUR_X, "purity_pixels", "", "")                                                          \
    X(C_PUR_O, "purity_opt", "", "")                                                             \
    X(C_NMI_P_SUB, "nmi_projector_opt_subset", "", "k-means on P(x), the n_opt subset")          \
    X(C_NMI_X_SUB, "nmi_pixels_opt_subset", "", "k-means on pixels, the n_opt subset")           \
    X(N_TEST, "n_test_used", "", "")                                                             \
    X(N_OPT, "n_opt_used", "", "")

enum {
#define X(id, name, units, help) M_##id,
    METRICS(X)
#undef X
        M_COUNT
};

static const ps_metric_spec metrics[M_COUNT + 1] = {
#define X(id, name, units, help) [M_##id] = {name, units, help},
    METRICS(X)
#undef X
};

/* ------------------------------------------------------------------ helpers */

typedef struct ctx {
    const ps_point *p;
    char models_dir[1024], side[1024];
    int quick_models;
    uint64_t seed;
    int64_t n_test, n_opt, batch;
    int ssim_win, grid_n, verbose;
    fmnist_set train, test;
    float *x;      /* test images [n_test * 784] in [-1, 1] */
    int *labels;   /* [n_test] */
    gan_model gan;
    int have_gan;
} ctx;

static double psnr_of_mse(double mse)
{
    return mse > 0 ? 10 * log10(4.0 / mse) : INFINITY;
}

static double ssim_mean(const ctx *c, const float *a, const float *b, int64_t n, ps_err *e,
                        int *rc)
{
    double v = NAN;
    if (!*rc)
        *rc = img_ssim_batch(a, b, n, GAN_IMG, GAN_IMG, c->ssim_win, IMG_SSIM_SIGMA, 2.0, &v,
                             NULL, e);
    return v;
}

/* The classifier for the Fréchet distance: the configured weights, else a
 * small one trained here (cached). */
static int get_classifier(ctx *c, cnn *clf, double *acc, ps_err *e)
{
    const char *cp = ps_point_str(c->p, "classifier");
    struct stat sb;
    if (cp && *cp && stat(cp, &sb) == 0) {
        cnn_config cfg = cnn_config_default();
        int rc = cnn_init(clf, &cfg, rt_cpu(), RT_F32, 256, 1, e);
        if (rc)
            return rc;
        if (!(rc = cnn_load(clf, cp, e)))
            goto eval;
        fprintf(stderr, "projection_fmnist: classifier %s not usable (%s); training a small one\n",
                cp, e->msg);
        cnn_free(clf);
        ps_err_clear(e);
    }
    {
        char path[1200];
        int epochs = (int)ps_point_int(c->p, "clf_epochs");
        snprintf(path, sizeof path, "%s/classifier-small-s%llu-n%lld-e%d.bin", c->models_dir,
                 (unsigned long long)c->seed, (long long)c->train.n, epochs);
        cnn_config cfg = cnn_config_small();
        int rc = cnn_init(clf, &cfg, rt_cpu(), RT_F32, 256, c->seed, e);
        if (rc)
            return rc;
        if (stat(path, &sb) == 0 && !cnn_load(clf, path, e))
            goto eval;
        ps_err_clear(e);
        train_opts o = train_opts_default();
        o.epochs = epochs;
        o.batch = 32;
        o.opt.lr = 3e-3;
        o.seed = c->seed;
        o.label = "fd-classifier";
        o.verbose = c->verbose;
        train_model m = train_model_cnn(clf);
        train_data dtr = train_data_fmnist(&c->train);
        train_result r;
        if ((rc = train_classifier(&m, &dtr, NULL, &o, &r, e)))
            return rc;
        if ((rc = ps_mkdir_p(c->models_dir, e)) || (rc = cnn_save(clf, path, "fd classifier", e)))
            return rc;
    }
eval: {
    train_model m = train_model_cnn(clf);
    train_data dte = train_data_fmnist(&c->test);
    return train_evaluate(&m, &dte, 256, acc, e);
}
}

/* x_out = G(P(x_lr)) in chunks of c->batch; seconds summed. */
static int proj_recon(ctx *c, pj_net *p, const float *x_lr, int64_t n, float *z, float *x_out,
                      double *seconds, ps_err *e)
{
    int np = pj_down_npix(&p->down);
    *seconds = 0;
    for (int64_t i = 0; i < n; i += c->batch) {
        int64_t b = n - i < c->batch ? n - i : c->batch;
        double s;
        int rc = pj_reconstruct(p, &c->gan.g, x_lr + i * np, b, z ? z + i * p->cfg.zdim : NULL,
                                x_out + i * GAN_PIX, &s, e);
        if (rc)
            return rc;
        *seconds += s;
    }
    return 0;
}

/* ------------------------------------------------------------------ pictures */

/* A grid of rows x cols 28 x 28 tiles (tiles[r * cols + col] -> image, NULL =
 * blank) with 2 px gaps: a PGM and a gnuplot-drawn PNG in the side folder. */
static int write_grid(const ctx *c, const char *name, const float *const *tiles, int rows,
                      int cols, const char *title, ps_err *e)
{
    const int g = 2, W = cols * (GAN_IMG + g) + g, H = rows * (GAN_IMG + g) + g;
    unsigned char *img = malloc((size_t)W * H);
    if (!img)
        return ps_errf(e, PS_ERUN, "grid %s: out of memory", name);
    memset(img, 255, (size_t)W * H);
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++) {
            const float *t = tiles[r * cols + q];
            if (!t)
                continue;
            for (int i = 0; i < GAN_IMG; i++)
                for (int j = 0; j < GAN_IMG; j++) {
                    double v = (t[i * GAN_IMG + j] + 1) * 127.5;
                    v = v < 0 ? 0 : v > 255 ? 255 : v;
                    img[(size_t)(g + r * (GAN_IMG + g) + i) * W + g + q * (GAN_IMG + g) + j] =
                        (unsigned char)(v + 0.5);
                }
        }
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.pgm", c->side, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(img);
        return ps_errf(e, PS_ERUN, "%s: cannot write", path);
    }
    fprintf(f, "P5\n%d %d\n255\n", W, H);
    fwrite(img, 1, (size_t)W * H, f);
    fclose(f);
    /* gnuplot: the same pixels as a matrix drawn with image (gray). */
    snprintf(path, sizeof path, "%s/%s.dat", c->side, name);
    f = fopen(path, "w");
    if (!f) {
        free(img);
        return ps_errf(e, PS_ERUN, "%s: cannot write", path);
    }
    for (int i = 0; i < H; i++) {
        for (int j = 0; j < W; j++)
            fprintf(f, "%d%c", img[(size_t)i * W + j], j + 1 < W ? ' ' : '\n');
    }
    fclose(f);
    free(img);
    snprintf(path, sizeof path, "%s/%s.gp", c->side, name);
    f = fopen(path, "w");
    if (!f)
        return ps_errf(e, PS_ERUN, "%s: cannot write", path);
    int scale = 4;
    fprintf(f,
            "# %s (drawn by plansim projection_fmnist; rerun: gnuplot -e \"outbase='%s'\" %s.gp)\n"
            "if (!exists(\"outbase\")) outbase = '%s'\n"
            "set terminal pngcairo size %d,%d\n"
            "set output outbase.'.png'\n"
            "set title \"%s\"\n"
            "unset border; unset tics; unset colorbox; unset key\n"
            "set palette gray\n"
            "set cbrange [0:255]\n"
            "set size ratio -1\n"
            "set xrange [-0.5:%d.5]\n"
            "set yrange [%d.5:-0.5]\n"
            "plot '%s.dat' matrix with image\n",
            title, name, name, name, W * scale + 40, H * scale + 60, title, W - 1, H - 1, name);
    fclose(f);
    char gp[1024], errline[256] = "";
    if (ps_plot_find_gnuplot(gp, sizeof gp)) {
        char script[256];
        snprintf(script, sizeof script, "%s.gp", name);
        if (ps_plot_run_gnuplot(gp, c->side, script, name, errline, sizeof errline))
            fprintf(stderr, "projection_fmnist: warning: gnuplot failed on %s: %s\n", name,
                    errline);
    }
    return 0;
}

/* ------------------------------------------------------------------ the point */

static int check_point(const ps_point *p, ps_err *e)
{
    const char *ms = ps_point_str(p, "model_size");
    if (strcmp(ms, "full") && strcmp(ms, "quick") && strcmp(ms, "test"))
        return ps_errf(e, PS_EINPUT, "model_size: \"%s\" is not full, quick or test", ms);
    const char *d = ps_point_str(p, "down");
    if (strcmp(d, "area") && strcmp(d, "bicubic"))
        return ps_errf(e, PS_EINPUT, "down: \"%s\" is not area or bicubic", d);
    if (ps_point_int(p, "n_test") < 20 || ps_point_int(p, "n_test") > 10000)
        return ps_errf(e, PS_EINPUT, "n_test: %lld outside [20, 10000]", ps_point_int(p, "n_test"));
    if (ps_point_int(p, "n_opt") < 10 || ps_point_int(p, "n_opt") > ps_point_int(p, "n_test"))
        return ps_errf(e, PS_EINPUT, "n_opt: %lld outside [10, n_test]", ps_point_int(p, "n_opt"));
    if (ps_point_int(p, "opt_iters") < 1)
        return ps_errf(e, PS_EINPUT, "opt_iters: must be >= 1");
    if (ps_point_int(p, "batch") < 1 || ps_point_int(p, "batch") > 256)
        return ps_errf(e, PS_EINPUT, "batch: %lld outside [1, 256]", ps_point_int(p, "batch"));
    if (ps_point_int(p, "k") < 2 || ps_point_int(p, "k") > ps_point_int(p, "n_opt"))
        return ps_errf(e, PS_EINPUT, "k: %lld outside [2, n_opt]", ps_point_int(p, "k"));
    if (ps_point_int(p, "ssim_win") < 1 || ps_point_int(p, "ssim_win") % 2 == 0 ||
        ps_point_int(p, "ssim_win") > 27)
        return ps_errf(e, PS_EINPUT, "ssim_win: %lld must be odd, in [1, 27]",
                       ps_point_int(p, "ssim_win"));
    if (ps_point_int(p, "clf_epochs") < 1 || ps_point_int(p, "gan_steps") < 0 ||
        ps_point_int(p, "proj_steps") < 0)
        return ps_errf(e, PS_EINPUT, "clf_epochs must be >= 1, gan_steps and proj_steps >= 0");
    if (ps_point_int(p, "n_fd") < 20)
        return ps_errf(e, PS_EINPUT, "n_fd: must be >= 20");
    if (ps_point_int(p, "grid_n") < 1 || ps_point_int(p, "grid_n") > 32)
        return ps_errf(e, PS_EINPUT, "grid_n: outside [1, 32]");
    return 0;
}

static gan_config gan_cfg_of(const ctx *c)
{
    const char *ms = ps_point_str(c->p, "model_size");
    gan_config g = !strcmp(ms, "test") ? gan_config_test(c->seed)
                                       : gan_config_default(!strcmp(ms, "quick"), c->seed);
    if (ps_point_int(c->p, "gan_steps") > 0)
        g.steps = ps_point_int(c->p, "gan_steps");
    return g;
}

static pj_config pj_cfg_of(const ctx *c, pj_down_kind kind, int factor)
{
    const char *ms = ps_point_str(c->p, "model_size");
    pj_config pc = !strcmp(ms, "test") ? pj_config_test(&c->gan.cfg, c->seed)
                                       : pj_config_default(&c->gan.cfg, !strcmp(ms, "quick"),
                                                           c->seed);
    if (ps_point_int(c->p, "proj_steps") > 0)
        pc.steps = ps_point_int(c->p, "proj_steps");
    pc.down = factor == 1 ? PJ_DOWN_NONE : kind;
    pc.factor = factor;
    return pc;
}

/* Clustering of one representation; returns NMI and purity. */
static int cluster(const ctx *c, const float *x, int64_t n, int d, int *lab, double *nmi,
                   double *pur, ps_err *e)
{
    ps_kmeans_opts o = ps_kmeans_opts_default();
    o.k = (int)ps_point_int(c->p, "k");
    o.restarts = (int)ps_point_int(c->p, "kmeans_restarts");
    o.seed = c->seed;
    int rc = ps_kmeans(x, (size_t)n, (size_t)d, &o, lab, NULL, NULL, e);
    if (!rc)
        rc = ps_nmi(lab, c->labels, (size_t)n, nmi, e);
    if (!rc)
        rc = ps_purity(lab, c->labels, (size_t)n, pur, e);
    return rc;
}

typedef struct sr_out {
    double psnr[3], ssim[3], lr[3], t[3]; /* bicubic, projector, optimization */
} sr_out;

/* Super-resolution at one factor; grid tiles for the first grid_n images. */
static int run_sr(ctx *c, pj_down_kind kind, int factor, sr_out *o, ps_err *e)
{
    const int64_t n = c->n_test, no = c->n_opt;
    pj_down D;
    int rc = pj_down_init(&D, kind, factor, e);
    if (rc)
        return rc;
    const int r = D.r, np = r * r;
    float *lr = malloc(sizeof(float) * (size_t)(n * np));
    float *bic = malloc(sizeof(float) * (size_t)(n * GAN_PIX));
    float *prj = malloc(sizeof(float) * (size_t)(n * GAN_PIX));
    float *opt = malloc(sizeof(float) * (size_t)(no * GAN_PIX));
    float *zo = malloc(sizeof(float) * (size_t)(no * c->gan.cfg.zdim));
    float *lr2 = malloc(sizeof(float) * (size_t)(n * np));
    pj_model pm;
    int have_pm = 0;
    if (!lr || !bic || !prj || !opt || !zo || !lr2) {
        rc = ps_errf(e, PS_ERUN, "sr: out of memory");
        goto done;
    }
    pj_down_apply(&D, c->x, n, lr);
    /* bicubic */
    double t0 = ps_now_s();
    if ((rc = img_resize_bicubic(lr, n, r, r, GAN_IMG, GAN_IMG, bic, e)))
        goto done;
    o->t[0] = (ps_now_s() - t0) / n;
    /* projector P_D */
    pj_config pc = pj_cfg_of(c, kind, factor);
    if ((rc = pj_load_or_train(c->models_dir, &pc, &c->gan, &c->train, c->verbose, &pm, e)))
        goto done;
    have_pm = 1;
    double secs;
    if ((rc = proj_recon(c, &pm.net, lr, n, NULL, prj, &secs, e)))
        goto done;
    o->t[1] = secs / n;
    /* optimization with D in the loss */
    pj_opt_opts oo = pj_opt_opts_default();
    oo.iters = ps_point_int(c->p, "opt_iters");
    oo.lr = ps_point_num(c->p, "opt_lr");
    oo.batch = c->batch;
    oo.seed = c->seed;
    pj_opt_result res = {0};
    if ((rc = pj_optimize(&c->gan.g, &D, lr, no, NULL, &oo, zo, NULL, &res, e)) ||
        (rc = gan_generate(&c->gan.g, zo, no, opt, e)))
        goto done;
    o->t[2] = res.time_per_image_s;
    const float *outs[3] = {bic, prj, opt};
    for (int m = 0; m < 3; m++) {
        int64_t nm = m == 2 ? no : n;
        o->psnr[m] = psnr_of_mse(img_mse(c->x, outs[m], (size_t)(nm * GAN_PIX)));
        o->ssim[m] = ssim_mean(c, c->x, outs[m], nm, e, &rc);
        pj_down_apply(&D, outs[m], nm, lr2);
        o->lr[m] = psnr_of_mse(img_mse(lr, lr2, (size_t)(nm * np)));
    }
    if (rc)
        goto done;
    /* Grid: rows = images; columns: low-res input (nearest up-sampling for
     * display), bicubic, projector, optimization, original. */
    {
        int gn = c->grid_n < no ? c->grid_n : (int)no;
        float *near = malloc(sizeof(float) * (size_t)gn * GAN_PIX);
        const float **tiles = malloc(sizeof(float *) * (size_t)gn * 5);
        if (!near || !tiles) {
            free(near);
            free(tiles);
            rc = ps_errf(e, PS_ERUN, "sr grid: out of memory");
            goto done;
        }
        for (int i = 0; i < gn; i++) {
            for (int a = 0; a < GAN_IMG; a++)
                for (int b = 0; b < GAN_IMG; b++)
                    near[(size_t)i * GAN_PIX + a * GAN_IMG + b] =
                        lr[(size_t)i * np + (a / factor) * r + b / factor];
            tiles[i * 5 + 0] = near + (size_t)i * GAN_PIX;
            tiles[i * 5 + 1] = bic + (size_t)i * GAN_PIX;
            tiles[i * 5 + 2] = prj + (size_t)i * GAN_PIX;
            tiles[i * 5 + 3] = opt + (size_t)i * GAN_PIX;
            tiles[i * 5 + 4] = c->x + (size_t)i * GAN_PIX;
        }
        char name[64], title[160];
        snprintf(name, sizeof name, "sr_grid_x%d", factor);
        snprintf(title, sizeof title,
                 "28->%d->28 (%s): low-res | bicubic | projector | optimization | original", r,
                 pj_down_kind_name(kind));
        rc = write_grid(c, name, tiles, gn, 5, title, e);
        free(near);
        free(tiles);
    }
done:
    if (have_pm)
        pj_free(&pm);
    free(lr);
    free(bic);
    free(prj);
    free(opt);
    free(zo);
    free(lr2);
    return rc;
}

static int run_point(const ps_point *p, double *m, ps_err *e)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    snprintf(c.models_dir, sizeof c.models_dir, "%s", ps_point_str(p, "models_dir"));
    c.seed = (uint64_t)ps_point_int(p, "model_seed");
    c.n_test = ps_point_int(p, "n_test");
    c.n_opt = ps_point_int(p, "n_opt");
    c.batch = ps_point_int(p, "batch");
    c.ssim_win = (int)ps_point_int(p, "ssim_win");
    c.grid_n = (int)ps_point_int(p, "grid_n");
    c.verbose = ps_point_bool(p, "verbose");
    pj_down_kind kind = (pj_down_kind)pj_down_kind_parse(ps_point_str(p, "down"));
    for (int i = 0; i < M_COUNT; i++)
        m[i] = NAN;
    int rc = ps_point_side_dir(p, c.side, sizeof c.side, e);
    if (rc)
        return rc;
    const int64_t n = c.n_test, no = c.n_opt;
    float *z = NULL, *rec = NULL, *zo = NULL, *reco = NULL;
    int *lab = NULL;
    double *curve = NULL, *curve_s = NULL;
    ps_table *t = NULL;
    cnn clf;
    int have_clf = 0;
    pj_model P;
    int have_P = 0;

    /* Data and the generator. */
    gan_config gc = gan_cfg_of(&c);
    int64_t ntr = gc.ntrain > 0 ? gc.ntrain : 0;
    if ((rc = fmnist_load(NULL, "train", ntr, &c.train, e)) ||
        (rc = fmnist_load(NULL, "t10k", n, &c.test, e)))
        goto done;
    if (c.test.n < n) {
        rc = ps_errf(e, PS_EINPUT, "n_test: %lld test images requested, %lld available",
                     (long long)n, (long long)c.test.n);
        goto done;
    }
    c.x = malloc(sizeof(float) * (size_t)(n * GAN_PIX));
    c.labels = malloc(sizeof(int) * (size_t)n);
    lab = malloc(sizeof(int) * (size_t)n);
    if (!c.x || !c.labels || !lab) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    gan_images_from_fmnist(&c.test, NULL, 0, n, c.x);
    for (int64_t i = 0; i < n; i++)
        c.labels[i] = c.test.labels[i];
    if ((rc = gan_load_or_train(c.models_dir, &gc, &c.train, c.verbose, &c.gan, e)))
        goto done;
    c.have_gan = 1;
    m[M_GAN_S] = c.gan.from_cache ? 0 : c.gan.rep.train_s;

    /* Fréchet distances. */
    {
        double acc = NAN;
        if ((rc = get_classifier(&c, &clf, &acc, e)))
            goto done;
        have_clf = 1;
        m[M_CLF_ACC] = acc;
        int64_t nf = ps_point_int(p, "n_fd");
        if (nf > n)
            nf = n;
        if (nf > c.train.n)
            nf = c.train.n;
        float *gz = malloc(sizeof(float) * (size_t)(nf * c.gan.cfg.zdim));
        float *gx = malloc(sizeof(float) * (size_t)(nf * GAN_PIX));
        float *rx = malloc(sizeof(float) * (size_t)(nf * GAN_PIX));
        if (!gz || !gx || !rx)
            rc = ps_errf(e, PS_ERUN, "fd: out of memory");
        if (!rc) {
            rt_rng rng;
            rt_rng_seed(&rng, c.seed + 1234);
            gan_sample_z(&rng, nf, c.gan.cfg.zdim, gz);
            gan_images_from_fmnist(&c.train, NULL, 0, nf, rx);
            double fd;
            rc = gan_generate(&c.gan.g, gz, nf, gx, e);
            if (!rc && !(rc = gan_frechet_images(&clf, gx, nf, c.x, nf, &fd, e)))
                m[M_FD_GAN] = fd;
            if (!rc && !(rc = gan_frechet_images(&clf, rx, nf, c.x, nf, &fd, e)))
                m[M_FD_FLOOR] = fd;
            /* a grid of generator samples */
            if (!rc) {
                int gn = c.grid_n;
                const float **tiles = malloc(sizeof(float *) * (size_t)gn * gn);
                if (tiles) {
                    for (int i = 0; i < gn * gn; i++)
                        tiles[i] = i < nf ? gx + (size_t)i * GAN_PIX : NULL;
                    rc = write_grid(&c, "gan_samples", tiles, gn, gn, "G(z), z ~ N(0, I)", e);
                    free(tiles);
                }
            }
        }
        free(gz);
        free(gx);
        free(rx);
        if (rc)
            goto done;
    }

    /* Reconstruction: projector on n_test, optimization on n_opt. */
    const int Z = c.gan.cfg.zdim;
    z = malloc(sizeof(float) * (size_t)(n * Z));
    rec = malloc(sizeof(float) * (size_t)(n * GAN_PIX));
    zo = malloc(sizeof(float) * (size_t)(no * Z));
    reco = malloc(sizeof(float) * (size_t)(no * GAN_PIX));
    int64_t iters = ps_point_int(p, "opt_iters");
    curve = malloc(sizeof(double) * (size_t)(iters + 1));
    curve_s = malloc(sizeof(double) * (size_t)(iters + 1));
    if (!z || !rec || !zo || !reco || !curve || !curve_s) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    {
        pj_config pc = pj_cfg_of(&c, PJ_DOWN_NONE, 1);
        if ((rc = pj_load_or_train(c.models_dir, &pc, &c.gan, &c.train, c.verbose, &P, e)))
            goto done;
        have_P = 1;
        double lz;
        if (!(rc = pj_heldout_latent_mse(&P.net, &c.gan.g, 256, c.seed + 99, &lz, e)))
            m[M_PJ_LZ] = lz;
        double secs;
        if (rc || (rc = proj_recon(&c, &P.net, c.x, n, z, rec, &secs, e)))
            goto done;
        double mse = img_mse(c.x, rec, (size_t)(n * GAN_PIX));
        m[M_R_P_MSE] = mse;
        m[M_R_P_PSNR] = psnr_of_mse(mse);
        m[M_R_P_SSIM] = ssim_mean(&c, c.x, rec, n, e, &rc);
        m[M_R_P_T] = secs / n;
        m[M_R_P_MSE_SUB] = img_mse(c.x, rec, (size_t)(no * GAN_PIX));

        pj_opt_opts oo = pj_opt_opts_default();
        oo.iters = iters;
        oo.lr = ps_point_num(p, "opt_lr");
        oo.batch = c.batch;
        oo.seed = c.seed;
        pj_opt_result res = {0};
        res.curve = curve;
        res.curve_s = curve_s;
        if (rc || (rc = pj_optimize(&c.gan.g, NULL, c.x, no, NULL, &oo, zo, NULL, &res, e)) ||
            (rc = gan_generate(&c.gan.g, zo, no, reco, e)))
            goto done;
        double mo = img_mse(c.x, reco, (size_t)(no * GAN_PIX));
        m[M_R_O_MSE] = mo;
        m[M_R_O_PSNR] = psnr_of_mse(mo);
        m[M_R_O_SSIM] = ssim_mean(&c, c.x, reco, no, e, &rc);
        m[M_R_O_T] = res.time_per_image_s;
        m[M_R_SPEEDUP] = res.time_per_image_s / m[M_R_P_T];
        m[M_R_ERR_RATIO] = m[M_R_P_MSE_SUB] / mo;
        if (rc)
            goto done;

        /* Optimization started from the projector's latents (the usual
         * hybrid: an encoder as initializer). */
        double *hcurve = malloc(sizeof(double) * (size_t)(iters + 1)),
               *hcurve_s = malloc(sizeof(double) * (size_t)(iters + 1));
        float *zh = malloc(sizeof(float) * (size_t)(no * Z));
        if (!hcurve || !hcurve_s || !zh) {
            free(hcurve);
            free(hcurve_s);
            free(zh);
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto done;
        }
        pj_opt_result hres = {0};
        hres.curve = hcurve;
        hres.curve_s = hcurve_s;
        pj_opt_opts ho = oo;
        ho.init = 2;
        rc = pj_optimize(&c.gan.g, NULL, c.x, no, z, &ho, zh, NULL, &hres, e);
        free(zh);
        if (!rc) {
            m[M_R_H_PSNR] = psnr_of_mse(hcurve[iters]);
            m[M_R_H_T] = hres.time_per_image_s + m[M_R_P_T];
            m[M_R_H_HALF_PSNR] = psnr_of_mse(hcurve[iters / 2]);
        }

        /* Error vs time: the optimization's curves at roughly geometric
         * checkpoints, the projector as one point. */
        t = ps_table_new();
        int cm = ps_table_add_col(t, "method", PS_COL_STR, "");
        int ci = ps_table_add_col(t, "iters", PS_COL_INT, "");
        int ct = ps_table_add_col(t, "s_per_image", PS_COL_DOUBLE, "s");
        int ce = ps_table_add_col(t, "mse", PS_COL_DOUBLE, "");
        int cp = ps_table_add_col(t, "psnr_db", PS_COL_DOUBLE, "dB");
        static const int steps[] = {1, 2, 5};
        for (int h = 0; !rc && h < 2; h++) {
            for (int64_t dec = 1;; dec *= 10) {
                int last = 0;
                for (int s = 0; s < 3; s++) {
                    int64_t k = steps[s] * dec;
                    if (k >= iters) {
                        k = iters;
                        last = 1;
                    }
                    const double *cv = h ? hcurve : curve, *cs = h ? hcurve_s : curve_s;
                    double base = h ? m[M_R_P_T] : 0; /* the hybrid pays for P first */
                    size_t row = ps_table_add_row(t);
                    ps_table_set_s(t, row, cm, h ? "opt_from_projector" : "optimization");
                    ps_table_set_i(t, row, ci, k);
                    ps_table_set_d(t, row, ct, base + cs[k] / no);
                    ps_table_set_d(t, row, ce, cv[k]);
                    ps_table_set_d(t, row, cp, psnr_of_mse(cv[k]));
                    if (last)
                        break;
                }
                if (last)
                    break;
            }
        }
        free(hcurve);
        free(hcurve_s);
        if (rc)
            goto done;
        size_t row = ps_table_add_row(t);
        ps_table_set_s(t, row, cm, "projector");
        ps_table_set_i(t, row, ci, 0);
        ps_table_set_d(t, row, ct, m[M_R_P_T]);
        ps_table_set_d(t, row, ce, m[M_R_P_MSE_SUB]);
        ps_table_set_d(t, row, cp, psnr_of_mse(m[M_R_P_MSE_SUB]));
        if ((rc = ps_point_emit(p, "recon_vs_time", t, e)))
            goto done;
        ps_table_free(t);
        t = NULL;

        /* Reconstruction grid: original | projector | optimization. */
        int gn = c.grid_n < no ? c.grid_n : (int)no;
        const float **tiles = malloc(sizeof(float *) * (size_t)gn * 3);
        if (!tiles) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto done;
        }
        for (int i = 0; i < gn; i++) {
            tiles[i * 3 + 0] = c.x + (size_t)i * GAN_PIX;
            tiles[i * 3 + 1] = rec + (size_t)i * GAN_PIX;
            tiles[i * 3 + 2] = reco + (size_t)i * GAN_PIX;
        }
        rc = write_grid(&c, "recon_grid", tiles, gn, 3,
                        "original | G(P(x)) | G(z*) optimized", e);
        free(tiles);
        if (rc)
            goto done;
    }

    /* Clustering. */
    {
        double nmi, pur;
        if ((rc = cluster(&c, z, n, Z, lab, &nmi, &pur, e)))
            goto done;
        m[M_C_NMI_P] = nmi;
        m[M_C_PUR_P] = pur;
        /* grid: grid_n samples of each cluster of P(x) */
        int k = (int)ps_point_int(p, "k"), gn = c.grid_n;
        const float **tiles = calloc((size_t)k * gn, sizeof(float *));
        if (!tiles) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto done;
        }
        int *fill = calloc((size_t)k, sizeof(int));
        for (int64_t i = 0; fill && i < n; i++)
            if (fill[lab[i]] < gn)
                tiles[lab[i] * gn + fill[lab[i]]++] = c.x + (size_t)i * GAN_PIX;
        char title[128];
        snprintf(title, sizeof title, "k-means (k = %d) on P(x): one row per cluster (NMI %.3f)",
                 k, nmi);
        rc = fill ? write_grid(&c, "cluster_grid", tiles, k, gn, title, e)
                  : ps_errf(e, PS_ERUN, "out of memory");
        free(fill);
        free(tiles);
        if (rc)
            goto done;
        if ((rc = cluster(&c, c.x, n, GAN_PIX, lab, &nmi, &pur, e)))
            goto done;
        m[M_C_NMI_X] = nmi;
        m[M_C_PUR_X] = pur;
        if ((rc = cluster(&c, zo, no, Z, lab, &nmi, &pur, e)))
            goto done;
        m[M_C_NMI_O] = nmi;
        m[M_C_PUR_O] = pur;
        if ((rc = cluster(&c, z, no, Z, lab, &nmi, &pur, e)))
            goto done;
        m[M_C_NMI_P_SUB] = nmi;
        if ((rc = cluster(&c, c.x, no, GAN_PIX, lab, &nmi, &pur, e)))
            goto done;
        m[M_C_NMI_X_SUB] = nmi;
    }

    /* Super-resolution. */
    {
        sr_out s2, s4;
        if ((rc = run_sr(&c, kind, 2, &s2, e)) || (rc = run_sr(&c, kind, 4, &s4, e)))
            goto done;
        const int base2[3] = {M_S2_B_PSNR, M_S2_P_PSNR, M_S2_O_PSNR};
        const int base4[3] = {M_S4_B_PSNR, M_S4_P_PSNR, M_S4_O_PSNR};
        for (int q = 0; q < 3; q++) {
            m[base2[q]] = s2.psnr[q];
            m[base2[q] + 1] = s2.ssim[q];
            m[base2[q] + 2] = s2.lr[q];
            m[base2[q] + 3] = s2.t[q];
            m[base4[q]] = s4.psnr[q];
            m[base4[q] + 1] = s4.ssim[q];
            m[base4[q] + 2] = s4.lr[q];
            m[base4[q] + 3] = s4.t[q];
        }
    }
    m[M_N_TEST] = (double)n;
    m[M_N_OPT] = (double)no;
done:
    ps_table_free(t);
    if (have_P)
        pj_free(&P);
    if (have_clf)
        cnn_free(&clf);
    if (c.have_gan)
        gan_free(&c.gan);
    fmnist_free(&c.train);
    fmnist_free(&c.test);
    free(c.x);
    free(c.labels);
    free(lab);
    free(z);
    free(rec);
    free(zo);
    free(reco);
    free(curve);
    free(curve_s);
    return rc;
}

/* ------------------------------------------------------------------ summary, derived */

static double colv(const ps_table *t, const char *name)
{
    int c = ps_table_col(t, name);
    return c >= 0 && t->nrows ? ps_table_get_d(t, 0, c) : NAN;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    if (!pts->nrows)
        return 0;
    /* per-method objects: psnr_db, ssim, time_per_image_s, lr_psnr_db */
    static const struct {
        const char *method, *prefix;
    } meth[] = {{"projector", "recon_projector"},  {"optimization", "recon_opt"},
                {"sr2_bicubic", "sr2_bicubic"},    {"sr2_projector", "sr2_projector"},
                {"sr2_optimization", "sr2_opt"},   {"sr4_bicubic", "sr4_bicubic"},
                {"sr4_projector", "sr4_projector"}, {"sr4_optimization", "sr4_opt"}};
    char nm[96];
    for (size_t i = 0; i < sizeof meth / sizeof meth[0]; i++) {
        snprintf(nm, sizeof nm, "%s_psnr_db", meth[i].prefix);
        ps_summary_add(out, "psnr_db", meth[i].method, colv(pts, nm), "dB");
    }
    for (size_t i = 0; i < sizeof meth / sizeof meth[0]; i++) {
        snprintf(nm, sizeof nm, "%s_ssim", meth[i].prefix);
        ps_summary_add(out, "ssim", meth[i].method, colv(pts, nm), "");
    }
    for (size_t i = 0; i < sizeof meth / sizeof meth[0]; i++) {
        snprintf(nm, sizeof nm, "%s_s_per_image", meth[i].prefix);
        ps_summary_add(out, "time_per_image_s", meth[i].method, colv(pts, nm), "s");
    }
    for (size_t i = 2; i < sizeof meth / sizeof meth[0]; i++) {
        snprintf(nm, sizeof nm, "%s_lr_psnr_db", meth[i].prefix);
        ps_summary_add(out, "lr_psnr_db", meth[i].method, colv(pts, nm), "dB");
    }
    ps_summary_add(out, "psnr_db", "opt_from_projector", colv(pts, "recon_hybrid_psnr_db"), "dB");
    ps_summary_add(out, "time_per_image_s", "opt_from_projector",
                   colv(pts, "recon_hybrid_s_per_image"), "s");
    ps_summary_add(out, "mse", "projector", colv(pts, "recon_projector_mse"), "");
    ps_summary_add(out, "mse", "projector_opt_subset", colv(pts, "recon_projector_mse_opt_subset"),
                   "");
    ps_summary_add(out, "mse", "optimization", colv(pts, "recon_opt_mse"), "");
    ps_summary_add(out, "nmi", "projector", colv(pts, "nmi_projector"), "");
    ps_summary_add(out, "nmi", "pixels", colv(pts, "nmi_pixels"), "");
    ps_summary_add(out, "nmi", "optimization", colv(pts, "nmi_opt"), "");
    ps_summary_add(out, "nmi", "projector_opt_subset", colv(pts, "nmi_projector_opt_subset"), "");
    ps_summary_add(out, "nmi", "pixels_opt_subset", colv(pts, "nmi_pixels_opt_subset"), "");
    ps_summary_add(out, "purity", "projector", colv(pts, "purity_projector"), "");
    ps_summary_add(out, "purity", "pixels", colv(pts, "purity_pixels"), "");
    ps_summary_add(out, "purity", "optimization", colv(pts, "purity_opt"), "");
    double sp = colv(pts, "recon_speedup"), ratio = colv(pts, "recon_mse_ratio");
    ps_summary_add(out, "speedup", NULL, sp, "");
    ps_summary_add(out, "mse_ratio_projector_over_opt", NULL, ratio, "");
    ps_summary_add(out, "target_speedup_100x_met", NULL, isfinite(sp) ? (double)(sp >= 100) : NAN,
                   "");
    ps_summary_add(out, "target_mse_within_1p5x_met", NULL,
                   isfinite(ratio) ? (double)(ratio <= 1.5) : NAN, "");
    ps_summary_add(out, "fd", "generator", colv(pts, "fd_gan"), "");
    ps_summary_add(out, "fd", "real_floor", colv(pts, "fd_real_floor"), "");
    return 0;
}

/* Tables for the bar figures: SR metrics by method and factor, clustering
 * scores by method. */
static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    (void)e;
    *n = 0;
    if (!pts->nrows || max < 2)
        return 0;
    ps_table *t = ps_table_new();
    int cl = ps_table_add_col(t, "label", PS_COL_STR, "");
    int cf = ps_table_add_col(t, "factor", PS_COL_INT, "");
    int cm = ps_table_add_col(t, "method", PS_COL_STR, "");
    int cp = ps_table_add_col(t, "psnr_db", PS_COL_DOUBLE, "dB");
    int cs = ps_table_add_col(t, "ssim", PS_COL_DOUBLE, "");
    int clr = ps_table_add_col(t, "lr_psnr_db", PS_COL_DOUBLE, "dB");
    int ct = ps_table_add_col(t, "s_per_image", PS_COL_DOUBLE, "s");
    static const char *mn[3] = {"bicubic", "projector", "optimization"},
                      *mp[3] = {"bicubic", "projector", "opt"};
    for (int f = 2; f <= 4; f += 2)
        for (int q = 0; q < 3; q++) {
            size_t r = ps_table_add_row(t);
            char lab[64], nm[96];
            snprintf(lab, sizeof lab, "x%d-%s", f, mn[q]);
            ps_table_set_s(t, r, cl, lab);
            ps_table_set_i(t, r, cf, f);
            ps_table_set_s(t, r, cm, mn[q]);
            snprintf(nm, sizeof nm, "sr%d_%s_psnr_db", f, mp[q]);
            ps_table_set_d(t, r, cp, colv(pts, nm));
            snprintf(nm, sizeof nm, "sr%d_%s_ssim", f, mp[q]);
            ps_table_set_d(t, r, cs, colv(pts, nm));
            snprintf(nm, sizeof nm, "sr%d_%s_lr_psnr_db", f, mp[q]);
            ps_table_set_d(t, r, clr, colv(pts, nm));
            snprintf(nm, sizeof nm, "sr%d_%s_s_per_image", f, mp[q]);
            ps_table_set_d(t, r, ct, colv(pts, nm));
        }
    snprintf(out[0].name, sizeof out[0].name, "sr_table");
    out[0].t = t;
    ps_table *u = ps_table_new();
    int um = ps_table_add_col(u, "method", PS_COL_STR, "");
    int un = ps_table_add_col(u, "nmi", PS_COL_DOUBLE, "");
    int up = ps_table_add_col(u, "purity", PS_COL_DOUBLE, "");
    static const char *cmn[3] = {"projector", "pixels", "opt"};
    for (int q = 0; q < 3; q++) {
        size_t r = ps_table_add_row(u);
        char nm[64];
        ps_table_set_s(u, r, um, q == 2 ? "optimization" : cmn[q]);
        snprintf(nm, sizeof nm, "nmi_%s", cmn[q]);
        ps_table_set_d(u, r, un, colv(pts, nm));
        snprintf(nm, sizeof nm, "purity_%s", cmn[q]);
        ps_table_set_d(u, r, up, colv(pts, nm));
    }
    snprintf(out[1].name, sizeof out[1].name, "clustering");
    out[1].t = u;
    *n = 2;
    return 0;
}

const ps_study ps_study_projection_fmnist = {
    .name = "projection_fmnist",
    .summary = "projection networks onto a frozen Fashion-MNIST GAN vs per-image optimization: "
               "reconstruction, super-resolution, clustering, time per image",
    .params = params,
    .metrics = metrics,
    .check_point = check_point,
    .run_point = run_point,
    .summarize = summarize,
    .derive = derive,
};
