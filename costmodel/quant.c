/* Quantized GEMMs and the LLM step model: time and bytes per bit width. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "costmodel/model_impl.h"

static double scale_bytes_of(double weights, int bits, double groups)
{
    /* An fp16 scale per group; unquantized (>= 16-bit) weights need none. */
    (void)weights;
    return bits < 16 ? 2.0 * groups : 0;
}

double cm_quant_weight_bytes(double params, int bits, int64_t group_size)
{
    double groups = group_size > 0 ? ceil(params / (double)group_size) : 1;
    return params * bits / 8.0 + scale_bytes_of(params, bits, groups);
}

static int valid_bits(int b) { return (b >= 1 && b <= 8) || b == 16 || b == 32; }

/* The dtype name a measured GEMM would carry for a compute precision. */
static const char *dtype_of(cm_prec p) { return cm_prec_name(p); }

int cm_quant_gemm(const cm_model *m, int64_t M, int64_t N, int64_t K, int w_bits, int a_bits,
                  int64_t group_size, cm_quant_pred *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (M < 1 || N < 1 || K < 1)
        return ps_errf(e, PS_EINPUT, "quantized gemm: m, n, k must be >= 1 (got %lld, %lld, %lld)",
                       (long long)M, (long long)N, (long long)K);
    if (!valid_bits(w_bits))
        return ps_errf(e, PS_EINPUT, "quantized gemm: weight bits must be 1..8, 16 or 32 (got %d)",
                       w_bits);
    if (a_bits != 4 && a_bits != 8 && a_bits != 16 && a_bits != 32)
        return ps_errf(e, PS_EINPUT, "quantized gemm: activation bits must be 4, 8, 16 or 32 (got %d)",
                       a_bits);
    if (group_size < 0)
        return ps_errf(e, PS_EINPUT, "quantized gemm: group_size must be >= 0 (got %lld)",
                       (long long)group_size);
    const cm_device *d = &m->dev;
    double W = (double)K * (double)N;
    double groups = group_size > 0 ? ceil((double)K / (double)group_size) * (double)N : (double)N;
    out->scale_bytes = scale_bytes_of(W, w_bits, groups);
    out->weight_bytes = W * w_bits / 8.0 + out->scale_bytes;
    double out_w = a_bits == 32 ? 4 : 2; /* results leave rescaled to fp16 */
    out->act_bytes = (double)M * K * a_bits / 8.0 + (double)M * N * out_w;
    out->total_bytes = out->weight_bytes + out->act_bytes;
    out->flops = 2.0 * M * N * K;

    cm_prec cp;
    int integer = w_bits <= 8 && a_bits <= 8;
    cm_prec want = w_bits <= 4 && a_bits <= 4 ? CM_INT4 : CM_INT8;
    if (integer && d->peak_flops[want] > 0) {
        cp = want;
        snprintf(out->path, sizeof out->path, "%s tensor", cm_prec_name(cp));
    } else if (integer && want == CM_INT4 && d->peak_flops[CM_INT8] > 0) {
        cp = CM_INT8;
        snprintf(out->path, sizeof out->path, "int4 unpacked->int8");
    } else if (a_bits == 32 || !(d->peak_flops[CM_FP16] > 0)) {
        cp = CM_FP32;
        snprintf(out->path, sizeof out->path, w_bits < 32 ? "dequant->fp32" : "fp32");
    } else {
        cp = CM_FP16;
        snprintf(out->path, sizeof out->path, w_bits < 16 ? "dequant->fp16" : "fp16");
    }
    out->compute = cp;

    /* Roofline at the quantized traffic, and at the full width of the
     * compute precision: their ratio rescales a measured GEMM of that
     * precision (memory-bound shapes gain the bytes saved, compute-bound
     * ones nothing). */
    const char *dt = dtype_of(cp);
    double wfull = ps_op_dtype_bytes(dt);
    double full_bytes = wfull * ((double)M * K + W + (double)M * N);
    double tq = cm_roofline_time(m, PS_OPK_GEMM, dt, out->flops, out->total_bytes);
    double tf = cm_roofline_time(m, PS_OPK_GEMM, dt, out->flops, full_bytes);
    ps_op op;
    int64_t dims[3] = {M, N, K};
    cm_pred p;
    out->time_s = tq;
    out->source = CM_SRC_ROOFLINE;
    if (!ps_op_make(&op, "gemm", dt, NULL, dims, 3, NULL) && !cm_op_time(m, &op, &p, NULL) &&
        p.source != CM_SRC_ROOFLINE && tf > 0) {
        out->time_s = p.time_s * tq / tf;
        out->source = p.source;
    }
    return 0;
}

