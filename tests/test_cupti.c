/* profile/cupti_tracer + profile/cuda_backend: the record handling that needs
 * no GPU — interning, the correlation join of synthetic kernel / API /
 * external-correlation records into per-op, per-repeat times, the kernel
 * table written to a profile database and read back — and, on a machine with
 * a GPU, the tracer on real kernels and a small profiling run end to end. */
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

#include "common/h5io.h"
#include "kernels/cuda_ops.h"
#include "kernels/gpu.h"
#include "profile/cuda_backend.h"
#include "profile/cupti_tracer.h"
#include "profile/db.h"
#include "profile/suite.h"

#define EQ(a, b) eq_d((a), (b), #a, __LINE__)
static void eq_d(double a, double b, const char *what, int line)
{
    double tol = 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static int gpu_usable(void)
{
    char d[512];
    if (ps_gpu_count(d, sizeof d) > 0)
        return 1;
    print_message("no usable GPU (%s): skipping\n", d);
    return 0;
}

#define NEED_GPU()                                                                                \
    do {                                                                                          \
        if (!gpu_usable())                                                                        \
            skip();                                                                               \
    } while (0)

/* ------------------------------------------------------------ ids */

static void test_ext_id_roundtrip(void **state)
{
    (void)state;
    int64_t ops[] = {0, 1, 77, 123456, (int64_t)1 << 40};
    int reps[] = {0, 1, 9, 1000, (1 << PS_TRACE_REPEAT_BITS) - 1};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++) {
            uint64_t x = ps_trace_ext_id(ops[i], reps[j]);
            assert_true(ps_trace_ext_op(x) == ops[i]);
            assert_int_equal(ps_trace_ext_repeat(x), reps[j]);
            assert_true(x != PS_TRACE_NO_OP);
        }
}

/* ------------------------------------------------------------ container */

static void test_trace_interning(void **state)
{
    (void)state;
    ps_trace *t = ps_trace_new();
    assert_non_null(t);
    /* Enough distinct names to force the hash table to grow twice. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 700; i++) {
            char name[64];
            snprintf(name, sizeof name, "void kernel_%d<float, %d>(float const*)", i, i % 7);
            ps_trace_kernel k = {.start_ns = (uint64_t)i, .end_ns = (uint64_t)i + 5,
                                 .correlation = (uint32_t)(round * 1000 + i)};
            assert_int_equal(ps_trace_add_kernel(t, &k, name), 0);
            const ps_trace_kernel *got = ps_trace_kernel_at(t, ps_trace_nkernels(t) - 1);
            assert_int_equal(got->name_idx, (uint32_t)i); /* same name → same index */
            assert_string_equal(ps_trace_name(t, got->name_idx), name);
        }
    assert_int_equal(ps_trace_nkernels(t), 2100);
    assert_int_equal(ps_trace_nnames(t), 700);
    assert_null(ps_trace_name(t, 700));
    assert_null(ps_trace_kernel_at(t, 2100));
    /* NULL names get a placeholder rather than crashing. */
    ps_trace_kernel k = {0};
    assert_int_equal(ps_trace_add_kernel(t, &k, NULL), 0);
    assert_string_equal(ps_trace_name(t, ps_trace_kernel_at(t, 2100)->name_idx), "(unnamed)");

    /* Merge re-interns into the destination and empties the source. */
    ps_trace *u = ps_trace_new();
    ps_trace_kernel k2 = {.correlation = 5};
    assert_int_equal(ps_trace_add_kernel(u, &k2, "void kernel_3<float, 3>(float const*)"), 0);
    assert_int_equal(ps_trace_add_kernel(u, &k2, "fresh"), 0);
    ps_trace_api a = {.correlation = 5};
    ps_trace_ext x = {.external_id = 9, .correlation = 5, .kind = PS_TRACE_EXT_KIND_CUSTOM0};
    assert_int_equal(ps_trace_add_api(u, &a), 0);
    assert_int_equal(ps_trace_add_ext(u, &x), 0);
    ps_trace_add_dropped(u, 3);
    assert_int_equal(ps_trace_merge(t, u), 0);
    assert_int_equal(ps_trace_nkernels(u), 0);
    assert_int_equal(ps_trace_nkernels(t), 2103);
    assert_int_equal(ps_trace_nnames(t), 702);
    assert_int_equal(ps_trace_kernel_at(t, 2101)->name_idx, 3);
    assert_int_equal(ps_trace_napis(t), 1);
    assert_int_equal(ps_trace_nexts(t), 1);
    assert_int_equal(ps_trace_dropped(t), 3);
    ps_trace_clear(t);
    assert_int_equal(ps_trace_nkernels(t), 0);
    assert_int_equal(ps_trace_nnames(t), 0);
    assert_int_equal(ps_trace_add_kernel(t, &k2, "after clear"), 0);
    assert_int_equal(ps_trace_kernel_at(t, 0)->name_idx, 0);
    ps_trace_free(u);
    ps_trace_free(t);
}

