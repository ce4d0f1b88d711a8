/* common/h5io: tables through HDF5 and back, appends across chunks,
 * attributes, the .partial protocol, damaged files, and that h5dump (the
 * user's first tool) reads what we write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/util.h"

static char dir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ps_test_h5io_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    /* Every hid_t closed: a leaked handle keeps a file open behind our back. */
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
        fprintf(stderr, "HDF5 objects left open\n");
        return -1;
    }
    return rc;
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* A table with one column of each kind; row r holds values derived from
 * r + base so that appends can be checked row by row. */
static ps_table *make_table(size_t nrows, size_t base)
{
    ps_table *t = ps_table_new();
    assert_int_equal(ps_table_add_col(t, "point", PS_COL_INT, ""), 0);
    assert_int_equal(ps_table_add_col(t, "time_s", PS_COL_DOUBLE, "s"), 1);
    assert_int_equal(ps_table_add_col(t, "planner", PS_COL_STR, ""), 2);
    assert_int_equal(ps_table_add_col(t, "bytes", PS_COL_INT, "B"), 3);
    for (size_t i = 0; i < nrows; i++) {
        size_t r = ps_table_add_row(t), v = base + i;
        ps_table_set_i(t, r, 0, (int64_t)v);
        ps_table_set_d(t, r, 1, 0.5 * (double)v + 1e-3);
        char s[PS_STR_LEN];
        snprintf(s, sizeof s, "planner-%zu", v % 7);
        ps_table_set_s(t, r, 2, s);
        ps_table_set_i(t, r, 3, (int64_t)v * 1000000007LL);
    }
    return t;
}

static void check_rows(const ps_table *t, size_t from, size_t n, size_t base)
{
    for (size_t i = 0; i < n; i++) {
        size_t r = from + i, v = base + i;
        assert_int_equal(ps_table_get_i(t, r, 0), (int64_t)v);
        assert_true(ps_table_get_d(t, r, 1) == 0.5 * (double)v + 1e-3);
        char s[PS_STR_LEN];
        snprintf(s, sizeof s, "planner-%zu", v % 7);
        assert_string_equal(ps_table_get_s(t, r, 2), s);
        assert_int_equal(ps_table_get_i(t, r, 3), (int64_t)v * 1000000007LL);
    }
}

