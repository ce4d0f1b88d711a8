/* Ideals of a DAG for the Piper-style DPs (planner_piper.c, piper_dp.c):
 * see pp_ideals_enum in planner_impl.h. */
#include <stdlib.h>
#include <string.h>

#include "sim/pipeline/planner_impl.h"

void pp_ideals_free(pp_ideals *p)
{
    free(p->bits);
    free(p->size);
    free(p->sub_off);
    free(p->sub);
    memset(p, 0, sizeof *p);
}

static int push(pp_ideals *p, size_t *cap, const pp_word *b, int size, ps_err *e)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        pp_word *nb = realloc(p->bits, nc * p->words * sizeof *nb);
        if (nb)
            p->bits = nb;
        int *ns = realloc(p->size, nc * sizeof *ns);
        if (ns)
            p->size = ns;
        if (!nb || !ns)
            return ps_errf(e, PS_ERUN, "piper: out of memory (ideals)");
        *cap = nc;
    }
    memcpy(p->bits + p->n * p->words, b, p->words * sizeof *b);
    p->size[p->n++] = size;
    return 0;
}

int pp_ideals_enum(int nv, const int *succ_off, const int *succ, const int *pred_off,
                   const int *pred, long limit, pp_ideals *p, int *over, ps_err *e)
{
    memset(p, 0, sizeof *p);
    p->words = PP_BITS_WORDS(nv);
    const size_t w = p->words;
    size_t cap = 0;
    pp_bitset_set h = {0};
    pp_word *nb = calloc(w, sizeof *nb);
    int rc = 0;
    *over = 0;
    if (!nb)
        return ps_errf(e, PS_ERUN, "piper: out of memory");
    if ((rc = push(p, &cap, nb, 0, e)) ||
        (rc = pp_bitset_set_insert(&h, p->bits, w, 0, "piper", e)))
        goto done;
    /* BFS from the empty set: add any op whose successors are all in */
    for (size_t cur = 0; cur < p->n; cur++) {
        for (int v = 0; v < nv; v++) {
            const pp_word *I = p->bits + cur * w;
            if (pp_bit_get(I, v))
                continue;
            int ok = 1;
            for (int k = succ_off[v]; k < succ_off[v + 1] && ok; k++)
                ok = pp_bit_get(I, succ[k]);
            if (!ok)
                continue;
            memcpy(nb, I, w * sizeof *nb);
            pp_bit_set(nb, v);
            if (pp_bitset_set_find(&h, p->bits, w, nb) >= 0)
                continue;
            if ((long)p->n >= limit) {
                *over = 1;
                goto done;
            }
            if ((rc = push(p, &cap, nb, p->size[cur] + 1, e)) ||
                (rc = pp_bitset_set_insert(&h, p->bits, w, (int)p->n - 1, "piper", e)))
                goto done;
        }
    }
    /* immediate sub-ideals: I - v for v in I with no predecessor in I */
    size_t scap = p->n * 2 + 16, cnt = 0;
    p->sub_off = calloc(p->n + 1, sizeof(int));
    p->sub = malloc(scap * sizeof(int));
    if (!p->sub_off || !p->sub) {
        rc = ps_errf(e, PS_ERUN, "piper: out of memory");
        goto done;
    }
    for (size_t i = 0; i < p->n; i++) {
        p->sub_off[i] = (int)cnt;
        const pp_word *I = p->bits + i * w;
        for (int v = 0; v < nv; v++) {
            if (!pp_bit_get(I, v))
                continue;
            int minimal = 1;
            for (int k = pred_off[v]; k < pred_off[v + 1] && minimal; k++)
                minimal = !pp_bit_get(I, pred[k]);
            if (!minimal)
                continue;
            memcpy(nb, I, w * sizeof *nb);
            pp_bit_clr(nb, v);
            int j = pp_bitset_set_find(&h, p->bits, w, nb);
            if (j < 0)
                continue; /* cannot happen: I - v is successor-closed */
            if (cnt == scap) {
                scap *= 2;
                int *ns = realloc(p->sub, scap * sizeof *ns);
                if (!ns) {
                    rc = ps_errf(e, PS_ERUN, "piper: out of memory");
                    goto done;
                }
                p->sub = ns;
            }
            p->sub[cnt++] = j;
        }
    }
    p->sub_off[p->n] = (int)cnt;
done:
    free(nb);
    pp_bitset_set_free(&h);
    return rc;
}
