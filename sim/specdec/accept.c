/* sim/specdec/accept.c: acceptance models (positional, depth x rank matrix,
 * correlated hidden-Markov, trace replay), their closed forms, Monte Carlo
 * steps and calibration to the SpecInfer tables (see accept.h).
 *
 * Calibration procedures (sd_accept_calibrate), targets: Table 1's row
 * T_1..T_m (cumulative P(top-k)) and the w = 1 tokens per step E1 on the
 * chain tree.  With d_k = T_k - T_{k-1} (T_0 = 0):
 *  - positional: p_k = d_k (closed form; E1 is not used).
 *  - matrix: P[d][k] = d_k * gamma^(d-1) for d = 1..depth(chain): depth 1 is
 *    Table 1, deeper rows decay geometrically; gamma in [0, gmax] (rows
 *    must sum to <= 1) is the root of E(gamma) = E1 (E is increasing in
 *    gamma), found by bisection; clamped to the interval when E1 is out of
 *    reach.
 *  - correlated ("sticky two-state"): states E (easy) and H (hard) with
 *    p_E = (1, 0, ...) and p_H = (0, c_2, ..., c_m), c_k = d_k / (1 - T_1);
 *    A = rho I + (1 - rho) 1 pi^T with pi = (T_1, 1 - T_1), so the stationary
 *    position law is pi and Table 1 is matched exactly for every rho.  rho in
 *    [rho_min, 1 - 1e-9] (rho_min = -min(pi)/max(pi): strictly alternating
 *    at the low end, frozen at the high end) is the root of E(rho) = E1
 *    (E decreasing in rho), found by bisection, clamped when out of reach.
 * The objective reported is sum_k ((T_k^model - T_k) / T_k)^2 +
 * ((E1^model - E1) / E1)^2. */
#include "sim/specdec/accept.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

struct sd_accept {
    sd_acc_kind kind;
    int m;       /* ranks per row */
    int rows;    /* positional 1, matrix depth, correlated K */
    double *p;   /* rows * m */
    int K;       /* correlated */
    double A[SD_ACC_MAX_STATES * SD_ACC_MAX_STATES];
    double pi[SD_ACC_MAX_STATES]; /* stationary law of A */
    /* trace */
    int32_t *ranks;
    int64_t *off;
    int32_t *len;
    int nseq;
};

const char *sd_acc_kind_name(sd_acc_kind k)
{
    switch (k) {
    case SD_ACC_POSITIONAL: return "positional";
    case SD_ACC_MATRIX: return "matrix";
    case SD_ACC_CORRELATED: return "correlated";
    case SD_ACC_TRACE: return "trace";
    }
    return "?";
}

void sd_accept_free(sd_accept *a)
{
    if (!a)
        return;
    free(a->p);
    free(a->ranks);
    free(a->off);
    free(a->len);
    free(a);
}

sd_acc_kind sd_accept_kind(const sd_accept *a) { return a->kind; }

static int check_row(const double *p, int m, const char *what, ps_err *e)
{
    double s = 0;
    for (int k = 0; k < m; k++) {
        if (!(p[k] >= 0 && p[k] <= 1))
            return ps_errf(e, PS_EINPUT, "%s[%d] = %g: must be in [0, 1]", what, k, p[k]);
        s += p[k];
    }
    if (s > 1 + 1e-9)
        return ps_errf(e, PS_EINPUT, "%s: the probabilities sum to %.12g > 1 (ranks are mutually "
                       "exclusive under greedy verification)", what, s);
    return 0;
}

static sd_accept *alloc_rows(sd_acc_kind kind, int rows, int m, const double *p, ps_err *e)
{
    if (m < 1 || rows < 1) {
        ps_errf(e, PS_EINPUT, "acceptance: need at least one rank and one row (got %d x %d)", rows,
                m);
        return NULL;
    }
    sd_accept *a = calloc(1, sizeof *a);
    if (a)
        a->p = malloc((size_t)rows * (size_t)m * sizeof(double));
    if (!a || !a->p) {
        sd_accept_free(a);
        ps_errf(e, PS_ERUN, "acceptance: out of memory");
        return NULL;
    }
    a->kind = kind;
    a->rows = rows;
    a->m = m;
    memcpy(a->p, p, (size_t)rows * (size_t)m * sizeof(double));
    return a;
}

sd_accept *sd_accept_positional(const double *p, int m, ps_err *e)
{
    if (m < 1) {
        ps_errf(e, PS_EINPUT, "acceptance: the positional vector is empty");
        return NULL;
    }
    if (check_row(p, m, "acceptance.p", e))
        return NULL;
    return alloc_rows(SD_ACC_POSITIONAL, 1, m, p, e);
}

