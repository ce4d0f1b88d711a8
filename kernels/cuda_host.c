/* The host-side half of the CUDA kernels' API (kernels/cuda_ops.h,
 * cuda_blas.h, cuda_dnn.h): names, parsing and mask construction.  Plain C
 * with no CUDA dependency, so it is built — and unit-tested — everywhere,
 * including the build without CUDA. */
#include <stdio.h>
#include <string.h>

#include "kernels/cuda_blas.h"
#include "kernels/cuda_dnn.h"
#include "kernels/cuda_ops.h"

static const struct {
    const char *name;
    size_t size;
} DT[PS_CU_DTYPE_COUNT] = {{"f32", 4}, {"f64", 8}, {"f16", 2}, {"bf16", 2},
                           {"i8", 1},  {"i32", 4}, {"i64", 8}, {"u8", 1}};

size_t ps_cu_dtype_size(ps_cu_dtype t)
{
    return (unsigned)t < PS_CU_DTYPE_COUNT ? DT[t].size : 0;
}

const char *ps_cu_dtype_name(ps_cu_dtype t)
{
    return (unsigned)t < PS_CU_DTYPE_COUNT ? DT[t].name : "?";
}

int ps_cu_dtype_parse(const char *s, ps_cu_dtype *out, ps_err *e)
{
    static const struct {
        const char *n;
        ps_cu_dtype t;
    } M[] = {{"fp32", PS_CU_F32}, {"tf32", PS_CU_F32},   {"fp64", PS_CU_F64},
             {"fp16", PS_CU_F16}, {"bf16", PS_CU_BF16},  {"int8", PS_CU_I8},
             {"int32", PS_CU_I32}, {"int64", PS_CU_I64}, {"uint8", PS_CU_U8}};
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (s && strcmp(s, M[i].n) == 0) {
            *out = M[i].t;
            return 0;
        }
    return ps_errf(e, PS_EINPUT, "dtype '%s' has no CUDA storage type here", s ? s : "(null)");
}

static int parse_name(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

static const char *const EW_NAMES[PS_EW_COUNT] = {"relu", "gelu", "tanh", "sigmoid", "add", "mul"};

int ps_cuda_ew_parse(const char *s, ps_ew_op *out, ps_err *e)
{
    int i;
    if (parse_name(s, EW_NAMES, PS_EW_COUNT, &i))
        return ps_errf(e, PS_EINPUT, "unknown elementwise op '%s' (relu, gelu, tanh, sigmoid, "
                       "add, mul)", s ? s : "(null)");
    *out = (ps_ew_op)i;
    return 0;
}

int ps_cuda_ew_is_binary(ps_ew_op op)
{
    return op == PS_EW_ADD || op == PS_EW_MUL;
}

static const char *const RED_NAMES[PS_RED_COUNT] = {"softmax", "layernorm", "sum"};

int ps_cuda_red_parse(const char *s, ps_red_op *out, ps_err *e)
{
    int i;
    if (parse_name(s, RED_NAMES, PS_RED_COUNT, &i))
        return ps_errf(e, PS_EINPUT, "unknown reduction '%s' (softmax, layernorm, sum)",
                       s ? s : "(null)");
    *out = (ps_red_op)i;
    return 0;
}

static const char *const MASK_NAMES[] = {"none", "causal", "tree"};

int ps_cuda_mask_parse(const char *s, ps_mask_kind *out, ps_err *e)
{
    int i;
    if (parse_name(s, MASK_NAMES, 3, &i))
        return ps_errf(e, PS_EINPUT, "unknown attention mask '%s' (none, causal, tree)",
                       s ? s : "(null)");
    *out = (ps_mask_kind)i;
    return 0;
}

void ps_attention_tree_mask(int64_t sq, int64_t skv, const int64_t *parent, uint8_t *mask)
{
    int64_t prefix = skv - sq;
    for (int64_t i = 0; i < sq; i++) {
        uint8_t *row = mask + (size_t)i * skv;
        for (int64_t j = 0; j < skv; j++)
            row[j] = j < prefix;
        /* Walk up from i to the root; parent[a] < a guarantees the walk ends
         * (anything else is treated as a root). */
        for (int64_t a = i; a >= 0; a = parent[a] < a ? parent[a] : -1)
            if (prefix + a >= 0)
                row[prefix + a] = 1;
    }
}

static const char *const PREC_NAMES[PS_GEMM_PREC_COUNT] = {"fp32", "tf32", "fp64", "fp16",
                                                           "bf16"};

int ps_gemm_prec_parse(const char *s, ps_gemm_prec *out, ps_err *e)
{
    int i;
    if (parse_name(s, PREC_NAMES, PS_GEMM_PREC_COUNT, &i))
        return ps_errf(e, PS_EINPUT, "GEMM precision '%s' has no cuBLAS path here (fp32, tf32, "
                       "fp64, fp16, bf16; int8 through cuBLASLt)", s ? s : "(null)");
    *out = (ps_gemm_prec)i;
    return 0;
}

const char *ps_gemm_prec_name(ps_gemm_prec p)
{
    return (unsigned)p < PS_GEMM_PREC_COUNT ? PREC_NAMES[p] : "?";
}

ps_cu_dtype ps_gemm_prec_dtype(ps_gemm_prec p)
{
    switch (p) {
    case PS_GEMM_FP64: return PS_CU_F64;
    case PS_GEMM_FP16: return PS_CU_F16;
    case PS_GEMM_BF16: return PS_CU_BF16;
    default: return PS_CU_F32;
    }
}

int ps_gemm_variant_parse(const char *s, int *ta, int *tb, ps_err *e)
{
    if (!s || strlen(s) != 2 || (s[0] != 'n' && s[0] != 't') || (s[1] != 'n' && s[1] != 't'))
        return ps_errf(e, PS_EINPUT, "GEMM variant '%s' (expected nn, nt, tn or tt)",
                       s ? s : "(null)");
    *ta = s[0] == 't';
    *tb = s[1] == 't';
    return 0;
}

static const char *const DIR_NAMES[] = {"fwd", "bwd_input", "bwd_weight"};

int ps_conv_dir_parse(const char *s, ps_conv_dir *out, ps_err *e)
{
    int i;
    if (parse_name(s, DIR_NAMES, 3, &i))
        return ps_errf(e, PS_EINPUT, "conv2d direction '%s' (fwd, bwd_input, bwd_weight)",
                       s ? s : "(null)");
    *out = (ps_conv_dir)i;
    return 0;
}
