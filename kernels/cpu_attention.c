/* The dynamic vectorizer cost model: see kernels/cpu_ops.c. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include "cpu_attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_blas.h"

int ps_cpu_mask_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "none"))
        return PS_CPU_MASK_NONE;
    if (!strcmp(s, "causal"))
        return PS_CPU_MASK_CAUSAL;
    if (!strcmp(s, "tree"))
        return PS_CPU_MASK_TREE;
    return -1;
}

size_t ps_cpu_attention_work_floats(int64_t sq, int64_t skv)
{
    int64_t bq = sq < PS_CPU_ATTN_BLOCK ? sq : PS_CPU_ATTN_BLOCK;
    return (size_t)(bq * skv);
}

void ps_cpu_tree_mask(int64_t sq, int64_t skv, const int64_t *parent, uint8_t *mask)
{
    int64_t prefix = skv - sq;
    memset(mask, 0, (size_t)(sq * skv));
    for (int64_t i = 0; i < sq; i++) {
        uint8_t *row = mask + i * skv;
        memset(row, 1, (size_t)prefix);
        for (int64_t a = i; a >= 0; a = parent[a] < a ? parent[a] : -1)
            row[prefix + a] = 1;
    }
}

/* Softmax of one score row over keys [0, n) where allowed; masked entries
 * and rows with nothing allowed become 0. */
static void softmax_row(float *s, int64_t n, int64_t causal_end, const uint8_t *mrow)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        int ok = mrow ? mrow[j] != 0 : j < causal_end;
        if (!ok)
            s[j] = -INFINITY;
        else if (s[j] > mx)
            mx = s[j];
    }
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof *s);
        return;
    }
    float sum = 0;
    for (int64_t j = 0; j < n; j++) {
        float x = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
        s[j] = x;
        sum += x;
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++)
        s[j] *= inv;
}

int ps_cpu_attention(int64_t b, int64_t h, int64_t sq, int64_t skv, int64_t d, const float *q,
                     const float *k, const float *v, ps_cpu_mask_kind mask_kind,
                     const uint8_t *mask, float *o, float *work)
{
    if (mask_kind == PS_CPU_MASK_TREE && !mask)
        return -1;
    float *own = NULL;
    if (!work) {
        own = malloc(ps_cpu_attention_work_floats(sq, skv) * sizeof *own + 1);
        if (!own)
            return -1;
        work = own;
    }
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t offset = skv - sq; /* key position of query 0 */
    for (int64_t bh = 0; bh < b * h; bh++) {
        const float *qh = q + bh * sq * d, *kh = k + bh * skv * d, *vh = v + bh * skv * d;
        float *oh = o + bh * sq * d;
        for (int64_t q0 = 0; q0 < sq; q0 += PS_CPU_ATTN_BLOCK) {
            int64_t nq = sq - q0 < PS_CPU_ATTN_BLOCK ? sq - q0 : PS_CPU_ATTN_BLOCK;
            /* Keys this block can see at all: causal stops at its last query. */
            int64_t nk = mask_kind == PS_CPU_MASK_CAUSAL ? offset + q0 + nq : skv;
            ps_cpu_sgemm(0, 1, nq, nk, d, scale, qh + q0 * d, d, kh, d, 0.0f, work, nk);
            for (int64_t i = 0; i < nq; i++) {
                const uint8_t *mrow =
                    mask_kind == PS_CPU_MASK_TREE ? mask + (q0 + i) * skv : NULL;
                int64_t cend = mask_kind == PS_CPU_MASK_CAUSAL ? offset + q0 + i + 1 : nk;
                softmax_row(work + i * nk, nk, cend, mrow);
            }
            ps_cpu_sgemm(0, 0, nq, d, nk, 1.0f, work, nk, vh, d, 0.0f, oh + q0 * d, d);
        }
    }
    free(own);
    return 0;
}
