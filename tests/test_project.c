/* real/project: the down-sampling operators by hand (area of a constant and
 * of a ramp, bicubic rows and constants) and their adjoints (<Dx, y> =
 * <x, D^T y>); the projector's training gradient (all three loss terms,
 * through the frozen generator, with an area down-sampler) against central
 * finite differences in float64; on a tiny generator: training P shrinks
 * the held-out latent MSE by a large factor, per-image optimization of
 * G(z*) reaches near-zero reconstruction error (and its curve falls), the
 * super-resolution projector's low-resolution consistency loss falls;
 * cache round trip and a corrupted file naming the file; bad inputs. */
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
#include "real/imgops.h"
#include "real/project.h"

#include "tests/rt_testutil.h"

/* ------------------------------------------------------------------ D */

static void test_down_area(void **state)
{
    (void)state;
    pj_down d;
    float x[GAN_PIX], y[GAN_PIX], back[GAN_PIX];
    for (int f = 2; f <= 4; f += 2) {
        OK(pj_down_init(&d, PJ_DOWN_AREA, f, E));
        assert_int_equal(d.r, 28 / f);
        for (int i = 0; i < GAN_PIX; i++)
            x[i] = 0.375f;
        pj_down_apply(&d, x, 1, y);
        for (int i = 0; i < d.r * d.r; i++)
            assert_true(fabs(y[i] - 0.375) < 1e-6);
        /* ramp x[i][j] = i + 10 j: block means (i0 + (f-1)/2) + 10 (j0 + (f-1)/2) */
        for (int i = 0; i < 28; i++)
            for (int j = 0; j < 28; j++)
                x[i * 28 + j] = (float)(i + 10 * j);
        pj_down_apply(&d, x, 1, y);
        for (int a = 0; a < d.r; a++)
            for (int b = 0; b < d.r; b++) {
                double want = (a * f + (f - 1) / 2.0) + 10 * (b * f + (f - 1) / 2.0);
                assert_true(fabs(y[a * d.r + b] - want) < 1e-3);
            }
        /* the adjoint of area spreads each value / f^2 over its block */
        for (int i = 0; i < d.r * d.r; i++)
            y[i] = (float)(i + 1);
        pj_down_adjoint(&d, y, 1, back);
        assert_true(fabs(back[0] - 1.0 / (f * f)) < 1e-6);
        assert_true(fabs(back[GAN_PIX - 1] - (double)(d.r * d.r) / (f * f)) < 1e-4);
    }
    /* 28 -> 14 by hand on a 2x2 block: (1 + 2 + 3 + 6) / 4 = 3 */
    OK(pj_down_init(&d, PJ_DOWN_AREA, 2, E));
    memset(x, 0, sizeof x);
    x[0] = 1, x[1] = 2, x[28] = 3, x[29] = 6;
    pj_down_apply(&d, x, 1, y);
    assert_true(fabs(y[0] - 3) < 1e-6 && fabs(y[1]) < 1e-9 && fabs(y[14]) < 1e-9);
}

/* The same operators as real/imgops.h (the study's baselines use those):
 * bicubic weights equal, area and bicubic down-sampling agree. */
static void test_down_matches_imgops(void **state)
{
    (void)state;
    rt_rng r;
    rt_rng_seed(&r, 2);
    float x[2 * GAN_PIX], y1[2 * GAN_PIX], y2[2 * GAN_PIX];
    for (int i = 0; i < 2 * GAN_PIX; i++)
        x[i] = (float)(rt_rng_uniform(&r) * 2 - 1);
    for (int f = 2; f <= 4; f += 2) {
        pj_down d;
        double W[GAN_PIX];
        OK(pj_down_init(&d, PJ_DOWN_BICUBIC, f, E));
        OK(img_bicubic_weights(28, 28 / f, W, E));
        for (int i = 0; i < d.r * 28; i++)
            assert_true(fabs(W[i] - d.A[i]) < 1e-12);
        pj_down_apply(&d, x, 2, y1);
        OK(img_resize_bicubic(x, 2, 28, 28, d.r, d.r, y2, E));
        for (int i = 0; i < 2 * d.r * d.r; i++)
            assert_true(fabs(y1[i] - y2[i]) < 1e-5);
        OK(pj_down_init(&d, PJ_DOWN_AREA, f, E));
        pj_down_apply(&d, x, 2, y1);
        OK(img_down_area(x, 2, 28, 28, f, y2, E));
        for (int i = 0; i < 2 * d.r * d.r; i++)
            assert_true(fabs(y1[i] - y2[i]) < 1e-5);
    }
}

