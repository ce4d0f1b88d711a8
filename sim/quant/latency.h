/* sim/quant/latency: a per-layer latency lookup table of the integer CNN
 * (real/qcnn.h) from microbenchmarks, and the end-to-end prediction it gives.
 *
 * Table.  For every layer l and every weight-bit choice b (e.g. 2,3,4,6,8 and
 * 32 = f32) at batch B: the layer alone (qcnn_layer_forward: activation
 * quantization, im2col, GEMM, dequant epilogue, pooling) is timed once per
 * round, over `warmup` + `runs` rounds (≥ 30 recommended); each round visits
 * every (layer, bits) cell in turn (interleaved: a burst of load from other
 * processes on a shared machine lands on every cell alike instead of on a
 * block of consecutive cells).  The table keeps the median t[l][b] and, of
 * the same runs, the median GEMM part and the median non-GEMM part.  The only work outside the layers,
 * copying the NCHW input into the NHWC buffer, is the `overhead_s` entry
 * (median of its own runs).
 *
 *   predicted(bits) = overhead_s + Σ_l t[l][bits_l]
 *   measured(bits)  = median over `runs` timed full qcnn_forward at batch B
 *
 * The isolated cells run with the layer's code and data hot; a forward in
 * use follows some other configuration.  The measured latency depends on
 * that context by ~5-10 % at batch 1 (docs/quant-latency.md), hence
 * psq_lat_measure_context below: cells timed inside forwards of uniform
 * calibration configurations, in random order among the measured ones.  Times are on q's
 * clock (q->cpu_clock: wall, or the thread's CPU time). */
#ifndef PS_QUANT_LATENCY_H
#define PS_QUANT_LATENCY_H

#include "common/err.h"
#include "common/table.h"
#include "real/qcnn.h"

#define PSQ_LAT_MAX_BITS 8

typedef struct psq_lat_table {
    int n_layers, n_bits;
    int bits[PSQ_LAT_MAX_BITS];
    int64_t batch;
    int runs;
    char path[16];                /* "avx2" / "scalar" */
    char names[QCNN_MAXL][16];
    double t[QCNN_MAXL][PSQ_LAT_MAX_BITS];       /* median layer time, s */
    double t_gemm[QCNN_MAXL][PSQ_LAT_MAX_BITS];  /* median GEMM part, s */
    double t_other[QCNN_MAXL][PSQ_LAT_MAX_BITS]; /* median non-GEMM part, s */
    double overhead_s;
} psq_lat_table;

/* Median of x[0..n) (sorts x in place); NaN for n = 0. */
double psq_median(double *x, int n);

/* Measure the table for q (calibrated) at batch n using the input x (n
 * images, NCHW) for realistic activations.  q's bits are left at the last
 * choice measured; restore them with qcnn_set_bits.  bits[k] in 2..8 or 32. */
int psq_lat_measure(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits, int warmup,
                    int runs, psq_lat_table *t, ps_err *e);

/* overhead + Σ t[l][layer_bits[l]]; layer_bits must be in t->bits, else
 * PS_EINPUT. */
int psq_lat_predict(const psq_lat_table *t, const int *layer_bits, double *pred_s, ps_err *e);

/* Median of `runs` full integer forwards (after `warmup`) at layer_bits. */
int psq_lat_measure_forward(qcnn *q, const float *x, int64_t n, const int *layer_bits,
                            int warmup, int runs, double *median_s, ps_err *e);

/* The same for nv vectors (vecs[v·nl + l]) interleaved: each round times one
 * forward of every vector in turn; median_s[v] over the `runs` rounds after
 * `warmup`.  (The study now uses psq_lat_measure_context.) */
int psq_lat_measure_forwards(qcnn *q, const float *x, int64_t n, const int *vecs, int nv,
                             int warmup, int runs, double *median_s, ps_err *e);

/* Both at once, the way the study measures: each round times every table
 * cell (t not NULL: bits[0..n_bits)) and then one forward of every vector
 * (vecs[v·nl + l], v < nv) — so the table and the end-to-end medians are
 * taken under the same (time-varying) machine load.  t or vecs may be
 * NULL/0 (then that half is skipped). */
int psq_lat_measure_joint(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits,
                          const int *vecs, int nv, int warmup, int runs, psq_lat_table *t,
                          double *median_s, ps_err *e);

/* The in-context table (the study's measurement since the batch-1 bias was
 * found, see docs/quant-latency.md).  Each round: (1) the isolated cells
 * exactly as psq_lat_measure_joint -> t_iso; (2) in a fresh random order
 * (xorshift seeded by `seed`), the n_bits CALIBRATION forwards (all layers
 * at bits[k]) with a timestamp after the input copy and after every layer,
 * and one plain qcnn_forward of every vector (vecs[v·nl + l], v < nv).
 * t_ctx->t[l][k] = median time of layer l inside the uniform-bits[k]
 * forwards; t_ctx->overhead_s = median input-copy time of those forwards;
 * t_ctx's gemm/other split is copied from t_iso (the calibration forwards
 * carry no inner timers).  median_s[v] = median of vector v's forwards.
 * Every forward thus follows a random other configuration, as in use; the
 * table only sees the uniform configurations, so a prediction of a
 * non-uniform vector uses no measurement of that vector. */
int psq_lat_measure_context(qcnn *q, const float *x, int64_t n, const int *bits, int n_bits,
                            const int *vecs, int nv, int warmup, int runs, unsigned long seed,
                            psq_lat_table *t_ctx, psq_lat_table *t_iso, double *median_s,
                            ps_err *e);

/* JSON form (for the CLI and for reloading):
 * {"batch":B,"runs":R,"path":"avx2","overhead_s":..,"bits":[..],
 *  "layers":[{"name":"conv1","t_s":[..],"gemm_s":[..],"other_s":[..]},..]} */
int psq_lat_save_json(const psq_lat_table *t, const char *path, ps_err *e);
int psq_lat_load_json(psq_lat_table *t, const char *path, ps_err *e);

/* One row per (layer, bits): layer, bits, batch, t_s, gemm_s, other_s.
 * Caller frees. */
ps_table *psq_lat_to_table(const psq_lat_table *t);

#endif
