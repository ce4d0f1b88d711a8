/* Helpers shared by the runtime's own .c files (real/tensor.c,
 * real/cpu_layers.c, real/cpu_seq.c, real/gpt.c); not part of the public
 * interface (real/rt.h).  Errors name the function fn and the operand. */
#ifndef PS_REAL_RT_INTERNAL_H
#define PS_REAL_RT_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "real/rt.h"

/* Returns the nonzero result of x from the calling function. */
#define TRY(x)                                                                                  \
    do {                                                                                        \
        int rc_ = (x);                                                                          \
        if (rc_)                                                                                \
            return rc_;                                                                         \
    } while (0)

/* "[d0<sep>d1...]" into buf (truncated to n bytes). */
static inline const char *dims_str_sep(int ndim, const int64_t *dims, const char *sep, char *buf,
                                       size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? sep : "", (long long)dims[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

/* "[d0, d1, ...]" */
static inline const char *dims_str(int ndim, const int64_t *dims, char *buf, size_t n)
{
    return dims_str_sep(ndim, dims, ", ", buf, n);
}

/* t is an allocated tensor of a known dtype. */
static inline int chk_t(const char *fn, const char *name, const rt_tensor *t, ps_err *e)
{
    if (!t || !t->data || t->ndim < 1 || t->ndim > RT_MAXDIM ||
        (unsigned)t->dtype >= RT_DTYPE_COUNT)
        return ps_errf(e, PS_EINPUT, "%s: %s: no tensor (NULL or unallocated)", fn, name);
    return 0;
}

/* Same dtype and device as ref. */
static inline int chk_like(const char *fn, const char *name, const rt_tensor *t,
                           const rt_tensor *ref, const char *refname, ps_err *e)
{
    if (chk_t(fn, name, t, e))
        return PS_EINPUT;
    if (t->dtype != ref->dtype || t->dev != ref->dev) {
        char b1[128], b2[128];
        return ps_errf(e, PS_EINPUT, "%s: %s: %s differs in dtype or device from %s %s", fn,
                       name, rt_tensor_desc(t, b1, sizeof b1), refname,
                       rt_tensor_desc(ref, b2, sizeof b2));
    }
    return 0;
}

#endif