/* ------------------------------------------------------------ the join */

/* A synthetic profiling session as CUPTI would report it:
 *  - warm-up kernels launched with no external id pushed (no EXT record);
 *  - ops 0..2 × 4 repeats; repeat r of op o launches 1 + (o + r) % 3
 *    kernels, each through a runtime API call (correlation c) whose EXT
 *    record carries ps_trace_ext_id(o, r); an event record and a driver
 *    call inside the same push add EXT records without kernels;
 *  - a CUSTOM1 record on one kernel's correlation (another tool's id),
 *    which must not change the attribution;
 *  - records delivered in a scrambled order, as buffers complete.
 * Kernel j of (o, r) runs [base + 10 j, base + 10 j + 4 + j] ns with base =
 * 1000·(4o + r), so span and busy are known in closed form. */
typedef struct synth {
    ps_trace *t;
    double span[3][4], busy[3][4];
    int nk[3][4];
    int attributed;
} synth;

static void synth_build(synth *s)
{
    memset(s, 0, sizeof *s);
    s->t = ps_trace_new();
    assert_non_null(s->t);
    ps_trace_kernel ks[64];
    ps_trace_ext xs[128];
    int nks = 0, nxs = 0;
    uint32_t corr = 100;
    for (int w = 0; w < 3; w++) { /* warm-up: correlation without EXT */
        ps_trace_kernel k = {.start_ns = 10 + w, .end_ns = 20 + w, .correlation = corr++};
        ks[nks++] = k;
    }
    for (int o = 0; o < 3; o++)
        for (int r = 0; r < 4; r++) {
            uint64_t ext = ps_trace_ext_id(o, r);
            uint64_t base = 1000 * (uint64_t)(4 * o + r) + 100000;
            xs[nxs++] = (ps_trace_ext){ext, corr++, PS_TRACE_EXT_KIND_CUSTOM0}; /* event record */
            int n = 1 + (o + r) % 3;
            uint64_t first = 0, last = 0, busy = 0;
            for (int j = 0; j < n; j++) {
                uint32_t c = corr++;
                ps_trace_kernel k = {.start_ns = base + 10 * (uint64_t)j,
                                     .end_ns = base + 10 * (uint64_t)j + 4 + (uint64_t)j,
                                     .correlation = c,
                                     .grid = {j + 1, 1, 1},
                                     .block = {128, 1, 1}};
                ks[nks++] = k;
                xs[nxs++] = (ps_trace_ext){ext, c, PS_TRACE_EXT_KIND_CUSTOM0};
                if (j == 0)
                    first = k.start_ns;
                last = k.end_ns;
                busy += k.end_ns - k.start_ns;
                s->attributed++;
            }
            xs[nxs++] = (ps_trace_ext){ext, corr++, PS_TRACE_EXT_KIND_CUSTOM0}; /* driver call */
            s->span[o][r] = (double)(last - first) * 1e-9;
            s->busy[o][r] = (double)busy * 1e-9;
            s->nk[o][r] = n;
        }
    /* Another tool's id on the first op kernel's correlation. */
    xs[nxs++] = (ps_trace_ext){ps_trace_ext_id(2, 3), ks[3].correlation, 4};
    /* Scramble: a fixed permutation (stride coprime with the count). */
    for (int i = 0; i < nks; i++) {
        int j = (i * 7 + 3) % nks;
        const char *name = (j % 2) ? "ampere_sgemm_128x64_nn" : "k_ew<float, 0>";
        assert_int_equal(ps_trace_add_kernel(s->t, &ks[j], name), 0);
    }
    for (int i = 0; i < nxs; i++)
        assert_int_equal(ps_trace_add_ext(s->t, &xs[(i * 11 + 5) % nxs]), 0);
    assert_true(nks % 7 != 0 && nxs % 11 != 0);
}

