/* Queues of sim/des (internal; bench.c uses evq for the hold model).
 *
 * evq, the event queue, is a radix heap (Ahuja, Mehlhorn, Orlin, Tarjan
 * 1990) over the IEEE bit patterns of event times.  Simulated time never goes
 * back, and for non-negative doubles the bit pattern orders like the value,
 * so the monotone radix heap applies: bucket i holds the events whose time
 * bits first differ from the last extracted time at bit i-1 (bucket 0: equal
 * to it).  A push is an append; a bucket is scanned only when it becomes the
 * lowest non-empty one, and then every event in it moves to a strictly
 * lower bucket, so each event moves at most 64 times, in practice a few.
 * Bucket 0 is exactly the set of events due now: the engine takes it whole
 * as one wave and orders it by payload itself (the tie-breaking rule), so
 * the queue never compares payloads.  When the lowest bucket holds only
 * events of one time (the usual case) it is handed over as the wave
 * without moving anything.
 *
 * pq, the ready queue of an exclusive resource, is a 4-ary min-heap of
 * 128-bit keys (order key << 64 | task id): its keys are priorities, not
 * times, so they are not monotone.  It is usually tiny. */
#ifndef PS_DES_EVQ_H
#define PS_DES_EVQ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The hot loop of des_run is built from these; GCC would otherwise outline
 * some and pay a call per event. */
#define EVQ_INLINE static inline __attribute__((always_inline))

EVQ_INLINE uint64_t evq_bits(double t)
{
    uint64_t b;
    memcpy(&b, &t, sizeof b);
    return b;
}

EVQ_INLINE double evq_time_of(uint64_t b)
{
    double t;
    memcpy(&t, &b, sizeof t);
    return t;
}

typedef struct evq_ent {
    uint64_t key;     /* time bits */
    uint32_t payload;
    uint32_t pad;
} evq_ent;

typedef struct evq_vec {
    evq_ent *v;
    uint32_t n, cap;
} evq_vec;

/* Radix 2^8: bucket 1 + 256 l + d holds the events whose highest byte that
 * differs from `last` is byte l, with value d there.  Buckets in index
 * order are in key order, a bitmap finds the first non-empty one, and an
 * event moves at most once per byte level (usually once or twice in all). */
#define EVQ_LEVELS 8
#define EVQ_NB (1 + EVQ_LEVELS * 256)

typedef struct evq {
    uint64_t last;    /* key of the events in b[0]: the last extracted minimum */
    size_t n;         /* events in all buckets */
    uint32_t summary; /* bit w: mask[w] != 0 */
    uint64_t mask[EVQ_NB / 64]; /* bit j: bucket j + 1 is non-empty */
    evq_vec b[EVQ_NB];
} evq;

static inline void evq_free(evq *q)
{
    for (int i = 0; i < EVQ_NB; i++)
        free(q->b[i].v);
    memset(q, 0, sizeof *q);
}

static inline int evq_vec_grow(evq_vec *v)
{
    uint32_t nc = v->cap ? 2 * v->cap : 16;
    if (nc <= v->cap)
        return -1;
    evq_ent *p = realloc(v->v, (size_t)nc * sizeof *p);
    if (!p)
        return -1;
    v->v = p;
    v->cap = nc;
    return 0;
}

EVQ_INLINE unsigned evq_bucket(uint64_t key, uint64_t last)
{
    uint64_t x = key ^ last;
    if (!x)
        return 0;
    unsigned l = (63u - (unsigned)__builtin_clzll(x)) >> 3;
    return 1u + (l << 8) + (unsigned)((key >> (l << 3)) & 255u);
}

EVQ_INLINE int evq_put(evq *q, unsigned i, evq_ent e)
{
    evq_vec *v = &q->b[i];
    if (v->n == v->cap && evq_vec_grow(v))
        return -1;
    v->v[v->n++] = e;
    if (i) {
        unsigned j = i - 1;
        q->mask[j >> 6] |= 1ull << (j & 63);
        q->summary |= 1u << (j >> 6);
    }
    return 0;
}

/* key must be >= the last extracted time (simulated time is monotone). */
EVQ_INLINE int evq_push_bits(evq *q, uint64_t key, uint32_t payload)
{
    q->n++;
    return evq_put(q, evq_bucket(key, q->last), (evq_ent){key, payload, 0});
}

