/* real/hessian + real/data_digits: exact second-order machinery checked
 * against independent references.
 *
 *  - the digits fixture loader (good file, malformed lines naming the line);
 *  - a 64-32-10 MLP trained for a moment on the digits: its dense Hessian
 *    from an analytic oracle written here (explicit Jacobians: J^T A J plus
 *    the ReLU cross term g_k relu'(u_j) between fc2.w[k,j] and fc1[j,:]),
 *    against the R-op (<= 1e-9), central finite differences (<= 1e-5 away
 *    from kinks, and a constructed kink where FD is badly wrong while the
 *    R-op still matches the one-sided oracle), the Gauss-Newton block traces
 *    (<= 1e-9) and the last layer's closed forms;
 *  - a tiny CNN (1x8x8 digits, conv3(4)-affine-relu-pool-linear): R-op vs FD,
 *    GN block traces vs the R-op dense Hessian diagonal, activation traces;
 *    hs_net_from_cnn against cnn_forward (eval BN, kept and folded);
 *  - Hutchinson: within 3 SE of the exact traces, the observed SE over
 *    repeated estimates within +-20% of the theory (whole model:
 *    sqrt(2(||H||_F^2 - sum H_jj^2)/m); a block b probed together with the
 *    others also carries the cross blocks: sqrt((2(||H_bb||_F^2 - sum
 *    diag^2) + ||H_b,rest||_F^2)/m)), the stopping rule;
 *  - lambda_max against GSL's gsl_eigen_symm on the dense blocks;
 *  - imatrix statistics against brute force.
 * HS_TEST_N (default 64) sets the digits subset of the Hessian checks. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gsl/gsl_eigen.h>
#include <gsl/gsl_matrix.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu_blas.h"
#include "real/cnn.h"
#include "real/data_digits.h"
#include "real/hessian.h"
#include "real/rt.h"

static digits_data D;
static hs_net MLP;
static int64_t NS = 64;     /* Hessian subset: rows [H0, H0 + NS) */
static const int64_t H0 = 1500;
static double *HOR;         /* oracle dense Hessian [np * np] */
static const double *XS;
static const int32_t *YS;

static uint64_t rs = 12345;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) * 0x1.0p-53;
}

static double relerr(const double *a, const double *b, int64_t n)
{
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        s += b[i] * b[i];
    }
    return sqrt(d) / (sqrt(s) + 1e-300);
}

/* ------------------------------------------------------------ oracle */

/* The dense Hessian of the mean CE of a linear-ReLU-linear MLP, by hand. */
static void mlp_oracle(const hs_net *net, const double *x, const int32_t *y, int64_t n,
                       double *H)
{
    const int I = net->layers[0].c_in, Hh = net->layers[0].c_out, C = net->classes;
    const int64_t np = net->nparam;
    const int64_t ow1 = net->blocks[0].off, ob1 = net->blocks[1].off, ow2 = net->blocks[2].off,
                  ob2 = net->blocks[3].off;
    const double *W1 = net->theta + ow1, *b1 = net->theta + ob1, *W2 = net->theta + ow2,
                 *b2 = net->theta + ob2;
    double *M = calloc((size_t)(n * C * np), sizeof *M);
    double *J = malloc((size_t)(C * np) * sizeof *J);
    double u[256], h[256], z[16], p[16];
    assert_true(M && J && Hh <= 256 && C <= 16);
    memset(H, 0, (size_t)(np * np) * sizeof *H);
    for (int64_t s = 0; s < n; s++) {
        const double *xs = x + s * I;
        for (int j = 0; j < Hh; j++) {
            u[j] = b1[j];
            for (int i = 0; i < I; i++)
                u[j] += W1[j * I + i] * xs[i];
            h[j] = u[j] > 0 ? u[j] : 0;
        }
        double mx = -1e300, sum = 0;
        for (int k = 0; k < C; k++) {
            z[k] = b2[k];
            for (int j = 0; j < Hh; j++)
                z[k] += W2[k * Hh + j] * h[j];
            mx = z[k] > mx ? z[k] : mx;
        }
        for (int k = 0; k < C; k++)
            sum += (p[k] = exp(z[k] - mx));
        for (int k = 0; k < C; k++)
            p[k] /= sum;
        memset(J, 0, (size_t)(C * np) * sizeof *J);
        for (int k = 0; k < C; k++) {
            double *Jk = J + k * np;
            Jk[ob2 + k] = 1;
            for (int j = 0; j < Hh; j++) {
                Jk[ow2 + k * Hh + j] = h[j];
                if (u[j] > 0) {
                    Jk[ob1 + j] = W2[k * Hh + j];
                    for (int i = 0; i < I; i++)
                        Jk[ow1 + j * I + i] = W2[k * Hh + j] * xs[i];
                }
            }
        }
        /* rows r_c^T J, r_c = sqrt(p_c)(e_c - p) */
        for (int c = 0; c < C; c++) {
            double *Mr = M + (s * C + c) * np, sc = sqrt(p[c]);
            for (int k = 0; k < C; k++) {
                double r = sc * ((k == c) - p[k]);
                if (r != 0)
                    for (int64_t t = 0; t < np; t++)
                        Mr[t] += r * J[k * np + t];
            }
        }
        /* the ReLU cross term: d2 z_k / dW2[k,j] d(W1[j,i], b1[j]) = relu'(u_j) (x_i, 1) */
        for (int k = 0; k < C; k++) {
            double g = (p[k] - (k == y[s])) / (double)n;
            for (int j = 0; j < Hh; j++) {
                if (!(u[j] > 0))
                    continue;
                int64_t a = ow2 + k * Hh + j;
                for (int i = 0; i < I; i++) {
                    int64_t b = ow1 + j * I + i;
                    H[a * np + b] += g * xs[i];
                    H[b * np + a] += g * xs[i];
                }
                H[a * np + ob1 + j] += g;
                H[(ob1 + j) * np + a] += g;
            }
        }
    }
    ps_cpu_dgemm(1, 0, np, np, n * C, 1.0 / (double)n, M, np, M, np, 1.0, H, np);
    free(M);
    free(J);
}

