/* real/data_fmnist: the IDX (gzip) reader on generated fixtures (good, bad
 * magic, truncated, count mismatch, corrupt gzip, out-of-range label, extra
 * bytes, missing file) and on the real Debian files when installed. */
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
#include <zlib.h>

#include "real/data_fmnist.h"

static char tmpdir[256];

static void put32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* Write an IDX file (gzip) to dir/name: magic, dims, then nbytes of payload
 * (pixel p = (p * 7 + 3) % 256; labels i % label_mod, or 7 + i when label_mod < 0). */
static void write_idx(const char *dir, const char *name, uint32_t magic, int ndim,
                      const uint32_t *dims, int64_t nbytes, int label_mod)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    unsigned char h[16];
    put32(h, magic);
    for (int i = 0; i < ndim; i++)
        put32(h + 4 + 4 * i, dims[i]);
    assert_int_equal(gzwrite(f, h, (unsigned)(4 + 4 * ndim)), 4 + 4 * ndim);
    for (int64_t p = 0; p < nbytes; p++) {
        unsigned char v = label_mod > 0   ? (unsigned char)(p % label_mod)
                          : label_mod < 0 ? (unsigned char)(7 + p) /* 10, 11 out of range */
                                          : (unsigned char)((p * 7 + 3) % 256);
        assert_int_equal(gzwrite(f, &v, 1), 1);
    }
    assert_int_equal(gzclose(f), Z_OK);
}

static void make_dir(char *out, size_t n, const char *tag)
{
    snprintf(out, n, "%s/%s", tmpdir, tag);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", out);
    assert_int_equal(system(cmd), 0);
}

/* A good set: 5 images of 4 x 3 and 5 labels. */
static void write_good(const char *dir, const char *split)
{
    char a[64], b[64];
    snprintf(a, sizeof a, "%s-images-idx3-ubyte.gz", split);
    snprintf(b, sizeof b, "%s-labels-idx1-ubyte.gz", split);
    uint32_t di[3] = {5, 4, 3}, dl[1] = {5};
    write_idx(dir, a, 2051, 3, di, 5 * 4 * 3, 0);
    write_idx(dir, b, 2049, 1, dl, 5, 10);
}

static void expect_fail(const char *dir, const char *want1, const char *want2)
{
    fmnist_set s;
    ps_err e = {0};
    assert_int_equal(fmnist_load(dir, "train", 0, &s, &e), PS_EINPUT);
    assert_int_equal(e.code, PS_EINPUT);
    if (!strstr(e.msg, want1) || (want2 && !strstr(e.msg, want2)) ||
        !strstr(e.msg, "dataset-fashion-mnist") || !strstr(e.msg, dir))
        fail_msg("message '%s' lacks '%s' / '%s' / the package / the dir", e.msg, want1,
                 want2 ? want2 : "");
    assert_null(s.images);
    assert_null(s.labels);
}