static void test_join_attribution(void **state)
{
    (void)state;
    synth s;
    synth_build(&s);
    size_t nk = ps_trace_nkernels(s.t);
    uint64_t *ext = malloc(nk * sizeof *ext);
    assert_non_null(ext);
    long hits = ps_trace_attribute(s.t, PS_TRACE_EXT_KIND_CUSTOM0, ext);
    assert_int_equal(hits, s.attributed);
    size_t unattributed = 0;
    for (size_t i = 0; i < nk; i++)
        unattributed += ext[i] == PS_TRACE_NO_OP;
    assert_int_equal(unattributed, 3); /* the warm-up kernels */
    /* Only the CUSTOM1 record matches with kind 4: exactly one kernel. */
    assert_int_equal(ps_trace_attribute(s.t, 4, ext), 1);
    assert_int_equal(ps_trace_attribute(s.t, PS_TRACE_EXT_KIND_CUSTOM0, ext), s.attributed);

    for (int o = 0; o < 3; o++) {
        double span[6], busy[6];
        int cnt[6];
        /* Two extra repeats were never run: NaN and a count of 0. */
        int filled = ps_trace_op_times(s.t, ext, o, 6, span, busy, cnt);
        assert_int_equal(filled, 4);
        for (int r = 0; r < 4; r++) {
            EQ(span[r], s.span[o][r]);
            EQ(busy[r], s.busy[o][r]);
            assert_int_equal(cnt[r], s.nk[o][r]);
        }
        assert_true(isnan(span[4]) && isnan(busy[5]) && cnt[4] == 0 && cnt[5] == 0);
        /* Fewer repeats asked than run: the rest are ignored. */
        assert_int_equal(ps_trace_op_times(s.t, ext, o, 2, span, NULL, NULL), 2);
        EQ(span[1], s.span[o][1]);

        ps_stats st;
        assert_int_equal(ps_trace_op_stats(s.t, ext, o, 6, &st), 4);
        double sorted[4];
        for (int r = 0; r < 4; r++)
            sorted[r] = s.span[o][r];
        ps_stats ref;
        ps_stats_compute(sorted, 4, &ref);
        EQ(st.median_s, ref.median_s);
        EQ(st.p10_s, ref.p10_s);
        EQ(st.p90_s, ref.p90_s);
        EQ(st.min_s, ref.min_s);
        EQ(st.mean_s, ref.mean_s);
        assert_int_equal(st.repeats, 4);
    }
    /* An op with no kernels: nothing, and zeroed stats. */
    ps_stats st;
    assert_int_equal(ps_trace_op_times(s.t, ext, 99, 4, NULL, NULL, NULL), 0);
    assert_int_equal(ps_trace_op_stats(s.t, ext, 99, 4, &st), 0);
    assert_int_equal(st.repeats, 0);
    free(ext);
    ps_trace_free(s.t);
}

/* A pushed id nested inside another of the same kind (a later record for
 * the same correlation) wins: the innermost op owns the kernel. */
