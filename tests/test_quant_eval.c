/* real/quant_eval: the folded float32 model against the cnn's own eval
 * forward (batch norm with non-trivial running statistics), the tree sweep
 * against one-at-a-time evaluation of every configuration, 8-bit fake-quant
 * close to float, activation calibration against a direct maximum, the
 * pixel-domain input quantizer, the index decoding, MACs / BOPS per layer
 * by hand, and the networks' parameter counts (balanced included). */
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

#include "real/cnn.h"
#include "real/quant_eval.h"
#include "sim/specdec/rng.h"

#define OK(x)                                                                                  \
    do {                                                                                       \
        ps_err e_ = {0};                                                                       \
        (void)e_;                                                                              \
        if ((x) != 0)                                                                          \
            fail_msg("%s failed", #x);                                                         \
    } while (0)

enum { NIMG = 48 };

static cnn_config small_cfg(void)
{
    cnn_config c = cnn_config_small(); /* 8, 16 channels, hidden 32 */
    return c;
}

/* A cnn with randomised BN statistics and a batch of synthetic images. */
static void make_net(cnn *net, qe_data *d, uint64_t seed)
{
    cnn_config c = small_cfg();
    ps_err e = {0};
    if (cnn_init(net, &c, rt_cpu(), RT_F32, NIMG, seed, &e))
        fail_msg("cnn_init: %s", e.msg);
    sd_rng r;
    sd_rng_seed(&r, seed + 100);
    for (int i = 0; i < c.nblocks; i++) {
        cnn_block *b = &net->blk[i];
        rt_param *ps[4] = {b->bn_g, b->bn_b, b->bn_rm, b->bn_rv};
        for (int k = 0; k < 4; k++) {
            float *v = ps[k]->w.data;
            for (int64_t j = 0; j < ps[k]->w.numel; j++) {
                double u = sd_rng_u01(&r);
                v[j] = (float)(k == 0 ? 0.5 + u : k == 1 ? u - 0.5 : k == 2 ? 0.2 * (u - 0.5)
                                                                             : 0.05 + 0.3 * u);
            }
        }
    }
    d->n = NIMG;
    d->dim = 28 * 28;
    d->x = malloc(NIMG * 28 * 28 * sizeof(float));
    d->y = malloc(NIMG * sizeof(int32_t));
    for (int i = 0; i < NIMG * 28 * 28; i++) {
        double u = sd_rng_u01(&r);
        u = u < 0.4 ? 0.0 : u; /* like images: many zero pixels */
        d->x[i] = (float)((u - FMNIST_MEAN) / FMNIST_STD);
    }
    for (int i = 0; i < NIMG; i++)
        d->y[i] = (int32_t)(sd_rng_next(&r) % 10);
}

static void test_fold_matches_cnn(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 5);
    qe_model m;
    ps_err e = {0};
    if (qe_model_from_cnn(&m, &net, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(m.nq, 4);
    assert_string_equal(m.l[0].name, "conv1");
    assert_string_equal(m.l[3].name, "fc2");
    assert_int_equal(qe_layer_params(&m, 0), 8 * 9);
    assert_int_equal(qe_layer_params(&m, 1), 16 * 8 * 9);
    /* reference: cnn eval forward, its mean CE and accuracy */
    rt_tensor x, y;
    int64_t xs[4] = {NIMG, 1, 28, 28};
    OK(rt_tensor_alloc(&x, rt_cpu(), RT_F32, 4, xs, &e_));
    OK(rt_tensor_new1(&y, rt_cpu(), RT_I32, NIMG, &e_));
    memcpy(x.data, d.x, NIMG * 28 * 28 * sizeof(float));
    memcpy(y.data, d.y, NIMG * sizeof(int32_t));
    OK(cnn_forward(&net, &x, 0, &e_));
    double ref_loss;
    OK(cnn_loss(&net, &y, &ref_loss, &e_));
    int32_t pred[NIMG];
    OK(cnn_predict(&net, pred, &e_));
    int corr = 0;
    for (int i = 0; i < NIMG; i++)
        corr += pred[i] == d.y[i];
    qe_config c;
    memset(&c, 0, sizeof c);
    double acc, loss;
    if (qe_evaluate(&m, &c, &d, &acc, &loss, &e))
        fail_msg("%s", e.msg);
    if (!(fabs(loss - ref_loss) <= 1e-4 * fabs(ref_loss)))
        fail_msg("folded loss %.9g vs cnn %.9g", loss, ref_loss);
    assert_true(fabs(acc - corr / (double)NIMG) < 1e-12);
    rt_tensor_free(&x);
    rt_tensor_free(&y);
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

static void test_tree_equals_direct(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 9);
    qe_model m;
    ps_err e = {0};
    OK(qe_model_from_cnn(&m, &net, &e));
    double range[QE_MAXQ];
    OK(qe_calibrate(&m, &d, PSQ_CAL_MAX, 0, range, &e));
    for (int mode = 0; mode < 2; mode++) {
        qe_sweep s = {.mode = mode, .nopt = 3, .bits = {2, 4, 8}, .gran = PSQ_PER_CHANNEL,
                      .fixed_wbits = 8, .chunk = 20, .label = NULL};
        memcpy(s.range, range, sizeof range);
        long n = qe_nconfigs(3, m.nq);
        assert_int_equal(n, 81);
        double acc[81], loss[81];
        if (qe_exhaustive(&m, &s, &d, acc, loss, &e))
            fail_msg("%s", e.msg);
        for (long i = 0; i < n; i++) {
            int k[QE_MAXQ];
            qe_config_decode(i, 3, m.nq, k);
            qe_config c;
            memset(&c, 0, sizeof c);
            c.gran = PSQ_PER_CHANNEL;
            memcpy(c.range, range, sizeof range);
            for (int l = 0; l < m.nq; l++) {
                c.wbits[l] = mode ? 8 : s.bits[k[l]];
                c.abits[l] = mode ? s.bits[k[l]] : 0;
            }
            double a1, l1;
            OK(qe_evaluate(&m, &c, &d, &a1, &l1, &e));
            if (!(fabs(a1 - acc[i]) < 1e-12 && fabs(l1 - loss[i]) <= 1e-5 * fabs(l1)))
                fail_msg("mode %d config %ld: tree %g/%g vs direct %g/%g", mode, i, acc[i],
                         loss[i], a1, l1);
        }
        /* all-2-bit is worse (higher loss) than all-8-bit */
        assert_true(loss[0] > loss[n - 1]);
    }
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

static void test_8bit_close(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 13);
    qe_model m;
    ps_err e = {0};
    OK(qe_model_from_cnn(&m, &net, &e));
    qe_config c;
    memset(&c, 0, sizeof c);
    double af, lf, a8, l8, a2, l2;
    OK(qe_evaluate(&m, &c, &d, &af, &lf, &e));
    for (int l = 0; l < m.nq; l++)
        c.wbits[l] = 8;
    OK(qe_evaluate(&m, &c, &d, &a8, &l8, &e));
    for (int l = 0; l < m.nq; l++)
        c.wbits[l] = 2;
    OK(qe_evaluate(&m, &c, &d, &a2, &l2, &e));
    if (!(fabs(l8 - lf) < 0.01 * lf))
        fail_msg("8-bit loss %g vs float %g", l8, lf);
    if (!(fabs(l2 - lf) > fabs(l8 - lf)))
        fail_msg("2-bit loss %g not further from float %g than 8-bit %g", l2, lf, l8);
    /* bad bits are named */
    c.wbits[2] = 9;
    assert_int_equal(qe_evaluate(&m, &c, &d, NULL, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "wbits[2]"));
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

/* Calibration: range[0] is the max pixel, range[1] the max of conv1's
 * pooled ReLU output, computed here straight from the folded weights. */
static void test_calibrate(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 21);
    qe_model m;
    ps_err e = {0};
    OK(qe_model_from_cnn(&m, &net, &e));
    double r[QE_MAXQ];
    OK(qe_calibrate(&m, &d, PSQ_CAL_MAX, 0, r, &e));
    double mx = 0;
    for (int64_t i = 0; i < d.n * d.dim; i++) {
        double u = d.x[i] * FMNIST_STD + FMNIST_MEAN;
        if (u > mx)
            mx = u;
    }
    assert_true(fabs(r[0] - mx) < 1e-6);
    const qe_layer *L = &m.l[0];
    double m1 = 0;
    for (int n = 0; n < NIMG; n++)
        for (int o = 0; o < L->c_out; o++)
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) {
                    double s = L->b[o];
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = y + ky - 1, ix = x + kx - 1;
                            if (iy < 0 || iy >= 28 || ix < 0 || ix >= 28)
                                continue;
                            s += (double)L->w[o * 9 + ky * 3 + kx] * d.x[n * 784 + iy * 28 + ix];
                        }
                    if (s > m1)
                        m1 = s;
                }
    if (!(fabs(r[1] - m1) <= 1e-4 * m1))
        fail_msg("range[1] %.7g vs direct %.7g", r[1], m1);
    double p[QE_MAXQ];
    OK(qe_calibrate(&m, &d, PSQ_CAL_PERCENTILE, 99.0, p, &e));
    for (int l = 0; l < m.nq; l++)
        assert_true(p[l] <= r[l] && p[l] >= 0);
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

/* Activation sweep at the pixel input: with 2 bits and range 1 the image
 * becomes {0, 1/3, 2/3, 1}; a model whose conv1 sees only that must equal a
 * float evaluation of the pre-quantized images. */
static void test_input_quant(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 33);
    qe_model m;
    ps_err e = {0};
    OK(qe_model_from_cnn(&m, &net, &e));
    qe_config c;
    memset(&c, 0, sizeof c);
    c.abits[0] = 2;
    c.range[0] = 1.0;
    double a1, l1, a2, l2;
    OK(qe_evaluate(&m, &c, &d, &a1, &l1, &e));
    qe_data q = d;
    q.x = malloc(d.n * d.dim * sizeof(float));
    for (int64_t i = 0; i < d.n * d.dim; i++) {
        double u = d.x[i] * FMNIST_STD + FMNIST_MEAN;
        double v = round(u * 3) / 3;
        if (v < 0)
            v = 0;
        if (v > 1)
            v = 1;
        q.x[i] = (float)((v - FMNIST_MEAN) / FMNIST_STD);
    }
    memset(&c, 0, sizeof c);
    OK(qe_evaluate(&m, &c, &q, &a2, &l2, &e));
    assert_true(fabs(a1 - a2) < 1e-12);
    if (!(fabs(l1 - l2) <= 1e-5 * l2))
        fail_msg("input quant loss %g vs pre-quantized %g", l1, l2);
    free(q.x);
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

/* qe_act_err2: layer 0 against a direct pixel-domain computation; every
 * layer decreasing in bits and within the uniform bound n·(s/2)² when the
 * range is the calibrated max (nothing clamped). */
static void test_act_err2(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 41);
    qe_model m;
    ps_err e = {0};
    OK(qe_model_from_cnn(&m, &net, &e));
    double r[QE_MAXQ];
    OK(qe_calibrate(&m, &d, PSQ_CAL_MAX, 0, r, &e));
    const int bits[5] = {2, 3, 4, 6, 8};
    double err[QE_MAXQ * 5];
    OK(qe_act_err2(&m, &d, bits, 5, r, err, &e));
    for (int k = 0; k < 5; k++) {
        int qm = psq_qmax_unsigned(bits[k]);
        double s = r[0] / qm, ref = 0;
        for (int64_t i = 0; i < d.n * d.dim; i++) {
            double u = (double)(float)(d.x[i] * FMNIST_STD + FMNIST_MEAN);
            double q = round(u / s);
            if (q > qm)
                q = qm;
            if (q < 0 || u <= 0)
                q = 0;
            ref += (q * s - u) * (q * s - u);
        }
        ref /= (double)d.n * FMNIST_STD * FMNIST_STD;
        if (!(fabs(err[k] - ref) <= 1e-4 * ref))
            fail_msg("layer 0, %d bits: err2 %.9g vs direct %.9g", bits[k], err[k], ref);
    }
    for (int l = 0; l < m.nq; l++)
        for (int k = 0; k < 5; k++) {
            double s = r[l] / psq_qmax_unsigned(bits[k]);
            double bound = (double)m.l[l].in_numel * s * s / 4 *
                           (l == 0 ? 1.0 / (FMNIST_STD * FMNIST_STD) : 1.0);
            if (!(err[l * 5 + k] <= bound * (1 + 1e-5)))
                fail_msg("layer %d bits %d: err2 %g above the bound %g", l, bits[k],
                         err[l * 5 + k], bound);
            if (k > 0 && !(err[l * 5 + k] < err[l * 5 + k - 1]))
                fail_msg("layer %d: err2 not decreasing at %d bits", l, bits[k]);
        }
    qe_model_free(&m);
    qe_data_free(&d);
    cnn_free(&net);
}