/* ------------------------------------------------------------ setup */

static int group_setup(void **state)
{
    (void)state;
    const char *ev = getenv("HS_TEST_N");
    if (ev && atoi(ev) > 0)
        NS = atoi(ev);
    ps_err e = {0};
    if (digits_load(NULL, &D, &e)) {
        fprintf(stderr, "digits: %s\n", e.msg);
        return -1;
    }
    if (NS > D.n - H0)
        NS = D.n - H0;
    int dims[3] = {64, 32, 10};
    if (hs_net_mlp(&MLP, dims, 3, 7, &e) ||
        hs_train_sgd(&MLP, D.x, D.y, H0, 15, 0.2, 32, 1, &e)) {
        fprintf(stderr, "mlp: %s\n", e.msg);
        return -1;
    }
    XS = D.x + H0 * 64;
    YS = D.y + H0;
    HOR = malloc((size_t)(MLP.nparam * MLP.nparam) * sizeof *HOR);
    if (!HOR)
        return -1;
    mlp_oracle(&MLP, XS, YS, NS, HOR);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(HOR);
    hs_net_free(&MLP);
    digits_free(&D);
    return 0;
}

/* ------------------------------------------------------------ loader */

static void test_digits_load(void **state)
{
    (void)state;
    assert_int_equal(D.n, 1797);
    /* first row: 0,0,5,13,9,1,0,0,... label 0; last row label 8 */
    assert_true(D.x[2] == 5.0 / 16 && D.x[3] == 13.0 / 16 && D.x[0] == 0);
    assert_int_equal(D.y[0], 0);
    assert_int_equal(D.y[1], 1);
    assert_int_equal(D.y[1796], 8);
    assert_true(D.x[1796 * 64 + 2] == 10.0 / 16);
    int cnt[10] = {0};
    for (int64_t i = 0; i < D.n; i++)
        cnt[D.y[i]]++;
    int want[10] = {178, 182, 177, 183, 181, 182, 181, 179, 174, 180};
    for (int c = 0; c < 10; c++)
        assert_int_equal(cnt[c], want[c]);
}

static void expect_bad(const char *content, const char *needle)
{
    char path[] = "/tmp/hs_digits_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(content, f);
    fclose(f);
    digits_data d;
    ps_err e = {0};
    int rc = digits_load(path, &d, &e);
    unlink(path);
    assert_int_equal(rc, PS_EINPUT);
    if (!strstr(e.msg, needle) || !strstr(e.msg, path))
        fail_msg("message '%s' lacks '%s' or the path", e.msg, needle);
    assert_null(d.x);
}

static void test_digits_bad(void **state)
{
    (void)state;
    char good[512] = "", row[512];
    for (int j = 0; j < 64; j++)
        snprintf(good + strlen(good), sizeof good - strlen(good), "%d,", j % 17);
    snprintf(row, sizeof row, "%s3\n", good);
    char buf[2048];
    /* 64 fields on line 2 */
    snprintf(buf, sizeof buf, "%s%s\n", row, "1,2,3");
    expect_bad(buf, ":2: 3 fields, expected 65");
    good[strlen(good) - 1] = '\0';
    snprintf(buf, sizeof buf, "%s%s\n", row, good); /* 64 fields exactly */
    expect_bad(buf, ":2: 64 fields");
    snprintf(buf, sizeof buf, "%s%s,10\n", row, good); /* label 10 */
    expect_bad(buf, ":2: field 65: 10 out of range [0, 9] (label)");
    snprintf(buf, sizeof buf, "17,%s\n", good + 2); /* pixel 17 on line 1 */
    expect_bad(buf, ":1: field 1: 17 out of range [0, 16] (pixel)");
    snprintf(buf, sizeof buf, "%sx,%s\n", row, good);
    expect_bad(buf, ":2: field 1: expected an integer");
    expect_bad("", "no data rows");
    digits_data d;
    ps_err e = {0};
    assert_int_equal(digits_load("/nonexistent/digits.csv.gz", &d, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/digits.csv.gz"));
    /* the good row alone loads */
    char path[] = "/tmp/hs_digits_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(row, f);
    fclose(f);
    assert_int_equal(digits_load(path, &d, &e), 0);
    unlink(path);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.y[0], 3);
    assert_true(d.x[16] == 16.0 / 16);
    digits_free(&d);
}

/* ------------------------------------------------------------ MLP */

static void test_mlp_trained(void **state)
{
    (void)state;
    assert_int_equal(MLP.nparam, 2410);
    double loss;
    int64_t cor;
    ps_err e = {0};
    assert_int_equal(hs_loss_grad(&MLP, D.x + H0 * 64, D.y + H0, D.n - H0, &loss, NULL, &cor, &e),
                     0);
    double acc = (double)cor / (double)(D.n - H0);
    print_message("digits MLP 64-32-10: held-out loss %.4f accuracy %.4f\n", loss, acc);
    assert_true(acc > 0.85);
}

static void test_rop_vs_oracle(void **state)
{
    (void)state;
    const int64_t np = MLP.nparam;
    ps_err e = {0};
    double *v = malloc((size_t)np * sizeof *v), *hv = malloc((size_t)np * sizeof *hv),
           *ref = malloc((size_t)np * sizeof *ref);
    /* random directions */
    for (int t = 0; t < 3; t++) {
        for (int64_t i = 0; i < np; i++)
            v[i] = urand() - 0.5;
        assert_int_equal(hs_hvp(&MLP, XS, YS, NS, v, hv, &e), 0);
        ps_cpu_dgemm(0, 0, np, 1, np, 1.0, HOR, np, v, 1, 0.0, ref, 1);
        double r = relerr(hv, ref, np);
        if (t == 0)
            print_message("R-op vs oracle H v: rel err %.2e\n", r);
        assert_true(r <= 1e-9);
    }
    /* the whole dense Hessian, column by column */
    double *H = malloc((size_t)(np * np) * sizeof *H);
    assert_int_equal(hs_dense_hessian(&MLP, XS, YS, NS, H, &e), 0);
    double worst = 0, hmax = 0, zmax = 0;
    int64_t nzero = 0;
    for (int64_t i = 0; i < np * np; i++)
        hmax = fabs(HOR[i]) > hmax ? fabs(HOR[i]) : hmax;
    for (int64_t j = 0; j < np; j++) {
        double r = relerr(H + j * np, HOR + j * np, np);
        int zero = 1;
        for (int64_t i = 0; i < np && zero; i++)
            zero = HOR[j * np + i] == 0;
        if (!zero && r > worst)
            worst = r;
        for (int64_t i = 0; i < np && zero; i++) /* dead units: zero columns */
            zmax = fabs(H[j * np + i]) > zmax ? fabs(H[j * np + i]) : zmax;
        nzero += zero;
    }
    print_message("%lld zero oracle columns (dead ReLUs), R-op max |entry| there %.1e\n",
                  (long long)nzero, zmax);
    assert_true(zmax <= 1e-12 * hmax);
    print_message("R-op dense Hessian vs oracle: worst column rel err %.2e\n", worst);
    assert_true(worst <= 1e-9);
    /* a diagonal block agrees with the dense one */
    int b = hs_block_find(&MLP, "fc1.b");
    assert_int_equal(b, 1);
    int64_t nb = MLP.blocks[b].n, off = MLP.blocks[b].off;
    double *Hb = malloc((size_t)(nb * nb) * sizeof *Hb);
    assert_int_equal(hs_dense_block(&MLP, XS, YS, NS, b, Hb, &e), 0);
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < nb; j++)
            assert_true(fabs(Hb[i * nb + j] - HOR[(off + i) * np + off + j]) <=
                        1e-9 * (fabs(HOR[(off + i) * np + off + j]) + 1e-6));
    free(Hb);
    free(H);
    free(v);
    free(hv);
    free(ref);
}