static void test_join_latest_record_wins(void **state)
{
    (void)state;
    ps_trace *t = ps_trace_new();
    ps_trace_kernel k = {.start_ns = 5, .end_ns = 9, .correlation = 42};
    assert_int_equal(ps_trace_add_kernel(t, &k, "k"), 0);
    ps_trace_ext a = {ps_trace_ext_id(1, 0), 42, PS_TRACE_EXT_KIND_CUSTOM0};
    ps_trace_ext b = {ps_trace_ext_id(2, 0), 42, PS_TRACE_EXT_KIND_CUSTOM0};
    assert_int_equal(ps_trace_add_ext(t, &a), 0);
    assert_int_equal(ps_trace_add_ext(t, &b), 0);
    uint64_t ext;
    assert_int_equal(ps_trace_attribute(t, PS_TRACE_EXT_KIND_CUSTOM0, &ext), 1);
    assert_true(ps_trace_ext_op(ext) == 2);
    /* An empty trace joins to nothing. */
    ps_trace *u = ps_trace_new();
    assert_int_equal(ps_trace_attribute(u, PS_TRACE_EXT_KIND_CUSTOM0, &ext), 0);
    ps_trace_free(u);
    ps_trace_free(t);
}

/* ------------------------------------------------------------ the database */

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/plansim-cupti-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_db_kernel_table(void **state)
{
    (void)state;
    synth s;
    synth_build(&s);
    size_t nk = ps_trace_nkernels(s.t);
    uint64_t *ext = malloc(nk * sizeof *ext);
    assert_non_null(ext);
    assert_int_equal(ps_trace_attribute(s.t, PS_TRACE_EXT_KIND_CUSTOM0, ext), s.attributed);

    char path[300];
    snprintf(path, sizeof path, "%s/gpu.h5", tmpdir);
    ps_err e = {0};
    ps_db_meta m = {"cuda", "cuda:0", "{}", 0, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 0, &e);
    assert_non_null(w);
    assert_int_equal(ps_db_writer_set_attr_str(w, "device_name", "Synthetic GPU", &e), 0);
    long rows = 0;
    for (int o = 0; o < 3; o++) {
        ps_op op;
        int64_t dims[1] = {1024 << o};
        assert_int_equal(ps_op_make(&op, "elementwise", "fp32", "relu", dims, 1, &e), 0);
        ps_stats st;
        assert_int_equal(ps_trace_op_stats(s.t, ext, o, 4, &st), 4);
        int64_t id = ps_db_writer_add_op(w, &op, ps_cuda_op_backend(&op), "cupti", &st,
                                         st.median_s * 1.1, &e);
        assert_int_equal(id, o);
        long n = ps_cuda_store_kernels(w, s.t, ext, id, &e);
        assert_true(n == s.nk[o][0] + s.nk[o][1] + s.nk[o][2] + s.nk[o][3]);
        rows += n;
        assert_int_equal(ps_db_writer_add_tracer_overhead(w, id, 1.02e-5, 1e-5, &e), 0);
    }
    assert_int_equal(ps_db_writer_commit(w, &e), 0);

    ps_db *db = NULL;
    if (ps_db_open(path, &db, &e))
        fail_msg("%s", e.msg);
    assert_string_equal(ps_db_attr(db, "device_kind"), "cuda");
    assert_string_equal(ps_db_attr(db, "device_name"), "Synthetic GPU");
    assert_int_equal(ps_db_nops(db), 3);
    assert_string_equal(ps_db_op_at(db, 1)->backend, "plansim");
    assert_string_equal(ps_db_op_at(db, 1)->timer, "cupti");
    EQ(ps_db_op_at(db, 2)->event_median_s, ps_db_op_at(db, 2)->median_s * 1.1);
    assert_int_equal(ps_db_nkernels(db), (size_t)rows);
    /* Every stored kernel matches a synthetic one: same op, times, grid. */
    int per_op[3] = {0};
    for (size_t i = 0; i < ps_db_nkernels(db); i++) {
        ps_db_kernel k;
        assert_int_equal(ps_db_kernel_at(db, i, &k), 0);
        assert_true(k.op >= 0 && k.op < 3);
        per_op[k.op]++;
        int found = 0;
        for (size_t j = 0; j < nk && !found; j++) {
            const ps_trace_kernel *tk = ps_trace_kernel_at(s.t, j);
            if (tk->correlation == (uint32_t)k.correlation) {
                found = 1;
                assert_true(ps_trace_ext_op(ext[j]) == k.op);
                assert_true((int64_t)tk->start_ns == k.start_ns);
                assert_true((int64_t)tk->end_ns == k.end_ns);
                assert_true(tk->grid[0] == k.grid[0] && k.block[0] == 128);
                assert_string_equal(k.name, ps_trace_name(s.t, tk->name_idx));
            }
        }
        assert_true(found);
    }
    for (int o = 0; o < 3; o++)
        assert_int_equal(per_op[o], s.nk[o][0] + s.nk[o][1] + s.nk[o][2] + s.nk[o][3]);
    ps_db_close(db);

    /* /tracer_overhead, read as a plain table. */
    hid_t f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    ps_table *t = NULL;
    assert_int_equal(ps_h5_table_read(f, "/tracer_overhead", &t, &e), 0);
    assert_int_equal(t->nrows, 3);
    int cr = ps_table_col(t, "overhead_ratio");
    assert_true(cr >= 0);
    EQ(ps_table_get_d(t, 2, cr), 1.02);
    ps_table_free(t);
    H5Fclose(f);
    free(ext);
    ps_trace_free(s.t);
}

