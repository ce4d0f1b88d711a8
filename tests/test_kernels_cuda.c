/* kernels/cuda_*: every CUDA kernel and library wrapper against a naive
 * float64 reference computed here on the CPU, on fresh random inputs (a new
 * seed every run, printed on failure).  Outputs are poisoned (0xFF bytes:
 * NaN in every float type) before each run, so an unwritten element fails
 * the check; NaN never passes.  Tolerances are relative norm errors
 * ‖out − ref‖ / ‖ref‖ with the reference computed from the same (rounded)
 * inputs: fp32 ≤ 1e-4 (GEMM ≤ 1e-5, which tf32 would miss: it lands near
 * 3e-4), tf32 ≤ 2e-3, fp16 ≤ 2e-3, bf16 ≤ 1e-2, fp64 ≤ 1e-12, int8 exact.
 *
 * Without a usable GPU every device test calls skip() and says why; the
 * host-side helpers (names, parsing, the tree mask) are tested everywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda_blas.h"
#include "kernels/cuda_dnn.h"
#include "kernels/cuda_ops.h"
#include "kernels/gpu.h"
#include "tests/gpu_testutil.h"

static ps_cuda_ctx *C; /* NULL without a usable GPU */

#define NEED_GPU() GPU_NEED(C)


static void *dev_alloc(size_t bytes)
{
    ps_err e = {0};
    void *p = ps_cuda_alloc(bytes, &e);
    if (!p)
        fail_msg("%s", e.msg);
    return p;
}

/* Device buffer of n random elements (|x| in [scale/16, scale], or indices
 * in [0, scale) for integer types). */
static void *dev_rand(size_t n, ps_cu_dtype t, double scale)
{
    void *p = dev_alloc(n * ps_cu_dtype_size(t));
    OK(ps_cuda_fill_random(C, p, n, t, seed(), scale, &e_));
    return p;
}

/* Output buffer, poisoned. */
static void *dev_out(size_t n, ps_cu_dtype t)
{
    void *p = dev_alloc(n * ps_cu_dtype_size(t));
    OK(ps_cuda_memset(C, p, 0xFF, n * ps_cu_dtype_size(t), &e_));
    return p;
}

/* The device buffer as float64 on the host (converted on the device, so the
 * values are exactly what the kernels read or wrote). */
static double *host_f64(const void *dev, ps_cu_dtype t, size_t n)
{
    double *tmp = dev_alloc(n * 8 + 8);
    double *h = malloc(n * 8 + 8);
    assert_non_null(h);
    OK(ps_cuda_convert(C, dev, t, tmp, PS_CU_F64, n, &e_));
    OK(ps_cuda_copy(C, h, tmp, n * 8, PS_CU_D2H, &e_));
    OK(ps_cuda_ctx_sync(C, &e_));
    ps_cuda_free(tmp);
    return h;
}

static double tol_of(ps_cu_dtype t)
{
    switch (t) {
    case PS_CU_F64: return 1e-12;
    case PS_CU_F16: return 2e-3;
    case PS_CU_BF16: return 1e-2;
    default: return 1e-4;
    }
}

/* Every element finite, and ‖got − ref‖ / ‖ref‖ <= tol. */
static void check(const char *what, const double *got, const double *ref, size_t n, double tol)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: element %zu is %g (unwritten or NaN; reference %g; seed %llu)", what, i,
                     got[i], ref[i], (unsigned long long)seed0);
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    print_message("  %-58s rel err %.2e (tol %.0e)\n", what, rel, tol);
    if (!(rel <= tol))
        fail_msg("%s: relative error %.3g > %.3g (seed %llu)", what, rel, tol,
                 (unsigned long long)seed0);
}

static const ps_cu_dtype FLOATS[] = {PS_CU_F32, PS_CU_F64, PS_CU_F16, PS_CU_BF16};

/* ------------------------------------------------------------ host side */