/* Smallest |pre-activation| change margin: 1 when no ReLU input of the MLP
 * changes sign between theta - h v and theta + h v. */
static int no_kink(hs_net *net, const double *x, int64_t n, const double *v, double h)
{
    const int I = net->layers[0].c_in, Hh = net->layers[0].c_out;
    const double *W1 = net->theta, *b1 = net->theta + net->blocks[1].off;
    const double *V1 = v, *vb = v + net->blocks[1].off;
    for (int64_t s = 0; s < n; s++)
        for (int j = 0; j < Hh; j++) {
            double u = b1[j], du = vb[j];
            for (int i = 0; i < I; i++) {
                u += W1[j * I + i] * x[s * I + i];
                du += V1[j * I + i] * x[s * I + i];
            }
            if ((u + h * du > 0) != (u > 0) || (u - h * du > 0) != (u > 0))
                return 0;
        }
    return 1;
}

static void test_rop_vs_fd(void **state)
{
    (void)state;
    const int64_t np = MLP.nparam;
    ps_err e = {0};
    double *v = malloc((size_t)np * sizeof *v), *hv = malloc((size_t)np * sizeof *hv),
           *fd = malloc((size_t)np * sizeof *fd), *ref = malloc((size_t)np * sizeof *ref);
    double nv = 0;
    for (int64_t i = 0; i < np; i++)
        v[i] = urand() - 0.5, nv += v[i] * v[i];
    for (int64_t i = 0; i < np; i++)
        v[i] /= sqrt(nv);
    const double h = 1e-4;
    assert_true(no_kink(&MLP, XS, NS, v, h)); /* precondition: away from kinks */
    assert_int_equal(hs_hvp(&MLP, XS, YS, NS, v, hv, &e), 0);
    assert_int_equal(hs_hvp_fd(&MLP, XS, YS, NS, v, h, fd, &e), 0);
    double r = relerr(fd, hv, np);
    print_message("R-op vs central FD (h=%g, no kink crossed): rel err %.2e\n", h, r);
    assert_true(r <= 1e-5);

    /* Across a kink.  One sample; hidden unit 0's pre-activation is put at
     * u0 = +2e-5 by moving b1[0]; the direction is v = e_{b1[0]} and the FD
     * step h = 1e-4 > u0, so theta - h v turns unit 0 off.  The gradient
     * w.r.t. b1[0] jumps by g.W2[:,0] across the kink: the FD quotient mixes
     * the two sides and is wrong by O(1) relative, while the R-op gives the
     * exact (one-sided, at theta) Hessian column of the oracle. */
    hs_net net;
    int dims[3] = {64, 32, 10};
    assert_int_equal(hs_net_mlp(&net, dims, 3, 7, &e), 0);
    memcpy(net.theta, MLP.theta, (size_t)np * sizeof(double));
    const double *x0 = XS;
    int32_t y0 = YS[0];
    double u0 = 0;
    for (int i = 0; i < 64; i++)
        u0 += net.theta[i] * x0[i];
    int64_t ob1 = net.blocks[1].off;
    net.theta[ob1] = 2e-5 - u0;
    memset(v, 0, (size_t)np * sizeof *v);
    v[ob1] = 1;
    assert_false(no_kink(&net, x0, 1, v, h));
    double *H1 = malloc((size_t)(np * np) * sizeof *H1);
    mlp_oracle(&net, x0, &y0, 1, H1);
    assert_int_equal(hs_hvp(&net, x0, &y0, 1, v, hv, &e), 0);
    assert_int_equal(hs_hvp_fd(&net, x0, &y0, 1, v, h, fd, &e), 0);
    for (int64_t i = 0; i < np; i++)
        ref[i] = H1[ob1 * np + i];
    double rr = relerr(hv, ref, np), rf = relerr(fd, ref, np);
    print_message("across a ReLU kink: R-op rel err %.2e, central FD rel err %.2e\n", rr, rf);
    assert_true(rr <= 1e-9);
    assert_true(rf >= 1e-2);
    free(H1);
    hs_net_free(&net);
    free(v);
    free(hv);
    free(fd);
    free(ref);
}