/* ------------------------------------------------------------ backend logic */

static void test_backend_support(void **state)
{
    (void)state;
    ps_err e = {0};
    ps_op op;
    int64_t g[3] = {64, 64, 64};
    const char *ok[] = {"fp32", "tf32", "fp64", "fp16", "bf16", "int8"};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(ps_op_make(&op, "gemm", ok[i], "nn", g, 3, &e), 0);
        assert_int_equal(ps_cuda_op_supported(&op, &e), 0);
    }
    assert_string_equal(ps_cuda_op_backend(&op), "cublaslt");
    assert_int_equal(ps_op_make(&op, "gemm", "int4", "nn", g, 3, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "int4"));
    int64_t b[4] = {2, 8, 8, 8};
    assert_int_equal(ps_op_make(&op, "batched_gemm", "int8", "nn", b, 4, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT);
    int64_t mc = 1 << 20;
    assert_int_equal(ps_op_make(&op, "memcpy", NULL, "peer", &mc, 1, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "second GPU"));
    assert_int_equal(ps_op_make(&op, "memcpy", NULL, "host", &mc, 1, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT);
    assert_int_equal(ps_op_make(&op, "memcpy", NULL, "h2d", &mc, 1, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), 0);
    assert_string_equal(ps_cuda_op_backend(&op), "cudart");
    int64_t at[5] = {1, 2, 16, 16, 512};
    assert_int_equal(ps_op_make(&op, "attention", "fp32", "tree", at, 5, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT); /* head dim > 256 */
    at[4] = 128;
    assert_int_equal(ps_op_make(&op, "attention", "bf16", "tree", at, 5, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), 0);
    assert_string_equal(ps_cuda_op_backend(&op), "plansim");
    int64_t cv[9] = {1, 3, 8, 8, 4, 3, 3, 1, 1};
    assert_int_equal(ps_op_make(&op, "conv2d", "fp64", "fwd", cv, 9, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), PS_EINPUT);
    assert_int_equal(ps_op_make(&op, "conv2d", "tf32", "bwd_weight", cv, 9, &e), 0);
    assert_int_equal(ps_cuda_op_supported(&op, &e), 0);
    assert_string_equal(ps_cuda_op_backend(&op), "cudnn");
}

/* Without a usable GPU the backend refuses with PS_ERUN and a reason; the
 * tracer, in a build without CUDA, says so. */
static void test_backend_without_gpu(void **state)
{
    (void)state;
    char d[512];
    if (ps_gpu_count(d, sizeof d) > 0)
        skip(); /* covered by test_gpu_profile_tiny_suite */
    ps_err e = {0};
    ps_suite *s = ps_suite_load_str(
        "{\"name\":\"t\",\"ops\":[{\"kind\":\"elementwise\",\"grid\":{\"n\":1024}}]}", "test", &e);
    assert_non_null(s);
    char path[300];
    snprintf(path, sizeof path, "%s/nogpu.h5", tmpdir);
    ps_db_meta m = {"cuda", "cuda:0", s->text, 0, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 1, &e);
    assert_non_null(w);
    assert_int_equal(ps_profile_run_cuda(s, 0, w, &e), PS_ERUN);
#ifdef PS_HAVE_CUDA
    assert_non_null(strstr(e.msg, "no usable CUDA GPU"));
#else
    assert_non_null(strstr(e.msg, "built without CUDA support"));
    ps_err e2 = {0};
    assert_int_equal(ps_tracer_start(&e2), PS_ERUN);
    assert_non_null(strstr(e2.msg, "built without CUDA support"));
    assert_int_equal(ps_tracer_built(), 0);
#endif
    ps_db_writer_abort(w);
    ps_suite_free(s);
    assert_int_equal(access(path, F_OK), -1);
}

/* ------------------------------------------------------------ GPU */

/* The tracer on real launches: each repeat's kernels come back attributed
 * to it, and copies are recorded as such. */
static void test_gpu_tracer_attribution(void **state)
{
    (void)state;
    NEED_GPU();
    ps_err e = {0};
    ps_cuda_ctx *c = ps_cuda_ctx_new(0, &e);
    if (!c)
        fail_msg("%s", e.msg);
    size_t n = 1 << 20;
    void *a = ps_cuda_alloc(n * 4, &e), *y = ps_cuda_alloc(n * 4, &e);
    float *h = ps_cuda_host_alloc(n * 4, &e); /* pinned: the copy engine, a MEMCPY record */
    assert_non_null(a);
    assert_non_null(y);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = 1.0f + (float)(i % 7);
    assert_int_equal(ps_cuda_fill_random(c, a, n, PS_CU_F32, 1, 1, &e), 0);
    assert_int_equal(ps_cuda_ctx_sync(c, &e), 0);
    if (ps_tracer_start(&e))
        fail_msg("CUPTI: %s", e.msg);
    /* Unattributed warm-up, then op 5 × 3 repeats of (relu, h2d copy). */
    assert_int_equal(ps_cuda_elementwise(c, PS_EW_RELU, PS_CU_F32, n, a, NULL, y, &e), 0);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(ps_tracer_push(ps_trace_ext_id(5, r), &e), 0);
        assert_int_equal(ps_cuda_elementwise(c, PS_EW_RELU, PS_CU_F32, n, a, NULL, y, &e), 0);
        assert_int_equal(ps_cuda_copy(c, y, h, n * 4, PS_CU_H2D, &e), 0);
        assert_int_equal(ps_tracer_pop(&e), 0);
    }
    ps_trace *t = NULL;
    if (ps_tracer_collect(&t, &e))
        fail_msg("%s", e.msg);
    ps_tracer_stop();
    size_t nk = ps_trace_nkernels(t);
    uint64_t *ext = malloc((nk ? nk : 1) * sizeof *ext);
    assert_non_null(ext);
    assert_true(ps_trace_attribute(t, PS_TRACE_EXT_KIND_CUSTOM0, ext) >= 6);
    double span[3];
    int cnt[3];
    assert_int_equal(ps_trace_op_times(t, ext, 5, 3, span, NULL, cnt), 3);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(cnt[r], 2);
        assert_true(span[r] > 0 && span[r] < 0.1);
    }
    int copies = 0, relus = 0;
    for (size_t i = 0; i < nk; i++) {
        if (ext[i] == PS_TRACE_NO_OP)
            continue;
        const ps_trace_kernel *k = ps_trace_kernel_at(t, i);
        const char *nm = ps_trace_name(t, k->name_idx);
        if (k->is_copy && strstr(nm, "HtoD"))
            copies++;
        else if (strstr(nm, "k_ew"))
            relus++;
    }
    assert_int_equal(copies, 3);
    assert_int_equal(relus, 3);
    print_message("tracer: %zu kernels, %zu API records, %zu EXT records, %zu dropped\n", nk,
                  ps_trace_napis(t), ps_trace_nexts(t), ps_trace_dropped(t));
    free(ext);
    ps_trace_free(t);
    ps_cuda_free(a);
    ps_cuda_free(y);
    ps_cuda_host_free(h);
    ps_cuda_ctx_free(c);
}