static void test_host_names_and_parsing(void **state)
{
    (void)state;
    ps_err e = {0};
    ps_cu_dtype t;
    assert_int_equal(ps_cu_dtype_parse("tf32", &t, &e), 0);
    assert_int_equal(t, PS_CU_F32);
    assert_int_equal(ps_cu_dtype_parse("bf16", &t, &e), 0);
    assert_int_equal(ps_cu_dtype_size(t), 2);
    assert_int_equal(ps_cu_dtype_parse("int4", &t, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "int4"));
    assert_int_equal(ps_cu_dtype_size(PS_CU_I64), 8);
    assert_string_equal(ps_cu_dtype_name(PS_CU_BF16), "bf16");
    assert_string_equal(ps_cu_dtype_name((ps_cu_dtype)99), "?");
    ps_ew_op op;
    assert_int_equal(ps_cuda_ew_parse("sigmoid", &op, &e), 0);
    assert_int_equal(op, PS_EW_SIGMOID);
    assert_false(ps_cuda_ew_is_binary(op));
    assert_int_equal(ps_cuda_ew_parse("mul", &op, &e), 0);
    assert_true(ps_cuda_ew_is_binary(op));
    assert_int_equal(ps_cuda_ew_parse("swish", &op, &e), PS_EINPUT);
    ps_red_op r;
    assert_int_equal(ps_cuda_red_parse("layernorm", &r, &e), 0);
    assert_int_equal(r, PS_RED_LAYERNORM);
    assert_int_equal(ps_cuda_red_parse("max", &r, &e), PS_EINPUT);
    ps_mask_kind m;
    assert_int_equal(ps_cuda_mask_parse("tree", &m, &e), 0);
    assert_int_equal(m, PS_MASK_TREE);
    assert_int_equal(ps_cuda_mask_parse(NULL, &m, &e), PS_EINPUT);
    ps_gemm_prec p;
    assert_int_equal(ps_gemm_prec_parse("tf32", &p, &e), 0);
    assert_int_equal(p, PS_GEMM_TF32);
    assert_int_equal(ps_gemm_prec_dtype(p), PS_CU_F32);
    assert_int_equal(ps_gemm_prec_dtype(PS_GEMM_BF16), PS_CU_BF16);
    assert_string_equal(ps_gemm_prec_name(PS_GEMM_FP64), "fp64");
    assert_int_equal(ps_gemm_prec_parse("int8", &p, &e), PS_EINPUT);
    int ta, tb;
    assert_int_equal(ps_gemm_variant_parse("tn", &ta, &tb, &e), 0);
    assert_true(ta == 1 && tb == 0);
    assert_int_equal(ps_gemm_variant_parse("nx", &ta, &tb, &e), PS_EINPUT);
    assert_int_equal(ps_gemm_variant_parse("ntt", &ta, &tb, &e), PS_EINPUT);
    ps_conv_dir d;
    assert_int_equal(ps_conv_dir_parse("bwd_weight", &d, &e), 0);
    assert_int_equal(d, PS_CONV_BWD_WEIGHT);
    assert_int_equal(ps_conv_dir_parse("bwd", &d, &e), PS_EINPUT);
}

/* SpecInfer's topology-aware mask: prefix, then self and ancestors. */
static void test_host_tree_mask(void **state)
{
    (void)state;
    /*        0
     *       / \
     *      1   2
     *      |
     *      3
     *      |
     *      4        prefix of 3 keys, 5 tree tokens → skv = 8 */
    int64_t parent[5] = {-1, 0, 0, 1, 3};
    uint8_t m[5 * 8];
    ps_attention_tree_mask(5, 8, parent, m);
    static const uint8_t want[5][8] = {{1, 1, 1, 1, 0, 0, 0, 0},
                                       {1, 1, 1, 1, 1, 0, 0, 0},
                                       {1, 1, 1, 1, 0, 1, 0, 0},
                                       {1, 1, 1, 1, 1, 0, 1, 0},
                                       {1, 1, 1, 1, 1, 0, 1, 1}};
    assert_memory_equal(m, want, sizeof want);
    /* A chain is the causal mask. */
    int64_t chain[4] = {-1, 0, 1, 2};
    uint8_t c[4 * 6];
    ps_attention_tree_mask(4, 6, chain, c);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++)
            assert_int_equal(c[i * 6 + j], j <= 2 + i);
    /* A parent that does not precede its node is treated as a root. */
    int64_t bad[2] = {-1, 5};
    uint8_t b[2 * 2];
    ps_attention_tree_mask(2, 2, bad, b);
    assert_int_equal(b[2], 0);
    assert_int_equal(b[3], 1);
}

/* In a build without a usable GPU, creating a context fails cleanly. */
static void test_no_gpu_context_fails_cleanly(void **state)
{
    (void)state;
    if (C)
        skip(); /* the GPU tests below cover this machine */
    ps_err e = {0};
    ps_cuda_ctx *c = ps_cuda_ctx_new(0, &e);
    assert_null(c);
    assert_int_equal(e.code, PS_ERUN);
    assert_true(strlen(e.msg) > 0);
    print_message("ps_cuda_ctx_new without a GPU: %s\n", e.msg);
}

/* ------------------------------------------------------------ device basics */

static void test_device_info_and_memory(void **state)
{
    (void)state;
    NEED_GPU();
    ps_cuda_device_info di;
    OK(ps_cuda_device_info_get(0, &di, &e_));
    print_message("device: %s, sm_%d%d, %d SMs, %.0f MHz, L2 %.0f MiB, %.1f GiB, %s\n", di.name,
                  di.cc_major, di.cc_minor, di.sm_count, di.sm_clock_hz / 1e6,
                  di.l2_bytes / (1 << 20), di.mem_bytes / (1 << 30), di.pci_bus_id);
    assert_true(di.sm_count > 0 && di.l2_bytes > 0 && di.mem_bytes > 0 && di.sm_clock_hz > 0);
    assert_true(strlen(di.name) > 0);
    /* h2d → d2d → d2h round trip on pinned memory is exact. */
    size_t n = (1 << 20) + 7;
    uint8_t *h = NULL, *g = NULL;
    ps_err e = {0};
    assert_non_null(h = ps_cuda_host_alloc(n, &e));
    assert_non_null(g = ps_cuda_host_alloc(n, &e));
    for (size_t i = 0; i < n; i++)
        h[i] = (uint8_t)(i * 131 + 7), g[i] = 0;
    void *a = dev_alloc(n), *b = dev_alloc(n);
    OK(ps_cuda_copy(C, a, h, n, PS_CU_H2D, &e_));
    OK(ps_cuda_copy(C, b, a, n, PS_CU_D2D, &e_));
    OK(ps_cuda_copy(C, g, b, n, PS_CU_D2H, &e_));
    OK(ps_cuda_ctx_sync(C, &e_));
    assert_memory_equal(h, g, n);
    OK(ps_cuda_spin(C, 1e-4, &e_));
    OK(ps_cuda_ctx_sync(C, &e_));
    void *s1 = ps_cuda_ctx_scratch(C, 1000, &e);
    assert_non_null(s1);
    assert_true(ps_cuda_ctx_scratch(C, 10, &e) == s1);
    assert_non_null(ps_cuda_ctx_scratch(C, 1 << 22, &e));
    ps_cuda_free(a);
    ps_cuda_free(b);
    ps_cuda_host_free(h);
    ps_cuda_host_free(g);
}