sd_accept *sd_accept_matrix(const double *P, int depth, int m, ps_err *e)
{
    if (depth < 1 || m < 1) {
        ps_errf(e, PS_EINPUT, "acceptance: the matrix is empty (%d x %d)", depth, m);
        return NULL;
    }
    for (int d = 0; d < depth; d++) {
        char what[64];
        snprintf(what, sizeof what, "acceptance.P[%d]", d);
        if (check_row(P + (size_t)d * (size_t)m, m, what, e))
            return NULL;
    }
    return alloc_rows(SD_ACC_MATRIX, depth, m, P, e);
}

/* Stationary law of a row-stochastic K x K matrix: Gaussian elimination on
 * pi (M - I) = 0 with one equation replaced by sum pi = 1; falls back to a
 * Cesaro-averaged power iteration from `start` when the system is singular
 * (reducible chain). */
static void stationary(const double *M, int K, const double *start, double *pi)
{
    double S[SD_ACC_MAX_STATES][SD_ACC_MAX_STATES + 1];
    for (int i = 0; i < K; i++) { /* equation i: sum_j pi_j (M[j][i] - delta) = 0 */
        for (int j = 0; j < K; j++)
            S[i][j] = M[j * K + i] - (i == j ? 1.0 : 0.0);
        S[i][K] = 0;
    }
    for (int j = 0; j < K; j++)
        S[K - 1][j] = 1;
    S[K - 1][K] = 1;
    int ok = 1;
    for (int c = 0; c < K && ok; c++) {
        int piv = c;
        for (int r = c + 1; r < K; r++)
            if (fabs(S[r][c]) > fabs(S[piv][c]))
                piv = r;
        if (fabs(S[piv][c]) < 1e-13) {
            ok = 0;
            break;
        }
        if (piv != c)
            for (int j = 0; j <= K; j++) {
                double t = S[c][j];
                S[c][j] = S[piv][j];
                S[piv][j] = t;
            }
        for (int r = 0; r < K; r++) {
            if (r == c)
                continue;
            double f = S[r][c] / S[c][c];
            for (int j = c; j <= K; j++)
                S[r][j] -= f * S[c][j];
        }
    }
    if (ok) {
        double s = 0;
        for (int i = 0; i < K; i++) {
            pi[i] = S[i][K] / S[i][i];
            if (pi[i] < 0)
                pi[i] = 0;
            s += pi[i];
        }
        for (int i = 0; i < K; i++)
            pi[i] /= s;
        return;
    }
    double x[SD_ACC_MAX_STATES], y[SD_ACC_MAX_STATES], acc[SD_ACC_MAX_STATES] = {0};
    for (int i = 0; i < K; i++)
        x[i] = start[i];
    const int iters = 20000;
    for (int t = 0; t < iters; t++) {
        for (int i = 0; i < K; i++)
            acc[i] += x[i];
        for (int j = 0; j < K; j++) {
            y[j] = 0;
            for (int i = 0; i < K; i++)
                y[j] += x[i] * M[i * K + j];
        }
        memcpy(x, y, sizeof(double) * (size_t)K);
    }
    for (int i = 0; i < K; i++)
        pi[i] = acc[i] / iters;
}

sd_accept *sd_accept_correlated(int K, const double *A, const double *p, int m, ps_err *e)
{
    if (K < 1 || K > SD_ACC_MAX_STATES) {
        ps_errf(e, PS_EINPUT, "acceptance: %d latent states (need 1..%d)", K, SD_ACC_MAX_STATES);
        return NULL;
    }
    for (int i = 0; i < K; i++) {
        double s = 0;
        for (int j = 0; j < K; j++) {
            double v = A[i * K + j];
            if (!(v >= 0 && v <= 1 + 1e-12)) {
                ps_errf(e, PS_EINPUT, "acceptance.A[%d][%d] = %g: must be in [0, 1]", i, j, v);
                return NULL;
            }
            s += v;
        }
        if (fabs(s - 1) > 1e-9) {
            ps_errf(e, PS_EINPUT, "acceptance.A[%d]: the row sums to %.12g, not 1", i, s);
            return NULL;
        }
    }
    if (m < 1) {
        ps_errf(e, PS_EINPUT, "acceptance: the per-state vectors are empty");
        return NULL;
    }
    for (int z = 0; z < K; z++) {
        char what[64];
        snprintf(what, sizeof what, "acceptance.p[%d]", z);
        if (check_row(p + (size_t)z * (size_t)m, m, what, e))
            return NULL;
    }
    sd_accept *a = alloc_rows(SD_ACC_CORRELATED, K, m, p, e);
    if (!a)
        return NULL;
    a->K = K;
    memcpy(a->A, A, sizeof(double) * (size_t)(K * K));
    double u[SD_ACC_MAX_STATES];
    for (int i = 0; i < K; i++)
        u[i] = 1.0 / K;
    stationary(a->A, K, u, a->pi);
    return a;
}