static void test_good(void **st)
{
    (void)st;
    char dir[512];
    make_dir(dir, sizeof dir, "good");
    write_good(dir, "train");
    write_good(dir, "t10k");
    fmnist_set s;
    ps_err e = {0};
    if (fmnist_load(dir, "train", 0, &s, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.rows, 4);
    assert_int_equal(s.cols, 3);
    for (int p = 0; p < 60; p++)
        assert_int_equal(s.images[p], (p * 7 + 3) % 256);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.labels[i], i);
    int64_t h[FMNIST_CLASSES];
    assert_int_equal(fmnist_histogram(&s, h, &e), 0);
    assert_int_equal(h[0], 1);
    assert_int_equal(h[4], 1);
    assert_int_equal(h[5], 0);
    /* normalised batch of examples 3, 1 */
    int64_t idx[2] = {3, 1};
    float x[24];
    double xd[24];
    int32_t y[2];
    fmnist_batch_f32(&s, idx, 0, 2, x, y);
    fmnist_batch_f64(&s, idx, 0, 2, xd, NULL);
    assert_int_equal(y[0], 3);
    assert_int_equal(y[1], 1);
    for (int p = 0; p < 12; p++) {
        int q = 3 * 12 + p;
        double want = (((q * 7 + 3) % 256) / 255.0 - FMNIST_MEAN) / FMNIST_STD;
        assert_true(fabs(x[p] - want) < 1e-6);
        assert_true(fabs(xd[p] - want) < 1e-12);
    }
    /* max_n and the "test" alias */
    fmnist_free(&s);
    if (fmnist_load(dir, "test", 2, &s, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(s.n, 2);
    fmnist_free(&s);
    /* the environment variable picks the directory */
    setenv("PLANSIM_FMNIST_DIR", dir, 1);
    assert_string_equal(fmnist_dir(), dir);
    if (fmnist_load(NULL, "train", 0, &s, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(s.n, 5);
    fmnist_free(&s);
    unsetenv("PLANSIM_FMNIST_DIR");
    assert_string_equal(fmnist_dir(), FMNIST_DEFAULT_DIR);
    /* a bad split name */
    assert_int_equal(fmnist_load(dir, "val", 0, &s, &e), PS_EINPUT);
}

static void test_bad_magic(void **st)
{
    (void)st;
    char dir[512];
    make_dir(dir, sizeof dir, "magic");
    write_good(dir, "train");
    uint32_t di[3] = {5, 4, 3};
    write_idx(dir, "train-images-idx3-ubyte.gz", 2049, 3, di, 60, 0); /* labels' magic */
    expect_fail(dir, "bad IDX magic 2049", "train-images-idx3-ubyte.gz");
    /* labels with the images' magic */
    write_good(dir, "train");
    uint32_t dl[3] = {5, 4, 3};
    write_idx(dir, "train-labels-idx1-ubyte.gz", 2051, 3, dl, 5, 10);
    expect_fail(dir, "bad IDX magic 2051", "train-labels-idx1-ubyte.gz");
}

static void test_truncated(void **st)
{
    (void)st;
    char dir[512];
    make_dir(dir, sizeof dir, "trunc");
    write_good(dir, "train");
    uint32_t di[3] = {5, 4, 3};
    write_idx(dir, "train-images-idx3-ubyte.gz", 2051, 3, di, 59, 0);
    expect_fail(dir, "truncated", "59 of 60 bytes");
    /* header itself cut short */
    write_good(dir, "train");
    write_idx(dir, "train-labels-idx1-ubyte.gz", 2049, 0, NULL, 2, 10);
    expect_fail(dir, "truncated", "IDX header");
    /* more data than declared */
    write_good(dir, "train");
    write_idx(dir, "train-images-idx3-ubyte.gz", 2051, 3, di, 61, 0);
    expect_fail(dir, "more data than the IDX header declares", NULL);
}

static void test_count_mismatch(void **st)
{
    (void)st;
    char dir[512];
    make_dir(dir, sizeof dir, "count");
    write_good(dir, "train");
    uint32_t dl[1] = {4};
    write_idx(dir, "train-labels-idx1-ubyte.gz", 2049, 1, dl, 4, 10);
    expect_fail(dir, "4 labels but", "holds 5 images");
    /* a label out of range */
    uint32_t d5[1] = {5};
    write_idx(dir, "train-labels-idx1-ubyte.gz", 2049, 1, d5, 5, -1);
    expect_fail(dir, "label", "outside [0, 10)");
    /* zero images */
    write_good(dir, "train");
    uint32_t d0[3] = {0, 4, 3};
    write_idx(dir, "train-images-idx3-ubyte.gz", 2051, 3, d0, 0, 0);
    expect_fail(dir, "bad IDX dimensions", NULL);
}

static void test_corrupt_and_missing(void **st)
{
    (void)st;
    char dir[512], path[600];
    make_dir(dir, sizeof dir, "corrupt");
    write_good(dir, "train");
    /* cut the gzip stream of the images file in half */
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 20);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n / 2, f), n / 2);
    fclose(f);
    fmnist_set s;
    ps_err e = {0};
    assert_int_equal(fmnist_load(dir, "train", 0, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "install the Debian package dataset-fashion-mnist"));
    /* flip bytes in the deflate stream: a data error, not a crash */
    write_good(dir, "train");
    f = fopen(path, "rb");
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t i = 12; i < n - 8; i++)
        buf[i] ^= 0x5a;
    f = fopen(path, "wb");
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
    memset(&e, 0, sizeof e);
    assert_int_equal(fmnist_load(dir, "train", 0, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "dataset-fashion-mnist"));
    /* missing */
    char none[512];
    make_dir(none, sizeof none, "empty");
    expect_fail(none, "cannot open", "train-images-idx3-ubyte.gz");
}

static void test_real_files(void **st)
{
    (void)st;
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", FMNIST_DEFAULT_DIR);
    if (access(p, R_OK)) {
        skip(); /* the Debian package dataset-fashion-mnist is not installed */
    }
    const char *splits[2] = {"train", "t10k"};
    int64_t want[2] = {60000, 10000};
    for (int k = 0; k < 2; k++) {
        fmnist_set s;
        ps_err e = {0};
        if (fmnist_load(FMNIST_DEFAULT_DIR, splits[k], 0, &s, &e))
            fail_msg("%s", e.msg);
        assert_int_equal(s.n, want[k]);
        assert_int_equal(s.rows, 28);
        assert_int_equal(s.cols, 28);
        int64_t h[FMNIST_CLASSES];
        assert_int_equal(fmnist_histogram(&s, h, &e), 0);
        for (int c = 0; c < FMNIST_CLASSES; c++)
            assert_int_equal(h[c], want[k] / 10);
        /* pixel mean of the training set matches the normalisation constant */
        if (k == 0) {
            double sum = 0;
            for (int64_t i = 0; i < s.n * 784; i++)
                sum += s.images[i];
            double mean = sum / (double)(s.n * 784) / 255.0;
            assert_true(fabs(mean - FMNIST_MEAN) < 1e-3);
        }
        fmnist_free(&s);
    }
}

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/plansim_fmnist_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),          cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_truncated),     cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_corrupt_and_missing), cmocka_unit_test(test_real_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