static void test_fill_random(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 200003;
    for (size_t k = 0; k < 4; k++) {
        void *p = dev_rand(n, FLOATS[k], 2.0);
        double *h = host_f64(p, FLOATS[k], n);
        double neg = 0;
        for (size_t i = 0; i < n; i++) {
            double a = fabs(h[i]);
            if (!(a >= 2.0 / 16 * 0.99 && a <= 2.0 * 1.01))
                fail_msg("%s[%zu] = %g outside ±[1/8, 2]", ps_cu_dtype_name(FLOATS[k]), i, h[i]);
            neg += h[i] < 0;
        }
        assert_true(neg > 0.45 * n && neg < 0.55 * n);
        free(h);
        ps_cuda_free(p);
    }
    void *i8 = dev_rand(n, PS_CU_I8, 1);
    double *h = host_f64(i8, PS_CU_I8, n);
    for (size_t i = 0; i < n; i++)
        if (h[i] == 0 || fabs(h[i]) > 127)
            fail_msg("int8[%zu] = %g", i, h[i]);
    free(h);
    ps_cuda_free(i8);
    void *ix = dev_rand(n, PS_CU_I64, 1000);
    h = host_f64(ix, PS_CU_I64, n);
    int seen_hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] < 0 || h[i] >= 1000)
            fail_msg("index[%zu] = %g not in [0, 1000)", i, h[i]);
        seen_hi |= h[i] == 999;
    }
    assert_true(seen_hi);
    free(h);
    ps_cuda_free(ix);
    /* Same seed, same data; another seed, other data. */
    void *a = dev_alloc(4096), *b = dev_alloc(4096), *c = dev_alloc(4096);
    OK(ps_cuda_fill_random(C, a, 1024, PS_CU_F32, 77, 1, &e_));
    OK(ps_cuda_fill_random(C, b, 1024, PS_CU_F32, 77, 1, &e_));
    OK(ps_cuda_fill_random(C, c, 1024, PS_CU_F32, 78, 1, &e_));
    double *ha = host_f64(a, PS_CU_F32, 1024), *hb = host_f64(b, PS_CU_F32, 1024),
           *hc = host_f64(c, PS_CU_F32, 1024);
    assert_memory_equal(ha, hb, 1024 * 8);
    assert_memory_not_equal(ha, hc, 1024 * 8);
    free(ha), free(hb), free(hc);
    ps_cuda_free(a), ps_cuda_free(b), ps_cuda_free(c);
}

/* ------------------------------------------------------------ elementwise */

static double ew_ref(ps_ew_op op, double x, double y)
{
    switch (op) {
    case PS_EW_RELU: return x > 0 ? x : 0;
    case PS_EW_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case PS_EW_TANH: return tanh(x);
    case PS_EW_SIGMOID: return 1 / (1 + exp(-x));
    case PS_EW_ADD: return x + y;
    default: return x * y;
    }
}

static void test_elementwise(void **state)
{
    (void)state;
    NEED_GPU();
    static const char *names[] = {"relu", "gelu", "tanh", "sigmoid", "add", "mul"};
    size_t n = 300007; /* not a multiple of the block or of 4 */
    for (int op = 0; op < PS_EW_COUNT; op++)
        for (size_t k = 0; k < 4; k++) {
            ps_cu_dtype t = FLOATS[k];
            void *a = dev_rand(n, t, 3.0), *b = dev_rand(n, t, 1.0), *y = dev_out(n, t);
            OK(ps_cuda_elementwise(C, (ps_ew_op)op, t, n, a, b, y, &e_));
            double *ha = host_f64(a, t, n), *hb = host_f64(b, t, n), *hy = host_f64(y, t, n);
            double *ref = malloc(n * 8);
            for (size_t i = 0; i < n; i++)
                ref[i] = ew_ref((ps_ew_op)op, ha[i], hb[i]);
            char what[96];
            snprintf(what, sizeof what, "elementwise %s %s n=%zu", names[op], ps_cu_dtype_name(t),
                     n);
            check(what, hy, ref, n, tol_of(t));
            free(ha), free(hb), free(hy), free(ref);
            ps_cuda_free(a), ps_cuda_free(b), ps_cuda_free(y);
        }
    /* In place (y aliases a), and a binary op without its second input. */
    void *a = dev_rand(1000, PS_CU_F32, 1);
    double *h0 = host_f64(a, PS_CU_F32, 1000);
    OK(ps_cuda_elementwise(C, PS_EW_RELU, PS_CU_F32, 1000, a, NULL, a, &e_));
    double *h1 = host_f64(a, PS_CU_F32, 1000);
    for (size_t i = 0; i < 1000; i++)
        h0[i] = h0[i] > 0 ? h0[i] : 0;
    check("elementwise relu in place", h1, h0, 1000, 0);
    ps_err e = {0};
    assert_int_equal(ps_cuda_elementwise(C, PS_EW_ADD, PS_CU_F32, 1000, a, NULL, a, &e),
                     PS_EINPUT);
    assert_int_equal(ps_cuda_elementwise(C, PS_EW_RELU, PS_CU_I8, 1000, a, NULL, a, &e),
                     PS_EINPUT);
    free(h0), free(h1);
    ps_cuda_free(a);
}