static hid_t create_file(const char *name, char *path, size_t n)
{
    path_in(path, n, name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* common/util's FNV-1a-64 against the published test vectors (the same
 * function as the weight files' checksum) */
static void test_fnv1a(void **state)
{
    (void)state;
    assert_true(ps_fnv1a_str(PS_FNV1A_OFFSET, "") == 0xcbf29ce484222325ULL);
    assert_true(ps_fnv1a_str(PS_FNV1A_OFFSET, "a") == 0xaf63dc4c8601ec8cULL);
    assert_true(ps_fnv1a_str(PS_FNV1A_OFFSET, "foobar") == 0x85944171f73967e8ULL);
    assert_true(ps_fnv1a(PS_FNV1A_OFFSET, "foobar", 6) == 0x85944171f73967e8ULL);
    /* a u64 is its eight bytes, least significant first */
    const unsigned char le[8] = {0x66, 0x6f, 0x6f, 0x62, 0x61, 0x72, 0, 0};
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | le[i];
    assert_true(ps_fnv1a_u64(PS_FNV1A_OFFSET, v) == ps_fnv1a(PS_FNV1A_OFFSET, le, 8));
    assert_true(ps_double_bits(1.0) == 0x3ff0000000000000ULL);
    assert_true(ps_double_bits(-0.0) == 0x8000000000000000ULL);
}

static void test_table_roundtrip(void **state)
{
    (void)state;
    char path[512];
    ps_err e = {0};
    hid_t f = create_file("roundtrip.h5", path, sizeof path);
    ps_table *t = make_table(10, 0);
    /* A long string is truncated to PS_STR_LEN-1 characters, not overrun. */
    char longs[100];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    ps_table_set_s(t, 9, 2, longs);
    assert_int_equal(ps_h5_table_write(f, "/study/points", t, &e), 0);
    assert_int_equal(H5Fclose(f), 0);

    f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    ps_table *r = NULL;
    assert_int_equal(ps_h5_table_read(f, "/study/points", &r, &e), 0);
    assert_int_equal(r->ncols, 4);
    assert_int_equal(r->nrows, 10);
    const char *names[] = {"point", "time_s", "planner", "bytes"};
    const ps_col_type types[] = {PS_COL_INT, PS_COL_DOUBLE, PS_COL_STR, PS_COL_INT};
    const char *units[] = {"", "s", "", "B"};
    for (int c = 0; c < 4; c++) {
        assert_string_equal(r->cols[c].name, names[c]);
        assert_int_equal(r->cols[c].type, types[c]);
        assert_string_equal(r->cols[c].units, units[c]);
    }
    check_rows(r, 0, 9, 0);
    assert_int_equal(strlen(ps_table_get_s(r, 9, 2)), PS_STR_LEN - 1);

    /* A missing dataset and a non-table are clear input errors. */
    ps_table *none = NULL;
    assert_int_equal(ps_h5_table_read(f, "/study/nothing", &none, &e), PS_EINPUT);
    assert_null(none);
    assert_non_null(strstr(e.msg, "/study/nothing"));
    assert_int_equal(ps_h5_exists(f, "/study/points"), 1);
    assert_int_equal(ps_h5_exists(f, "/nogroup/points"), 0);
    assert_int_equal(ps_h5_exists(f, "/"), 1);
    H5Fclose(f);
    ps_table_free(t);
    ps_table_free(r);
}

static void test_write_replaces(void **state)
{
    (void)state;
    char path[512];
    ps_err e = {0};
    hid_t f = create_file("replace.h5", path, sizeof path);
    ps_table *a = make_table(300, 0), *b = make_table(3, 50);
    assert_int_equal(ps_h5_table_write(f, "/s/t", a, &e), 0);
    assert_int_equal(ps_h5_table_write(f, "/s/t", b, &e), 0);
    ps_table *r = NULL;
    assert_int_equal(ps_h5_table_read(f, "/s/t", &r, &e), 0);
    assert_int_equal(r->nrows, 3);
    check_rows(r, 0, 3, 50);
    ps_table_free(r);

    /* An empty table is a dataset with zero rows and all its columns. */
    ps_table *empty = make_table(0, 0);
    assert_int_equal(ps_h5_table_write(f, "/s/empty", empty, &e), 0);
    assert_int_equal(ps_h5_table_read(f, "/s/empty", &r, &e), 0);
    assert_int_equal(r->nrows, 0);
    assert_int_equal(r->ncols, 4);
    assert_string_equal(r->cols[1].units, "s");
    ps_table_free(r);

    /* Units written by another tool as ASCII (not UTF-8) strings. */
    hid_t d = H5Dopen2(f, "/s/t", H5P_DEFAULT);
    H5Adelete(d, "units");
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    hsize_t n4 = 4;
    hid_t sp = H5Screate_simple(1, &n4, NULL);
    const char *u[4] = {"", "ms", "", "KiB"};
    hid_t ua = H5Acreate2(d, "units", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(H5Awrite(ua, st, u), 0);
    H5Aclose(ua);
    H5Sclose(sp);
    H5Tclose(st);
    H5Dclose(d);
    assert_int_equal(ps_h5_table_read(f, "/s/t", &r, &e), 0);
    assert_string_equal(r->cols[1].units, "ms");
    assert_string_equal(r->cols[3].units, "KiB");
    ps_table_free(r);
    ps_table_free(empty);
    ps_table_free(a);
    ps_table_free(b);
    H5Fclose(f);
}

/* Chunks hold 256 rows: appends of 100, 200, 1 and 300 rows cross the 256,
 * 512 boundaries mid-append; `from` picks a slice of the source table. */
static void test_append_chunks(void **state)
{
    (void)state;
    char path[512];
    ps_err e = {0};
    hid_t f = create_file("append.h5", path, sizeof path);
    ps_table *src = make_table(700, 0);
    const size_t sizes[] = {100, 200, 1, 300, 0, 99};
    size_t at = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        assert_int_equal(ps_h5_table_append(f, "/g/deep/t", src, at, sizes[k], &e), 0);
        at += sizes[k];
    }
    assert_int_equal(at, 700);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ps_table *r = NULL;
    assert_int_equal(ps_h5_table_read(f, "/g/deep/t", &r, &e), 0);
    assert_int_equal(r->nrows, 700);
    check_rows(r, 0, 700, 0);
    ps_table_free(r);

    /* Appending a table with other columns is refused, naming the path. */
    ps_table *other = ps_table_new();
    ps_table_add_col(other, "x", PS_COL_DOUBLE, "");
    ps_table_add_row(other);
    assert_int_equal(ps_h5_table_append(f, "/g/deep/t", other, 0, 1, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "/g/deep/t"));
    ps_table_free(other);
    ps_table_free(src);
    H5Fclose(f);

    /* Reopened, the dataset keeps growing. */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    ps_table *more = make_table(5, 700);
    assert_int_equal(ps_h5_table_append(f, "/g/deep/t", more, 0, 5, &e), 0);
    assert_int_equal(ps_h5_table_read(f, "/g/deep/t", &r, &e), 0);
    assert_int_equal(r->nrows, 705);
    check_rows(r, 0, 705, 0);
    ps_table_free(r);
    ps_table_free(more);
    H5Fclose(f);
}

static void test_attributes(void **state)
{
    (void)state;
    char path[512];
    ps_err e = {0};
    hid_t f = create_file("attrs.h5", path, sizeof path);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "config", "{\"study\": \"pipeline\"}\n", &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "host", "node-1", &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "host", "node-2 \xc3\xa9", &e), 0); /* replace */
    assert_int_equal(ps_h5_attr_set_double(f, "/", "alpha_s", 1.25e-6, &e), 0);
    assert_int_equal(ps_h5_attr_set_int(f, "/", "seed", 1234567890123LL, &e), 0);
    ps_table *t = make_table(1, 0);
    assert_int_equal(ps_h5_table_write(f, "/paper/fig6", t, &e), 0);
    ps_table_free(t);
    assert_int_equal(ps_h5_attr_set_str(f, "/paper/fig6", "source", "GraphPipe Fig. 6", &e), 0);
    /* A fixed-length string attribute, as other tools write them. */
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(st, 8);
    hid_t a = H5Acreate2(f, "fixed", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(H5Awrite(a, st, "abcdefgh"), 0);
    H5Aclose(a);
    H5Tclose(st);
    /* A variable-length ASCII string (C programs' default; HDF5 cannot
     * convert it to UTF-8, so it must be read in its own cset). */
    st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    const char *ascii = "ascii text";
    a = H5Acreate2(f, "ascii", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(H5Awrite(a, st, &ascii), 0);
    H5Aclose(a);
    H5Sclose(sp);
    /* Arrays where a single value is expected: refused, not overrun. */
    hsize_t n8 = 8;
    sp = H5Screate_simple(1, &n8, NULL);
    const char *many[8] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    a = H5Acreate2(f, "strings", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(H5Awrite(a, st, many), 0);
    H5Aclose(a);
    double zeros[8] = {0};
    a = H5Acreate2(f, "doubles", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(H5Awrite(a, H5T_NATIVE_DOUBLE, zeros), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    H5Fclose(f);

    f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    char *s = NULL;
    assert_int_equal(ps_h5_attr_get_str(f, "/", "config", &s, &e), 0);
    assert_string_equal(s, "{\"study\": \"pipeline\"}\n");
    free(s);
    assert_int_equal(ps_h5_attr_get_str(f, "/", "host", &s, &e), 0);
    assert_string_equal(s, "node-2 \xc3\xa9");
    free(s);
    assert_int_equal(ps_h5_attr_get_str(f, "/", "fixed", &s, &e), 0);
    assert_string_equal(s, "abcdefgh");
    free(s);
    assert_int_equal(ps_h5_attr_get_str(f, "/paper/fig6", "source", &s, &e), 0);
    assert_string_equal(s, "GraphPipe Fig. 6");
    free(s);
    assert_int_equal(ps_h5_attr_get_str(f, "/", "ascii", &s, &e), 0);
    assert_string_equal(s, "ascii text");
    free(s);
    assert_int_equal(ps_h5_attr_get_str(f, "/", "strings", &s, &e), PS_EINPUT);
    assert_null(s);
    double d = 0;
    assert_int_equal(ps_h5_attr_get_double(f, "/", "doubles", &d, &e), PS_EINPUT);
    assert_int_equal(ps_h5_attr_get_double(f, "/", "alpha_s", &d, &e), 0);
    assert_true(d == 1.25e-6);
    assert_int_equal(ps_h5_attr_get_double(f, "/", "seed", &d, &e), 0); /* int64 → double */
    assert_true(d == 1234567890123.0);

    assert_int_equal(ps_h5_attr_get_str(f, "/", "nope", &s, &e), PS_EINPUT);
    assert_null(s);
    assert_non_null(strstr(e.msg, "nope"));
    assert_int_equal(ps_h5_attr_get_str(f, "/", "seed", &s, &e), PS_EINPUT); /* not a string */
    assert_int_equal(ps_h5_attr_get_double(f, "/", "nope", &d, &e), PS_EINPUT);
    H5Fclose(f);
}

static int count_visit(hid_t file, const char *path, int is_dataset, void *user)
{
    (void)file;
    char *log = user;
    size_t n = strlen(log);
    snprintf(log + n, 1024 - n, "%s%s%s", n ? " " : "", path, is_dataset ? "*" : "");
    return 0;
}

static void test_walk(void **state)
{
    (void)state;
    char path[512];
    ps_err e = {0};
    hid_t f = create_file("walk.h5", path, sizeof path);
    ps_table *t = make_table(2, 0);
    ps_h5_table_write(f, "/pipeline/points", t, &e);
    ps_h5_table_write(f, "/pipeline/summary", t, &e);
    ps_h5_table_write(f, "/paper/fig6", t, &e);
    ps_table_free(t);
    char log[1024] = "";
    assert_int_equal(ps_h5_walk(f, count_visit, log, &e), 0);
    assert_string_equal(log, "/paper /paper/fig6* /pipeline /pipeline/points* /pipeline/summary*");
    H5Fclose(f);
}

static void check_row_count(const char *path, size_t want)
{
    ps_err e = {0};
    hid_t f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    ps_table *r = NULL;
    assert_int_equal(ps_h5_table_read(f, "/s/points", &r, &e), 0);
    assert_int_equal(r->nrows, want);
    check_rows(r, 0, want, 0);
    ps_table_free(r);
    H5Fclose(f);
}

/* NAME.h5.partial while running, NAME.h5 only after commit; no silent
 * overwrite; --resume continues the partial file. */
static void test_partial_protocol(void **state)
{
    (void)state;
    char path[512], partial[600];
    path_in(path, sizeof path, "run.h5");
    snprintf(partial, sizeof partial, "%s.partial", path);
    ps_err e = {0};
    int resumed = -1;
    ps_table *src = make_table(600, 0);

    ps_h5 *h = ps_h5_open_result(path, 0, 0, &resumed, &e);
    assert_non_null(h);
    assert_int_equal(resumed, 0);
    assert_string_equal(ps_h5_partial_path(h), partial);
    assert_true(ps_file_exists(partial));
    assert_false(ps_file_exists(path));
    assert_int_equal(ps_h5_table_append(ps_h5_file(h), "/s/points", src, 0, 200, &e), 0);
    assert_int_equal(ps_h5_attr_set_str(ps_h5_file(h), "/", "study", "s", &e), 0);
    assert_int_equal(ps_h5_commit(h, &e), 0);
    assert_true(ps_file_exists(path));
    assert_false(ps_file_exists(partial));
    check_row_count(path, 200);

    /* The final file exists: refused without force, named in the message. */
    h = ps_h5_open_result(path, 0, 0, &resumed, &e);
    assert_null(h);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "--force"));
    /* ... and resume has nothing to resume. */
    assert_null(ps_h5_open_result(path, 0, 1, &resumed, &e));
    assert_int_equal(e.code, PS_EINPUT);

    /* With force: a new partial; interrupted after 100 rows. */
    h = ps_h5_open_result(path, 1, 0, &resumed, &e);
    assert_non_null(h);
    assert_int_equal(ps_h5_table_append(ps_h5_file(h), "/s/points", src, 0, 100, &e), 0);
    ps_h5_close_partial(h);
    assert_true(ps_file_exists(partial));
    check_row_count(path, 200); /* the old result is untouched meanwhile */

    /* Resume: same partial, appending continues (crossing chunk 256). */
    h = ps_h5_open_result(path, 1, 1, &resumed, &e);
    assert_non_null(h);
    assert_int_equal(resumed, 1);
    assert_int_equal(ps_h5_table_append(ps_h5_file(h), "/s/points", src, 100, 250, &e), 0);
    ps_h5_close_partial(h);
    h = ps_h5_open_result(path, 1, 1, &resumed, &e);
    assert_non_null(h);
    assert_int_equal(resumed, 1);
    assert_int_equal(ps_h5_table_append(ps_h5_file(h), "/s/points", src, 350, 250, &e), 0);
    assert_int_equal(ps_h5_commit(h, &e), 0);
    assert_false(ps_file_exists(partial));
    check_row_count(path, 600);

    /* Without resume a stale partial is discarded, not appended to. */
    h = ps_h5_open_result(path, 1, 0, &resumed, &e);
    assert_int_equal(ps_h5_table_append(ps_h5_file(h), "/s/points", src, 0, 10, &e), 0);
    ps_h5_close_partial(h);
    h = ps_h5_open_result(path, 1, 0, &resumed, &e);
    assert_non_null(h);
    assert_int_equal(resumed, 0);
    assert_int_equal(ps_h5_exists(ps_h5_file(h), "/s/points"), 0);
    ps_h5_close_partial(h);
    remove(partial);
    ps_table_free(src);
}

static void truncate_copy(const char *from, const char *to)
{
    size_t len = 0;
    char *data = ps_file_read(from, &len, NULL);
    assert_non_null(data);
    assert_true(len > 1024);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len / 2, f), len / 2);
    fclose(f);
    free(data);
}

static void test_damaged_files(void **state)
{
    (void)state;
    char path[512], cut[512], text[512], missing[512];
    ps_err e = {0};
    hid_t f = create_file("whole.h5", path, sizeof path);
    ps_table *t = make_table(2000, 0);
    ps_h5_table_write(f, "/s/points", t, &e);
    ps_h5_attr_set_str(f, "/", "config", "{}", &e);
    ps_table_free(t);
    H5Fclose(f);

    path_in(cut, sizeof cut, "cut.h5");
    truncate_copy(path, cut);
    ps_err_clear(&e);
    assert_true(ps_h5_open_read(cut, &e) < 0);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, cut));

    path_in(text, sizeof text, "text.h5");
    assert_int_equal(ps_file_write_atomic(text, "not hdf5\n", 9, &e), 0);
    ps_err_clear(&e);
    assert_true(ps_h5_open_read(text, &e) < 0);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, text));

    path_in(missing, sizeof missing, "missing.h5");
    ps_err_clear(&e);
    assert_true(ps_h5_open_read(missing, &e) < 0);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, missing));

    /* A truncated partial cannot be resumed; the message says what to do. */
    char base[512], partial[600];
    path_in(base, sizeof base, "cutrun.h5");
    snprintf(partial, sizeof partial, "%s.partial", base);
    truncate_copy(path, partial);
    int resumed;
    assert_null(ps_h5_open_result(base, 0, 1, &resumed, &e));
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, partial));
}