sd_accept *sd_accept_trace(const int32_t *ranks, const int64_t *off, const int32_t *len,
                           int nseq, ps_err *e)
{
    if (nseq < 1) {
        ps_errf(e, PS_EINPUT, "acceptance trace: no sequences");
        return NULL;
    }
    int64_t total = 0;
    for (int i = 0; i < nseq; i++) {
        if (len[i] < 1) {
            ps_errf(e, PS_EINPUT, "acceptance trace: ranks[%d] is empty", i);
            return NULL;
        }
        if (off[i] < 0) {
            ps_errf(e, PS_EINPUT, "acceptance trace: off[%d] = %lld < 0", i, (long long)off[i]);
            return NULL;
        }
        for (int32_t j = 0; j < len[i]; j++)
            if (ranks[off[i] + j] < 0) {
                ps_errf(e, PS_EINPUT, "acceptance trace: ranks[%d][%d] = %d < 0 (0 = not in "
                        "the drafter's list)", i, (int)j, (int)ranks[off[i] + j]);
                return NULL;
            }
        total += len[i];
    }
    sd_accept *a = calloc(1, sizeof *a);
    if (a) {
        a->ranks = malloc((size_t)total * sizeof(int32_t));
        a->off = malloc((size_t)nseq * sizeof(int64_t));
        a->len = malloc((size_t)nseq * sizeof(int32_t));
    }
    if (!a || !a->ranks || !a->off || !a->len) {
        sd_accept_free(a);
        ps_errf(e, PS_ERUN, "acceptance trace: out of memory");
        return NULL;
    }
    a->kind = SD_ACC_TRACE;
    a->nseq = nseq;
    int64_t o = 0;
    for (int i = 0; i < nseq; i++) { /* stored contiguously */
        memcpy(a->ranks + o, ranks + off[i], (size_t)len[i] * sizeof(int32_t));
        a->off[i] = o;
        a->len[i] = len[i];
        o += len[i];
    }
    return a;
}

/* ---- JSON ---- */

static int num_array(const json_t *v, const char *path, double **out, int *n, ps_err *e)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return ps_errf(e, PS_EINPUT, "%s: expected a non-empty array of numbers, got %s", path,
                       json_is_array(v) ? "an empty array" : ps_json_type_name(v));
    size_t k = json_array_size(v);
    *out = malloc(k * sizeof(double));
    if (!*out)
        return ps_errf(e, PS_ERUN, "%s: out of memory", path);
    for (size_t i = 0; i < k; i++) {
        char p2[256];
        snprintf(p2, sizeof p2, "%s[%zu]", path, i);
        if (ps_json_as_num(json_array_get(v, i), p2, &(*out)[i], e)) {
            free(*out);
            *out = NULL;
            return e ? e->code : PS_EINPUT;
        }
    }
    *n = (int)k;
    return 0;
}

/* Array of arrays of numbers → rows x m (rows padded with 0 to the longest). */
static int num_matrix(const json_t *v, const char *path, double **out, int *rows, int *m,
                      ps_err *e)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return ps_errf(e, PS_EINPUT, "%s: expected a non-empty array of arrays, got %s", path,
                       json_is_array(v) ? "an empty array" : ps_json_type_name(v));
    int R = (int)json_array_size(v), M = 0;
    for (int r = 0; r < R; r++) {
        const json_t *row = json_array_get(v, (size_t)r);
        if (!json_is_array(row) || json_array_size(row) == 0)
            return ps_errf(e, PS_EINPUT, "%s[%d]: expected a non-empty array of numbers, got %s",
                           path, r, json_is_array(row) ? "an empty array" : ps_json_type_name(row));
        if ((int)json_array_size(row) > M)
            M = (int)json_array_size(row);
    }
    double *P = calloc((size_t)R * (size_t)M, sizeof(double));
    if (!P)
        return ps_errf(e, PS_ERUN, "%s: out of memory", path);
    for (int r = 0; r < R; r++) {
        const json_t *row = json_array_get(v, (size_t)r);
        for (size_t k = 0; k < json_array_size(row); k++) {
            char p2[256];
            snprintf(p2, sizeof p2, "%s[%d][%zu]", path, r, k);
            if (ps_json_as_num(json_array_get(row, k), p2, &P[(size_t)r * (size_t)M + k], e)) {
                free(P);
                return e ? e->code : PS_EINPUT;
            }
        }
    }
    *out = P;
    *rows = R;
    *m = M;
    return 0;
}