static void test_gn_trace_and_closed_forms(void **state)
{
    (void)state;
    const int64_t np = MLP.nparam;
    ps_err e = {0};
    double tr[8];
    assert_int_equal(hs_gn_trace(&MLP, XS, YS, NS, tr, &e), 0);
    double trn[8]; /* labels are not needed */
    assert_int_equal(hs_gn_trace(&MLP, XS, NULL, NS, trn, &e), 0);
    for (int b = 0; b < MLP.nblocks; b++) {
        const hs_block *bl = &MLP.blocks[b];
        assert_true(trn[b] == tr[b]);
        double d = 0;
        for (int64_t i = bl->off; i < bl->off + bl->n; i++)
            d += HOR[i * np + i];
        print_message("block %-6s GN trace %.10g, dense diagonal %.10g\n", bl->name, tr[b], d);
        assert_true(fabs(tr[b] - d) <= 1e-9 * fabs(d));
    }
    /* last layer: mean (1 - ||p||^2) ||a||^2 (weights), mean (1 - ||p||^2) (bias) */
    double *lg = malloc((size_t)(NS * 10) * sizeof *lg);
    assert_int_equal(hs_forward(&MLP, XS, NS, lg, &e), 0);
    double cw = 0, cb = 0;
    const double *W1 = MLP.theta, *b1 = MLP.theta + MLP.blocks[1].off;
    for (int64_t s = 0; s < NS; s++) {
        double mx = -1e300, sum = 0, p2 = 0, a2 = 0;
        for (int k = 0; k < 10; k++)
            mx = lg[s * 10 + k] > mx ? lg[s * 10 + k] : mx;
        for (int k = 0; k < 10; k++)
            sum += exp(lg[s * 10 + k] - mx);
        for (int k = 0; k < 10; k++) {
            double p = exp(lg[s * 10 + k] - mx) / sum;
            p2 += p * p;
        }
        for (int j = 0; j < 32; j++) {
            double u = b1[j];
            for (int i = 0; i < 64; i++)
                u += W1[j * 64 + i] * XS[s * 64 + i];
            a2 += u > 0 ? u * u : 0;
        }
        cw += (1 - p2) * a2 / (double)NS;
        cb += (1 - p2) / (double)NS;
    }
    assert_true(fabs(tr[2] - cw) <= 1e-10 * cw);
    assert_true(fabs(tr[3] - cb) <= 1e-10 * cb);
    /* the logits activation: 1 - ||p||^2 */
    hs_est act[4];
    assert_int_equal(hs_act_trace_exact(&MLP, XS, YS, NS, act, &e), 0);
    assert_int_equal(MLP.nquant, 2);
    assert_true(fabs(act[2].mean - cb) <= 1e-12);
    assert_true(fabs(act[2].per_param - cb / 10) <= 1e-12);
    free(lg);
}

/* Trace of the per-sample activation Hessian by unit-vector R-ops. */
static double act_dense_trace(hs_net *net, const double *x, int32_t y, int q)
{
    int64_t ne = hs_act_numel(net, q);
    double *u = calloc((size_t)ne, sizeof *u), *hu = malloc((size_t)ne * sizeof *hu), t = 0;
    ps_err e = {0};
    for (int64_t i = 0; i < ne; i++) {
        u[i] = 1;
        assert_int_equal(hs_act_hvp(net, x, y, q, u, hu, &e), 0);
        t += hu[i];
        u[i] = 0;
    }
    free(u);
    free(hu);
    return t;
}

static void check_act_traces(hs_net *net, const double *x, const int32_t *y, int64_t n)
{
    ps_err e = {0};
    hs_est ex[HS_MAXLAYERS + 1], hu[HS_MAXLAYERS + 1];
    assert_int_equal(hs_act_trace_exact(net, x, y, n, ex, &e), 0);
    assert_int_equal(hs_act_trace_hutch(net, x, y, n, 20, 3, hu, &e), 0);
    for (int q = 0; q <= net->nquant; q++) {
        double d = 0;
        for (int64_t s = 0; s < n; s++)
            d += act_dense_trace(net, x + s * net->in_dim, y[s], q) / (double)n;
        assert_true(fabs(ex[q].mean - d) <= 1e-9 * fabs(d));
        assert_int_equal(hu[q].m, n * 20);
        if (fabs(hu[q].mean - ex[q].mean) > 4 * hu[q].se + 1e-12)
            fail_msg("act %d: hutchinson %g +- %g vs exact %g", q, hu[q].mean, hu[q].se,
                     ex[q].mean);
    }
}

static void test_act_traces_mlp(void **state)
{
    (void)state;
    check_act_traces(&MLP, XS, YS, 6);
}

