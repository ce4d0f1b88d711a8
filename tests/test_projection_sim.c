/* sim/projection: parameter counts against published numbers, op times
 * against a roofline recomputed here from the closed forms, and the
 * per-image bookkeeping of encoder vs optimization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/table.h"
#include "costmodel/costmodel.h"
#include "experiments/runner.h"
#include "real/data_fmnist.h"
#include "sim/projection/cost.h"

static cm_catalog *cat;
static cm_model *model;
static const cm_device *h100;

#define EC 0.6
#define EM 0.75

static int setup(void **st)
{
    (void)st;
    ps_err e = {0};
    cat = cm_catalog_new(&e);
    h100 = cat ? cm_catalog_device(cat, "h100-sxm", &e) : NULL;
    model = h100 ? cm_model_roofline(h100, &e) : NULL;
    if (!model)
        return -1;
    const char *kinds[] = {"conv2d", "gemm", "elementwise", "reduction"};
    for (int i = 0; i < 4; i++)
        if (cm_model_set_efficiency(model, kinds[i], EC, EM, &e))
            return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    cm_model_free(model);
    cm_catalog_free(cat);
    return 0;
}

static void test_param_counts(void **st)
{
    (void)st;
    ps_err e = {0};
    pjs_net n;
    /* StyleGAN2 config-f at 1024^2: 30,370,060 parameters, the count the
     * official implementation prints for G (as recalled).  Independent
     * arithmetic: conv weights, affines (513 per input channel of each
     * modulated layer), toRGB weights, biases + noise strengths, mapping,
     * constant. */
    assert_int_equal(pjs_build_stylegan2(&n, 1, 1024, "fp32", &e), 0);
    int ch[] = {512, 512, 512, 512, 512, 256, 128, 64, 32}; /* 4 .. 1024 */
    double conv = 512.0 * 512 * 9, aff = 513.0 * 512 + 513.0 * 512, rgb = 512.0 * 3,
           bias = 512 + 1 + 3;
    for (int i = 1; i < 9; i++) {
        conv += 9.0 * ch[i - 1] * ch[i] + 9.0 * ch[i] * ch[i];
        aff += 513.0 * (ch[i - 1] + ch[i] + ch[i]);
        rgb += 3.0 * ch[i];
        bias += 2.0 * (ch[i] + 1) + 3;
    }
    double mapping = 8 * (512.0 * 512 + 512), cst = 4 * 4 * 512;
    double want = conv + aff + rgb + bias + mapping + cst;
    assert_true(fabs(n.params - want) < 0.5);
    assert_true(fabs(n.params - 30370060) < 0.5);
    assert_true(n.params_pub == 30.37e6);
    pjs_net_free(&n);
    /* VGG-16 conv1_1 .. conv4_2 (with biases): the standard per-layer counts
     * 1792 + 36928 + 73856 + 147584 + 295168 + 2 x 590080 + 1180160 + 2359808. */
    assert_int_equal(pjs_build_vgg16_perceptual(&n, 1, 256, 1024, "fp32", &e), 0);
    assert_true(fabs(n.params - 5275456) < 0.5);
    pjs_net_free(&n);
    /* pSp: about 267 M parameters (as recalled; map2style blocks dominate),
     * the IR-SE50 body's convolutions about 31 M. */
    assert_int_equal(pjs_build_psp(&n, 1, 256, "fp32", &e), 0);
    assert_true(fabs(n.params / 267e6 - 1) < 0.01);
    double body = 0;
    for (int i = 0; i < n.n; i++)
        if (!strncmp(n.l[i].name, "body", 4) || !strncmp(n.l[i].name, "input", 5))
            body += n.l[i].params;
    assert_true(body > 30e6 && body < 32e6);
    pjs_net_free(&n);
    /* The Fashion-MNIST DCGAN of real/gan.h (zdim 32, 128, 64):
     * fc 32*6272 + BN 2*128 + convt1 128*64*16 + BN 2*64 + convt2 64*16 + 1. */
    assert_int_equal(pjs_build_fmnist_gen(&n, 1, 32, 128, 64, "fp32", &e), 0);
    assert_true(fabs(n.params - (32.0 * 6272 + 256 + 131072 + 128 + 1024 + 1)) < 0.5);
    pjs_net_free(&n);
}

/* The roofline of costmodel/README.md recomputed from the op closed forms. */
static double roof(const ps_op *op)
{
    double peak = h100->peak_flops[CM_FP32], bw = h100->mem_bw_bytes_per_s;
    double tc = ps_op_flops(op) / (peak * EC), tm = ps_op_bytes(op) / (bw * EM);
    return h100->launch_s + (tc > tm ? tc : tm);
}

