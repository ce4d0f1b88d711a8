/* sim/specdec: the small seedable RNG every speculative-decoding sampler
 * shares (xoshiro256** seeded through splitmix64).  Header-only: the
 * simulator, the verifiers and the real tiny models draw from it, so a seed
 * means the same stream everywhere. */
#ifndef PS_SPECDEC_RNG_H
#define PS_SPECDEC_RNG_H

#include <stdint.h>

typedef struct sd_rng {
    uint64_t s[4];
} sd_rng;

static inline uint64_t sd_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void sd_rng_seed(sd_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = sd_splitmix64(&x);
}

static inline uint64_t sd_rng_next(sd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5u;
    uint64_t out = ((x << 7) | (x >> 57)) * 9u;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return out;
}

/* Uniform on [0, 1) with 53 random bits. */
static inline double sd_rng_u01(sd_rng *r) { return (double)(sd_rng_next(r) >> 11) * 0x1.0p-53; }

/* Index drawn from the (unnormalised, non-negative) weights w[0..n); the
 * total may be passed (<= 0: computed).  Returns n - 1 on rounding overrun,
 * never an index with zero weight unless all are zero (then -1). */
static inline int sd_rng_pick(sd_rng *r, const double *w, int n, double total)
{
    if (total <= 0) {
        total = 0;
        for (int i = 0; i < n; i++)
            total += w[i];
    }
    if (!(total > 0))
        return -1;
    double u = sd_rng_u01(r) * total, c = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (w[i] <= 0)
            continue;
        c += w[i];
        last = i;
        if (u < c)
            return i;
    }
    return last;
}

#endif
