/* CPU sequence ops (layer norm, embedding, masked attention), written once
 * for float and double.  Included twice by real/cpu_seq.c with
 *   T          the element type (float / double)
 *   SFX(name)  name ## _f32 / name ## _f64
 *   GEMM       ps_cpu_sgemm / ps_cpu_dgemm
 *   EXP, SQRT  expf / exp, sqrtf / sqrt
 * Operands are validated by the public wrappers (shapes, dtypes, devices);
 * these functions only compute.  No include guard on purpose; the
 * parameters are #undef'd at the end, ready for the next instantiation. */

/* ------------------------------------------------------------------ layer norm */

static void SFX(layernorm_fwd)(int64_t n, int64_t c, const T *x, const T *gamma, const T *beta,
                               double eps, T *y, T *mean, T *rstd)
{
    for (int64_t i = 0; i < n; i++) {
        const T *xi = x + i * c;
        T *yi = y + i * c;
        /* Two passes in double: the mean, then the centred second moment. */
        double m = 0;
        for (int64_t j = 0; j < c; j++)
            m += xi[j];
        m /= (double)c;
        double v = 0;
        for (int64_t j = 0; j < c; j++) {
            double d = xi[j] - m;
            v += d * d;
        }
        v /= (double)c;
        double r = 1.0 / sqrt(v + eps);
        const T tm = (T)m, tr = (T)r;
        for (int64_t j = 0; j < c; j++)
            yi[j] = (xi[j] - tm) * tr * gamma[j] + beta[j];
        if (mean)
            mean[i] = tm;
        if (rstd)
            rstd[i] = tr;
    }
}

/* norm = (x - mean) rstd; dnorm = dy gamma;
 * dx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)). */
static void SFX(layernorm_bwd)(int64_t n, int64_t c, const T *x, const T *gamma, const T *mean,
                               const T *rstd, const T *dy, T *dx, T *dgamma, T *dbeta)
{
    for (int64_t i = 0; i < n; i++) {
        const T *xi = x + i * c, *dyi = dy + i * c;
        const T m = mean[i], r = rstd[i];
        if (dgamma || dbeta)
            for (int64_t j = 0; j < c; j++) {
                T norm = (xi[j] - m) * r;
                if (dgamma)
                    dgamma[j] += dyi[j] * norm;
                if (dbeta)
                    dbeta[j] += dyi[j];
            }
        if (!dx)
            continue;
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < c; j++) {
            double dn = (double)dyi[j] * gamma[j];
            s1 += dn;
            s2 += dn * ((double)(xi[j] - m) * r);
        }
        const T a = (T)(s1 / (double)c), b = (T)(s2 / (double)c);
        T *dxi = dx + i * c;
        for (int64_t j = 0; j < c; j++) {
            T norm = (xi[j] - m) * r;
            dxi[j] = r * (dyi[j] * gamma[j] - a - norm * b);
        }
    }
}

/* ------------------------------------------------------------------ embedding */

static void SFX(embedding_fwd)(int64_t n, int64_t d, const int32_t *ids, const T *table, T *y)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(y + i * d, table + (int64_t)ids[i] * d, (size_t)d * sizeof(T));
}

static void SFX(embedding_bwd)(int64_t n, int64_t d, const int32_t *ids, const T *dy, T *dtable)
{
    for (int64_t i = 0; i < n; i++) {
        T *row = dtable + (int64_t)ids[i] * d;
        const T *g = dy + i * d;
        for (int64_t j = 0; j < d; j++)
            row[j] += g[j];
    }
}

/* ------------------------------------------------------------------ attention */

/* One (batch, head): s [tq, tkv] holds scale q k^T on entry, the
 * probabilities on exit; masked entries and fully masked rows are 0.
 * Query i sees keys j < nk (causal: nk = tkv - tq + i + 1) and, with a
 * boolean mask, only those where mask[i, j] != 0. */