static void check_net_time(pjs_net *n)
{
    ps_err e = {0};
    pjs_time t;
    assert_int_equal(pjs_net_time(model, n, &t, &e), 0);
    double f = 0, b = 0;
    int nops = 0;
    for (int i = 0; i < n->n; i++) {
        const pjs_layer *l = &n->l[i];
        if (!l->trunk)
            continue;
        nops++;
        double r = roof(&l->op);
        if (!strcmp(l->op.kind, "elementwise") || !strcmp(l->op.kind, "reduction")) {
            f += r;
            b += 1.5 * r;
        } else if (!strcmp(l->op.kind, "gemm")) {
            /* bwd_input of gemm(m, n, k) = gemm(m, k, n): same flops and bytes */
            f += r;
            b += r;
        } else {
            /* conv2d: roofline with the forward's flops and bytes either way;
             * a transposed layer swaps the two phases (same totals). */
            f += r;
            b += r;
        }
    }
    assert_int_equal(t.nops, nops);
    assert_int_equal(t.roofline_ops, nops);
    assert_true(fabs(t.fwd_s - f) < 1e-9 * f + 1e-15);
    assert_true(fabs(t.bwd_input_s - b) < 1e-9 * b + 1e-15);
}

static void test_roofline_oracle(void **st)
{
    (void)st;
    ps_err e = {0};
    pjs_net n;
    assert_int_equal(pjs_build_stylegan2(&n, 2, 64, "fp32", &e), 0);
    check_net_time(&n);
    /* Mapping layers are counted but not run. */
    int mapping = 0;
    for (int i = 0; i < n.n; i++)
        mapping += !n.l[i].trunk;
    assert_int_equal(mapping, 8);
    pjs_net_free(&n);
    assert_int_equal(pjs_build_psp(&n, 3, 64, "fp32", &e), 0);
    check_net_time(&n);
    pjs_net_free(&n);
    assert_int_equal(pjs_build_fmnist_proj(&n, 5, 14, 32, 64, 0, 32, "fp32", &e), 0);
    check_net_time(&n);
    pjs_net_free(&n);
    /* A transposed conv's forward is the bwd_input phase of its op. */
    assert_int_equal(pjs_build_fmnist_gen(&n, 4, 32, 128, 64, "fp32", &e), 0);
    int found = 0;
    for (int i = 0; i < n.n; i++)
        if (n.l[i].transposed) {
            found++;
            assert_string_equal(n.l[i].op.kind, "conv2d");
            assert_int_equal(n.l[i].op.d[7], 2); /* stride 2 */
            /* the transposed op maps the layer's output back to its input */
            assert_true(ps_op_conv_out_h(&n.l[i].op) * 2 == n.l[i].op.d[2]);
        }
    assert_int_equal(found, 2);
    check_net_time(&n);
    pjs_net_free(&n);
}

static void test_predict_bookkeeping(void **st)
{
    (void)st;
    ps_err e = {0};
    pjs_setup s = {0};
    s.batch = 4;
    s.iters = 100;
    s.vgg = 1;
    s.dtype = "fp32";
    s.res = 256;
    s.enc_res = 128;
    pjs_pred p, q;
    assert_int_equal(pjs_predict(model, &s, &p, &e), 0);
    assert_true(fabs(p.encoder_per_image_s - (p.enc_fwd_s + p.gen_fwd_s) / 4) < 1e-15);
    double iter = (p.gen_fwd_s + p.gen_bwd_s + p.vgg_fwd_s + p.vgg_bwd_s + p.adam_s) / 4;
    assert_true(fabs(p.opt_iter_per_image_s - iter) < 1e-15);
    assert_true(fabs(p.opt_per_image_s - 100 * iter) < 1e-12);
    assert_true(fabs(p.speedup - p.opt_per_image_s / p.encoder_per_image_s) < 1e-9);
    /* Ten times the iterations: ten times the optimization, same encoder. */
    s.iters = 1000;
    assert_int_equal(pjs_predict(model, &s, &q, &e), 0);
    assert_true(fabs(q.opt_per_image_s / p.opt_per_image_s - 10) < 1e-9);
    assert_true(fabs(q.speedup / p.speedup - 10) < 1e-9);
    /* No VGG: cheaper iterations. */
    s.vgg = 0;
    assert_int_equal(pjs_predict(model, &s, &q, &e), 0);
    assert_true(q.vgg_fwd_s == 0 && q.opt_iter_per_image_s < p.opt_iter_per_image_s);
    /* Batching amortises launches: per-image times do not grow with batch. */
    s.batch = 1;
    pjs_pred one, many;
    assert_int_equal(pjs_predict(model, &s, &one, &e), 0);
    s.batch = 32;
    assert_int_equal(pjs_predict(model, &s, &many, &e), 0);
    assert_true(many.encoder_per_image_s <= one.encoder_per_image_s);
    assert_true(many.opt_iter_per_image_s <= one.opt_iter_per_image_s);
    /* Errors name the field. */
    s.iters = 0;
    assert_int_equal(pjs_predict(model, &s, &q, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "iters"));
    s.iters = 10;
    s.scale = "biggan";
    assert_int_equal(pjs_predict(model, &s, &q, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "scale"));
    s.scale = NULL;
    s.res = 1000;
    assert_int_equal(pjs_predict(model, &s, &q, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "stylegan2.res"));
    s.res = 256;
    s.dtype = "fp13";
    assert_int_equal(pjs_predict(model, &s, &q, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "dtype"));
}