EVQ_INLINE int evq_push(evq *q, double t, uint32_t payload)
{
    return evq_push_bits(q, evq_bits(t), payload);
}

/* Move all events at the earliest time into *wave (empty on entry; its
 * storage is swapped, not copied, whenever possible) and set `last` to that
 * time.  Nothing happens on an empty queue.  0, or -1 on allocation failure
 * (the queue is then unusable). */
EVQ_INLINE int evq_next_wave(evq *q, evq_vec *wave)
{
    evq_vec *src = &q->b[0];
    if (!src->n) {
        if (!q->summary)
            return 0;
        unsigned w = (unsigned)__builtin_ctz(q->summary);
        unsigned j = (w << 6) + (unsigned)__builtin_ctzll(q->mask[w]);
        src = &q->b[j + 1];
        q->mask[w] &= ~(1ull << (j & 63));
        if (!q->mask[w])
            q->summary &= ~(1u << w);
        uint64_t m = src->v[0].key;
        int same = 1;
        for (uint32_t k = 1; k < src->n; k++) {
            uint64_t key = src->v[k].key;
            same &= key == m;
            if (key < m)
                m = key;
        }
        q->last = m;
        if (!same) {
            /* Every event here shares the bytes above this level with m,
             * so each lands in a strictly lower bucket (b[0] if equal to
             * m); the other buckets stay valid. */
            for (uint32_t k = 0; k < src->n; k++)
                if (evq_put(q, evq_bucket(src->v[k].key, m), src->v[k]))
                    return -1;
            src->n = 0;
            src = &q->b[0];
        }
        /* else: the whole bucket is due at m; it becomes the wave as is */
    }
    evq_vec w = *src;
    *src = *wave;
    src->n = 0;
    *wave = w;
    q->n -= w.n;
    return 0;
}

/* Time of the events last returned by evq_next_wave. */
EVQ_INLINE double evq_min_time(const evq *q) { return evq_time_of(q->last); }

/* One earliest event (any of the tied ones); q->n > 0.  For callers that
 * want single events (the hold benchmark): b[0] is refilled by waves. */
EVQ_INLINE int evq_pop(evq *q, evq_vec *spare, evq_ent *out)
{
    if (!spare->n && evq_next_wave(q, spare))
        return -1;
    *out = spare->v[--spare->n];
    return 0;
}

/* ------------------------------------------------------------------ */

__extension__ typedef unsigned __int128 pq_key;

typedef struct pq {
    pq_key *h;        /* h[0] is the root; h[4i+1..4i+4] are node i's children */
    uint32_t n, cap;
} pq;

EVQ_INLINE pq_key pq_make(uint64_t order, uint32_t id) { return ((pq_key)order << 64) | id; }
EVQ_INLINE uint32_t pq_id(pq_key k) { return (uint32_t)k; }

static inline void pq_free(pq *q)
{
    free(q->h);
    memset(q, 0, sizeof *q);
}

EVQ_INLINE int pq_push(pq *q, pq_key k)
{
    if (q->n == q->cap) {
        uint32_t nc = q->cap ? 2 * q->cap : 8;
        pq_key *h = realloc(q->h, (size_t)nc * sizeof *h);
        if (!h || nc <= q->cap) {
            if (h)
                q->h = h;
            return -1;
        }
        q->h = h;
        q->cap = nc;
    }
    pq_key *h = q->h;
    uint32_t i = q->n++;
    while (i > 0) {
        uint32_t p = (i - 1) >> 2;
        if (h[p] <= k)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = k;
    return 0;
}

/* q->n > 0. */
EVQ_INLINE pq_key pq_pop(pq *q)
{
    pq_key *h = q->h;
    pq_key top = h[0];
    uint32_t n = --q->n;
    if (n == 0)
        return top;
    pq_key x = h[n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 4 * i + 1;
        if (c >= n)
            break;
        uint32_t m = c, end = c + 4 < n ? c + 4 : n;
        for (uint32_t j = c + 1; j < end; j++)
            if (h[j] < h[m])
                m = j;
        if (x <= h[m])
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
    return top;
}

#endif