static void test_h5dump_reads(void **state)
{
    (void)state;
    if (system("command -v h5dump >/dev/null 2>&1") != 0)
        skip(); /* hdf5-tools not installed */
    char path[512], out[512], cmd[1200];
    ps_err e = {0};
    hid_t f = create_file("dump.h5", path, sizeof path);
    ps_table *t = make_table(3, 0);
    assert_int_equal(ps_h5_table_write(f, "/pipeline/points", t, &e), 0);
    ps_h5_attr_set_str(f, "/", "study", "pipeline", &e);
    ps_h5_attr_set_int(f, "/", "seed", 7, &e);
    ps_table_free(t);
    H5Fclose(f);
    path_in(out, sizeof out, "dump.txt");
    snprintf(cmd, sizeof cmd, "h5dump -H '%s' > '%s' 2>&1", path, out);
    assert_int_equal(system(cmd), 0);
    char *txt = ps_file_read(out, NULL, &e);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "DATASET \"points\""));
    assert_non_null(strstr(txt, "\"time_s\""));
    assert_non_null(strstr(txt, "ATTRIBUTE \"units\""));
    assert_non_null(strstr(txt, "ATTRIBUTE \"study\""));
    free(txt);
    /* The data too, not just the header. */
    snprintf(cmd, sizeof cmd, "h5dump -d /pipeline/points '%s' > '%s' 2>&1", path, out);
    assert_int_equal(system(cmd), 0);
    txt = ps_file_read(out, NULL, &e);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "\"planner-2\""));
    free(txt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_roundtrip), cmocka_unit_test(test_write_replaces),
        cmocka_unit_test(test_append_chunks),   cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_walk),            cmocka_unit_test(test_partial_protocol),
        cmocka_unit_test(test_damaged_files),   cmocka_unit_test(test_h5dump_reads),
        cmocka_unit_test(test_fnv1a),
    };
    return cmocka_run_group_tests_name("h5io", tests, setup, teardown);
}