/* Re-prefix a constructor message "acceptance..." with WHERE. */
static void rewhere(ps_err *e, const char *where)
{
    if (!e || !e->code)
        return;
    const char *pfx = "acceptance";
    if (strncmp(e->msg, pfx, strlen(pfx)) == 0) {
        char buf[sizeof e->msg];
        snprintf(buf, sizeof buf, "%s%s", where, e->msg + strlen(pfx));
        memcpy(e->msg, buf, sizeof buf);
    } else {
        ps_err_prefix(e, "%s: ", where);
    }
}

sd_accept *sd_accept_from_json(const json_t *j, const char *where, ps_err *e)
{
    if (!json_is_object(j)) {
        ps_errf(e, PS_EINPUT, "%s: expected an object {\"kind\": ...}, got %s", where,
                ps_json_type_name(j));
        return NULL;
    }
    const char *kind = NULL;
    if (ps_json_get_str(j, where, "kind", 1, &kind, e))
        return NULL;
    char path[512];
    sd_accept *a = NULL;
    if (strcmp(kind, "positional") == 0) {
        static const char *const keys[] = {"kind", "p", NULL};
        if (ps_json_check_keys(j, where, keys, e))
            return NULL;
        snprintf(path, sizeof path, "%s.p", where);
        const json_t *v = json_object_get(j, "p");
        if (!v) {
            ps_errf(e, PS_EINPUT, "%s: missing", path);
            return NULL;
        }
        double *p = NULL;
        int m = 0;
        if (num_array(v, path, &p, &m, e))
            return NULL;
        a = sd_accept_positional(p, m, e);
        free(p);
    } else if (strcmp(kind, "matrix") == 0) {
        static const char *const keys[] = {"kind", "P", NULL};
        if (ps_json_check_keys(j, where, keys, e))
            return NULL;
        snprintf(path, sizeof path, "%s.P", where);
        const json_t *v = json_object_get(j, "P");
        if (!v) {
            ps_errf(e, PS_EINPUT, "%s: missing", path);
            return NULL;
        }
        double *P = NULL;
        int R = 0, M = 0;
        if (num_matrix(v, path, &P, &R, &M, e))
            return NULL;
        a = sd_accept_matrix(P, R, M, e);
        free(P);
    } else if (strcmp(kind, "correlated") == 0) {
        static const char *const keys[] = {"kind", "A", "p", NULL};
        if (ps_json_check_keys(j, where, keys, e))
            return NULL;
        const json_t *vA = json_object_get(j, "A"), *vp = json_object_get(j, "p");
        if (!vA || !vp) {
            ps_errf(e, PS_EINPUT, "%s.%s: missing", where, vA ? "p" : "A");
            return NULL;
        }
        double *A = NULL, *P = NULL;
        int RA = 0, MA = 0, R = 0, M = 0;
        snprintf(path, sizeof path, "%s.A", where);
        if (num_matrix(vA, path, &A, &RA, &MA, e))
            return NULL;
        for (int r = 0; r < RA; r++)
            if ((int)json_array_size(json_array_get(vA, (size_t)r)) != RA) {
                ps_errf(e, PS_EINPUT, "%s[%d]: expected %d entries (A is K x K), got %zu", path, r,
                        RA, json_array_size(json_array_get(vA, (size_t)r)));
                free(A);
                return NULL;
            }
        snprintf(path, sizeof path, "%s.p", where);
        if (num_matrix(vp, path, &P, &R, &M, e)) {
            free(A);
            return NULL;
        }
        if (R != RA) {
            ps_errf(e, PS_EINPUT, "%s: %d rows, but A has %d states", path, R, RA);
            free(A);
            free(P);
            return NULL;
        }
        a = sd_accept_correlated(RA, A, P, M, e);
        free(A);
        free(P);
    } else if (strcmp(kind, "trace") == 0) {
        static const char *const keys[] = {"kind", "ranks", NULL};
        if (ps_json_check_keys(j, where, keys, e))
            return NULL;
        snprintf(path, sizeof path, "%s.ranks", where);
        const json_t *v = json_object_get(j, "ranks");
        if (!v) {
            ps_errf(e, PS_EINPUT, "%s: missing", path);
            return NULL;
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            ps_errf(e, PS_EINPUT, "%s: expected a non-empty array of arrays, got %s", path,
                    ps_json_type_name(v));
            return NULL;
        }
        int nseq = (int)json_array_size(v);
        size_t total = 0;
        for (int i = 0; i < nseq; i++) {
            const json_t *row = json_array_get(v, (size_t)i);
            if (!json_is_array(row) || json_array_size(row) == 0) {
                ps_errf(e, PS_EINPUT, "%s[%d]: expected a non-empty array of ranks, got %s", path,
                        i, json_is_array(row) ? "an empty array" : ps_json_type_name(row));
                return NULL;
            }
            total += json_array_size(row);
        }
        int32_t *r = malloc(total * sizeof(int32_t));
        int64_t *off = malloc((size_t)nseq * sizeof(int64_t));
        int32_t *len = malloc((size_t)nseq * sizeof(int32_t));
        if (!r || !off || !len) {
            free(r);
            free(off);
            free(len);
            ps_errf(e, PS_ERUN, "%s: out of memory", path);
            return NULL;
        }
        int64_t o = 0;
        for (int i = 0; i < nseq && r; i++) {
            const json_t *row = json_array_get(v, (size_t)i);
            off[i] = o;
            len[i] = (int32_t)json_array_size(row);
            for (size_t k = 0; k < json_array_size(row); k++) {
                char p2[600];
                long long x;
                snprintf(p2, sizeof p2, "%s[%d][%zu]", path, i, k);
                if (ps_json_as_int(json_array_get(row, k), p2, &x, e)) {
                    free(r);
                    r = NULL;
                    break;
                }
                if (x < 0 || x > 1000000) {
                    ps_errf(e, PS_EINPUT, "%s: rank %lld out of range (0 = not in the list)", p2,
                            x);
                    free(r);
                    r = NULL;
                    break;
                }
                r[o++] = (int32_t)x;
            }
        }
        if (r)
            a = sd_accept_trace(r, off, len, nseq, e);
        free(r);
        free(off);
        free(len);
        return a;
    } else {
        ps_errf(e, PS_EINPUT, "%s.kind: unknown acceptance model \"%s\" (positional, matrix, "
                "correlated, trace)", where, kind);
        return NULL;
    }
    if (!a)
        rewhere(e, where);
    return a;
}