/* ------------------------------------------------------------ reductions */

static void red_ref(ps_red_op op, int64_t rows, int64_t cols, const double *x, const double *g,
                    const double *b, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        if (op == PS_RED_SUM) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++)
                s += xr[c];
            y[r] = s;
        } else if (op == PS_RED_SOFTMAX) {
            double m = -INFINITY, s = 0;
            for (int64_t c = 0; c < cols; c++)
                m = xr[c] > m ? xr[c] : m;
            for (int64_t c = 0; c < cols; c++)
                s += exp(xr[c] - m);
            for (int64_t c = 0; c < cols; c++)
                y[r * cols + c] = exp(xr[c] - m) / s;
        } else {
            double mean = 0, var = 0;
            for (int64_t c = 0; c < cols; c++)
                mean += xr[c];
            mean /= cols;
            for (int64_t c = 0; c < cols; c++)
                var += (xr[c] - mean) * (xr[c] - mean);
            var /= cols;
            double rstd = 1 / sqrt(var + PS_LAYERNORM_EPS);
            for (int64_t c = 0; c < cols; c++)
                y[r * cols + c] = (xr[c] - mean) * rstd * (g ? g[c] : 1) + (b ? b[c] : 0);
        }
    }
}

static void test_reductions(void **state)
{
    (void)state;
    NEED_GPU();
    static const char *names[] = {"softmax", "layernorm", "sum"};
    /* Widths cover each warp-per-row variant (<=32, <=128, <=512, <=1024)
     * and the block-per-row path. */
    static const int64_t cols_list[] = {1, 7, 32, 100, 500, 1000, 3001};
    const int64_t rows = 37;
    for (int op = 0; op < PS_RED_COUNT; op++)
        for (size_t k = 0; k < 4; k++)
            for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
                ps_cu_dtype t = FLOATS[k];
                int64_t cols = cols_list[ci];
                size_t nx = (size_t)(rows * cols), ny = op == PS_RED_SUM ? (size_t)rows : nx;
                int affine = op == PS_RED_LAYERNORM && ci % 2 == 0;
                void *x = dev_rand(nx, t, 4.0), *y = dev_out(ny, t);
                void *g = affine ? dev_rand((size_t)cols, t, 1.5) : NULL;
                void *b = affine ? dev_rand((size_t)cols, t, 0.5) : NULL;
                OK(ps_cuda_reduction(C, (ps_red_op)op, t, rows, cols, x, g, b, y, &e_));
                double *hx = host_f64(x, t, nx), *hy = host_f64(y, t, ny);
                double *hg = g ? host_f64(g, t, (size_t)cols) : NULL;
                double *hb = b ? host_f64(b, t, (size_t)cols) : NULL;
                double *ref = malloc(ny * 8);
                red_ref((ps_red_op)op, rows, cols, hx, hg, hb, ref);
                char what[96];
                snprintf(what, sizeof what, "reduction %s%s %s %lldx%lld", names[op],
                         affine ? "+affine" : "", ps_cu_dtype_name(t), (long long)rows,
                         (long long)cols);
                check(what, hy, ref, ny, tol_of(t));
                free(hx), free(hy), free(hg), free(hb), free(ref);
                ps_cuda_free(x), ps_cuda_free(y), ps_cuda_free(g), ps_cuda_free(b);
            }
    ps_err e = {0};
    assert_int_equal(ps_cuda_reduction(C, PS_RED_SUM, PS_CU_F32, 0, 5, NULL, NULL, NULL, NULL, &e),
                     PS_EINPUT);
}

/* ------------------------------------------------------------ attention */

static void attn_ref(int64_t bh, int64_t sq, int64_t skv, int64_t d, const double *q,
                     const double *k, const double *v, ps_mask_kind mk, const uint8_t *mask,
                     double *o)
{
    double *s = malloc((size_t)skv * sizeof *s);
    double scale = 1 / sqrt((double)d);
    for (int64_t z = 0; z < bh; z++)
        for (int64_t i = 0; i < sq; i++) {
            const double *qi = q + (z * sq + i) * d;
            double m = -INFINITY;
            for (int64_t j = 0; j < skv; j++) {
                int ok = mk == PS_MASK_NONE     ? 1
                         : mk == PS_MASK_CAUSAL ? j <= skv - sq + i
                                                : mask[i * skv + j] != 0;
                s[j] = -INFINITY;
                if (!ok)
                    continue;
                double acc = 0;
                for (int64_t t = 0; t < d; t++)
                    acc += qi[t] * k[(z * skv + j) * d + t];
                s[j] = acc * scale;
                m = s[j] > m ? s[j] : m;
            }
            double *oi = o + (z * sq + i) * d;
            for (int64_t t = 0; t < d; t++)
                oi[t] = 0;
            if (m == -INFINITY)
                continue; /* sees no key: zeros */
            double l = 0;
            for (int64_t j = 0; j < skv; j++) {
                if (s[j] == -INFINITY)
                    continue;
                double p = exp(s[j] - m);
                l += p;
                for (int64_t t = 0; t < d; t++)
                    oi[t] += p * v[(z * skv + j) * d + t];
            }
            for (int64_t t = 0; t < d; t++)
                oi[t] /= l;
        }
    free(s);
}