static void SFX(att_softmax)(T *s, int64_t tq, int64_t tkv, rt_mask_kind mk, const uint8_t *mask)
{
    const int64_t offset = tkv - tq;
    for (int64_t i = 0; i < tq; i++) {
        T *row = s + i * tkv;
        int64_t nk = mk == RT_MASK_CAUSAL ? offset + i + 1 : tkv;
        if (nk > tkv)
            nk = tkv;
        if (nk < 0)
            nk = 0;
        const uint8_t *mrow = mk == RT_MASK_BOOL ? mask + i * tkv : NULL;
        T mx = -INFINITY, sum = 0;
        if (mrow) {
            for (int64_t j = 0; j < nk; j++)
                if (mrow[j] && row[j] > mx)
                    mx = row[j];
            if (mx == -INFINITY) {
                memset(row, 0, (size_t)tkv * sizeof(T));
                continue;
            }
            for (int64_t j = 0; j < nk; j++) {
                T p = mrow[j] ? EXP(row[j] - mx) : (T)0;
                row[j] = p;
                sum += p;
            }
        } else {
            if (nk == 0) {
                memset(row, 0, (size_t)tkv * sizeof(T));
                continue;
            }
            for (int64_t j = 0; j < nk; j++)
                mx = row[j] > mx ? row[j] : mx;
            for (int64_t j = 0; j < nk; j++) {
                T p = EXP(row[j] - mx);
                row[j] = p;
                sum += p;
            }
        }
        const T inv = (T)1 / sum;
        for (int64_t j = 0; j < nk; j++)
            row[j] *= inv;
        for (int64_t j = nk; j < tkv; j++)
            row[j] = 0;
    }
}

/* q [bh, tq, dh]; k, v [bh, cap, dh] (first tkv rows used); att [bh, tq, tkv]
 * or NULL (then `work` holds tq * tkv elements); o [bh, tq, dh]. */
static void SFX(attention_fwd)(int64_t bh, int64_t tq, int64_t cap, int64_t tkv, int64_t dh,
                               const T *q, const T *k, const T *v, rt_mask_kind mk,
                               const uint8_t *mask, T *att, T *o, T *work)
{
    const T scale = (T)(1.0 / sqrt((double)dh));
    for (int64_t b = 0; b < bh; b++) {
        const T *qb = q + b * tq * dh, *kb = k + b * cap * dh, *vb = v + b * cap * dh;
        T *s = att ? att + b * tq * tkv : work;
        GEMM(0, 1, tq, tkv, dh, scale, qb, dh, kb, dh, (T)0, s, tkv);
        SFX(att_softmax)(s, tq, tkv, mk, mask);
        GEMM(0, 0, tq, dh, tkv, (T)1, s, tkv, vb, dh, (T)0, o + b * tq * dh, dh);
    }
}

/* dv = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)); dq = scale dS K;
 * dk = scale dS^T Q.  work: tq * tkv elements.  Gradients overwrite. */
static void SFX(attention_bwd)(int64_t bh, int64_t tq, int64_t cap, int64_t tkv, int64_t dh,
                               const T *q, const T *k, const T *v, const T *att, const T *dout,
                               T *dq, T *dk, T *dv, T *work)
{
    const T scale = (T)(1.0 / sqrt((double)dh));
    for (int64_t b = 0; b < bh; b++) {
        const T *qb = q + b * tq * dh, *kb = k + b * cap * dh, *vb = v + b * cap * dh;
        const T *p = att + b * tq * tkv, *dob = dout + b * tq * dh;
        if (dv)
            GEMM(1, 0, tkv, dh, tq, (T)1, p, tkv, dob, dh, (T)0, dv + b * cap * dh, dh);
        if (!dq && !dk)
            continue;
        T *ds = work;
        GEMM(0, 1, tq, tkv, dh, (T)1, dob, dh, vb, dh, (T)0, ds, tkv);
        for (int64_t i = 0; i < tq; i++) {
            T *row = ds + i * tkv;
            const T *prow = p + i * tkv;
            T dot = 0;
            for (int64_t j = 0; j < tkv; j++)
                dot += row[j] * prow[j];
            for (int64_t j = 0; j < tkv; j++)
                row[j] = prow[j] * (row[j] - dot);
        }
        if (dq)
            GEMM(0, 0, tq, dh, tkv, scale, ds, tkv, kb, dh, (T)0, dq + b * tq * dh, dh);
        if (dk)
            GEMM(1, 0, tkv, dh, tq, scale, ds, tkv, qb, dh, (T)0, dk + b * cap * dh, dh);
    }
}

#undef T
#undef SFX
#undef GEMM
#undef EXP