int cm_llm_step(const cm_model *m, const cm_llm *l, int64_t batch, int64_t tokens, int64_t ctx,
                cm_llm_pred *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (!(l->params > 0) || l->layers < 1 || l->heads < 1 || l->head_dim < 1 || l->kv_heads < 1 ||
        l->d_model < 1)
        return ps_errf(e, PS_EINPUT,
                       "llm: params, layers, d_model, heads, kv_heads, head_dim must be > 0");
    if (!valid_bits(l->weight_bits) || !valid_bits(l->kv_bits))
        return ps_errf(e, PS_EINPUT, "llm: weight_bits and kv_bits must be 1..8, 16 or 32");
    if (batch < 1 || tokens < 1 || ctx < 0)
        return ps_errf(e, PS_EINPUT, "llm: batch and tokens must be >= 1, ctx >= 0 (got %lld, %lld, %lld)",
                       (long long)batch, (long long)tokens, (long long)ctx);
    double B = (double)batch, N = (double)tokens, C = (double)ctx, L = l->layers;
    double T = B * N;
    double kv_row = 2.0 * l->kv_heads * l->head_dim * l->kv_bits / 8.0; /* K and V, per token per layer */
    out->weight_bytes = cm_quant_weight_bytes(l->params, l->weight_bits, 128);
    out->kv_bytes = B * L * kv_row * (C + N);
    /* Activations crossing memory between kernels: a few d_model vectors
     * per token per layer at 16 bits; small next to weights until T is
     * large, included so that prefill is not free of traffic. */
    double act = T * L * l->d_model * 2.0 * 8;
    out->bytes = out->weight_bytes + out->kv_bytes + act;
    double attn_per_token = 4.0 * L * l->heads * l->head_dim * (C + N);
    out->flops = 2.0 * l->params * T + B * N * attn_per_token;

    cm_prec cp = l->weight_bits >= 32 ? CM_FP32 : CM_FP16;
    double peak = cm_device_peak(&m->dev, cp, NULL);
    double ec = m->eff_c[PS_OPK_GEMM], em = m->eff_m[PS_OPK_GEMM];
    double bw = m->dev.mem_bw_bytes_per_s;
    if (!(peak > 0) || !(bw > 0))
        return ps_errf(e, PS_EINPUT, "llm: device %s has no peak rate or bandwidth", m->dev.name);
    int kpl = l->kernels_per_layer > 0 ? l->kernels_per_layer : 8;
    out->overhead_s = L * kpl * m->launch_s;
    out->compute_s = out->flops / (peak * ec);
    out->memory_s = out->bytes / (bw * em);
    out->compute_bound = out->compute_s > out->memory_s;
    out->time_s = out->overhead_s + fmax(out->compute_s, out->memory_s);
    /* Knee: tokens per step (all sequences) where compute catches up with
     * memory, holding the per-token costs at this context. */
    double f_tok = 2.0 * l->params + attn_per_token;
    double b_tok = L * kv_row + L * l->d_model * 2.0 * 8;
    double fixed_b = out->weight_bytes + B * L * kv_row * C;
    double slope = f_tok / (peak * ec) - b_tok / (bw * em);
    out->knee_tokens = slope > 0 ? fixed_b / (bw * em) / slope : INFINITY;
    return 0;
}