/* A random tree (parent of i drawn from 0..i-1) or, with empty_row >= 0,
 * that query sees nothing at all. */
static uint8_t *tree_mask(int64_t sq, int64_t skv, int empty_row)
{
    int64_t *par = malloc((size_t)sq * sizeof *par);
    uint8_t *m = malloc((size_t)(sq * skv));
    uint64_t x = seed();
    for (int64_t i = 0; i < sq; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        par[i] = i == 0 ? -1 : (int64_t)((x >> 33) % (uint64_t)i);
    }
    ps_attention_tree_mask(sq, skv, par, m);
    if (empty_row >= 0)
        memset(m + (size_t)empty_row * skv, 0, (size_t)skv);
    free(par);
    return m;
}

static void attn_case(ps_cu_dtype t, int64_t b, int64_t h, int64_t sq, int64_t skv, int64_t d,
                      ps_mask_kind mk, int empty_row)
{
    int64_t bh = b * h;
    size_t nq = (size_t)(bh * sq * d), nk = (size_t)(bh * skv * d);
    void *q = dev_rand(nq, t, 1.0), *k = dev_rand(nk, t, 1.0), *v = dev_rand(nk, t, 1.0);
    void *o = dev_out(nq, t);
    uint8_t *hm = mk == PS_MASK_TREE ? tree_mask(sq, skv, empty_row) : NULL;
    uint8_t *dm = NULL;
    if (hm) {
        dm = dev_alloc((size_t)(sq * skv));
        OK(ps_cuda_copy(C, dm, hm, (size_t)(sq * skv), PS_CU_H2D, &e_));
    }
    OK(ps_cuda_attention(C, t, b, h, sq, skv, d, q, k, v, mk, dm, o, &e_));
    double *hq = host_f64(q, t, nq), *hk = host_f64(k, t, nk), *hv = host_f64(v, t, nk);
    double *ho = host_f64(o, t, nq), *ref = malloc(nq * 8);
    attn_ref(bh, sq, skv, d, hq, hk, hv, mk, hm, ref);
    static const char *mn[] = {"none", "causal", "tree"};
    char what[128];
    snprintf(what, sizeof what, "attention %s %s b=%lld h=%lld sq=%lld skv=%lld d=%lld%s", mn[mk],
             ps_cu_dtype_name(t), (long long)b, (long long)h, (long long)sq, (long long)skv,
             (long long)d, empty_row >= 0 ? " (a blind query)" : "");
    check(what, ho, ref, nq, tol_of(t));
    if (empty_row >= 0)
        for (int64_t z = 0; z < bh; z++)
            for (int64_t x = 0; x < d; x++)
                assert_true(ho[(z * sq + empty_row) * d + x] == 0.0);
    free(hq), free(hk), free(hv), free(ho), free(ref), free(hm);
    ps_cuda_free(q), ps_cuda_free(k), ps_cuda_free(v), ps_cuda_free(o), ps_cuda_free(dm);
}

static void test_attention(void **state)
{
    (void)state;
    NEED_GPU();
    static const ps_cu_dtype ts[] = {PS_CU_F32, PS_CU_F16, PS_CU_BF16};
    for (size_t i = 0; i < 3; i++)
        for (int mk = 0; mk < 3; mk++) {
            ps_cu_dtype t = ts[i];
            /* prefill, a query count that is not a multiple of 8 */
            attn_case(t, 2, 3, 70, 70, 64, (ps_mask_kind)mk, -1);
            /* decode: one query over many keys → the split + merge path */
            attn_case(t, 1, 2, 1, 2000, 128, (ps_mask_kind)mk, -1);
            /* speculative verification: a few queries after a long prefix */
            attn_case(t, 2, 2, 5, 300, 32, (ps_mask_kind)mk, -1);
        }
    /* Head dims that are not multiples of 32, and the largest (needs more
     * than 48 KB of shared memory). */
    attn_case(PS_CU_F32, 1, 2, 33, 47, 80, PS_MASK_CAUSAL, -1);
    attn_case(PS_CU_F32, 1, 1, 9, 40, 7, PS_MASK_NONE, -1);
    attn_case(PS_CU_BF16, 1, 2, 20, 64, 256, PS_MASK_NONE, -1);
    attn_case(PS_CU_F32, 2, 1, 16, 100, 64, PS_MASK_TREE, -1);
    /* A query whose mask row is empty gets zeros (both paths). */
    attn_case(PS_CU_F32, 1, 2, 12, 40, 64, PS_MASK_TREE, 5);
    attn_case(PS_CU_F32, 1, 1, 1, 3000, 64, PS_MASK_TREE, 0);
    ps_err e = {0};
    assert_int_equal(ps_cuda_attention(C, PS_CU_F32, 1, 1, 4, 4, 300, NULL, NULL, NULL,
                                       PS_MASK_NONE, NULL, NULL, &e),
                     PS_EINPUT);
    assert_int_equal(ps_cuda_attention(C, PS_CU_F32, 1, 1, 4, 4, 64, NULL, NULL, NULL,
                                       PS_MASK_TREE, NULL, NULL, &e),
                     PS_EINPUT);
}

