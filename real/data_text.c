/* The byte-level fortunes corpus: see real/data_text.h. */
#include "real/data_text.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

const char *text_dir(void)
{
    const char *d = getenv("PLANSIM_TEXT_DIR");
    return d && *d ? d : TEXT_DEFAULT_DIR;
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static int buf_put(buf *b, const char *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Split one file's text into records on "%" lines; append each record to
 * the split its global index selects, followed by an empty line. */
static int add_file(const char *text, size_t len, buf out[2], int64_t *rec)
{
    size_t i = 0;
    while (i < len) {
        /* one record: lines up to a "%" line or the end */
        size_t start = i, end = i;
        int closed = 0;
        while (i < len) {
            size_t ls = i;
            while (i < len && text[i] != '\n')
                i++;
            size_t le = i;
            if (i < len)
                i++; /* the newline */
            if (le - ls == 1 && text[ls] == '%') {
                end = ls;
                closed = 1;
                break;
            }
            end = i;
        }
        (void)closed;
        if (end > start) {
            buf *b = &out[*rec % 10 == 9 ? TEXT_VAL : TEXT_TRAIN];
            if (buf_put(b, text + start, end - start))
                return -1;
            if (text[end - 1] != '\n' && buf_put(b, "\n", 1))
                return -1;
            if (buf_put(b, "\n", 1))
                return -1;
            (*rec)++;
        }
    }
    return 0;
}

int text_load(const char *dir, text_corpus *c, ps_err *e)
{
    memset(c, 0, sizeof *c);
    if (!dir)
        dir = text_dir();
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    DIR *d = opendir(dir);
    if (!d)
        return ps_errf(e, PS_EINPUT,
                       "no text corpus under %s (%s): install the Debian package " TEXT_PACKAGE,
                       dir, strerror(errno));
    char **names = NULL;
    size_t nn = 0, cn = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || ends_with(nm, ".dat") || ends_with(nm, ".u8"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        struct stat st;
        if (lstat(path, &st) || !S_ISREG(st.st_mode))
            continue; /* symlinks (duplicates), folders, devices */
        if (nn == cn) {
            cn = cn ? 2 * cn : 64;
            char **p = realloc(names, cn * sizeof *p);
            if (!p) {
                rc = ps_errf(e, PS_ERUN, "%s: out of memory", dir);
                goto out;
            }
            names = p;
        }
        if (!(names[nn] = strdup(nm))) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", dir);
            goto out;
        }
        nn++;
    }
    if (nn)
        qsort(names, nn, sizeof *names, cmp_str);
    buf out[2] = {{0}, {0}};
    for (size_t i = 0; i < nn && !rc; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        ps_err fe;
        char *text = ps_file_read(path, &len, &fe);
        if (!text)
            continue; /* unreadable: skipped like a non-text file */
        if (len > 0) {
            if (add_file(text, len, out, &c->nrecords))
                rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
            c->nfiles++;
        }
        free(text);
    }
    c->data[0] = out[0].p, c->n[0] = out[0].n;
    c->data[1] = out[1].p, c->n[1] = out[1].n;
    if (!rc && (c->nfiles == 0 || c->n[0] < 64 || c->n[1] < 64))
        rc = ps_errf(e, PS_EINPUT,
                     "no text corpus under %s (%d readable files, %zu + %zu bytes): install "
                     "the Debian package " TEXT_PACKAGE,
                     dir, c->nfiles, c->n[0], c->n[1]);
out:
    closedir(d);
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (rc)
        text_free(c);
    return rc;
}

void text_free(text_corpus *c)
{
    if (!c)
        return;
    free(c->data[0]);
    free(c->data[1]);
    memset(c, 0, sizeof *c);
}

int text_batch(const text_corpus *c, text_split s, rt_rng *r, int64_t B, int64_t T,
               int32_t *tokens, int32_t *targets, ps_err *e)
{
    if ((s != TEXT_TRAIN && s != TEXT_VAL) || B < 1 || T < 1)
        return ps_errf(e, PS_EINPUT, "text_batch: bad split %d or shape B %lld T %lld", (int)s,
                       (long long)B, (long long)T);
    if (c->n[s] < (size_t)T + 1)
        return ps_errf(e, PS_EINPUT, "text_batch: %s split has %zu bytes, a window needs %lld",
                       s == TEXT_TRAIN ? "train" : "val", c->n[s], (long long)T + 1);
    const uint64_t span = c->n[s] - (size_t)T; /* window starts [0, n - T - 1] */
    for (int64_t b = 0; b < B; b++) {
        const uint8_t *w = c->data[s] + rt_rng_next(r) % span;
        for (int64_t t = 0; t < T; t++) {
            tokens[b * T + t] = w[t];
            if (targets)
                targets[b * T + t] = w[t + 1];
        }
    }
    return 0;
}