static json_t *row_json(const double *p, int m)
{
    json_t *r = json_array();
    for (int k = 0; k < m; k++)
        json_array_append_new(r, json_real(p[k]));
    return r;
}

json_t *sd_accept_to_json(const sd_accept *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(sd_acc_kind_name(a->kind)));
    switch (a->kind) {
    case SD_ACC_POSITIONAL:
        json_object_set_new(o, "p", row_json(a->p, a->m));
        break;
    case SD_ACC_MATRIX:
    case SD_ACC_CORRELATED: {
        json_t *P = json_array();
        for (int r = 0; r < a->rows; r++)
            json_array_append_new(P, row_json(a->p + (size_t)r * (size_t)a->m, a->m));
        if (a->kind == SD_ACC_MATRIX) {
            json_object_set_new(o, "P", P);
        } else {
            json_t *A = json_array();
            for (int i = 0; i < a->K; i++)
                json_array_append_new(A, row_json(a->A + i * a->K, a->K));
            json_object_set_new(o, "A", A);
            json_object_set_new(o, "p", P);
        }
        break;
    }
    case SD_ACC_TRACE: {
        json_t *R = json_array();
        for (int i = 0; i < a->nseq; i++) {
            json_t *r = json_array();
            for (int32_t j = 0; j < a->len[i]; j++)
                json_array_append_new(r, json_integer(a->ranks[a->off[i] + j]));
            json_array_append_new(R, r);
        }
        json_object_set_new(o, "ranks", R);
        break;
    }
    }
    return o;
}

/* ---- steps ---- */

/* Row used for a child at depth d (>= 1) in latent state z. */
static const double *row_at(const sd_accept *a, int d, int z)
{
    switch (a->kind) {
    case SD_ACC_MATRIX: {
        int r = d < a->rows ? d - 1 : a->rows - 1;
        return a->p + (size_t)r * (size_t)a->m;
    }
    case SD_ACC_CORRELATED:
        return a->p + (size_t)z * (size_t)a->m;
    default:
        return a->p;
    }
}

static int child_of_rank(const sd_tree *t, int u, int k)
{
    int c = t->first_child[u];
    for (int i = 1; c >= 0 && i < k; i++)
        c = t->next_sib[c];
    return c;
}