/* A tiny suite end to end: every row timed by CUPTI, kernels stored and
 * attributed to existing rows, overhead rows for each op. */
static void test_gpu_profile_tiny_suite(void **state)
{
    (void)state;
    NEED_GPU();
    ps_err e = {0};
    ps_suite *s = ps_suite_load_str(
        "{\"name\":\"tiny\",\"repeats\":5,\"ops\":["
        "{\"kind\":\"gemm\",\"dtype\":[\"fp32\",\"bf16\"],"
        "\"grid\":{\"m\":256,\"n\":256,\"k\":256}},"
        "{\"kind\":\"gemm\",\"dtype\":\"int4\",\"grid\":{\"m\":64,\"n\":64,\"k\":64}},"
        "{\"kind\":\"attention\",\"variant\":[\"causal\",\"tree\"],"
        "\"grid\":{\"b\":1,\"h\":4,\"sq\":64,\"skv\":\"sq\",\"d\":64}},"
        "{\"kind\":\"reduction\",\"variant\":\"softmax\",\"grid\":{\"rows\":512,\"cols\":1000}},"
        "{\"kind\":\"memcpy\",\"variant\":[\"d2d\",\"h2d\"],\"grid\":{\"bytes\":1048576}}]}",
        "tiny", &e);
    if (!s)
        fail_msg("%s", e.msg);
    char path[300];
    snprintf(path, sizeof path, "%s/tiny.h5", tmpdir);
    ps_db_meta m = {"cuda", "cuda:0", s->text, 0, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 1, &e);
    assert_non_null(w);
    ps_cuda_profile_opts o = {.device = 0, .skip_peaks = 1, .quiet = 1};
    if (ps_profile_run_cuda_ex(s, &o, w, &e)) {
        ps_db_writer_abort(w);
        fail_msg("%s", e.msg);
    }
    if (ps_db_writer_commit(w, &e))
        fail_msg("%s", e.msg);
    ps_db *db = NULL;
    if (ps_db_open(path, &db, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(ps_db_nops(db), s->n - 1); /* int4 skipped */
    for (size_t i = 0; i < ps_db_nops(db); i++) {
        const ps_db_row *r = ps_db_op_at(db, i);
        char d[320];
        ps_op_describe(&r->op, d, sizeof d);
        print_message("  %-50s %-8s %-9s median %.3g s  events %.3g s  (%d repeats)\n", d,
                      r->backend, r->timer, r->median_s, r->event_median_s, r->repeats);
        assert_string_equal(r->timer, "cupti");
        assert_true(r->median_s > 0 && r->median_s < 1);
        assert_true(r->p10_s <= r->median_s && r->median_s <= r->p90_s);
        assert_true(r->repeats >= 10);
        /* Events bracket the kernels: never much shorter than the span. */
        assert_true(r->event_median_s > 0.5 * r->median_s);
    }
    assert_true(ps_db_nkernels(db) >= 10 * ps_db_nops(db));
    for (size_t i = 0; i < ps_db_nkernels(db); i++) {
        ps_db_kernel k;
        assert_int_equal(ps_db_kernel_at(db, i, &k), 0);
        assert_true(k.op >= 0 && (size_t)k.op < ps_db_nops(db));
        assert_true(k.end_ns >= k.start_ns);
        assert_non_null(k.name);
    }
    ps_db_close(db);
    hid_t f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    ps_table *t = NULL;
    assert_int_equal(ps_h5_table_read(f, "/tracer_overhead", &t, &e), 0);
    assert_int_equal(t->nrows, s->n - 1);
    ps_table_free(t);
    H5Fclose(f);
    ps_suite_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ext_id_roundtrip),
        cmocka_unit_test(test_trace_interning),
        cmocka_unit_test(test_join_attribution),
        cmocka_unit_test(test_join_latest_record_wins),
        cmocka_unit_test(test_db_kernel_table),
        cmocka_unit_test(test_backend_support),
        cmocka_unit_test(test_backend_without_gpu),
        cmocka_unit_test(test_gpu_tracer_attribution),
        cmocka_unit_test(test_gpu_profile_tiny_suite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
