/* Latency lookup table of the integer CNN: see sim/quant/latency.h. */
#include "sim/quant/latency.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"


static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double psq_median(double *x, int n)
{
    if (n <= 0)
        return NAN;
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int bits_index(const psq_lat_table *t, int b)
{
    for (int k = 0; k < t->n_bits; k++)
        if (t->bits[k] == b)
            return k;
    return -1;
}

int psq_lat_measure_joint(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits,
                          const int *vecs, int nv, int warmup, int runs, psq_lat_table *t,
                          double *median_s, ps_err *e)
{
    if (t)
        memset(t, 0, sizeof *t);
    if (t && (n_bits < 1 || n_bits > PSQ_LAT_MAX_BITS))
        return ps_errf(e, PS_EINPUT, "latency table: %d bit choices (1..%d)", n_bits,
                       PSQ_LAT_MAX_BITS);
    if (runs < 1 || warmup < 0 || nv < 0)
        return ps_errf(e, PS_EINPUT, "latency: runs %d / warmup %d / vectors %d invalid", runs,
                       warmup, nv);
    if (n < 1 || n > q->max_batch)
        return ps_errf(e, PS_EINPUT, "latency: batch %lld outside 1..%lld", (long long)n,
                       (long long)q->max_batch);
    int nl = q->nl, cells = t ? nl * n_bits : 0;
    size_t R = (size_t)runs;
    double *tt = malloc(R * (size_t)(3 * cells + 1 + nv) * sizeof *tt);
    if (!tt)
        return ps_errf(e, PS_ERUN, "latency: out of memory");
    double *tg = tt + R * cells, *to = tg + R * cells, *tov = to + R * cells, *tv = tov + R;
    int rc = 0, saved_timing = q->timing;
    int lb[QCNN_MAXL];
    for (int v = 0; v < nv && !rc; v++) /* validate and fill the weight cache */
        rc = qcnn_set_bits(q, vecs + (size_t)v * nl, e);
    if (t && !rc) {
        t->n_layers = nl;
        t->n_bits = n_bits;
        t->batch = n;
        t->runs = runs;
        snprintf(t->path, sizeof t->path, "%s", ps_qgemm_path_name(q->path));
        memcpy(t->bits, bits, (size_t)n_bits * sizeof *bits);
        for (int l = 0; l < nl; l++)
            snprintf(t->names[l], sizeof t->names[l], "%s", q->L[l].name);
        /* realistic inputs for every layer: one forward (8-bit everywhere,
         * or the first choice when 8 is not offered) */
        int b0 = bits[0];
        for (int k = 0; k < n_bits; k++)
            if (bits[k] == 8)
                b0 = 8;
        for (int l = 0; l < nl; l++)
            lb[l] = b0;
        rc = qcnn_set_bits(q, lb, e);
        rc = rc ? rc : qcnn_forward(q, x, n, NULL, e);
        for (int k = 0; k < n_bits && !rc; k++) {
            for (int l = 0; l < nl; l++)
                lb[l] = bits[k];
            rc = qcnn_set_bits(q, lb, e);
        }
    }
    /* Rounds: every (layer, bits) cell once, then every vector once.  On a
     * shared machine the load from other processes varies over time; the
     * interleaving makes table and end-to-end measurements see the same
     * load, so it cancels in predicted vs measured. */
    for (int r = 0; r < warmup + runs && !rc; r++) {
        for (int k = 0; t && k < n_bits && !rc; k++) {
            for (int l = 0; l < nl; l++)
                lb[l] = bits[k];
            if ((rc = qcnn_set_bits(q, lb, e)))
                break;
            if ((rc = qcnn_forward(q, x, n, NULL, e))) /* inputs of these bits */
                break;
            q->timing = 1;
            for (int l = 0; l < nl && !rc; l++) {
                double t0 = qcnn_now(q);
                rc = qcnn_layer_forward(q, l, n, 0, e);
                double dt = qcnn_now(q) - t0;
                if (r >= warmup) {
                    size_t cc = (size_t)(l * n_bits + k) * R + (size_t)(r - warmup);
                    tt[cc] = dt;
                    tg[cc] = q->L[l].t_gemm;
                    to[cc] = q->L[l].t_other;
                }
            }
            q->timing = saved_timing;
        }
        if (t) {
            double t0 = qcnn_now(q);
            qcnn_load_input(q, x, n);
            if (r >= warmup)
                tov[r - warmup] = qcnn_now(q) - t0;
        }
        for (int v = 0; v < nv && !rc; v++) {
            if ((rc = qcnn_set_bits(q, vecs + (size_t)v * nl, e)))
                break;
            double t0 = qcnn_now(q);
            rc = qcnn_forward(q, x, n, NULL, e);
            double dt = qcnn_now(q) - t0;
            if (r >= warmup)
                tv[(size_t)v * R + (size_t)(r - warmup)] = dt;
        }
    }
    if (!rc && t) {
        for (int l = 0; l < nl; l++)
            for (int k = 0; k < n_bits; k++) {
                size_t cc = (size_t)(l * n_bits + k) * R;
                t->t[l][k] = psq_median(tt + cc, runs);
                t->t_gemm[l][k] = psq_median(tg + cc, runs);
                t->t_other[l][k] = psq_median(to + cc, runs);
            }
        t->overhead_s = psq_median(tov, runs);
    }
    for (int v = 0; v < nv && !rc; v++)
        median_s[v] = psq_median(tv + (size_t)v * R, runs);
    q->timing = saved_timing;
    free(tt);
    return rc;
}

/* xorshift64*: the per-round order of the context measurement */
static uint64_t xs_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

int psq_lat_measure_context(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits,
                            const int *vecs, int nv, int warmup, int runs, unsigned long seed,
                            psq_lat_table *t_ctx, psq_lat_table *t_iso, double *median_s,
                            ps_err *e)
{
    if (!t_ctx || !t_iso)
        return ps_errf(e, PS_EINPUT, "latency (context): both tables are required");
    memset(t_ctx, 0, sizeof *t_ctx);
    memset(t_iso, 0, sizeof *t_iso);
    if (n_bits < 1 || n_bits > PSQ_LAT_MAX_BITS)
        return ps_errf(e, PS_EINPUT, "latency table: %d bit choices (1..%d)", n_bits,
                       PSQ_LAT_MAX_BITS);
    if (runs < 1 || warmup < 0 || nv < 0)
        return ps_errf(e, PS_EINPUT, "latency: runs %d / warmup %d / vectors %d invalid", runs,
                       warmup, nv);
    if (n < 1 || n > q->max_batch)
        return ps_errf(e, PS_EINPUT, "latency: batch %lld outside 1..%lld", (long long)n,
                       (long long)q->max_batch);
    int nl = q->nl, cells = nl * n_bits, items = n_bits + nv;
    size_t R = (size_t)runs;
    /* isolated cells (t, gemm, other), their overhead, context cells and
     * overhead, vectors */
    double *tt = malloc(R * (size_t)(4 * cells + 1 + n_bits + nv) * sizeof *tt);
    int *order = malloc((size_t)items * sizeof *order);
    if (!tt || !order) {
        free(tt);
        free(order);
        return ps_errf(e, PS_ERUN, "latency: out of memory");
    }
    double *tg = tt + R * cells, *to = tg + R * cells, *tov = to + R * cells;
    double *tc = tov + R, *tcov = tc + R * cells, *tv = tcov + R * (size_t)n_bits;
    int rc = 0, saved_timing = q->timing;
    int lb[QCNN_MAXL];
    uint64_t st = 0x9E3779B97F4A7C15ULL ^ (uint64_t)seed;
    if (!st)
        st = 1;
    for (int v = 0; v < nv && !rc; v++) /* validate and fill the weight cache */
        rc = qcnn_set_bits(q, vecs + (size_t)v * nl, e);
    for (int k = 0; k < n_bits && !rc; k++) {
        for (int l = 0; l < nl; l++)
            lb[l] = bits[k];
        rc = qcnn_set_bits(q, lb, e);
    }
    for (int i = 0; i < items; i++)
        order[i] = i;
    for (int r = 0; r < warmup + runs && !rc; r++) {
        int keep = r >= warmup;
        size_t rr = keep ? (size_t)(r - warmup) : 0;
        /* 1. isolated cells, as psq_lat_measure_joint: a forward of the
         * uniform configuration, then each layer again, timed alone */
        for (int k = 0; k < n_bits && !rc; k++) {
            for (int l = 0; l < nl; l++)
                lb[l] = bits[k];
            if ((rc = qcnn_set_bits(q, lb, e)) || (rc = qcnn_forward(q, x, n, NULL, e)))
                break;
            q->timing = 1;
            for (int l = 0; l < nl && !rc; l++) {
                double t0 = qcnn_now(q);
                rc = qcnn_layer_forward(q, l, n, 0, e);
                double dt = qcnn_now(q) - t0;
                if (keep) {
                    size_t cc = (size_t)(l * n_bits + k) * R + rr;
                    tt[cc] = dt;
                    tg[cc] = q->L[l].t_gemm;
                    to[cc] = q->L[l].t_other;
                }
            }
            q->timing = saved_timing;
        }
        if (!rc) {
            double t0 = qcnn_now(q);
            qcnn_load_input(q, x, n);
            if (keep)
                tov[rr] = qcnn_now(q) - t0;
        }
        /* 2. the calibration forwards (uniform bits[k], per-layer stamps)
         * and the plain forwards of the vectors, in a fresh random order */
        for (int i = items - 1; i > 0; i--) {
            int j = (int)(xs_next(&st) % (uint64_t)(i + 1)), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        q->timing = 0;
        for (int i = 0; i < items && !rc; i++) {
            int it = order[i];
            if (it < n_bits) {
                for (int l = 0; l < nl; l++)
                    lb[l] = bits[it];
                if ((rc = qcnn_set_bits(q, lb, e)))
                    break;
                double t0 = qcnn_now(q);
                qcnn_load_input(q, x, n);
                double tp = qcnn_now(q);
                if (keep)
                    tcov[(size_t)it * R + rr] = tp - t0;
                for (int l = 0; l < nl && !rc; l++) {
                    rc = qcnn_layer_forward(q, l, n, 0, e);
                    double tn = qcnn_now(q);
                    if (keep)
                        tc[(size_t)(l * n_bits + it) * R + rr] = tn - tp;
                    tp = tn;
                }
            } else {
                int v = it - n_bits;
                if ((rc = qcnn_set_bits(q, vecs + (size_t)v * nl, e)))
                    break;
                double t0 = qcnn_now(q);
                rc = qcnn_forward(q, x, n, NULL, e);
                double dt = qcnn_now(q) - t0;
                if (keep)
                    tv[(size_t)v * R + rr] = dt;
            }
        }
        q->timing = saved_timing;
    }
    if (!rc) {
        psq_lat_table *T[2] = {t_iso, t_ctx};
        for (int w = 0; w < 2; w++) {
            T[w]->n_layers = nl;
            T[w]->n_bits = n_bits;
            T[w]->batch = n;
            T[w]->runs = runs;
            snprintf(T[w]->path, sizeof T[w]->path, "%s", ps_qgemm_path_name(q->path));
            memcpy(T[w]->bits, bits, (size_t)n_bits * sizeof *bits);
            for (int l = 0; l < nl; l++)
                snprintf(T[w]->names[l], sizeof T[w]->names[l], "%s", q->L[l].name);
        }
        for (int l = 0; l < nl; l++)
            for (int k = 0; k < n_bits; k++) {
                size_t cc = (size_t)(l * n_bits + k) * R;
                t_iso->t[l][k] = psq_median(tt + cc, runs);
                t_iso->t_gemm[l][k] = t_ctx->t_gemm[l][k] = psq_median(tg + cc, runs);
                t_iso->t_other[l][k] = t_ctx->t_other[l][k] = psq_median(to + cc, runs);
                t_ctx->t[l][k] = psq_median(tc + cc, runs);
            }
        t_iso->overhead_s = psq_median(tov, runs);
        t_ctx->overhead_s = psq_median(tcov, runs * n_bits);
        for (int v = 0; v < nv; v++)
            median_s[v] = psq_median(tv + (size_t)v * R, runs);
    }
    q->timing = saved_timing;
    free(tt);
    free(order);
    return rc;
}

int psq_lat_measure(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits, int warmup,
                    int runs, psq_lat_table *t, ps_err *e)
{
    return psq_lat_measure_joint(q, x, n, bits, n_bits, NULL, 0, warmup, runs, t, NULL, e);
}

int psq_lat_predict(const psq_lat_table *t, const int *layer_bits, double *pred_s, ps_err *e)
{
    double s = t->overhead_s;
    for (int l = 0; l < t->n_layers; l++) {
        int k = bits_index(t, layer_bits[l]);
        if (k < 0)
            return ps_errf(e, PS_EINPUT, "latency table: layer %s has no entry for %d bits",
                           t->names[l], layer_bits[l]);
        s += t->t[l][k];
    }
    *pred_s = s;
    return 0;
}

int psq_lat_measure_forward(qcnn *q, const float *x, int64_t n, const int *layer_bits,
                            int warmup, int runs, double *median_s, ps_err *e)
{
    if (runs < 1 || warmup < 0)
        return ps_errf(e, PS_EINPUT, "latency: runs %d / warmup %d invalid", runs, warmup);
    int rc = qcnn_set_bits(q, layer_bits, e);
    if (rc)
        return rc;
    double *tt = malloc((size_t)runs * sizeof *tt);
    if (!tt)
        return ps_errf(e, PS_ERUN, "latency: out of memory");
    for (int r = 0; r < warmup + runs && !rc; r++) {
        double t0 = qcnn_now(q);
        rc = qcnn_forward(q, x, n, NULL, e);
        double dt = qcnn_now(q) - t0;
        if (r >= warmup)
            tt[r - warmup] = dt;
    }
    if (!rc)
        *median_s = psq_median(tt, runs);
    free(tt);
    return rc;
}

int psq_lat_measure_forwards(qcnn *q, const float *x, int64_t n, const int *vecs, int nv,
                             int warmup, int runs, double *median_s, ps_err *e)
{
    if (nv < 1)
        return ps_errf(e, PS_EINPUT, "latency: %d vectors", nv);
    return psq_lat_measure_joint(q, x, n, NULL, 0, vecs, nv, warmup, runs, NULL, median_s, e);
}

static json_t *arr(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

int psq_lat_save_json(const psq_lat_table *t, const char *path, ps_err *e)
{
    json_t *root = json_object(), *bits = json_array(), *layers = json_array();
    json_object_set_new(root, "batch", json_integer(t->batch));
    json_object_set_new(root, "runs", json_integer(t->runs));
    json_object_set_new(root, "path", json_string(t->path));
    json_object_set_new(root, "overhead_s", json_real(t->overhead_s));
    for (int k = 0; k < t->n_bits; k++)
        json_array_append_new(bits, json_integer(t->bits[k]));
    json_object_set_new(root, "bits", bits);
    for (int l = 0; l < t->n_layers; l++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->names[l]));
        json_object_set_new(o, "t_s", arr(t->t[l], t->n_bits));
        json_object_set_new(o, "gemm_s", arr(t->t_gemm[l], t->n_bits));
        json_object_set_new(o, "other_s", arr(t->t_other[l], t->n_bits));
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(root);
    return rc ? ps_errf(e, PS_ERUN, "%s: cannot write the latency table", path) : 0;
}

static int get_arr(const json_t *o, const char *where, const char *key, int n, double *out,
                   ps_err *e)
{
    const json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return ps_errf(e, PS_EINPUT, "%s.%s: expected an array of %d numbers", where, key, n);
    for (int i = 0; i < n; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s.%s[%d]", where, key, i);
        if (ps_json_as_num(json_array_get(a, (size_t)i), p, &out[i], e))
            return PS_EINPUT;
    }
    return 0;
}

int psq_lat_load_json(psq_lat_table *t, const char *path, ps_err *e)
{
    memset(t, 0, sizeof *t);
    json_t *root = ps_json_load_file(path, e);
    if (!root)
        return PS_EINPUT;
    int rc = 0;
    long long batch = 0, runs = 0;
    const char *p = "";
    char where[512];
    snprintf(where, sizeof where, "%s: $", path);
    rc = ps_json_get_int(root, where, "batch", 1, &batch, e);
    rc = rc ? rc : ps_json_get_int(root, where, "runs", 1, &runs, e);
    rc = rc ? rc : ps_json_get_str(root, where, "path", 0, &p, e);
    rc = rc ? rc : ps_json_get_num(root, where, "overhead_s", 1, &t->overhead_s, e);
    const json_t *bits = json_object_get(root, "bits"), *layers = json_object_get(root, "layers");
    if (!rc && (!json_is_array(bits) || json_array_size(bits) < 1 ||
                json_array_size(bits) > PSQ_LAT_MAX_BITS))
        rc = ps_errf(e, PS_EINPUT, "%s.bits: expected an array of 1..%d integers", where,
                     PSQ_LAT_MAX_BITS);
    if (!rc && (!json_is_array(layers) || json_array_size(layers) < 1 ||
                json_array_size(layers) > QCNN_MAXL))
        rc = ps_errf(e, PS_EINPUT, "%s.layers: expected an array of 1..%d layers", where,
                     QCNN_MAXL);
    if (!rc) {
        t->batch = batch;
        t->runs = (int)runs;
        snprintf(t->path, sizeof t->path, "%s", p);
        t->n_bits = (int)json_array_size(bits);
        for (int k = 0; k < t->n_bits && !rc; k++) {
            long long b;
            char pp[600];
            snprintf(pp, sizeof pp, "%s.bits[%d]", where, k);
            rc = ps_json_as_int(json_array_get(bits, (size_t)k), pp, &b, e);
            t->bits[k] = (int)b;
        }
        t->n_layers = (int)json_array_size(layers);
        for (int l = 0; l < t->n_layers && !rc; l++) {
            const json_t *o = json_array_get(layers, (size_t)l);
            char w2[600];
            snprintf(w2, sizeof w2, "%s.layers[%d]", where, l);
            const char *nm = "";
            rc = ps_json_get_str(o, w2, "name", 1, &nm, e);
            if (!rc)
                snprintf(t->names[l], sizeof t->names[l], "%s", nm);
            rc = rc ? rc : get_arr(o, w2, "t_s", t->n_bits, t->t[l], e);
            rc = rc ? rc : get_arr(o, w2, "gemm_s", t->n_bits, t->t_gemm[l], e);
            rc = rc ? rc : get_arr(o, w2, "other_s", t->n_bits, t->t_other[l], e);
        }
    }
    json_decref(root);
    return rc;
}

ps_table *psq_lat_to_table(const psq_lat_table *t)
{
    ps_table *tb = ps_table_new();
    if (!tb)
        return NULL;
    int cl = ps_table_add_col(tb, "layer", PS_COL_STR, "");
    int cb = ps_table_add_col(tb, "bits", PS_COL_INT, "");
    int cn = ps_table_add_col(tb, "batch", PS_COL_INT, "");
    int ct = ps_table_add_col(tb, "t_s", PS_COL_DOUBLE, "s");
    int cg = ps_table_add_col(tb, "gemm_s", PS_COL_DOUBLE, "s");
    int co = ps_table_add_col(tb, "other_s", PS_COL_DOUBLE, "s");
    for (int l = 0; l < t->n_layers; l++)
        for (int k = 0; k < t->n_bits; k++) {
            size_t r = ps_table_add_row(tb);
            if (r == (size_t)-1) {
                ps_table_free(tb);
                return NULL;
            }
            ps_table_set_s(tb, r, cl, t->names[l]);
            ps_table_set_i(tb, r, cb, t->bits[k]);
            ps_table_set_i(tb, r, cn, t->batch);
            ps_table_set_d(tb, r, ct, t->t[l][k]);
            ps_table_set_d(tb, r, cg, t->t_gemm[l][k]);
            ps_table_set_d(tb, r, co, t->t_other[l][k]);
        }
    return tb;
}