/* ------------------------------------------------------------ embedding-bag */

static void test_embedding_bag(void **state)
{
    (void)state;
    NEED_GPU();
    static const ps_cu_dtype ts[] = {PS_CU_F32, PS_CU_F16, PS_CU_BF16};
    const int64_t rows = 1000, dim = 70, bag = 5, batch = 33;
    for (size_t i = 0; i < 3; i++)
        for (int mean = 0; mean < 2; mean++) {
            ps_cu_dtype t = ts[i];
            void *tab = dev_rand((size_t)(rows * dim), t, 1.0);
            void *idx = dev_rand((size_t)(batch * bag), PS_CU_I64, (double)rows);
            void *out = dev_out((size_t)(batch * dim), t);
            OK(ps_cuda_embedding_bag(C, t, rows, dim, bag, batch, tab, idx, mean, out, &e_));
            double *ht = host_f64(tab, t, (size_t)(rows * dim));
            double *hi = host_f64(idx, PS_CU_I64, (size_t)(batch * bag));
            double *ho = host_f64(out, t, (size_t)(batch * dim));
            double *ref = calloc((size_t)(batch * dim), 8);
            for (int64_t b = 0; b < batch; b++)
                for (int64_t j = 0; j < bag; j++)
                    for (int64_t x = 0; x < dim; x++)
                        ref[b * dim + x] += ht[(int64_t)hi[b * bag + j] * dim + x] /
                                            (mean ? (double)bag : 1.0);
            char what[96];
            snprintf(what, sizeof what, "embedding_bag %s %s %lldx%lld bag=%lld batch=%lld",
                     mean ? "mean" : "sum", ps_cu_dtype_name(t), (long long)rows,
                     (long long)dim, (long long)bag, (long long)batch);
            check(what, ho, ref, (size_t)(batch * dim), tol_of(t));
            free(ht), free(hi), free(ho), free(ref);
            ps_cuda_free(tab), ps_cuda_free(idx), ps_cuda_free(out);
        }
}

/* ------------------------------------------------------------ GEMM */

/* C[m,n] = op(A) op(B) over batch; A stored [m,k] (or [k,m] when ta), B
 * stored [k,n] (or [n,k] when tb). */
static void gemm_ref(int64_t batch, int ta, int tb, int64_t m, int64_t n, int64_t k,
                     const double *a, const double *b, double *c)
{
    for (int64_t z = 0; z < batch; z++) {
        const double *A = a + z * m * k, *B = b + z * k * n;
        double *Cz = c + z * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += (ta ? A[p * m + i] : A[i * k + p]) * (tb ? B[j * k + p] : B[p * n + j]);
                Cz[i * n + j] = s;
            }
    }
}

static double gemm_tol(ps_gemm_prec p)
{
    switch (p) {
    case PS_GEMM_FP32: return 1e-5; /* tf32 rounding (~3e-4) would fail this */
    case PS_GEMM_TF32: return 2e-3;
    case PS_GEMM_FP64: return 1e-12;
    case PS_GEMM_FP16: return 2e-3;
    default: return 1e-2;
    }
}

static void gemm_case(ps_gemm_prec p, int ta, int tb, int64_t batch, int64_t m, int64_t n,
                      int64_t k)
{
    ps_cu_dtype t = ps_gemm_prec_dtype(p);
    size_t na = (size_t)(batch * m * k), nb = (size_t)(batch * k * n), nc = (size_t)(batch * m * n);
    void *a = dev_rand(na, t, 1.0), *b = dev_rand(nb, t, 1.0), *c = dev_out(nc, t);
    if (batch == 1)
        OK(ps_cuda_gemm(C, p, ta, tb, m, n, k, a, b, c, &e_));
    else
        OK(ps_cuda_gemm_batched(C, p, ta, tb, batch, m, n, k, a, b, c, &e_));
    double *ha = host_f64(a, t, na), *hb = host_f64(b, t, nb), *hc = host_f64(c, t, nc);
    double *ref = malloc(nc * 8);
    gemm_ref(batch, ta, tb, m, n, k, ha, hb, ref);
    char what[128];
    snprintf(what, sizeof what, "%sgemm %s %c%c b=%lld m=%lld n=%lld k=%lld",
             batch > 1 ? "batched_" : "", ps_gemm_prec_name(p), ta ? 't' : 'n', tb ? 't' : 'n',
             (long long)batch, (long long)m, (long long)n, (long long)k);
    check(what, hc, ref, nc, gemm_tol(p));
    free(ha), free(hb), free(hc), free(ref);
    ps_cuda_free(a), ps_cuda_free(b), ps_cuda_free(c);
}