/* qe_train_or_load loads an existing file of the right config without
 * training (weights identical). */
static void test_load_cached(void **st)
{
    (void)st;
    cnn net;
    qe_data d;
    make_net(&net, &d, 55);
    char path[256];
    snprintf(path, sizeof path, "/tmp/test_quant_eval_%d.bin", (int)getpid());
    ps_err e = {0};
    if (cnn_save(&net, path, "test", &e))
        fail_msg("%s", e.msg);
    cnn back;
    int trained = -1;
    if (qe_train_or_load(path, 1, 1, 0, &back, &trained, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(trained, 0);
    assert_int_equal(back.nparams, net.nparams);
    for (int i = 0; i < net.nparams; i++)
        assert_memory_equal(back.params[i].w.data, net.params[i].w.data,
                            rt_tensor_bytes(&net.params[i].w));
    remove(path);
    cnn_free(&back);
    qe_data_free(&d);
    cnn_free(&net);
}

static void test_decode(void **st)
{
    (void)st;
    int k[4];
    qe_config_decode(0, 5, 4, k);
    assert_true(k[0] == 0 && k[3] == 0);
    qe_config_decode(624, 5, 4, k);
    assert_true(k[0] == 4 && k[1] == 4 && k[2] == 4 && k[3] == 4);
    qe_config_decode(1 * 125 + 2 * 25 + 3 * 5 + 4, 5, 4, k);
    assert_true(k[0] == 1 && k[1] == 2 && k[2] == 3 && k[3] == 4);
    assert_int_equal(qe_nconfigs(5, 4), 625);
    assert_int_equal(qe_nconfigs(8, 12), -1);
}

/* MACs per layer by hand: conv (stride 1, pad k/2, before pooling)
 * H·W·c_out·c_in·k², linear out·in; their sum is half of cnn_flops_fwd's
 * forward count at batch 1 (2 flops per multiply-add); BOPS = Σ MACs·bw·ba. */
static void check_macs(const cnn_config *c, const int64_t want[4])
{
    cnn net;
    ps_err e = {0};
    if (cnn_init(&net, c, rt_cpu(), RT_F32, 2, 3, &e))
        fail_msg("cnn_init: %s", e.msg);
    qe_model m;
    if (qe_model_from_cnn(&m, &net, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(m.nq, 4);
    double sum = 0;
    for (int q = 0; q < 4; q++) {
        assert_int_equal(qe_layer_macs(&m, q), want[q]);
        sum += (double)want[q];
    }
    assert_true(fabs(2 * sum - cnn_flops_fwd(c, 1)) < 0.5);
    int wb[4] = {2, 3, 4, 8}, ab[4] = {8, 8, 8, 8}, ab2[4] = {8, 6, 4, 2};
    double b1 = (double)want[0] * 2 * 8 + (double)want[1] * 3 * 8 + (double)want[2] * 4 * 8 +
                (double)want[3] * 8 * 8;
    double b2 = (double)want[0] * 2 * 8 + (double)want[1] * 3 * 6 + (double)want[2] * 4 * 4 +
                (double)want[3] * 8 * 2;
    assert_true(qe_bops(&m, wb, ab) == b1);
    assert_true(qe_bops(&m, wb, ab2) == b2);
    qe_model_free(&m);
    cnn_free(&net);
}

static void test_macs_bops(void **st)
{
    (void)st;
    /* default: conv3x3 1->32 on 28x28, conv3x3 32->64 on 14x14, 3136->128, 128->10 */
    cnn_config d = cnn_config_default();
    const int64_t wd[4] = {28 * 28 * 32 * 1 * 9, 14 * 14 * 64 * 32 * 9, 3136 * 128, 128 * 10};
    assert_int_equal(wd[0], 225792);
    assert_int_equal(wd[1], 3612672);
    check_macs(&d, wd);
    /* balanced: conv5x5 1->32 on 28x28, conv5x5 32->16 on 14x14, 784->32, 32->10 */
    cnn_config b = qe_config_balanced();
    const int64_t wb[4] = {28 * 28 * 32 * 25, 14 * 14 * 16 * 32 * 25, 784 * 32, 32 * 10};
    assert_int_equal(wb[0], 627200);
    assert_int_equal(wb[1], 2508800);
    check_macs(&b, wb);
    /* small: 3x3 1->8, 8->16, 784->32, 32->10 */
    cnn_config s = cnn_config_small();
    const int64_t ws[4] = {28 * 28 * 8 * 9, 14 * 14 * 16 * 8 * 9, 784 * 32, 32 * 10};
    check_macs(&s, ws);
}

/* The balanced network: 800 / 12,800 / 25,088 / 320 quantized weights (the
 * two big layers within 2x, no layer above 65% of the total, against 95%
 * for fc1 in the default one); names and parsing of the nets. */
static void test_balanced_params(void **st)
{
    (void)st;
    const qe_net nets[3] = {QE_NET_DEFAULT, QE_NET_BALANCED, QE_NET_SMALL};
    const int64_t want[3][4] = {{288, 18432, 401408, 1280}, {800, 12800, 25088, 320},
                                {72, 1152, 25088, 320}};
    const double maxfrac[3] = {0.96, 0.65, 0.95};
    for (int i = 0; i < 3; i++) {
        cnn_config c = qe_net_config(nets[i]);
        ps_err e = {0};
        if (cnn_config_check(&c, &e))
            fail_msg("%s", e.msg);
        cnn net;
        if (cnn_init(&net, &c, rt_cpu(), RT_F32, 1, 1, &e))
            fail_msg("%s", e.msg);
        qe_model m;
        if (qe_model_from_cnn(&m, &net, &e))
            fail_msg("%s", e.msg);
        double tot = 0, mx = 0;
        for (int q = 0; q < 4; q++) {
            assert_int_equal(qe_layer_params(&m, q), want[i][q]);
            tot += (double)want[i][q];
            mx = fmax(mx, (double)want[i][q]);
        }
        if (!(mx / tot < maxfrac[i]))
            fail_msg("%s: largest layer %.3f of the weights", qe_net_name(nets[i]), mx / tot);
        qe_net back;
        if (qe_net_parse(qe_net_name(nets[i]), &back, &e))
            fail_msg("%s", e.msg);
        assert_int_equal(back, nets[i]);
        qe_model_free(&m);
        cnn_free(&net);
    }
    /* default: fc1 is 95.2% of the weights */
    assert_true(401408.0 / (288 + 18432 + 401408 + 1280) > 0.95);
    assert_true(12800.0 * 2 >= 25088);
    qe_net n;
    ps_err e = {0};
    assert_int_equal(qe_net_parse("big", &n, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "model"));
    assert_non_null(strstr(e.msg, "big"));
}

/* qe_train_or_load_net loads a saved balanced network without training and
 * does not take a file of another config for it. */
static void test_load_balanced(void **st)
{
    (void)st;
    cnn_config c = qe_config_balanced();
    cnn net;
    ps_err e = {0};
    if (cnn_init(&net, &c, rt_cpu(), RT_F32, 1, 9, &e))
        fail_msg("%s", e.msg);
    char path[256];
    snprintf(path, sizeof path, "/tmp/test_quant_eval_bal_%d.bin", (int)getpid());
    if (cnn_save(&net, path, "test", &e))
        fail_msg("%s", e.msg);
    cnn back;
    int trained = -1;
    if (qe_train_or_load_net(path, QE_NET_BALANCED, 1, 0, &back, &trained, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(trained, 0);
    assert_int_equal(back.cfg.ksize, 5);
    for (int i = 0; i < net.nparams; i++)
        assert_memory_equal(back.params[i].w.data, net.params[i].w.data,
                            rt_tensor_bytes(&net.params[i].w));
    remove(path);
    cnn_free(&back);
    cnn_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_matches_cnn), cmocka_unit_test(test_tree_equals_direct),
        cmocka_unit_test(test_8bit_close),       cmocka_unit_test(test_calibrate),
        cmocka_unit_test(test_input_quant),      cmocka_unit_test(test_act_err2),
        cmocka_unit_test(test_load_cached),      cmocka_unit_test(test_decode),
        cmocka_unit_test(test_macs_bops),        cmocka_unit_test(test_balanced_params),
        cmocka_unit_test(test_load_balanced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
