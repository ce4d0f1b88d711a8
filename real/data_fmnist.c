/* Fashion-MNIST IDX (gzip) reader; see data_fmnist.h. */
#include "real/data_fmnist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_IMAGES 2051u
#define IDX_LABELS 2049u
/* More than any real IDX file; guards the allocation against a bad header. */
#define IDX_MAX_BYTES (1ll << 31)

static const char hint[] = "install the Debian package " FMNIST_PACKAGE;

const char *fmnist_dir(void)
{
    const char *d = getenv("PLANSIM_FMNIST_DIR");
    return d && *d ? d : FMNIST_DEFAULT_DIR;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Read exactly n bytes; 0 on success, else an error naming path and what. */
static int read_exact(gzFile f, const char *path, void *buf, int64_t n, const char *what,
                      ps_err *e)
{
    unsigned char *p = buf;
    int64_t done = 0;
    while (done < n) {
        int64_t chunk = n - done > (1 << 30) ? (1 << 30) : n - done;
        int got = gzread(f, p + done, (unsigned)chunk);
        if (got < 0) {
            int zerr = 0;
            const char *m = gzerror(f, &zerr);
            return ps_errf(e, PS_EINPUT, "%s: corrupt gzip data while reading %s (%s); %s", path,
                           what, m ? m : "zlib error", hint);
        }
        if (got == 0)
            return ps_errf(e, PS_EINPUT,
                           "%s: truncated: %s: %lld of %lld bytes present; %s", path, what,
                           (long long)done, (long long)n, hint);
        done += got;
    }
    return 0;
}

/* Open, check the magic, read the dims (ndim of them after the magic). */
static gzFile open_idx(const char *path, uint32_t magic, int ndim, uint32_t *dims, ps_err *e)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ps_errf(e, PS_EINPUT, "%s: cannot open (%s); %s", path,
                       errno ? strerror(errno) : "gzopen failed", hint),
               NULL;
    unsigned char h[16];
    if (read_exact(f, path, h, 4 + 4 * ndim, "the IDX header", e)) {
        gzclose(f);
        return NULL;
    }
    uint32_t m = be32(h);
    if (m != magic) {
        gzclose(f);
        return ps_errf(e, PS_EINPUT,
                       "%s: bad IDX magic %u (expected %u for %s); the file is not a "
                       "Fashion-MNIST %s file; %s",
                       path, m, magic, magic == IDX_IMAGES ? "images" : "labels",
                       magic == IDX_IMAGES ? "images" : "labels", hint),
               NULL;
    }
    for (int i = 0; i < ndim; i++)
        dims[i] = be32(h + 4 + 4 * i);
    return f;
}

/* After the payload: the file must end there. */
static int check_end(gzFile f, const char *path, ps_err *e)
{
    unsigned char extra;
    int got = gzread(f, &extra, 1);
    if (got < 0) {
        int zerr = 0;
        const char *m = gzerror(f, &zerr);
        return ps_errf(e, PS_EINPUT, "%s: corrupt gzip data at the end (%s); %s", path,
                       m ? m : "zlib error", hint);
    }
    if (got > 0)
        return ps_errf(e, PS_EINPUT, "%s: more data than the IDX header declares; %s", path,
                       hint);
    return 0;
}

int fmnist_read_idx_images(const char *path, uint8_t **data, int64_t *n, int *rows, int *cols,
                           ps_err *e)
{
    uint32_t d[3];
    *data = NULL;
    gzFile f = open_idx(path, IDX_IMAGES, 3, d, e);
    if (!f)
        return e ? e->code : PS_EINPUT;
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[1] > 4096 || d[2] > 4096) {
        gzclose(f);
        return ps_errf(e, PS_EINPUT, "%s: bad IDX dimensions %u x %u x %u; %s", path, d[0], d[1],
                       d[2], hint);
    }
    int64_t bytes = (int64_t)d[0] * d[1] * d[2];
    if (bytes > IDX_MAX_BYTES) {
        gzclose(f);
        return ps_errf(e, PS_EINPUT, "%s: IDX header declares %lld bytes, too many; %s", path,
                       (long long)bytes, hint);
    }
    uint8_t *buf = malloc((size_t)bytes);
    if (!buf) {
        gzclose(f);
        return ps_errf(e, PS_ERUN, "%s: out of memory for %lld bytes", path, (long long)bytes);
    }
    char what[96];
    snprintf(what, sizeof what, "%u images of %u x %u", d[0], d[1], d[2]);
    if (read_exact(f, path, buf, bytes, what, e) || check_end(f, path, e)) {
        free(buf);
        gzclose(f);
        return e ? e->code : PS_EINPUT;
    }
    gzclose(f);
    *data = buf;
    *n = d[0];
    if (rows)
        *rows = (int)d[1];
    if (cols)
        *cols = (int)d[2];
    return 0;
}