static void test_gemm(void **state)
{
    (void)state;
    NEED_GPU();
    for (int p = 0; p < PS_GEMM_PREC_COUNT; p++)
        for (int v = 0; v < 4; v++)
            gemm_case((ps_gemm_prec)p, v >> 1, v & 1, 1, 67, 45, 129);
    gemm_case(PS_GEMM_FP32, 0, 0, 1, 256, 384, 512);
    gemm_case(PS_GEMM_BF16, 0, 1, 1, 256, 384, 512);
    gemm_case(PS_GEMM_TF32, 0, 0, 1, 1, 1000, 300); /* a GEMV-shaped product */
    ps_err e = {0};
    assert_int_equal(ps_cuda_gemm(C, PS_GEMM_FP32, 0, 0, 0, 4, 4, NULL, NULL, NULL, &e),
                     PS_EINPUT);
}

static void test_gemm_batched(void **state)
{
    (void)state;
    NEED_GPU();
    gemm_case(PS_GEMM_FP32, 0, 0, 3, 33, 17, 65);
    gemm_case(PS_GEMM_FP32, 1, 1, 3, 33, 17, 65);
    gemm_case(PS_GEMM_BF16, 0, 1, 5, 64, 64, 64);
    gemm_case(PS_GEMM_FP64, 1, 0, 2, 9, 10, 11);
}

static void i8_case(int ta, int tb, int64_t m, int64_t n, int64_t k, int must_plan)
{
    ps_err e = {0};
    ps_cuda_i8gemm *g = ps_cuda_i8gemm_plan(C, ta, tb, m, n, k, &e);
    if (!g) {
        if (must_plan)
            fail_msg("int8 plan %c%c: %s", ta ? 't' : 'n', tb ? 't' : 'n', e.msg);
        print_message("  int8 gemm %c%c m=%lld n=%lld k=%lld: no cuBLASLt algorithm (%s)\n",
                      ta ? 't' : 'n', tb ? 't' : 'n', (long long)m, (long long)n, (long long)k,
                      e.msg);
        return;
    }
    void *a = dev_rand((size_t)(m * k), PS_CU_I8, 1), *b = dev_rand((size_t)(k * n), PS_CU_I8, 1);
    void *c = dev_alloc((size_t)(m * n) * 4);
    /* 0x7F7F7F7F exceeds any sum of k products of int8 values here. */
    OK(ps_cuda_memset(C, c, 0x7F, (size_t)(m * n) * 4, &e_));
    OK(ps_cuda_i8gemm_run(g, a, b, c, &e_));
    double *ha = host_f64(a, PS_CU_I8, (size_t)(m * k));
    double *hb = host_f64(b, PS_CU_I8, (size_t)(k * n));
    double *hc = host_f64(c, PS_CU_I32, (size_t)(m * n)), *ref = malloc((size_t)(m * n) * 8);
    gemm_ref(1, ta, tb, m, n, k, ha, hb, ref);
    for (int64_t i = 0; i < m * n; i++)
        if (hc[i] != ref[i])
            fail_msg("int8 gemm %c%c: C[%lld] = %.0f, expected %.0f (seed %llu)", ta ? 't' : 'n',
                     tb ? 't' : 'n', (long long)i, hc[i], ref[i], (unsigned long long)seed0);
    print_message("  int8 gemm %c%c m=%lld n=%lld k=%lld: exact\n", ta ? 't' : 'n',
                  tb ? 't' : 'n', (long long)m, (long long)n, (long long)k);
    free(ha), free(hb), free(hc), free(ref);
    ps_cuda_free(a), ps_cuda_free(b), ps_cuda_free(c);
    ps_cuda_i8gemm_free(g);
}

static void test_gemm_int8(void **state)
{
    (void)state;
    NEED_GPU();
    i8_case(0, 1, 64, 48, 96, 1);   /* the int8 tensor cores' layout */
    i8_case(0, 1, 200, 136, 512, 1);
    i8_case(0, 0, 64, 48, 96, 0);   /* others: exact if cuBLASLt takes them */
    i8_case(1, 0, 64, 48, 96, 0);
}

/* ------------------------------------------------------------ conv2d */

static void conv_ref(ps_conv_dir dir, int64_t N, int64_t Cc, int64_t H, int64_t W, int64_t K,
                     int64_t R, int64_t S, int64_t st, int64_t pad, int64_t OH, int64_t OW,
                     const double *in0, const double *in1, double *out)
{
    /* y[n,k,p,q] = sum_{c,r,s} x[n,c,p·st+r−pad, q·st+s−pad] · w[k,c,r,s];
     * the backward passes are the same sum read the other ways round. */
    size_t nx = (size_t)(N * Cc * H * W), nw = (size_t)(K * Cc * R * S);
    size_t ny = (size_t)(N * K * OH * OW);
    memset(out, 0, (dir == PS_CONV_FWD ? ny : dir == PS_CONV_BWD_INPUT ? nx : nw) * 8);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t p = 0; p < OH; p++)
                for (int64_t q = 0; q < OW; q++)
                    for (int64_t c = 0; c < Cc; c++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t s = 0; s < S; s++) {
                                int64_t h = p * st + r - pad, w = q * st + s - pad;
                                if (h < 0 || h >= H || w < 0 || w >= W)
                                    continue;
                                size_t xi = (size_t)(((n * Cc + c) * H + h) * W + w);
                                size_t wi = (size_t)(((k * Cc + c) * R + r) * S + s);
                                size_t yi = (size_t)(((n * K + k) * OH + p) * OW + q);
                                if (dir == PS_CONV_FWD)
                                    out[yi] += in0[xi] * in1[wi];
                                else if (dir == PS_CONV_BWD_INPUT)
                                    out[xi] += in0[yi] * in1[wi];
                                else
                                    out[wi] += in0[xi] * in1[yi];
                            }
}