static int next_latent(const sd_accept *a, int z, sd_rng *r)
{
    int j = sd_rng_pick(r, a->A + z * a->K, a->K, 1.0);
    return j < 0 ? z : j;
}

void sd_accept_state_init(const sd_accept *a, sd_acc_state *s, sd_rng *r)
{
    s->latent = 0;
    s->seq = 0;
    s->cursor = 0;
    if (a->kind == SD_ACC_CORRELATED && r) {
        int z = sd_rng_pick(r, a->pi, a->K, 1.0);
        s->latent = z < 0 ? 0 : z;
    }
}

int sd_accept_step(const sd_accept *a, sd_acc_state *s, const sd_tree *t, sd_rng *r)
{
    if (a->kind == SD_ACC_TRACE) {
        if (s->seq < 0 || s->seq >= a->nseq || s->cursor < 0 || s->cursor >= a->len[s->seq]) {
            s->seq = (s->seq < 0 || s->seq >= a->nseq) ? 0 : s->seq;
            s->cursor = 0;
        }
        const int32_t *rk = a->ranks + a->off[s->seq];
        long L = a->len[s->seq], c = s->cursor;
        int u = 0, acc = 0;
        while (c + acc < L) {
            int k = rk[c + acc];
            if (k <= 0 || k > t->nchild[u])
                break;
            u = child_of_rank(t, u, k);
            acc++;
        }
        /* The step emits the accepted tokens plus the bonus token, except at
         * the end of a recorded sequence, where generation stops at its
         * length (the bonus token beyond it is never produced). */
        int emitted = (long)acc + 1 <= L - c ? acc + 1 : (int)(L - c);
        s->cursor = c + emitted;
        if (s->cursor >= L) {
            s->seq = (s->seq + 1) % a->nseq;
            s->cursor = 0;
        }
        return emitted;
    }
    int u = 0, d = 0, z = s->latent;
    for (;;) {
        int nc = t->nchild[u];
        if (nc == 0)
            break;
        const double *p = row_at(a, d + 1, z);
        int lim = nc < a->m ? nc : a->m, k = 0;
        double x = sd_rng_u01(r), c = 0;
        for (int i = 0; i < lim; i++) {
            c += p[i];
            if (x < c) {
                k = i + 1;
                break;
            }
        }
        if (k == 0)
            break;
        u = child_of_rank(t, u, k);
        d++;
        if (a->kind == SD_ACC_CORRELATED)
            z = next_latent(a, z, r);
    }
    if (a->kind == SD_ACC_CORRELATED)
        s->latent = next_latent(a, z, r); /* bonus position's state -> next step's first */
    return d + 1;
}

/* ---- closed forms ---- */

static int expected_iid(const sd_accept *a, const sd_tree *t, double *out, ps_err *e)
{
    double *f = malloc((size_t)t->n * sizeof(double));
    if (!f)
        return ps_errf(e, PS_ERUN, "expected tokens: out of memory");
    double E = 1;
    f[0] = 1;
    for (int v = 1; v < t->n; v++) {
        int k = t->rank[v];
        const double *p = row_at(a, t->ndepth[v], 0);
        f[v] = (k >= 1 && k <= a->m) ? f[t->parent[v]] * p[k - 1] : 0;
        E += f[v];
    }
    free(f);
    *out = E;
    return 0;
}

/* Correlated: tvec[z] = E[tokens | step starts in z], Mout = next-start kernel. */
static int corr_kernel(const sd_accept *a, const sd_tree *t, double *tvec, double *Mout,
                       ps_err *e)
{
    int K = a->K, KK = K * K;
    double *Phi = malloc((size_t)t->n * (size_t)KK * sizeof(double));
    if (!Phi)
        return ps_errf(e, PS_ERUN, "expected tokens: out of memory");
    memset(tvec, 0, sizeof(double) * (size_t)K);
    memset(Mout, 0, sizeof(double) * (size_t)KK);
    for (int v = 0; v < t->n; v++) {
        double *F = Phi + (size_t)v * (size_t)KK;
        if (v == 0) {
            memset(F, 0, sizeof(double) * (size_t)KK);
            for (int i = 0; i < K; i++)
                F[i * K + i] = 1;
        } else {
            const double *G = Phi + (size_t)t->parent[v] * (size_t)KK;
            int k = t->rank[v];
            /* F = G diag(p_.[k]) A */
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++) {
                    double s = 0;
                    for (int l = 0; l < K; l++) {
                        double pl = (k >= 1 && k <= a->m)
                                        ? a->p[(size_t)l * (size_t)a->m + (size_t)(k - 1)]
                                        : 0;
                        s += G[i * K + l] * pl * a->A[l * K + j];
                    }
                    F[i * K + j] = s;
                }
        }
        int lim = t->nchild[v] < a->m ? t->nchild[v] : a->m;
        double stay[SD_ACC_MAX_STATES];
        for (int l = 0; l < K; l++) {
            double s = 0;
            for (int k = 0; k < lim; k++)
                s += a->p[(size_t)l * (size_t)a->m + (size_t)k];
            stay[l] = 1 - s;
        }
        for (int i = 0; i < K; i++) {
            double rs = 0;
            for (int l = 0; l < K; l++) {
                rs += F[i * K + l];
                double w = F[i * K + l] * stay[l];
                if (w != 0)
                    for (int j = 0; j < K; j++)
                        Mout[i * K + j] += w * a->A[l * K + j];
            }
            tvec[i] += rs;
        }
    }
    free(Phi);
    return 0;
}