static void test_down_bicubic_adjoint(void **state)
{
    (void)state;
    pj_down d;
    rt_rng r;
    rt_rng_seed(&r, 1);
    float x[GAN_PIX], y[GAN_PIX], dy[GAN_PIX], dx[GAN_PIX];
    for (int kind = PJ_DOWN_NONE; kind <= PJ_DOWN_BICUBIC; kind++)
        for (int f = kind == PJ_DOWN_NONE ? 1 : 2; f <= (kind == PJ_DOWN_NONE ? 1 : 4); f *= 2) {
            OK(pj_down_init(&d, (pj_down_kind)kind, f, E));
            /* rows sum to 1: constants are kept */
            for (int i = 0; i < d.r; i++) {
                double s = 0;
                for (int j = 0; j < 28; j++)
                    s += d.A[i * 28 + j];
                assert_true(fabs(s - 1) < 1e-12);
            }
            for (int i = 0; i < GAN_PIX; i++) {
                x[i] = (float)rt_rng_normal(&r);
                dy[i] = (float)rt_rng_normal(&r);
            }
            pj_down_apply(&d, x, 1, y);
            pj_down_adjoint(&d, dy, 1, dx);
            double l = 0, rr = 0;
            for (int i = 0; i < d.r * d.r; i++)
                l += (double)y[i] * dy[i];
            for (int i = 0; i < GAN_PIX; i++)
                rr += (double)x[i] * dx[i];
            assert_true(fabs(l - rr) < 1e-4 * (1 + fabs(l)));
        }
    /* bicubic x2, interior row: Keys weights at distances 0.25, 0.75, 1.25,
     * 1.75 (half-pixel units / 2) -> symmetric, the nearest two largest */
    OK(pj_down_init(&d, PJ_DOWN_BICUBIC, 2, E));
    const double *row = d.A + 7 * 28; /* center at 15.0 */
    assert_true(fabs(row[14] - row[15]) < 1e-12 && fabs(row[13] - row[16]) < 1e-12);
    assert_true(row[14] > row[13] && row[13] > 0 && row[12] < 0);
    ps_err e = {0};
    assert_int_equal(pj_down_init(&d, PJ_DOWN_AREA, 3, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "factor"));
    assert_int_equal(pj_down_kind_parse("bicubic"), PJ_DOWN_BICUBIC);
    assert_int_equal(pj_down_kind_parse("nope"), -1);
}

/* ------------------------------------------------------------------ tiny generator */

static gan_config tiny_gan(void)
{
    gan_config c = gan_config_test(5);
    c.zdim = 4;
    c.g_ch1 = 8;
    c.g_ch2 = 4;
    c.d_ch1 = 2;
    c.d_ch2 = 2;
    return c;
}

/* A random frozen generator with calibrated BN statistics (training-mode
 * forwards with momentum 1/k), its last layer scaled so images are not
 * near-constant. */
static void make_gen(gan_gen *g, rt_dtype dt, int64_t mb, uint64_t seed)
{
    gan_config c = tiny_gan();
    OK(gan_gen_init(g, &c, rt_cpu(), dt, mb, seed, E));
    rt_rng r;
    rt_rng_seed(&r, seed + 1);
    OK(rt_init_normal(&g->ct2_w->w, &r, 0, 0.3, E));
    OK(rt_init_normal(&g->fc_w->w, &r, 0, 0.5, E));
    rt_tensor z;
    OK(rt_tensor_new2(&z, rt_cpu(), dt, mb, c.zdim, E));
    for (int k = 1; k <= 5; k++) {
        g->bn.momentum = 1.0 / k;
        OK(rt_init_normal(&z, &r, 0, 1, E));
        OK(gan_gen_forward(g, &z, 1, E));
    }
    g->bn.momentum = 0.1;
    rt_tensor_free(&z);
}

static double loss_only(pj_net *p, gan_gen *g, const float *zb, int64_t n, const float *xr,
                        int64_t nr)
{
    double l = 0;
    OK(rt_params_zero_grad(p->params, p->nparams, E));
    OK(pj_loss_grad(p, g, zb, n, xr, nr, &l, NULL, NULL, NULL, E));
    return l;
}

