/* Weights on disk (rt_save / rt_load, real/rt.h).  Format, little-endian:
 *
 *   "PSRT"  u32 version (1)  u32 meta_len  meta bytes  u32 count
 *   count times:  u32 name_len  name bytes  u32 dtype (rt_dtype)  u32 ndim
 *                 i64 shape[ndim]  data (numel * dtype size bytes, row-major)
 *   u64 FNV-1a-64 of every byte before it
 *
 * Written to PATH.tmp and renamed over PATH, so a crash never leaves a
 * half-written file under the real name.  Loading validates everything
 * (magic, checksum, structure, names, shapes) before it writes any param. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "real/backend.h"
#include "real/rt_internal.h"

#define RT_IO_VERSION 1u

/* ------------------------------------------------------------------ save */

typedef struct wr {
    FILE *f;
    uint64_t h;
    int bad;
} wr;

static void put(wr *w, const void *p, size_t n)
{
    if (w->bad || !n)
        return;
    w->h = ps_fnv1a(w->h, p, n);
    if (fwrite(p, 1, n, w->f) != n)
        w->bad = 1;
}

static void put_u32(wr *w, uint32_t v)
{
    unsigned char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u64(wr *w, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 8);
}

static int host_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

int rt_save(const char *path, const rt_param *ps, int n, const char *meta, ps_err *e)
{
    if (!path || !*path)
        return ps_errf(e, PS_EINPUT, "rt_save: path is empty");
    if (!host_le())
        return ps_errf(e, PS_EINPUT, "%s: rt_save supports little-endian hosts only", path);
    if (n < 0 || (n > 0 && !ps))
        return ps_errf(e, PS_EINPUT, "%s: %d params", path, n);
    size_t maxb = 0;
    for (int i = 0; i < n; i++) {
        const rt_tensor *t = &ps[i].w;
        if (!t->data || t->ndim < 1 || t->ndim > RT_MAXDIM ||
            (t->dtype != RT_F32 && t->dtype != RT_F64))
            return ps_errf(e, PS_EINPUT, "%s: param %s: no f32/f64 weights to save", path,
                           ps[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(ps[i].name, ps[j].name))
                return ps_errf(e, PS_EINPUT, "%s: param %s: name appears twice", path,
                               ps[i].name);
        if (rt_on_cuda(t) && rt_tensor_bytes(t) > maxb)
            maxb = rt_tensor_bytes(t);
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ps_errf(e, PS_EINPUT, "%s: path too long", path);
    void *host = maxb ? malloc(maxb) : NULL;
    if (maxb && !host)
        return ps_errf(e, PS_EINPUT, "%s: out of memory", path);
    wr w = {fopen(tmp, "wb"), PS_FNV1A_OFFSET, 0};
    if (!w.f) {
        free(host);
        return ps_errf(e, PS_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
    }
    const char *m = meta ? meta : "";
    put(&w, "PSRT", 4);
    put_u32(&w, RT_IO_VERSION);
    put_u32(&w, (uint32_t)strlen(m));
    put(&w, m, strlen(m));
    put_u32(&w, (uint32_t)n);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const rt_tensor *t = &ps[i].w;
        size_t nl = strnlen(ps[i].name, sizeof ps[i].name);
        put_u32(&w, (uint32_t)nl);
        put(&w, ps[i].name, nl);
        put_u32(&w, (uint32_t)t->dtype);
        put_u32(&w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            put_u64(&w, (uint64_t)t->shape[d]);
        const void *src = t->data;
        if (rt_on_cuda(t)) {
            if (rt_tensor_to_host(t, host, e)) {
                ps_err_prefix(e, "%s: param %s: ", path, ps[i].name);
                rc = PS_EINPUT;
                if (e)
                    e->code = PS_EINPUT;
                break;
            }
            src = host;
        }
        put(&w, src, rt_tensor_bytes(t));
    }
    free(host);
    if (!rc)
        put_u64(&w, w.h);
    if (fflush(w.f))
        w.bad = 1;
    if (fclose(w.f))
        w.bad = 1;
    if (!rc && w.bad)
        rc = ps_errf(e, PS_EINPUT, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path))
        rc = ps_errf(e, PS_EINPUT, "%s: cannot rename %s over it: %s", path, tmp,
                     strerror(errno));
    if (rc)
        remove(tmp);
    return rc;
}

/* ------------------------------------------------------------------ load */

typedef struct rec {
    const char *name;
    uint32_t name_len, dtype, ndim;
    int64_t shape[RT_MAXDIM];
    int64_t numel;
    const unsigned char *data;
} rec;

typedef struct rd {
    const unsigned char *p;
    size_t len, off;
} rd;

static int get(rd *r, void *dst, size_t n)
{
    if (n > r->len - r->off)
        return -1;
    if (dst)
        memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}

static int get_u32(rd *r, uint32_t *v)
{
    unsigned char b[4];
    if (get(r, b, 4))
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int get_u64(rd *r, uint64_t *v)
{
    unsigned char b[8];
    if (get(r, b, 8))
        return -1;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | b[i];
    *v = x;
    return 0;
}

/* Parse the body [0, len) (without the trailer).  Returns 0, or -1 with a
 * reason in why (truncation or a malformed field). */
static int parse(rd *r, uint32_t *version, const char **meta, uint32_t *meta_len, rec **recs,
                 uint32_t *count, char *why, size_t nwhy)
{
    *recs = NULL;
    if (get(r, NULL, 4) || get_u32(r, version) || get_u32(r, meta_len)) {
        snprintf(why, nwhy, "truncated file (%zu bytes): header incomplete", r->len + 8);
        return -1;
    }
    *meta = (const char *)r->p + r->off;
    if (get(r, NULL, *meta_len) || get_u32(r, count)) {
        snprintf(why, nwhy, "truncated file (%zu bytes): header incomplete", r->len + 8);
        return -1;
    }
    if (*count > r->len / 16 + 1) {
        snprintf(why, nwhy, "malformed: %u params in %zu bytes", *count, r->len + 8);
        return -1;
    }
    rec *rs = calloc(*count ? *count : 1, sizeof *rs);
    if (!rs) {
        snprintf(why, nwhy, "out of memory");
        return -1;
    }
    *recs = rs;
    for (uint32_t i = 0; i < *count; i++) {
        rec *q = &rs[i];
        if (get_u32(r, &q->name_len) || q->name_len > 255 ||
            (q->name = (const char *)r->p + r->off, get(r, NULL, q->name_len)) ||
            get_u32(r, &q->dtype) || get_u32(r, &q->ndim)) {
            snprintf(why, nwhy, "truncated file (%zu bytes): record %u incomplete", r->len + 8,
                     i);
            return -1;
        }
        if (q->dtype >= RT_DTYPE_COUNT || q->ndim < 1 || q->ndim > RT_MAXDIM) {
            snprintf(why, nwhy, "malformed: record %u (%.*s): dtype %u, ndim %u", i,
                     (int)q->name_len, q->name, q->dtype, q->ndim);
            return -1;
        }
        q->numel = 1;
        for (uint32_t d = 0; d < q->ndim; d++) {
            uint64_t v;
            if (get_u64(r, &v)) {
                snprintf(why, nwhy, "truncated file (%zu bytes): record %u incomplete",
                         r->len + 8, i);
                return -1;
            }
            if (v < 1 || v > ((uint64_t)1 << 40) || (uint64_t)q->numel > ((uint64_t)1 << 40) / v) {
                snprintf(why, nwhy, "malformed: param %.*s: dim %u is %llu", (int)q->name_len,
                         q->name, d, (unsigned long long)v);
                return -1;
            }
            q->shape[d] = (int64_t)v;
            q->numel *= (int64_t)v;
        }
        q->data = r->p + r->off;
        if (get(r, NULL, (size_t)q->numel * rt_dtype_size((rt_dtype)q->dtype))) {
            snprintf(why, nwhy, "truncated file (%zu bytes): param %.*s needs %zu data bytes",
                     r->len + 8, (int)q->name_len, q->name,
                     (size_t)q->numel * rt_dtype_size((rt_dtype)q->dtype));
            return -1;
        }
    }
    if (r->off != r->len) {
        snprintf(why, nwhy, "malformed: %zu bytes after the last param", r->len - r->off);
        return -1;
    }
    return 0;
}

int rt_load(const char *path, rt_param *ps, int n, char **meta_out, ps_err *e)
{
    if (meta_out)
        *meta_out = NULL;
    if (!path || !*path)
        return ps_errf(e, PS_EINPUT, "rt_load: path is empty");
    if (!host_le())
        return ps_errf(e, PS_EINPUT, "%s: rt_load supports little-endian hosts only", path);
    if (n < 0 || (n > 0 && !ps))
        return ps_errf(e, PS_EINPUT, "%s: %d params", path, n);
    size_t len = 0;
    unsigned char *buf = (unsigned char *)ps_file_read(path, &len, e);
    if (!buf) {
        if (e)
            e->code = PS_EINPUT;
        return PS_EINPUT;
    }
    int rc = 0;
    rec *recs = NULL;
    void *conv = NULL;
    char why[512];
    if (len < 4 || memcmp(buf, "PSRT", 4)) {
        rc = ps_errf(e, PS_EINPUT, "%s: not a weights file (no PSRT magic)", path);
        goto out;
    }
    if (len < 4 + 4 + 4 + 4 + 8) {
        rc = ps_errf(e, PS_EINPUT, "%s: truncated file (%zu bytes)", path, len);
        goto out;
    }
    rd r = {buf, len - 8, 0};
    uint64_t stored = 0;
    for (int i = 7; i >= 0; i--)
        stored = stored << 8 | buf[len - 8 + (size_t)i];
    const int sum_ok = stored == ps_fnv1a(PS_FNV1A_OFFSET, buf, len - 8);
    uint32_t version = 0, meta_len = 0, count = 0;
    const char *meta = NULL;
    const int parsed = parse(&r, &version, &meta, &meta_len, &recs, &count, why, sizeof why) == 0;
    if (!sum_ok) {
        if (!parsed && !strncmp(why, "truncated", 9))
            rc = ps_errf(e, PS_EINPUT, "%s: %s", path, why);
        else
            rc = ps_errf(e, PS_EINPUT, "%s: checksum mismatch: file is corrupt", path);
        goto out;
    }
    if (!parsed) {
        rc = ps_errf(e, PS_EINPUT, "%s: %s", path, why);
        goto out;
    }
    if (version != RT_IO_VERSION) {
        rc = ps_errf(e, PS_EINPUT, "%s: format version %u (this build reads %u)", path, version,
                     RT_IO_VERSION);
        goto out;
    }
    /* Match every expected param before touching any. */
    const rec **match = (const rec **)calloc(n ? (size_t)n : 1, sizeof *match);
    if (!match) {
        rc = ps_errf(e, PS_EINPUT, "%s: out of memory", path);
        goto out;
    }
    size_t maxb = 0;
    for (int i = 0; i < n && !rc; i++) {
        rt_param *p = &ps[i];
        size_t nl = strnlen(p->name, sizeof p->name);
        for (uint32_t j = 0; j < count; j++)
            if (recs[j].name_len == nl && !memcmp(recs[j].name, p->name, nl)) {
                match[i] = &recs[j];
                break;
            }
        const rec *q = match[i];
        char b1[160], b2[160];
        if (!q) {
            rc = ps_errf(e, PS_EINPUT, "%s: param %s: missing in file", path, p->name);
        } else if (!p->w.data || (p->w.dtype != RT_F32 && p->w.dtype != RT_F64)) {
            rc = ps_errf(e, PS_EINPUT, "%s: param %s: destination has no f32/f64 weights", path,
                         p->name);
        } else if ((int)q->ndim != p->w.ndim ||
                   memcmp(q->shape, p->w.shape, q->ndim * sizeof(int64_t))) {
            rc = ps_errf(e, PS_EINPUT, "%s: param %s: shape %s in file, %s expected", path,
                         p->name, dims_str_sep((int)q->ndim, q->shape, ",", b1, sizeof b1),
                         dims_str_sep(p->w.ndim, p->w.shape, ",", b2, sizeof b2));
        } else if (q->dtype != RT_F32 && q->dtype != RT_F64) {
            rc = ps_errf(e, PS_EINPUT, "%s: param %s: dtype %s in file (f32 or f64 expected)",
                         path, p->name, rt_dtype_name((rt_dtype)q->dtype));
        } else if (q->dtype != (uint32_t)p->w.dtype) {
            if (rt_tensor_bytes(&p->w) > maxb)
                maxb = rt_tensor_bytes(&p->w);
        }
    }
    if (!rc && maxb && !(conv = malloc(maxb)))
        rc = ps_errf(e, PS_EINPUT, "%s: out of memory", path);
    for (int i = 0; i < n && !rc; i++) {
        rt_param *p = &ps[i];
        const rec *q = match[i];
        const int64_t ne = p->w.numel;
        const void *src = q->data;
        if (q->dtype != (uint32_t)p->w.dtype) { /* f32 <-> f64 */
            if (q->dtype == RT_F32)
                for (int64_t k = 0; k < ne; k++) {
                    float f;
                    memcpy(&f, q->data + 4 * k, 4);
                    ((double *)conv)[k] = f;
                }
            else
                for (int64_t k = 0; k < ne; k++) {
                    double d;
                    memcpy(&d, q->data + 8 * k, 8);
                    ((float *)conv)[k] = (float)d;
                }
            src = conv;
        }
        if (rt_tensor_from_host(&p->w, src, e)) {
            ps_err_prefix(e, "%s: param %s: ", path, p->name);
            rc = PS_EINPUT;
            if (e)
                e->code = PS_EINPUT;
        }
    }
    free(match);
    if (!rc && meta_out) {
        *meta_out = malloc((size_t)meta_len + 1);
        if (!*meta_out) {
            rc = ps_errf(e, PS_EINPUT, "%s: out of memory", path);
        } else {
            memcpy(*meta_out, meta, meta_len);
            (*meta_out)[meta_len] = '\0';
        }
    }
out:
    free(conv);
    free(recs);
    free(buf);
    return rc;
}