int fmnist_read_idx_labels(const char *path, uint8_t **data, int64_t *n, ps_err *e)
{
    uint32_t d[1];
    *data = NULL;
    gzFile f = open_idx(path, IDX_LABELS, 1, d, e);
    if (!f)
        return e ? e->code : PS_EINPUT;
    if (d[0] == 0 || d[0] > IDX_MAX_BYTES) {
        gzclose(f);
        return ps_errf(e, PS_EINPUT, "%s: bad IDX label count %u; %s", path, d[0], hint);
    }
    uint8_t *buf = malloc(d[0]);
    if (!buf) {
        gzclose(f);
        return ps_errf(e, PS_ERUN, "%s: out of memory", path);
    }
    char what[64];
    snprintf(what, sizeof what, "%u labels", d[0]);
    if (read_exact(f, path, buf, d[0], what, e) || check_end(f, path, e)) {
        free(buf);
        gzclose(f);
        return e ? e->code : PS_EINPUT;
    }
    gzclose(f);
    for (uint32_t i = 0; i < d[0]; i++)
        if (buf[i] >= FMNIST_CLASSES) {
            int v = buf[i];
            free(buf);
            return ps_errf(e, PS_EINPUT, "%s: label %u is %d, outside [0, %d); %s", path, i, v,
                           FMNIST_CLASSES, hint);
        }
    *data = buf;
    *n = d[0];
    return 0;
}

int fmnist_load(const char *dir, const char *split, int64_t max_n, fmnist_set *s, ps_err *e)
{
    memset(s, 0, sizeof *s);
    if (!dir)
        dir = fmnist_dir();
    if (!strcmp(split, "test"))
        split = "t10k";
    if (strcmp(split, "train") && strcmp(split, "t10k"))
        return ps_errf(e, PS_EINPUT, "fmnist: split '%s' is not train or t10k", split);
    snprintf(s->images_path, sizeof s->images_path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(s->labels_path, sizeof s->labels_path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    int64_t ni = 0, nl = 0;
    if (fmnist_read_idx_images(s->images_path, &s->images, &ni, &s->rows, &s->cols, e))
        return e ? e->code : PS_EINPUT;
    if (fmnist_read_idx_labels(s->labels_path, &s->labels, &nl, e)) {
        fmnist_free(s);
        return e ? e->code : PS_EINPUT;
    }
    if (ni != nl) {
        int rc = ps_errf(e, PS_EINPUT, "%s: %lld labels but %s holds %lld images; %s",
                         s->labels_path, (long long)nl, s->images_path, (long long)ni, hint);
        fmnist_free(s);
        return rc;
    }
    s->n = max_n > 0 && max_n < ni ? max_n : ni;
    return 0;
}

void fmnist_free(fmnist_set *s)
{
    if (!s)
        return;
    free(s->images);
    free(s->labels);
    s->images = s->labels = NULL;
    s->n = 0;
}

int fmnist_histogram(const fmnist_set *s, int64_t counts[FMNIST_CLASSES], ps_err *e)
{
    memset(counts, 0, sizeof(int64_t) * FMNIST_CLASSES);
    for (int64_t i = 0; i < s->n; i++) {
        if (s->labels[i] >= FMNIST_CLASSES)
            return ps_errf(e, PS_EINPUT, "%s: label %lld is %d", s->labels_path, (long long)i,
                           s->labels[i]);
        counts[s->labels[i]]++;
    }
    return 0;
}

#define BATCH_BODY(T)                                                                             \
    int64_t hw = (int64_t)s->rows * s->cols;                                                      \
    const T scale = (T)(1.0 / (255.0 * FMNIST_STD)), shift = (T)(FMNIST_MEAN / FMNIST_STD);       \
    for (int64_t b = 0; b < n; b++) {                                                             \
        int64_t i = idx ? idx[b] : first + b;                                                     \
        const uint8_t *src = s->images + i * hw;                                                  \
        T *dst = x + b * hw;                                                                      \
        for (int64_t p = 0; p < hw; p++)                                                          \
            dst[p] = (T)src[p] * scale - shift;                                                   \
        if (y)                                                                                    \
            y[b] = s->labels[i];                                                                  \
    }

void fmnist_batch_f32(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n, float *x,
                      int32_t *y)
{
    BATCH_BODY(float)
}

void fmnist_batch_f64(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n,
                      double *x, int32_t *y)
{
    BATCH_BODY(double)
}