static void test_projector_gradcheck(void **state)
{
    (void)state;
    enum { N = 3, NR = 2 };
    gan_gen g;
    make_gen(&g, RT_F64, 4, 21);
    for (int hidden = 0; hidden <= 6; hidden += 6) {
        pj_config c = pj_config_test(&g.cfg, 3);
        c.ch1 = 2;
        c.ch2 = 3;
        c.hidden = hidden;
        c.down = PJ_DOWN_AREA;
        c.factor = 2;
        c.lambda_z = 0.7;
        c.lambda_x = 1.3;
        c.lambda_real = 0.9;
        pj_net p;
        OK(pj_net_init(&p, &c, rt_cpu(), RT_F64, 4, 5, E));
        rt_rng r;
        rt_rng_seed(&r, 8);
        float zb[N * 4], xr[NR * GAN_PIX];
        gan_sample_z(&r, N, 4, zb);
        for (int i = 0; i < NR * GAN_PIX; i++)
            xr[i] = (float)(rt_rng_uniform(&r) * 2 - 1);
        double l, lz, lx, lr;
        OK(rt_params_zero_grad(p.params, p.nparams, E));
        OK(pj_loss_grad(&p, &g, zb, N, xr, NR, &l, &lz, &lx, &lr, E));
        assert_true(fabs(l - (0.7 * lz + 1.3 * lx + 0.9 * lr)) < 1e-12);
        assert_true(lz > 0 && lx > 0 && lr > 0);
        /* copy the analytic gradients */
        double *ga[8];
        for (int k = 0; k < p.nparams; k++) {
            ga[k] = malloc(sizeof(double) * (size_t)p.params[k].g.numel);
            memcpy(ga[k], rt_f64(&p.params[k].g), sizeof(double) * (size_t)p.params[k].g.numel);
        }
        double worst = 0;
        int checked = 0;
        for (int k = 0; k < p.nparams; k++) {
            double *w = rt_f64(&p.params[k].w);
            int64_t n = p.params[k].w.numel, step = n > 5 ? n / 5 : 1;
            for (int64_t i = 0; i < n; i += step) {
                double keep = w[i], h = 1e-5;
                w[i] = keep + h;
                double lp = loss_only(&p, &g, zb, N, xr, NR);
                w[i] = keep - h;
                double lm = loss_only(&p, &g, zb, N, xr, NR);
                w[i] = keep;
                double num = (lp - lm) / (2 * h);
                double rel = fabs(num - ga[k][i]) / fmax(1e-7, fabs(num) + fabs(ga[k][i]));
                worst = fmax(worst, rel);
                checked++;
            }
        }
        assert_true(checked >= 20);
        assert_true(worst < 1e-5);
        for (int k = 0; k < p.nparams; k++)
            free(ga[k]);
        pj_net_free(&p);
    }
    gan_gen_free(&g);
}

