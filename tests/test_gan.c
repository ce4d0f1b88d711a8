/* real/gan: the Fréchet distance against closed forms (diagonal and
 * commuting covariances; the general 2 x 2 case through tr sqrt(M) =
 * sqrt(tr M + 2 sqrt(det M))), identical sets at ~0, sampled Gaussians; the
 * generator's backward w.r.t. z (frozen, eval-mode BN) and w.r.t. its
 * parameters (training mode), and the discriminator's, against central
 * finite differences in float64; the non-saturating loss's gradient; a tiny
 * adversarial training on Fashion-MNIST (skipped without the dataset) whose
 * losses stay finite; the weights cache: save -> load -> the same images, a
 * corrupted file is an error naming the file and is retrained. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "real/gan.h"

#include "tests/rt_testutil.h"

/* ------------------------------------------------------------------ Fréchet distance */

static void test_frechet_diagonal(void **state)
{
    (void)state;
    enum { D = 4 };
    double mu1[D] = {0.5, -1, 2, 0}, mu2[D] = {0, 1, 2, 3}, a[D] = {1, 4, 0.25, 9},
           b[D] = {4, 1, 1, 9}, c1[D * D] = {0}, c2[D * D] = {0};
    double want = 0;
    for (int i = 0; i < D; i++) {
        c1[i * D + i] = a[i];
        c2[i * D + i] = b[i];
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    double fd = -1;
    OK(gan_frechet(mu1, c1, mu2, c2, D, &fd, E));
    assert_true(fabs(fd - want) < 1e-10);
    assert_true(fabs(want - 15.5) < 1e-12); /* (0.25+4+0+9) + (1+1+0.25+0) */
    /* the same in a rotated basis (commuting covariances): unchanged */
    double th = 0.7, R[D * D] = {0};
    for (int i = 0; i < D; i++)
        R[i * D + i] = 1;
    R[0] = cos(th), R[1] = -sin(th), R[D] = sin(th), R[D + 1] = cos(th);
    R[2 * D + 2] = cos(2 * th), R[2 * D + 3] = -sin(2 * th), R[3 * D + 2] = sin(2 * th),
    R[3 * D + 3] = cos(2 * th);
    double r1[D * D], r2[D * D], m1[D], m2[D];
    for (int i = 0; i < D; i++) {
        m1[i] = m2[i] = 0;
        for (int k = 0; k < D; k++) {
            m1[i] += R[i * D + k] * mu1[k];
            m2[i] += R[i * D + k] * mu2[k];
        }
        for (int j = 0; j < D; j++) {
            r1[i * D + j] = r2[i * D + j] = 0;
            for (int k = 0; k < D; k++) {
                r1[i * D + j] += R[i * D + k] * a[k] * R[j * D + k];
                r2[i * D + j] += R[i * D + k] * b[k] * R[j * D + k];
            }
        }
    }
    OK(gan_frechet(m1, r1, m2, r2, D, &fd, E));
    assert_true(fabs(fd - want) < 1e-9);
    /* identical distributions: 0 */
    OK(gan_frechet(m1, r1, m1, r1, D, &fd, E));
    assert_true(fabs(fd) < 1e-9);
}

/* General (non-commuting) 2 x 2: tr sqrt(S1^1/2 S2 S1^1/2) = sqrt(tr(S1 S2) +
 * 2 sqrt(det S1 det S2)). */
static void test_frechet_2x2(void **state)
{
    (void)state;
    double c1[4] = {2, 0.8, 0.8, 1}, c2[4] = {0.5, -0.3, -0.3, 3}, mu1[2] = {1, 2},
           mu2[2] = {-1, 0.5};
    double tr12 = c1[0] * c2[0] + c1[1] * c2[2] + c1[2] * c2[1] + c1[3] * c2[3];
    double d1 = c1[0] * c1[3] - c1[1] * c1[2], d2 = c2[0] * c2[3] - c2[1] * c2[2];
    double want = 4 + 2.25 + (c1[0] + c1[3]) + (c2[0] + c2[3]) - 2 * sqrt(tr12 + 2 * sqrt(d1 * d2));
    double fd = -1;
    OK(gan_frechet(mu1, c1, mu2, c2, 2, &fd, E));
    assert_true(fabs(fd - want) < 1e-10);
    assert_true(want > 1); /* the case is not degenerate */
    /* symmetric in its arguments */
    double fd2 = -1;
    OK(gan_frechet(mu2, c2, mu1, c1, 2, &fd2, E));
    assert_true(fabs(fd - fd2) < 1e-10);
}

/* Sampled features: N(0, I) vs N(m, 4 I) in d = 5 has FD = |m|^2 + d (2-1)^2;
 * identical sets give ~0; stats are the unbiased ones. */
static void test_frechet_samples(void **state)
{
    (void)state;
    enum { N = 20000, D = 5 };
    float *a = malloc(sizeof(float) * N * D), *b = malloc(sizeof(float) * N * D);
    rt_rng r;
    rt_rng_seed(&r, 3);
    for (int i = 0; i < N * D; i++) {
        a[i] = (float)rt_rng_normal(&r);
        b[i] = (float)(0.5 + 2 * rt_rng_normal(&r));
    }
    double fd = -1;
    OK(gan_frechet_features(a, N, b, N, D, &fd, E));
    double want = D * 0.25 + D * 1.0;
    assert_true(fabs(fd - want) < 0.1 * want);
    OK(gan_frechet_features(a, N, a, N, D, &fd, E));
    assert_true(fd < 1e-6);
    /* two stats by hand on 3 points in 1-D: mean 2, unbiased var 1 */
    float f[3] = {1, 2, 3};
    double mu, cov;
    OK(gan_feature_stats(f, 3, 1, &mu, &cov, E));
    assert_true(fabs(mu - 2) < 1e-12 && fabs(cov - 1) < 1e-12);
    ps_err e = {0};
    assert_int_equal(gan_feature_stats(f, 1, 1, &mu, &cov, &e), PS_EINPUT);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ gradients */

static gan_config tiny_cfg(void)
{
    gan_config c = gan_config_test(5);
    c.zdim = 3;
    c.g_ch1 = 3;
    c.g_ch2 = 2;
    c.d_ch1 = 2;
    c.d_ch2 = 3;
    return c;
}

static double weighted_sum(const rt_tensor *t, const double *w)
{
    const double *x = rt_f64(t);
    double s = 0;
    for (int64_t i = 0; i < t->numel; i++)
        s += x[i] * w[i];
    return s;
}

static double gen_obj(gan_gen *g, rt_tensor *z, int training, const double *w)
{
    rt_tensor out;
    OK(gan_gen_forward(g, z, training, E));
    OK(gan_gen_output(g, &out, E));
    return weighted_sum(&out, w);
}

static void test_gen_grad_z(void **state)
{
    (void)state;
    gan_config c = tiny_cfg();
    enum { N = 3 };
    gan_gen g;
    OK(gan_gen_init(&g, &c, rt_cpu(), RT_F64, N, 7, E));
    rt_rng r;
    rt_rng_seed(&r, 11);
    rt_tensor z, dz, dout;
    OK(rt_tensor_new2(&z, rt_cpu(), RT_F64, N, c.zdim, E));
    OK(rt_tensor_new2(&dz, rt_cpu(), RT_F64, N, c.zdim, E));
    OK(rt_tensor_new4(&dout, rt_cpu(), RT_F64, N, 1, 28, 28, E));
    OK(rt_init_normal(&z, &r, 0, 1, E));
    /* non-trivial running statistics: a few training-mode forwards */
    for (int i = 0; i < 3; i++) {
        rt_tensor zz;
        OK(rt_tensor_new2(&zz, rt_cpu(), RT_F64, N, c.zdim, E));
        OK(rt_init_normal(&zz, &r, 0, 1, E));
        OK(gan_gen_forward(&g, &zz, 1, E));
        rt_tensor_free(&zz);
    }
    /* a larger weight so tanh is not saturated nor linear */
    OK(rt_init_normal(&g.ct2_w->w, &r, 0, 0.3, E));
    OK(rt_init_normal(&dout, &r, 0, 1, E));
    const double *w = rt_f64(&dout);
    gen_obj(&g, &z, 0, w);
    OK(gan_gen_backward_z(&g, &z, &dout, &dz, E));
    /* no parameter gradient touched */
    for (int i = 0; i < g.ntrain; i++) {
        double s = 0;
        OK(rt_sum(&g.params[i].g, &s, E));
        assert_true(s == 0);
    }
    double *zd = rt_f64(&z), *gd = rt_f64(&dz), worst = 0;
    for (int64_t i = 0; i < z.numel; i++) {
        double keep = zd[i], h = 1e-5;
        zd[i] = keep + h;
        double lp = gen_obj(&g, &z, 0, w);
        zd[i] = keep - h;
        double lm = gen_obj(&g, &z, 0, w);
        zd[i] = keep;
        double num = (lp - lm) / (2 * h), rel = fabs(num - gd[i]) / fmax(1e-6, fabs(num) + fabs(gd[i]));
        if (rel > worst)
            worst = rel;
    }
    assert_true(worst < 1e-6);
    /* backward_z after a training forward is refused */
    gen_obj(&g, &z, 1, w);
    ps_err e = {0};
    assert_int_equal(gan_gen_backward_z(&g, &z, &dout, &dz, &e), PS_EINPUT);
    FREE_TENSORS(&z, &dz, &dout);
    gan_gen_free(&g);
}

static void test_gen_grad_params(void **state)
{
    (void)state;
    gan_config c = tiny_cfg();
    enum { N = 4 };
    gan_gen g;
    OK(gan_gen_init(&g, &c, rt_cpu(), RT_F64, N, 8, E));
    rt_rng r;
    rt_rng_seed(&r, 12);
    rt_tensor z, dz, dout;
    OK(rt_tensor_new2(&z, rt_cpu(), RT_F64, N, c.zdim, E));
    OK(rt_tensor_new2(&dz, rt_cpu(), RT_F64, N, c.zdim, E));
    OK(rt_tensor_new4(&dout, rt_cpu(), RT_F64, N, 1, 28, 28, E));
    OK(rt_init_normal(&z, &r, 0, 1, E));
    OK(rt_init_normal(&g.ct2_w->w, &r, 0, 0.3, E));
    OK(rt_init_normal(&dout, &r, 0, 1, E));
    const double *w = rt_f64(&dout);
    OK(rt_params_zero_grad(g.params, g.ntrain, E));
    gen_obj(&g, &z, 1, w);
    OK(gan_gen_backward(&g, &z, &dout, &dz, 1, E));
    double worst = 0;
    int checked = 0;
    for (int p = 0; p < g.ntrain; p++) {
        double *wd = rt_f64(&g.params[p].w), *gd = rt_f64(&g.params[p].g);
        int64_t n = g.params[p].w.numel, step = n > 6 ? n / 6 : 1;
        for (int64_t i = 0; i < n; i += step) {
            double keep = wd[i], h = 1e-5;
            wd[i] = keep + h;
            double lp = gen_obj(&g, &z, 1, w);
            wd[i] = keep - h;
            double lm = gen_obj(&g, &z, 1, w);
            wd[i] = keep;
            double num = (lp - lm) / (2 * h);
            double rel = fabs(num - gd[i]) / fmax(1e-6, fabs(num) + fabs(gd[i]));
            if (rel > worst)
                worst = rel;
            checked++;
        }
    }
    assert_true(checked > 20);
    assert_true(worst < 1e-5);
    /* dz in training mode too (batch statistics couple the rows) */
    double *zd = rt_f64(&z), *gz = rt_f64(&dz);
    for (int64_t i = 0; i < z.numel; i++) {
        double keep = zd[i], h = 1e-5;
        zd[i] = keep + h;
        double lp = gen_obj(&g, &z, 1, w);
        zd[i] = keep - h;
        double lm = gen_obj(&g, &z, 1, w);
        zd[i] = keep;
        double num = (lp - lm) / (2 * h);
        assert_true(fabs(num - gz[i]) <= 1e-5 * fmax(1e-3, fabs(num) + fabs(gz[i])));
    }
    FREE_TENSORS(&z, &dz, &dout);
    gan_gen_free(&g);
}

static double disc_obj(gan_disc *d, rt_tensor *x, const double *w)
{
    rt_tensor lg;
    OK(gan_disc_forward(d, x, 1, E));
    OK(gan_disc_logits(d, &lg, E));
    return weighted_sum(&lg, w);
}

static void test_disc_grad(void **state)
{
    (void)state;
    for (int bn = 0; bn <= 1; bn++) {
        gan_config c = tiny_cfg();
        c.d_bn = bn;
        enum { N = 3 };
        gan_disc d;
        OK(gan_disc_init(&d, &c, rt_cpu(), RT_F64, N, 9, E));
        rt_rng r;
        rt_rng_seed(&r, 13);
        rt_tensor x, dx, dl;
        OK(rt_tensor_new4(&x, rt_cpu(), RT_F64, N, 1, 28, 28, E));
        OK(rt_tensor_new4(&dx, rt_cpu(), RT_F64, N, 1, 28, 28, E));
        OK(rt_tensor_new2(&dl, rt_cpu(), RT_F64, N, 1, E));
        OK(rt_init_uniform(&x, &r, -1, 1, E));
        OK(rt_init_normal(&dl, &r, 0, 1, E));
        for (int p = 0; p < d.ntrain; p++)
            if (d.params[p].w.ndim > 1)
                OK(rt_init_normal(&d.params[p].w, &r, 0, 0.3, E));
        const double *w = rt_f64(&dl);
        OK(rt_params_zero_grad(d.params, d.ntrain, E));
        disc_obj(&d, &x, w);
        OK(gan_disc_backward(&d, &x, &dl, &dx, 1, E));
        double worst = 0;
        for (int p = 0; p < d.ntrain; p++) {
            double *wd = rt_f64(&d.params[p].w), *gd = rt_f64(&d.params[p].g);
            int64_t n = d.params[p].w.numel, step = n > 5 ? n / 5 : 1;
            for (int64_t i = 0; i < n; i += step) {
                double keep = wd[i], h = 1e-5;
                wd[i] = keep + h;
                double lp = disc_obj(&d, &x, w);
                wd[i] = keep - h;
                double lm = disc_obj(&d, &x, w);
                wd[i] = keep;
                double num = (lp - lm) / (2 * h);
                double rel = fabs(num - gd[i]) / fmax(1e-6, fabs(num) + fabs(gd[i]));
                worst = fmax(worst, rel);
            }
        }
        double *xd = rt_f64(&x), *gx = rt_f64(&dx);
        for (int64_t i = 0; i < x.numel; i += 97) {
            double keep = xd[i], h = 1e-5;
            xd[i] = keep + h;
            double lp = disc_obj(&d, &x, w);
            xd[i] = keep - h;
            double lm = disc_obj(&d, &x, w);
            xd[i] = keep;
            double num = (lp - lm) / (2 * h);
            double rel = fabs(num - gx[i]) / fmax(1e-6, fabs(num) + fabs(gx[i]));
            worst = fmax(worst, rel);
        }
        assert_true(worst < 1e-5);
        FREE_TENSORS(&x, &dx, &dl);
        gan_disc_free(&d);
    }
}

static void test_bce(void **state)
{
    (void)state;
    float l[4] = {-3, -0.5, 0, 2}, dl[4];
    double v1 = gan_bce_logits(l, 4, 1, 1.0, dl);
    double want = 0;
    for (int i = 0; i < 4; i++) {
        want += log(1 + exp(-(double)l[i]));
        double s = 1 / (1 + exp(-(double)l[i]));
        assert_true(fabs(dl[i] - (s - 1) / 4) < 1e-7);
    }
    assert_true(fabs(v1 - want / 4) < 1e-12);
    double v0 = gan_bce_logits(l, 4, 0, 2.0, dl);
    want = 0;
    for (int i = 0; i < 4; i++) {
        want += log(1 + exp((double)l[i]));
        assert_true(fabs(dl[i] - 2.0 / 4 / (1 + exp(-(double)l[i]))) < 1e-7);
    }
    assert_true(fabs(v0 - want / 4) < 1e-12);
    /* large logits stay finite */
    float big[2] = {-200, 200};
    assert_true(isfinite(gan_bce_logits(big, 2, 1, 1, dl)));
    assert_true(fabs(gan_bce_logits(big, 2, 1, 1, dl) - 100) < 1e-9);
}

static void test_config(void **state)
{
    (void)state;
    gan_config a = gan_config_default(0, 1), b = a;
    ps_err e = {0};
    OK(gan_config_check(&a, E));
    b.seed = 2;
    assert_true(gan_config_hash(&a) != gan_config_hash(&b));
    b = a;
    b.batch = 1;
    assert_int_equal(gan_config_check(&b, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "batch"));
    /* FLOPs by hand: 2 (z*C1*49 + C1*C2*16*49 + C2*16*196) per image */
    gan_config t = tiny_cfg();
    double f = 2.0 * (3 * 3 * 49 + 3 * 2 * 16 * 49 + 2 * 16 * 196);
    assert_true(fabs(gan_gen_flops_fwd(&t, 10) - 10 * f) < 1e-6);
}

/* ------------------------------------------------------------------ training and cache */

static int have_fmnist(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", fmnist_dir());
    return ps_file_exists(p);
}

static void test_train_and_cache(void **state)
{
    (void)state;
    if (!have_fmnist())
        skip();
    fmnist_set tr;
    OK(fmnist_load(NULL, "train", 1000, &tr, E));
    gan_config c = gan_config_test(4);
    c.steps = 40;
    gan_model m;
    OK(gan_train(&c, &tr, 0, &m, E));
    assert_true(isfinite(m.rep.d_loss_first) && isfinite(m.rep.d_loss_last));
    assert_true(isfinite(m.rep.g_loss_first) && isfinite(m.rep.g_loss_last));
    /* D learns something in 40 steps: real scored above fake */
    assert_true(m.rep.d_real_last > m.rep.d_fake_last);
    assert_true(m.rep.d_loss_last < m.rep.d_loss_first);
    /* images in (-1, 1) and not constant */
    enum { N = 8 };
    float z[N * 8], x[N * GAN_PIX], x2[N * GAN_PIX];
    rt_rng r;
    rt_rng_seed(&r, 1);
    gan_sample_z(&r, N, c.zdim, z);
    OK(gan_generate(&m.g, z, N, x, E));
    double lo = 1, hi = -1;
    for (int i = 0; i < N * GAN_PIX; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    assert_true(lo > -1 - 1e-6 && hi < 1 + 1e-6 && hi - lo > 0.1);
    /* cache: train-or-load twice -> the second comes from the file */
    char dir[] = "/tmp/test_gan_XXXXXX";
    assert_non_null(mkdtemp(dir));
    gan_model a, b;
    OK(gan_load_or_train(dir, &c, &tr, 0, &a, E));
    assert_int_equal(a.from_cache, 0);
    OK(gan_load_or_train(dir, &c, &tr, 0, &b, E));
    assert_int_equal(b.from_cache, 1);
    assert_true(fabs(b.rep.d_loss_last - a.rep.d_loss_last) < 1e-9);
    OK(gan_generate(&a.g, z, N, x, E));
    OK(gan_generate(&b.g, z, N, x2, E));
    assert_memory_equal(x, x2, sizeof x);
    /* deterministic: the trained model equals m */
    OK(gan_generate(&m.g, z, N, x2, E));
    assert_memory_equal(x, x2, sizeof x);
    /* corrupt one byte in the middle: a clear error naming the file */
    char path[1024];
    gan_cache_path(dir, &c, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, len / 2, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, len / 2, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    ps_err e = {0};
    assert_int_not_equal(gan_load(path, &b, &e), 0);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "corrupt"));
    /* ... and load_or_train retrains (with a warning) and rewrites it */
    gan_model c2;
    OK(gan_load_or_train(dir, &c, &tr, 0, &c2, E));
    assert_int_equal(c2.from_cache, 0);
    OK(gan_load(path, &b, E));
    gan_free(&c2);
    /* a config mismatch is refused, naming the file */
    gan_model other;
    gan_config oc = c;
    oc.seed = 99;
    OK(gan_gen_init(&other.g, &oc, rt_cpu(), RT_F32, 4, 1, E));
    OK(gan_disc_init(&other.d, &oc, rt_cpu(), RT_F32, 4, 1, E));
    other.cfg = oc;
    assert_int_equal(gan_load(path, &other, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, path));
    gan_free(&other);
    unlink(path);
    rmdir(dir);
    gan_free(&a);
    gan_free(&b);
    gan_free(&m);
    fmnist_free(&tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frechet_diagonal), cmocka_unit_test(test_frechet_2x2),
        cmocka_unit_test(test_frechet_samples),  cmocka_unit_test(test_gen_grad_z),
        cmocka_unit_test(test_gen_grad_params),  cmocka_unit_test(test_disc_grad),
        cmocka_unit_test(test_bce),              cmocka_unit_test(test_config),
        cmocka_unit_test(test_train_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