/* Per-sample activation gradients: logits p - e_y; the input by central FD. */
static void test_act_grad(void **state)
{
    (void)state;
    ps_err e = {0};
    const int64_t n = 5;
    double g[5 * 64], lg[5 * 10];
    assert_int_equal(hs_act_grad(&MLP, XS, YS, n, 2, g, &e), 0);
    assert_int_equal(hs_forward(&MLP, XS, n, lg, &e), 0);
    for (int64_t s = 0; s < n; s++) {
        double mx = -1e300, sum = 0;
        for (int k = 0; k < 10; k++)
            mx = lg[s * 10 + k] > mx ? lg[s * 10 + k] : mx;
        for (int k = 0; k < 10; k++)
            sum += exp(lg[s * 10 + k] - mx);
        for (int k = 0; k < 10; k++) {
            double p = exp(lg[s * 10 + k] - mx) / sum;
            assert_true(fabs(g[s * 10 + k] - (p - (k == YS[s]))) <= 1e-12);
        }
    }
    assert_int_equal(hs_act_grad(&MLP, XS, YS, n, 0, g, &e), 0);
    double x[64];
    for (int64_t s = 0; s < n; s++)
        for (int i = 0; i < 64; i += 9) {
            const double h = 1e-6;
            double lp, lm;
            memcpy(x, XS + s * 64, sizeof x);
            x[i] += h;
            assert_int_equal(hs_loss_grad(&MLP, x, YS + s, 1, &lp, NULL, NULL, &e), 0);
            x[i] -= 2 * h;
            assert_int_equal(hs_loss_grad(&MLP, x, YS + s, 1, &lm, NULL, NULL, &e), 0);
            double fd = (lp - lm) / (2 * h);
            assert_true(fabs(fd - g[s * 64 + i]) <= 1e-6 * (fabs(fd) + 1e-3));
        }
}

/* ------------------------------------------------------------ Hutchinson */

static void test_hutchinson(void **state)
{
    (void)state;
    const int64_t np = MLP.nparam;
    const int nb = MLP.nblocks;
    ps_err e = {0};
    double tr[8], tot = 0;
    assert_int_equal(hs_gn_trace(&MLP, XS, YS, NS, tr, &e), 0);
    for (int b = 0; b < nb; b++)
        tot += tr[b];
    /* theory from the dense oracle */
    double fro = 0, dg = 0, vb[8];
    for (int64_t i = 0; i < np; i++) {
        dg += HOR[i * np + i] * HOR[i * np + i];
        for (int64_t j = 0; j < np; j++)
            fro += HOR[i * np + j] * HOR[i * np + j];
    }
    for (int b = 0; b < nb; b++) {
        const hs_block *bl = &MLP.blocks[b];
        double in = 0, cross = 0, d2 = 0;
        for (int64_t i = bl->off; i < bl->off + bl->n; i++) {
            d2 += HOR[i * np + i] * HOR[i * np + i];
            for (int64_t j = 0; j < np; j++) {
                double h2 = HOR[i * np + j] * HOR[i * np + j];
                if (j >= bl->off && j < bl->off + bl->n)
                    in += h2;
                else
                    cross += h2;
            }
        }
        vb[b] = 2 * (in - d2) + cross;
    }
    double vtot = 2 * (fro - dg);

    /* one long run: within 3 SE, SE near theory; convergence m = 10/50/200 */
    const int M = 200;
    double *smp = malloc((size_t)(M * nb) * sizeof *smp);
    hs_hutch_opts o = {.m_min = M, .m_max = M, .tol = 0, .seed = 11};
    hs_est est[8];
    int mu = 0;
    assert_int_equal(hs_hutchinson(&MLP, XS, YS, NS, &o, est, smp, &mu, &e), 0);
    assert_int_equal(mu, M);
    for (int b = 0; b < nb; b++) {
        double th = sqrt(vb[b] / M);
        print_message("%-6s exact %.6g  hutchinson(m=%d) %.6g +- %.3g (theory se %.3g)\n",
                      MLP.blocks[b].name, tr[b], M, est[b].mean, est[b].se, th);
        assert_true(fabs(est[b].mean - tr[b]) <= 3 * est[b].se);
        assert_true(fabs(est[b].se / th - 1) <= 0.2);
        assert_true(fabs(est[b].per_param - est[b].mean / (double)MLP.blocks[b].n) < 1e-15);
    }
    int ms[3] = {10, 50, 200};
    for (int k = 0; k < 3; k++) {
        double s = 0;
        for (int j = 0; j < ms[k]; j++)
            for (int b = 0; b < nb; b++)
                s += smp[j * nb + b];
        s /= ms[k];
        print_message("total trace: m=%3d estimate %.6g exact %.6g rel err %.3f "
                      "(theory rel se %.3f)\n",
                      ms[k], s, tot, fabs(s - tot) / tot, sqrt(vtot / ms[k]) / tot);
    }
    /* R independent runs of M probes: the observed SE of m-probe estimates
     * (disjoint groups of m probes) vs theory, and the convergence of the
     * total trace (RMS relative error over the runs at m = 10/50/200) */
    const int R = 20;
    double *all = malloc((size_t)(R * M * nb) * sizeof *all);
    for (int r = 0; r < R; r++) {
        hs_hutch_opts o2 = {.m_min = M, .m_max = M, .seed = 1000 + (uint64_t)r};
        assert_int_equal(hs_hutchinson(&MLP, XS, YS, NS, &o2, est, all + (size_t)r * M * nb, &mu,
                                       &e),
                         0);
    }
    int mg[2] = {10, 50};
    for (int k = 0; k < 2; k++) {
        const int m = mg[k], G = R * M / m;
        for (int b = 0; b <= nb; b++) {
            double s1 = 0, s2 = 0;
            for (int g = 0; g < G; g++) {
                double t = 0;
                for (int j = g * m; j < (g + 1) * m; j++)
                    for (int bb = 0; bb < nb; bb++)
                        if (bb == b || b == nb)
                            t += all[(size_t)j * nb + bb];
                t /= m;
                s1 += t;
                s2 += t * t;
            }
            double mean = s1 / G, sd = sqrt((s2 - G * mean * mean) / (G - 1));
            double th = sqrt((b < nb ? vb[b] : vtot) / m);
            print_message("%-6s observed se of %d estimates with m=%d: %.4g, theory %.4g "
                          "(ratio %.3f)\n",
                          b < nb ? MLP.blocks[b].name : "total", G, m, sd, th, sd / th);
            assert_true(fabs(sd / th - 1) <= 0.2);
        }
    }
    for (int k = 0; k < 3; k++) {
        double se2 = 0, mae = 0;
        for (int r = 0; r < R; r++) {
            double t = 0;
            for (int j = 0; j < ms[k]; j++)
                for (int b = 0; b < nb; b++)
                    t += all[((size_t)r * M + (size_t)j) * nb + (size_t)b];
            t /= ms[k];
            se2 += (t - tot) * (t - tot) / (tot * tot) / R;
            mae += fabs(t - tot) / tot / R;
        }
        print_message("convergence over %d runs: m=%3d RMS rel err %.4f, mean |rel err| %.4f, "
                      "theory rel se %.4f\n",
                      R, ms[k], sqrt(se2), mae, sqrt(vtot / ms[k]) / tot);
        assert_true(fabs(sqrt(se2) / (sqrt(vtot / ms[k]) / tot) - 1) <= 0.5);
    }
    free(all);
    /* stopping rule: stops at the first m >= m_min where every block has
     * se/|mean| < tol */
    hs_hutch_opts o3 = {.m_min = 10, .m_max = M, .tol = 0.5, .seed = 5};
    assert_int_equal(hs_hutchinson(&MLP, XS, YS, NS, &o3, est, smp, &mu, &e), 0);
    print_message("stopping rule tol 0.5: %d probes\n", mu);
    assert_true(mu >= 10 && mu < M);
    for (int mm = 10; mm <= mu; mm++) {
        int all = 1;
        for (int b = 0; b < nb; b++) {
            double s1 = 0, s2 = 0;
            for (int j = 0; j < mm; j++) {
                s1 += smp[j * nb + b];
                s2 += smp[j * nb + b] * smp[j * nb + b];
            }
            double mean = s1 / mm, se = sqrt((s2 - mm * mean * mean) / (mm - 1) / mm);
            all &= se < 0.5 * fabs(mean);
            if (mm == mu)
                assert_true(fabs(est[b].mean - mean) <= 1e-12 * fabs(mean));
        }
        if (mm < mu)
            assert_false(all); /* it did not stop too late */
        if (mm == mu && mu < M)
            assert_true(all);
    }
    free(smp);
}