int sd_accept_expected(const sd_accept *a, const sd_tree *t, double *out, ps_err *e)
{
    switch (a->kind) {
    case SD_ACC_POSITIONAL:
    case SD_ACC_MATRIX:
        return expected_iid(a, t, out, e);
    case SD_ACC_CORRELATED: {
        double tv[SD_ACC_MAX_STATES], M[SD_ACC_MAX_STATES * SD_ACC_MAX_STATES],
            pi[SD_ACC_MAX_STATES];
        if (corr_kernel(a, t, tv, M, e))
            return e ? e->code : PS_ERUN;
        stationary(M, a->K, a->pi, pi);
        double E = 0;
        for (int i = 0; i < a->K; i++)
            E += pi[i] * tv[i];
        *out = E;
        return 0;
    }
    case SD_ACC_TRACE: {
        sd_acc_state s = {0, 0, 0};
        long steps = 0;
        double tokens = 0;
        do {
            tokens += sd_accept_step(a, &s, t, NULL);
            steps++;
        } while (!(s.seq == 0 && s.cursor == 0));
        *out = tokens / (double)steps;
        return 0;
    }
    }
    return ps_errf(e, PS_EINPUT, "expected tokens: unknown acceptance model");
}

int sd_accept_topk(const sd_accept *a, int kmax, double *out, ps_err *e)
{
    if (kmax < 1)
        return ps_errf(e, PS_EINPUT, "topk: kmax = %d < 1", kmax);
    if (a->kind == SD_ACC_TRACE) {
        long n = 0;
        for (int i = 0; i < a->nseq; i++)
            n += a->len[i];
        for (int k = 1; k <= kmax; k++) {
            long c = 0;
            for (int i = 0; i < a->nseq; i++)
                for (int32_t j = 0; j < a->len[i]; j++) {
                    int r = a->ranks[a->off[i] + j];
                    c += (r >= 1 && r <= k);
                }
            out[k - 1] = (double)c / (double)n;
        }
        return 0;
    }
    double row[512];
    int m = a->m < 512 ? a->m : 512;
    for (int k = 0; k < m; k++) {
        if (a->kind == SD_ACC_CORRELATED) {
            row[k] = 0;
            for (int z = 0; z < a->K; z++)
                row[k] += a->pi[z] * a->p[(size_t)z * (size_t)a->m + (size_t)k];
        } else {
            row[k] = a->p[k]; /* positional, matrix's depth-1 row */
        }
    }
    double c = 0;
    for (int k = 0; k < kmax; k++) {
        if (k < m)
            c += row[k];
        out[k] = c;
    }
    return 0;
}

/* ---- calibration ---- */

static double objective_of(const sd_accept *a, const double *topk, int kmax, const sd_tree *chain,
                           double tokens, ps_err *e)
{
    double tk[16], E = 0;
    if (sd_accept_topk(a, kmax, tk, e) || sd_accept_expected(a, chain, &E, e))
        return NAN;
    double s = 0;
    for (int k = 0; k < kmax; k++)
        s += ((tk[k] - topk[k]) / topk[k]) * ((tk[k] - topk[k]) / topk[k]);
    return s + ((E - tokens) / tokens) * ((E - tokens) / tokens);
}

static sd_accept *build_matrix(const double *d, int m, int depth, double g, ps_err *e)
{
    double *P = malloc((size_t)depth * (size_t)m * sizeof(double));
    if (!P) {
        ps_errf(e, PS_ERUN, "calibrate: out of memory");
        return NULL;
    }
    double f = 1;
    for (int r = 0; r < depth; r++, f *= g)
        for (int k = 0; k < m; k++)
            P[(size_t)r * (size_t)m + (size_t)k] = fmin(1.0, d[k] * f);
    sd_accept *a = sd_accept_matrix(P, depth, m, e);
    free(P);
    return a;
}