static double pcol(const ps_table *t, const char *name)
{
    int c = ps_table_col(t, name);
    assert_true(c >= 0);
    return ps_table_get_d(t, 0, c);
}

static ps_table *run_study(const char *dir, const char *json, const char *name)
{
    ps_err e = {0};
    char cfg[512], out[512], path[600];
    snprintf(cfg, sizeof cfg, "%s/%s.json", dir, name);
    snprintf(out, sizeof out, "%s/%s.h5", dir, name);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    ps_run_opts o = {cfg, out, 1, 0, 0, 0, 1};
    int rc = ps_run(&o, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    hid_t h = ps_h5_open_read(out, &e);
    assert_true(h >= 0);
    ps_table *t = NULL;
    snprintf(path, sizeof path, "/%s/points", name);
    assert_int_equal(ps_h5_table_read(h, path, &t, &e), 0);
    H5Fclose(h);
    return t;
}

/* projection_scale end to end (the runner, the registry, the metrics). */
static void test_scale_study(void **st)
{
    (void)st;
    char dir[] = "/tmp/ps_projscale_XXXXXX";
    assert_non_null(mkdtemp(dir));
    ps_table *t = run_study(dir,
                            "{\"study\": \"projection_scale\", \"name\": \"projection_scale\","
                            " \"fixed\": {\"batch\": 4, \"res\": 256, \"enc_res\": 128}}",
                            "projection_scale");
    assert_int_equal(t->nrows, 1);
    double enc = pcol(t, "encoder_s_per_image"), it = pcol(t, "opt_iter_s_per_image");
    assert_true(enc > 0 && it > 0);
    assert_true(fabs(pcol(t, "opt_1000_s_per_image") - 1000 * it) < 1e-9 * 1000 * it);
    assert_true(fabs(pcol(t, "speedup_5000") - 5000 * it / enc) < 1e-6 * 5000 * it / enc);
    assert_true(pcol(t, "roofline_op_fraction") == 1.0);
    ps_table_free(t);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* projection_fmnist end to end on test-size models (needs the Fashion-MNIST
 * files; skipped without them).  Asserts what must hold whatever the
 * training: metric ranges, and that one projector pass is cheaper than
 * 30 optimization steps. */
static void test_fmnist_study(void **st)
{
    (void)st;
    char p[600];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", fmnist_dir());
    if (access(p, R_OK) != 0) {
        skip();
        return;
    }
    char dir[] = "/tmp/ps_projfm_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char json[1200];
    snprintf(json, sizeof json,
             "{\"study\": \"projection_fmnist\", \"name\": \"projection_fmnist\", \"fixed\": "
             "{\"models_dir\": \"%s/models\", \"model_size\": \"test\", \"n_test\": 60, "
             "\"n_opt\": 20, \"opt_iters\": 30, \"batch\": 20, \"n_fd\": 40, \"grid_n\": 2, "
             "\"kmeans_restarts\": 1, \"classifier\": \"\", \"gan_steps\": 20, "
             "\"proj_steps\": 25, \"clf_epochs\": 1}}",
             dir);
    ps_table *t = run_study(dir, json, "projection_fmnist");
    assert_int_equal(t->nrows, 1);
    const char *in01[] = {"nmi_projector", "nmi_pixels", "nmi_opt", "purity_projector",
                          "purity_pixels", "purity_opt", "recon_projector_ssim", "sr2_bicubic_ssim"};
    for (size_t i = 0; i < sizeof in01 / sizeof in01[0]; i++) {
        double v = pcol(t, in01[i]);
        assert_true(v >= 0 && v <= 1);
    }
    assert_true(pcol(t, "purity_pixels") >= 0.1); /* at least the largest class share */
    assert_true(isfinite(pcol(t, "recon_projector_psnr_db")));
    assert_true(isfinite(pcol(t, "sr4_opt_psnr_db")));
    assert_true(pcol(t, "fd_gan") > pcol(t, "fd_real_floor"));
    /* bicubic up-sampling then the area down-sampler nearly reproduces D(x) */
    assert_true(pcol(t, "sr2_bicubic_lr_psnr_db") > 25);
    assert_true(pcol(t, "recon_speedup") > 1);
    assert_true(fabs(pcol(t, "recon_mse_ratio") -
                     pcol(t, "recon_projector_mse_opt_subset") / pcol(t, "recon_opt_mse")) < 1e-12);
    ps_table_free(t);
    struct stat sb;
    snprintf(p, sizeof p, "%s/projection_fmnist/sr_grid_x4.pgm", dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_true(sb.st_size > 2 * 5 * 30 * 30);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_roofline_oracle),
        cmocka_unit_test(test_predict_bookkeeping),
        cmocka_unit_test(test_scale_study),
        cmocka_unit_test(test_fmnist_study),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