/* ------------------------------------------------------------ lambda_max */

static void test_lambda_max(void **state)
{
    (void)state;
    const int64_t np = MLP.nparam;
    ps_err e = {0};
    const char *names[] = {"fc2.b", "fc1.b", "fc2.w"};
    for (int t = 0; t < 3; t++) {
        int b = hs_block_find(&MLP, names[t]);
        assert_true(b >= 0);
        const hs_block *bl = &MLP.blocks[b];
        size_t nb = (size_t)bl->n;
        gsl_matrix *A = gsl_matrix_alloc(nb, nb);
        for (size_t i = 0; i < nb; i++)
            for (size_t j = 0; j < nb; j++)
                gsl_matrix_set(A, i, j, HOR[(bl->off + (int64_t)i) * np + bl->off + (int64_t)j]);
        gsl_vector *ev = gsl_vector_alloc(nb);
        gsl_eigen_symm_workspace *w = gsl_eigen_symm_alloc(nb);
        gsl_eigen_symm(A, ev, w);
        double top = 0;
        for (size_t i = 0; i < nb; i++)
            if (fabs(gsl_vector_get(ev, i)) > fabs(top))
                top = gsl_vector_get(ev, i);
        double lam = 0, lam_d = 0;
        int it = 0, it_d = 0;
        assert_int_equal(hs_lambda_max(&MLP, XS, YS, NS, b, 5000, 1e-14, 3, &lam, &it, &e), 0);
        assert_int_equal(hs_lambda_max(&MLP, XS, YS, NS, b, 0, 0, 3, &lam_d, &it_d, &e), 0);
        print_message("%-6s lambda_max %.10g (%d it), gsl %.10g; PyHessian defaults %.6g (%d it, "
                      "rel %.1e)\n",
                      names[t], lam, it, top, lam_d, it_d, fabs(lam_d - top) / fabs(top));
        assert_true(fabs(lam - top) <= 1e-6 * fabs(top));
        assert_true(it_d <= 100);
        gsl_eigen_symm_free(w);
        gsl_vector_free(ev);
        gsl_matrix_free(A);
    }
    /* every block at once = one block at a time with seed + b */
    double la[8];
    int ia[8];
    assert_int_equal(hs_lambda_max_all(&MLP, XS, YS, NS, 300, 1e-8, 40, la, ia, &e), 0);
    for (int b = 0; b < MLP.nblocks; b++) {
        double l1;
        int i1;
        assert_int_equal(hs_lambda_max(&MLP, XS, YS, NS, b, 300, 1e-8, 40 + (uint64_t)b, &l1, &i1,
                                       &e),
                         0);
        assert_int_equal(ia[b], i1);
        assert_true(fabs(la[b] - l1) <= 1e-13 * fabs(l1));
    }
}

/* ------------------------------------------------------------ tiny CNN */

static int tiny_cnn(hs_net *net, ps_err *e)
{
    hs_layer_spec sp[] = {
        {.kind = HS_CONV, .out = 4, .ksize = 3},
        {.kind = HS_CHAFFINE},
        {.kind = HS_RELU},
        {.kind = HS_MAXPOOL},
        {.kind = HS_LINEAR, .out = 10},
    };
    int rc = hs_net_init(net, 1, 8, 8, sp, 5, 21, e);
    if (rc)
        return rc;
    for (int c = 0; c < 4; c++) {
        net->layers[1].scale[c] = 0.5 + urand();
        net->layers[1].shift[c] = 0.2 * (urand() - 0.5);
    }
    return hs_train_sgd(net, D.x, D.y, 600, 3, 0.1, 32, 2, e);
}