static void test_projector_learns(void **state)
{
    (void)state;
    gan_gen g;
    make_gen(&g, RT_F32, 256, 31);
    pj_config c = pj_config_test(&g.cfg, 4);
    c.lambda_real = 0; /* no data needed */
    c.steps = 150;
    pj_model m;
    OK(pj_train(&c, &g, NULL, 0, &m, E));
    /* held-out z: a large factor */
    assert_true(m.rep.heldout_lz < m.rep.heldout_lz_init / 8);
    assert_true(m.rep.loss_last < m.rep.loss_first / 4);
    /* the projector's reconstruction of generated images is close */
    enum { N = 32 };
    float z[N * 4], x[N * GAN_PIX], xh[N * GAN_PIX], zh[N * 4];
    rt_rng r;
    rt_rng_seed(&r, 77);
    gan_sample_z(&r, N, 4, z);
    OK(gan_generate(&g, z, N, x, E));
    double s = -1;
    OK(pj_reconstruct(&m.net, &g, x, N, zh, xh, &s, E));
    assert_true(s >= 0);
    double var = 0, mean = 0;
    for (int i = 0; i < N * GAN_PIX; i++)
        mean += x[i];
    mean /= N * GAN_PIX;
    for (int i = 0; i < N * GAN_PIX; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= N * GAN_PIX;
    double mse = pj_mse(xh, x, N, GAN_PIX, NULL);
    assert_true(mse < 0.2 * var);
    /* pj_project agrees with pj_reconstruct's z */
    float z2[N * 4];
    OK(pj_project(&m.net, x, N, z2, NULL, E));
    assert_memory_equal(z2, zh, sizeof z2);

    /* cache: save, load into a fresh net, same output; corrupt -> error */
    char dir[] = "/tmp/test_project_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[1024];
    pj_cache_path(dir, &c, 123, path, sizeof path);
    OK(pj_save(path, &m, E));
    pj_model b;
    memset(&b, 0, sizeof b);
    OK(pj_net_init(&b.net, &c, rt_cpu(), RT_F32, 64, 9, E));
    OK(pj_load(path, &b, E));
    OK(pj_project(&b.net, x, N, z2, NULL, E));
    assert_memory_equal(z2, zh, sizeof z2);
    assert_true(fabs(b.rep.heldout_lz - m.rep.heldout_lz) < 1e-12);
    /* same shapes, another config (lr): refused, naming the file */
    pj_model o2;
    memset(&o2, 0, sizeof o2);
    pj_config oc = c;
    oc.lr *= 2;
    OK(pj_net_init(&o2.net, &oc, rt_cpu(), RT_F32, 4, 9, E));
    ps_err e2 = {0};
    assert_int_equal(pj_load(path, &o2, &e2), PS_EINPUT);
    assert_non_null(strstr(e2.msg, path));
    assert_non_null(strstr(e2.msg, "config hash"));
    pj_free(&o2);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    ps_err e = {0};
    assert_int_not_equal(pj_load(path, &b, &e), 0);
    assert_non_null(strstr(e.msg, path));
    unlink(path);
    rmdir(dir);
    pj_free(&b);
    pj_free(&m);
    gan_gen_free(&g);
}

static void test_optimize_recovers(void **state)
{
    (void)state;
    gan_gen g;
    make_gen(&g, RT_F32, 64, 41);
    enum { N = 6, K = 300 };
    float z[N * 4], x[N * GAN_PIX], zo[N * 4], xo[N * GAN_PIX];
    rt_rng r;
    rt_rng_seed(&r, 5);
    gan_sample_z(&r, N, 4, z);
    OK(gan_generate(&g, z, N, x, E));
    pj_opt_opts o = pj_opt_opts_default();
    o.iters = K;
    o.batch = 4; /* two chunks */
    double curve[K + 1], ct[K + 1], lo[N];
    pj_opt_result res = {.curve = curve, .curve_s = ct};
    OK(pj_optimize(&g, NULL, x, N, NULL, &o, zo, lo, &res, E));
    assert_true(res.final_loss < 1e-4);
    assert_true(res.final_loss < curve[0] / 1000);
    assert_true(fabs(curve[K] - res.final_loss) < 1e-12);
    for (int k = 1; k <= K; k++)
        assert_true(ct[k] >= ct[k - 1]);
    assert_true(fabs(res.time_per_image_s * N - res.seconds) < 1e-9);
    /* the reported loss is G(z_out)'s */
    OK(gan_generate(&g, zo, N, xo, E));
    double per[N];
    pj_mse(xo, x, N, GAN_PIX, per);
    for (int i = 0; i < N; i++)
        assert_true(fabs(per[i] - lo[i]) < 1e-5);
    /* random restarts never do worse than their best run's end; init 2 from
     * the truth stays at ~0 */
    o.init = 2;
    o.iters = 5;
    OK(pj_optimize(&g, NULL, x, N, z, &o, zo, lo, &res, E));
    assert_true(res.final_loss < 1e-6);
    o.init = 1;
    o.restarts = 3;
    o.iters = 20;
    double c3[21];
    res.curve = c3;
    res.curve_s = NULL;
    OK(pj_optimize(&g, NULL, x, N, NULL, &o, zo, lo, &res, E));
    assert_true(c3[20] <= c3[0]);
    ps_err e = {0};
    o.init = 2;
    assert_int_equal(pj_optimize(&g, NULL, x, N, NULL, &o, zo, lo, &res, &e), PS_EINPUT);
    gan_gen_free(&g);
}

/* Super-resolution: D inside the loss (x4 area): P_D's consistency loss
 * falls; optimization with the LR loss reaches ~0 LR error. */
static void test_super_resolution(void **state)
{
    (void)state;
    gan_gen g;
    make_gen(&g, RT_F32, 256, 51);
    pj_config c = pj_config_test(&g.cfg, 6);
    c.lambda_real = 0;
    c.down = PJ_DOWN_AREA;
    c.factor = 4;
    c.steps = 300;
    c.lr = 3e-3;
    pj_model m;
    OK(pj_train(&c, &g, NULL, 0, &m, E));
    assert_int_equal(m.net.r, 7);
    assert_true(m.rep.lx_last < m.rep.lx_first / 2);
    assert_true(m.rep.heldout_lz < m.rep.heldout_lz_init / 2);
    enum { N = 8 };
    float z[N * 4], x[N * GAN_PIX], y[N * 49], xh[N * GAN_PIX], yh[N * 49], zo[N * 4];
    rt_rng r;
    rt_rng_seed(&r, 9);
    gan_sample_z(&r, N, 4, z);
    OK(gan_generate(&g, z, N, x, E));
    pj_down_apply(&m.net.down, x, N, y);
    float zp[N * 4];
    OK(pj_reconstruct(&m.net, &g, y, N, zp, xh, NULL, E));
    pj_down_apply(&m.net.down, xh, N, yh);
    double cons = pj_mse(yh, y, N, 49, NULL);
    /* better than the mean image's consistency */
    double var = 0, mean = 0;
    for (int i = 0; i < N * 49; i++)
        mean += y[i];
    mean /= N * 49;
    for (int i = 0; i < N * 49; i++)
        var += (y[i] - mean) * (y[i] - mean);
    var /= N * 49;
    assert_true(cons < 0.5 * var);
    pj_opt_opts o = pj_opt_opts_default();
    o.iters = 300;
    pj_opt_result res = {0};
    OK(pj_optimize(&g, &m.net.down, y, N, NULL, &o, zo, NULL, &res, E));
    double from0 = res.final_loss;
    o.init = 2; /* from the projector's answer */
    OK(pj_optimize(&g, &m.net.down, y, N, zp, &o, zo, NULL, &res, E));
    assert_true(from0 < 0.1 * var);    /* from z = 0: near, local minima remain */
    assert_true(res.final_loss < 1e-6); /* from P's z: the exact low-res match */
    pj_free(&m);
    gan_gen_free(&g);
}

static void test_bad_input(void **state)
{
    (void)state;
    gan_config gc = tiny_gan();
    pj_config c = pj_config_default(&gc, 1, 1);
    ps_err e = {0};
    pj_config b = c;
    b.factor = 3;
    b.down = PJ_DOWN_BICUBIC;
    assert_int_equal(pj_config_check(&b, &e), PS_EINPUT);
    b = c;
    b.lambda_z = b.lambda_x = b.lambda_real = 0;
    assert_int_equal(pj_config_check(&b, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "lambda"));
    assert_true(pj_config_hash(&c, 1) != pj_config_hash(&c, 2));
    /* zdim mismatch between G and P */
    gan_gen g;
    make_gen(&g, RT_F32, 8, 3);
    b = c;
    b.zdim = 5;
    pj_model m;
    assert_int_equal(pj_train(&b, &g, NULL, 0, &m, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "zdim"));
    /* lambda_real without images */
    b = c;
    assert_int_equal(pj_train(&b, &g, NULL, 0, &m, &e), PS_EINPUT);
    /* a missing cache file names itself */
    pj_model q;
    memset(&q, 0, sizeof q);
    OK(pj_net_init(&q.net, &c, rt_cpu(), RT_F32, 4, 1, E));
    assert_int_not_equal(pj_load("/nonexistent/projector.bin", &q, &e), 0);
    assert_non_null(strstr(e.msg, "/nonexistent/projector.bin"));
    pj_free(&q);
    gan_gen_free(&g);
    /* FLOPs by hand: 28 -> 14 -> 7: 2 (ch1 9 196 + ch2 ch1 9 49 + flat hidden + hidden z) */
    pj_config t = c;
    t.ch1 = 2, t.ch2 = 3, t.hidden = 5, t.zdim = 4;
    double f = 2 * 9 * 196 + 3 * 2 * 9 * 49 + 3 * 49 * 5 + 5 * 4;
    assert_true(fabs(pj_net_flops_fwd(&t, 3) - 2 * 3 * f) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_area),          cmocka_unit_test(test_down_matches_imgops),
        cmocka_unit_test(test_down_bicubic_adjoint),
        cmocka_unit_test(test_projector_gradcheck), cmocka_unit_test(test_projector_learns),
        cmocka_unit_test(test_optimize_recovers),  cmocka_unit_test(test_super_resolution),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