static void test_conv2d(void **state)
{
    (void)state;
    NEED_GPU();
    char why[512];
    if (!ps_cudnn_available(why, sizeof why)) {
        print_message("cuDNN not available (%s): skipping\n", why);
        skip();
    }
    print_message("%s\n", why);
    static const ps_gemm_prec ps[] = {PS_GEMM_FP32, PS_GEMM_TF32, PS_GEMM_FP16, PS_GEMM_BF16};
    static const double tol[] = {1e-4, 2e-3, 2e-3, 1e-2};
    static const char *dn[] = {"fwd", "bwd_input", "bwd_weight"};
    typedef struct {
        int64_t n, c, h, w, k, r, s, st, pad;
    } conv_shape;
    static const conv_shape shapes[] = {
        {2, 3, 9, 11, 4, 3, 2, 2, 1}, {1, 16, 14, 14, 32, 3, 3, 1, 1}, {4, 8, 8, 8, 8, 1, 1, 1, 0}};
    for (size_t si = 0; si < 3; si++)
        for (size_t pi = 0; pi < 4; pi++)
            for (int dir = 0; dir < 3; dir++) {
                conv_shape z = shapes[si];
                ps_err e = {0};
                ps_cuda_conv *cv = ps_cuda_conv2d_plan(C, (ps_conv_dir)dir, ps[pi], z.n, z.c, z.h,
                                                       z.w, z.k, z.r, z.s, z.st, z.pad, &e);
                if (!cv)
                    fail_msg("conv2d plan %s %s: %s", dn[dir], ps_gemm_prec_name(ps[pi]), e.msg);
                int64_t oh, ow;
                ps_cuda_conv2d_out_hw(cv, &oh, &ow);
                assert_int_equal(oh, (z.h + 2 * z.pad - z.r) / z.st + 1);
                assert_int_equal(ow, (z.w + 2 * z.pad - z.s) / z.st + 1);
                ps_cu_dtype t = ps_gemm_prec_dtype(ps[pi]);
                size_t nx = (size_t)(z.n * z.c * z.h * z.w), nw = (size_t)(z.k * z.c * z.r * z.s);
                size_t ny = (size_t)(z.n * z.k * oh * ow);
                size_t n0 = dir == PS_CONV_BWD_INPUT ? ny : nx;
                size_t n1 = dir == PS_CONV_BWD_WEIGHT ? ny : nw;
                size_t no = dir == PS_CONV_FWD ? ny : dir == PS_CONV_BWD_INPUT ? nx : nw;
                void *i0 = dev_rand(n0, t, 1.0), *i1 = dev_rand(n1, t, 1.0), *o = dev_out(no, t);
                OK(ps_cuda_conv2d_run(cv, i0, i1, o, &e_));
                double *h0 = host_f64(i0, t, n0), *h1 = host_f64(i1, t, n1);
                double *ho = host_f64(o, t, no), *ref = malloc(no * 8);
                conv_ref((ps_conv_dir)dir, z.n, z.c, z.h, z.w, z.k, z.r, z.s, z.st, z.pad, oh, ow,
                         h0, h1, ref);
                char what[128];
                snprintf(what, sizeof what, "conv2d %s %s n%lld c%lld %lldx%lld k%lld %lldx%lld "
                         "s%lld p%lld (algo %d)", dn[dir], ps_gemm_prec_name(ps[pi]),
                         (long long)z.n, (long long)z.c, (long long)z.h, (long long)z.w,
                         (long long)z.k, (long long)z.r, (long long)z.s, (long long)z.st,
                         (long long)z.pad, ps_cuda_conv2d_algo(cv));
                check(what, ho, ref, no, tol[pi]);
                free(h0), free(h1), free(ho), free(ref);
                ps_cuda_free(i0), ps_cuda_free(i1), ps_cuda_free(o);
                ps_cuda_conv2d_free(cv);
            }
    ps_err e = {0};
    assert_null(ps_cuda_conv2d_plan(C, PS_CONV_FWD, PS_GEMM_FP32, 1, 1, 2, 2, 1, 5, 5, 1, 0, &e));
    assert_int_equal(e.code, PS_EINPUT);
}

/* ------------------------------------------------------------ set-up */

static int group_setup(void **state)
{
    (void)state;
    if (!gpu_setup_seed())
        return 0;
    ps_err e = {0};
    C = ps_cuda_ctx_new(0, &e);
    if (!C) {
        snprintf(no_gpu, sizeof no_gpu, "context: %s", e.msg);
        return 0;
    }
    gpu_setup_announce();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ps_cuda_ctx_free(C);
    C = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_names_and_parsing),
        cmocka_unit_test(test_host_tree_mask),
        cmocka_unit_test(test_no_gpu_context_fails_cleanly),
        cmocka_unit_test(test_device_info_and_memory),
        cmocka_unit_test(test_fill_random),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_embedding_bag),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_batched),
        cmocka_unit_test(test_gemm_int8),
        cmocka_unit_test(test_conv2d),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