static void test_cnn_hessian(void **state)
{
    (void)state;
    hs_net net;
    ps_err e = {0};
    assert_int_equal(tiny_cnn(&net, &e), 0);
    assert_int_equal(net.nparam, 4 * 9 + 4 + 64 * 10 + 10);
    assert_int_equal(net.nquant, 2);
    const int64_t np = net.nparam, n = 24;
    double *H = malloc((size_t)(np * np) * sizeof *H);
    assert_int_equal(hs_dense_hessian(&net, XS, YS, n, H, &e), 0);
    /* symmetry of the raw R-op columns (not symmetrised) */
    double *v = calloc((size_t)np, sizeof *v), *hv = malloc((size_t)np * sizeof *hv),
           *fd = malloc((size_t)np * sizeof *fd), *ref = malloc((size_t)np * sizeof *ref);
    for (int t = 0; t < 4; t++) {
        int64_t i = (int64_t)(urand() * 40), j = (int64_t)(urand() * np);
        memset(v, 0, (size_t)np * sizeof *v);
        v[i] = 1;
        assert_int_equal(hs_hvp(&net, XS, YS, n, v, hv, &e), 0);
        double hij = hv[j];
        v[i] = 0;
        v[j] = 1;
        assert_int_equal(hs_hvp(&net, XS, YS, n, v, hv, &e), 0);
        assert_true(fabs(hij - hv[i]) <= 1e-12 * (fabs(hij) + 1e-9));
    }
    /* R-op vs central FD along a random unit direction */
    double nv = 0;
    for (int64_t i = 0; i < np; i++)
        v[i] = urand() - 0.5, nv += v[i] * v[i];
    for (int64_t i = 0; i < np; i++)
        v[i] /= sqrt(nv);
    assert_int_equal(hs_hvp(&net, XS, YS, n, v, hv, &e), 0);
    assert_int_equal(hs_hvp_fd(&net, XS, YS, n, v, 1e-5, fd, &e), 0);
    ps_cpu_dgemm(0, 0, np, 1, np, 1.0, H, np, v, 1, 0.0, ref, 1);
    double r1 = relerr(fd, hv, np), r2 = relerr(ref, hv, np);
    print_message("tiny CNN: R-op vs FD rel err %.2e, vs dense H v %.2e\n", r1, r2);
    assert_true(r1 <= 1e-5);
    assert_true(r2 <= 1e-9);
    /* GN block traces vs the dense diagonal */
    double tr[4];
    assert_int_equal(hs_gn_trace(&net, XS, YS, n, tr, &e), 0);
    for (int b = 0; b < net.nblocks; b++) {
        double d = 0;
        for (int64_t i = net.blocks[b].off; i < net.blocks[b].off + net.blocks[b].n; i++)
            d += H[i * np + i];
        print_message("tiny CNN %-7s GN %.10g dense %.10g\n", net.blocks[b].name, tr[b], d);
        assert_true(fabs(tr[b] - d) <= 1e-9 * fabs(d));
    }
    /* batch chunking does not change anything */
    net.batch = 5;
    double tr2[4];
    assert_int_equal(hs_gn_trace(&net, XS, YS, n, tr2, &e), 0);
    assert_int_equal(hs_hvp(&net, XS, YS, n, v, fd, &e), 0);
    for (int b = 0; b < net.nblocks; b++)
        assert_true(fabs(tr2[b] - tr[b]) <= 1e-12 * fabs(tr[b]));
    assert_true(relerr(fd, hv, np) <= 1e-12);
    net.batch = 32;
    check_act_traces(&net, XS, YS, 4);
    free(v);
    free(hv);
    free(fd);
    free(ref);
    free(H);
    hs_net_free(&net);
}

static void test_imatrix(void **state)
{
    (void)state;
    hs_net net;
    ps_err e = {0};
    assert_int_equal(tiny_cnn(&net, &e), 0);
    const int64_t n = 10;
    /* conv: brute force over output positions with zero padding */
    assert_int_equal(hs_imatrix_cols(&net, 0), 9);
    double ex2[64], bf[9] = {0};
    assert_int_equal(hs_imatrix(&net, XS, n, 0, ex2, &e), 0);
    for (int64_t s = 0; s < n; s++)
        for (int oy = 0; oy < 8; oy++)
            for (int ox = 0; ox < 8; ox++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy + ky - 1, ix = ox + kx - 1;
                        double xv = iy < 0 || iy >= 8 || ix < 0 || ix >= 8
                                        ? 0
                                        : XS[s * 64 + iy * 8 + ix];
                        bf[ky * 3 + kx] += xv * xv / (double)(n * 64);
                    }
    for (int j = 0; j < 9; j++)
        assert_true(fabs(ex2[j] - bf[j]) <= 1e-12);
    /* linear: E[x_j^2] of the pooled activations; Omega vs a direct sum */
    assert_int_equal(hs_imatrix_cols(&net, 1), 64);
    assert_int_equal(hs_imatrix(&net, XS, n, 1, ex2, &e), 0);
    double dw[640], om = 0;
    for (int i = 0; i < 640; i++)
        dw[i] = urand() - 0.5;
    for (int o = 0; o < 10; o++)
        for (int j = 0; j < 64; j++)
            om += ex2[j] * dw[o * 64 + j] * dw[o * 64 + j];
    assert_true(fabs(hs_imatrix_omega(&net, 1, ex2, dw) - om) <= 1e-12 * om);
    /* for the MLP's first layer: the input pixels */
    assert_int_equal(hs_imatrix(&MLP, XS, n, 0, ex2, &e), 0);
    for (int j = 0; j < 64; j++) {
        double s = 0;
        for (int64_t k = 0; k < n; k++)
            s += XS[k * 64 + j] * XS[k * 64 + j] / (double)n;
        assert_true(fabs(ex2[j] - s) <= 1e-12);
    }
    assert_int_equal(hs_imatrix(&net, XS, n, 2, ex2, &e), PS_EINPUT);
    hs_net_free(&net);
}

/* ------------------------------------------------------------ from cnn */