static sd_accept *build_sticky(const double *d, int m, double rho, ps_err *e)
{
    double T1 = d[0], A[4], p[2 * 16];
    double pi[2] = {T1, 1 - T1};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            A[i * 2 + j] = (i == j ? rho : 0) + (1 - rho) * pi[j];
    memset(p, 0, sizeof p);
    p[0] = 1;
    for (int k = 1; k < m; k++)
        p[m + k] = T1 < 1 ? d[k] / (1 - T1) : 0;
    double s = 0;
    for (int k = 1; k < m; k++)
        s += p[m + k];
    if (s > 1)
        for (int k = 1; k < m; k++)
            p[m + k] /= s;
    return sd_accept_correlated(2, A, p, m, e);
}

sd_accept *sd_accept_calibrate(sd_acc_kind kind, const double *topk, int kmax,
                               const sd_tree *chain, double tokens, double *objective,
                               ps_err *e)
{
    if (kmax < 1 || kmax > 16) {
        ps_errf(e, PS_EINPUT, "calibrate: kmax = %d (need 1..16)", kmax);
        return NULL;
    }
    double d[16];
    for (int k = 0; k < kmax; k++) {
        double prev = k ? topk[k - 1] : 0;
        if (!(topk[k] > 0 && topk[k] <= 1) || topk[k] < prev - 1e-12) {
            ps_errf(e, PS_EINPUT, "calibrate: topk[%d] = %g must be in (0, 1] and "
                    "non-decreasing", k, topk[k]);
            return NULL;
        }
        d[k] = fmax(0.0, topk[k] - prev);
    }
    if (kind != SD_ACC_POSITIONAL && (!chain || !(tokens >= 1))) {
        ps_errf(e, PS_EINPUT, "calibrate: %s needs the w = 1 tree and tokens per step >= 1 "
                "(got %g)", sd_acc_kind_name(kind), tokens);
        return NULL;
    }
    sd_accept *a = NULL;
    if (kind == SD_ACC_POSITIONAL) {
        a = sd_accept_positional(d, kmax, e);
    } else if (kind == SD_ACC_MATRIX) {
        int depth = chain->depth > 1 ? chain->depth : 1;
        double gmax = depth > 1 ? pow(1.0 / topk[kmax - 1], 1.0 / (depth - 1)) : 1;
        double lo = 0, hi = gmax;
        for (int it = 0; it < 100; it++) {
            double mid = 0.5 * (lo + hi), E = 0;
            sd_accept *t = build_matrix(d, kmax, depth, mid, e);
            if (!t || sd_accept_expected(t, chain, &E, e)) {
                sd_accept_free(t);
                return NULL;
            }
            sd_accept_free(t);
            if (E < tokens)
                lo = mid;
            else
                hi = mid;
        }
        a = build_matrix(d, kmax, depth, 0.5 * (lo + hi), e);
    } else if (kind == SD_ACC_CORRELATED) {
        double T1 = topk[0];
        double rmin = (T1 <= 0 || T1 >= 1) ? 0 : -fmin(T1, 1 - T1) / fmax(T1, 1 - T1);
        double lo = rmin, hi = 1 - 1e-9;
        for (int it = 0; it < 100; it++) {
            double mid = 0.5 * (lo + hi), E = 0;
            sd_accept *t = build_sticky(d, kmax, mid, e);
            if (!t || sd_accept_expected(t, chain, &E, e)) {
                sd_accept_free(t);
                return NULL;
            }
            sd_accept_free(t);
            if (E > tokens) /* decreasing in rho */
                lo = mid;
            else
                hi = mid;
        }
        a = build_sticky(d, kmax, 0.5 * (lo + hi), e);
    } else {
        ps_errf(e, PS_EINPUT, "calibrate: kind %s cannot be calibrated from tables",
                sd_acc_kind_name(kind));
        return NULL;
    }
    if (a && objective) {
        *objective = chain ? objective_of(a, topk, kmax, chain, tokens, e) : 0;
    }
    return a;
}

double sd_accept_param(const sd_accept *a)
{
    if (a->kind == SD_ACC_MATRIX)
        return (a->rows > 1 && a->p[0] > 0) ? a->p[a->m] / a->p[0] : NAN;
    if (a->kind == SD_ACC_CORRELATED && a->K == 2)
        return a->A[0] - a->A[2]; /* rho = A[E][E] - A[H][E] */
    return NAN;
}