static void set_param(rt_param *p, const double *v, rt_dtype dt)
{
    ps_err e = {0};
    if (dt == RT_F64) {
        assert_int_equal(rt_tensor_from_host(&p->w, v, &e), 0);
        return;
    }
    float f[64];
    for (int64_t i = 0; i < p->w.numel && i < 64; i++)
        f[i] = (float)v[i];
    assert_int_equal(rt_tensor_from_host(&p->w, f, &e), 0);
}

static void test_from_cnn(void **state)
{
    (void)state;
    for (int dti = 0; dti < 2; dti++) {
        rt_dtype dt = dti ? RT_F32 : RT_F64;
        cnn_config c = {.in_ch = 1, .in_h = 8, .in_w = 8, .nblocks = 1, .ch = {4}, .ksize = 3,
                        .batchnorm = 1, .hidden = 8, .classes = 10};
        cnn net;
        ps_err e = {0};
        const int64_t n = 6;
        assert_int_equal(cnn_init(&net, &c, rt_cpu(), dt, n, 5, &e), 0);
        double g[4], be[4], rm[4], rv[4];
        for (int i = 0; i < 4; i++) {
            g[i] = 0.5 + urand();
            be[i] = urand() - 0.5;
            rm[i] = 0.3 * (urand() - 0.5);
            rv[i] = 0.2 + urand();
        }
        set_param(net.blk[0].bn_g, g, dt);
        set_param(net.blk[0].bn_b, be, dt);
        set_param(net.blk[0].bn_rm, rm, dt);
        set_param(net.blk[0].bn_rv, rv, dt);
        rt_tensor x;
        assert_int_equal(rt_tensor_new4(&x, rt_cpu(), dt, n, 1, 8, 8, &e), 0);
        if (dt == RT_F64) {
            assert_int_equal(rt_tensor_from_host(&x, XS, &e), 0);
        } else {
            float xf[6 * 64];
            for (int i = 0; i < 6 * 64; i++)
                xf[i] = (float)XS[i];
            assert_int_equal(rt_tensor_from_host(&x, xf, &e), 0);
        }
        assert_int_equal(cnn_forward(&net, &x, 0, &e), 0);
        rt_tensor lv;
        assert_int_equal(cnn_logits(&net, &lv, &e), 0);
        double ref[60];
        if (dt == RT_F64) {
            assert_int_equal(rt_tensor_to_host(&lv, ref, &e), 0);
        } else {
            float rf[60];
            assert_int_equal(rt_tensor_to_host(&lv, rf, &e), 0);
            for (int i = 0; i < 60; i++)
                ref[i] = rf[i];
        }
        double tol = dt == RT_F64 ? 1e-12 : 1e-5;
        double craw = 0, cfold = 0; /* conv1.w Hessian traces, raw and folded */
        for (int fold = 0; fold < 2; fold++) {
            hs_net h;
            assert_int_equal(hs_net_from_cnn(&h, &net, fold, &e), 0);
            /* folding is the reparametrisation W' = s_o W (per output channel o), so
             * H_raw = S H_fold S: Tr H_raw = sum_o s_o^2 (trace of channel o's rows) */
            double Hb[36 * 36];
            int wb = hs_block_find(&h, "conv1.w");
            assert_int_equal(wb, 0);
            assert_int_equal(hs_dense_block(&h, XS, YS, n, wb, Hb, &e), 0);
            for (int i = 0; i < 36; i++) {
                int o = i / 9;
                double so = g[o] / sqrt(rv[o] + 1e-5);
                if (fold)
                    cfold += so * so * Hb[i * 36 + i];
                else
                    craw += Hb[i * 36 + i];
            }
            assert_int_equal(hs_block_find(&h, "conv1.b") >= 0, fold);
            assert_true(hs_block_find(&h, "fc2.w") >= 0);
            assert_int_equal(h.nlayers, fold ? 6 : 7);
            double lg[60];
            assert_int_equal(hs_forward(&h, XS, n, lg, &e), 0);
            double r = relerr(lg, ref, 60);
            assert_true(r <= tol);
            hs_net_free(&h);
        }
        if (dt == RT_F64)
            assert_true(fabs(craw - cfold) <= 1e-9 * craw);
        else
            assert_true(fabs(craw - cfold) <= 1e-3 * craw);
        rt_tensor_free(&x);
        cnn_free(&net);
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    hs_net net;
    ps_err e = {0};
    hs_layer_spec even[] = {{.kind = HS_CONV, .out = 2, .ksize = 2}, {.kind = HS_LINEAR, .out = 3}};
    assert_int_equal(hs_net_init(&net, 1, 4, 4, even, 2, 0, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "odd ksize"));
    hs_layer_spec nolin[] = {{.kind = HS_RELU}};
    assert_int_equal(hs_net_init(&net, 1, 4, 4, nolin, 1, 0, &e), PS_EINPUT);
    int32_t bad[2] = {0, 10};
    double g[2410];
    assert_int_equal(hs_loss_grad(&MLP, XS, bad, 2, NULL, g, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "y[1] = 10"));
    double lam;
    assert_int_equal(hs_lambda_max(&MLP, XS, YS, 2, 99, 0, 0, 0, &lam, NULL, &e), PS_EINPUT);
    hs_hutch_opts o = {.m_min = 20, .m_max = 10};
    hs_est est[4];
    assert_int_equal(hs_hutchinson(&MLP, XS, YS, 2, &o, est, NULL, NULL, &e), PS_EINPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digits_load),
        cmocka_unit_test(test_digits_bad),
        cmocka_unit_test(test_mlp_trained),
        cmocka_unit_test(test_rop_vs_oracle),
        cmocka_unit_test(test_rop_vs_fd),
        cmocka_unit_test(test_gn_trace_and_closed_forms),
        cmocka_unit_test(test_act_traces_mlp),
        cmocka_unit_test(test_act_grad),
        cmocka_unit_test(test_hutchinson),
        cmocka_unit_test(test_lambda_max),
        cmocka_unit_test(test_cnn_hessian),
        cmocka_unit_test(test_imatrix),
        cmocka_unit_test(test_from_cnn),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
