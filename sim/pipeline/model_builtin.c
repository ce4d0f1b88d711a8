/* Built-in model generators: the GraphPipe paper's models (App. A.2) and a
 * GPT-style chain, every size a knob.  Shapes are per sample (model.h).
 *
 *   mmt          branches x layers transformer encoder layers, one input per
 *                branch (its modality), the branch outputs concatenated and
 *                fused by one linear layer
 *   dlrm         dense MLP branches and embedding-bag branches into a
 *                concat and a top MLP
 *   candle-uno   feature-encoder MLP branches into a concat and a deep MLP
 *   transformer  token embedding, layers, final layernorm, LM head: a chain
 *   candle-uno-small, mmt-small
 *                replay-sized trainable multi-branch models (real/replay runs
 *                them for real on this machine's CPU): every GEMM's k is the
 *                width of its input, so the graph trains as written.
 *                candle-uno-small: MLP branches (m = 1 per sample) into a
 *                concat, a trunk MLP and a linear head; mmt-small: modality
 *                branches of transformer-style FFN blocks over a short
 *                sequence (m = seq) into a concat and a fusing head.  Branch
 *                b may be deeper (layer_step) or wider (width_step) than
 *                branch 0, so graph pipelines meet unequal branches.
 *
 * granularity "layer" (default) makes each transformer or MLP layer one
 * graph node (a block of cost-model ops); "op" makes every GEMM, attention,
 * activation and layernorm its own node, with the residual edges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "sim/pipeline/model.h"

static const pp_knob mmt_knobs[] = {
    {"branches", "4", "parallel transformer branches (modalities)"},
    {"layers", "8", "transformer layers per branch"},
    {"seq", "256", "sequence length per branch"},
    {"hidden", "1024", "hidden size"},
    {"heads", "16", "attention heads"},
    {"ffn", "4096", "feed-forward inner size"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const pp_knob dlrm_knobs[] = {
    {"dense_branches", "7", "dense MLP branches"},
    {"dense_layers", "4", "layers per dense branch"},
    {"dense_width", "4096", "width of the dense layers"},
    {"dense_features", "4096", "input features per dense branch"},
    {"emb_branches", "7", "embedding-bag branches"},
    {"emb_rows", "1000000", "rows per embedding table"},
    {"emb_dim", "64", "embedding dimension"},
    {"emb_bag", "100", "lookups per bag"},
    {"top_layers", "4", "layers of the top MLP"},
    {"top_width", "4096", "width of the top MLP"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const pp_knob candle_knobs[] = {
    {"branches", "7", "feature-encoder branches"},
    {"branch_layers", "4", "layers per branch"},
    {"width", "4096", "width of the branch layers"},
    {"features", "4096", "input features per branch"},
    {"top_layers", "4", "layers of the deep MLP after the concat"},
    {"top_width", "4096", "width of the deep MLP"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const pp_knob gpt_knobs[] = {
    {"layers", "24", "transformer layers"},
    {"seq", "1024", "sequence length"},
    {"hidden", "1024", "hidden size"},
    {"heads", "16", "attention heads"},
    {"ffn", "4096", "feed-forward inner size"},
    {"vocab", "50257", "vocabulary size"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const pp_knob candle_small_knobs[] = {
    {"branches", "3", "feature-encoder branches"},
    {"branch_layers", "2", "layers of branch 0 (GEMM + ReLU each)"},
    {"layer_step", "0", "branch b has branch_layers + b x layer_step layers"},
    {"features", "256", "input features per branch"},
    {"width", "256", "width of branch 0's layers"},
    {"width_step", "0", "branch b's layers are width + b x width_step wide"},
    {"top_layers", "2", "layers of the trunk MLP after the concat"},
    {"top_width", "256", "width of the trunk MLP"},
    {"outputs", "1", "width of the linear head (0 = no head)"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const pp_knob mmt_small_knobs[] = {
    {"branches", "3", "modality branches"},
    {"layers", "2", "FFN blocks of branch 0"},
    {"layer_step", "0", "branch b has layers + b x layer_step blocks"},
    {"seq", "16", "sequence length (rows per sample)"},
    {"features", "64", "input features per position of each modality"},
    {"hidden", "128", "hidden size (the input projection's output)"},
    {"ffn", "256", "FFN inner size (GEMM + GELU + GEMM per block)"},
    {"head", "128", "output width of the fusing head"},
    {"dtype", "\"fp32\"", "element type of every op"},
    {"granularity", "\"layer\"", "layer | op"},
    {NULL, NULL, NULL}};

static const char *const names[] = {"mmt",       "dlrm",     "candle-uno", "transformer",
                                    "candle-uno-small", "mmt-small", NULL};

const char *const *pp_builtin_names(void) { return names; }

const pp_knob *pp_builtin_knobs(const char *name)
{
    if (!name)
        return NULL;
    if (!strcmp(name, "mmt"))
        return mmt_knobs;
    if (!strcmp(name, "dlrm"))
        return dlrm_knobs;
    if (!strcmp(name, "candle-uno") || !strcmp(name, "candle_uno"))
        return candle_knobs;
    if (!strcmp(name, "transformer") || !strcmp(name, "gpt"))
        return gpt_knobs;
    if (!strcmp(name, "candle-uno-small"))
        return candle_small_knobs;
    if (!strcmp(name, "mmt-small"))
        return mmt_small_knobs;
    return NULL;
}

/* ---- knob values ---- */

typedef struct kv {
    const char *name;
    const pp_knob *knobs;
    json_t *vals; /* knob -> value, defaults merged with params */
} kv;

static int kv_init(kv *k, const char *name, const pp_knob *knobs, const json_t *params, ps_err *e)
{
    k->name = name;
    k->knobs = knobs;
    k->vals = json_object();
    for (const pp_knob *p = knobs; p->name; p++)
        json_object_set_new(k->vals, p->name, json_loads(p->def, JSON_DECODE_ANY, NULL));
    if (!params)
        return 0;
    if (!json_is_object(params))
        return ps_errf(e, PS_EINPUT, "builtin %s: parameters must be an object", name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        json_t *def = json_object_get(k->vals, key);
        if (!def) {
            char list[1024];
            size_t len = 0;
            list[0] = 0;
            for (const pp_knob *p = knobs; p->name && len < sizeof list - 40; p++)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                        p == knobs ? "" : ", ", p->name);
            return ps_errf(e, PS_EINPUT, "builtin %s: unknown parameter \"%s\" (known: %s)", name,
                           key, list);
        }
        if (json_is_string(def) != json_is_string(v) || (!json_is_string(v) && !json_is_number(v)))
            return ps_errf(e, PS_EINPUT, "builtin %s: parameter %s: expected %s, got %s", name, key,
                           json_is_string(def) ? "a string" : "a number", ps_json_type_name(v));
        json_object_set(k->vals, key, v);
    }
    return 0;
}

static int kv_int(const kv *k, const char *key, long long lo, long long *out, ps_err *e)
{
    json_t *v = json_object_get(k->vals, key);
    double d = json_number_value(v);
    if (d != floor(d) || d < (double)lo || d > 1e12)
        return ps_errf(e, PS_EINPUT, "builtin %s: parameter %s = %g; must be an integer >= %lld",
                       k->name, key, d, lo);
    *out = (long long)d;
    return 0;
}

static int kv_common(const kv *k, const char **dtype, int *op_level, ps_err *e)
{
    *dtype = json_string_value(json_object_get(k->vals, "dtype"));
    if (!ps_op_dtype_valid(*dtype))
        return ps_errf(e, PS_EINPUT, "builtin %s: dtype \"%s\" is not a known element type",
                       k->name, *dtype);
    const char *g = json_string_value(json_object_get(k->vals, "granularity"));
    if (strcmp(g, "layer") && strcmp(g, "op"))
        return ps_errf(e, PS_EINPUT, "builtin %s: granularity \"%s\"; expected layer or op",
                       k->name, g);
    *op_level = !strcmp(g, "op");
    return 0;
}

/* ---- construction helpers ---- */

typedef struct gen {
    pp_model *m;
    const char *dtype;
    int op_level;
    ps_err *e;
    int rc;
} gen;

static int mk(gen *g, ps_op *op, const char *kind, const char *variant, const int64_t *d, int nd)
{
    if (g->rc)
        return g->rc;
    return g->rc = ps_op_make(op, kind, g->dtype, variant, d, nd, g->e);
}

static int add(gen *g, const char *id, const char *kind, const ps_op *shape, const ps_op *parts,
               int nparts, double out_bytes, const int *inputs, int ninputs)
{
    if (g->rc)
        return -1;
    pp_op_spec s = {.id = id, .kind = kind, .shape = shape, .parts = parts, .nparts = nparts,
                    .param_bytes = -1, .out_bytes = out_bytes, .act_bytes = -1};
    int x = pp_model_add_op(g->m, &s, g->e);
    if (x < 0) {
        g->rc = g->e && g->e->code ? g->e->code : PS_EINPUT;
        return -1;
    }
    for (int i = 0; i < ninputs; i++)
        if ((g->rc = pp_model_add_input(g->m, x, inputs[i], g->e)))
            return -1;
    return x;
}

/* One transformer layer (pre-LN): returns the op holding its output. */
static int transformer_layer(gen *g, const char *pfx, int in, int64_t seq, int64_t h,
                             int64_t heads, int64_t ffn, const char *mask)
{
    ps_op p[10];
    int64_t d_ln[2] = {seq, h}, d_qkv[3] = {seq, 3 * h, h}, d_att[5] = {1, heads, seq, seq, h / heads};
    int64_t d_proj[3] = {seq, h, h}, d_add[1] = {seq * h}, d_f1[3] = {seq, ffn, h};
    int64_t d_gelu[1] = {seq * ffn}, d_f2[3] = {seq, h, ffn};
    mk(g, &p[0], "reduction", "layernorm", d_ln, 2);
    mk(g, &p[1], "gemm", NULL, d_qkv, 3);
    mk(g, &p[2], "attention", mask, d_att, 5);
    mk(g, &p[3], "gemm", NULL, d_proj, 3);
    mk(g, &p[4], "elementwise", "add", d_add, 1);
    mk(g, &p[5], "reduction", "layernorm", d_ln, 2);
    mk(g, &p[6], "gemm", NULL, d_f1, 3);
    mk(g, &p[7], "elementwise", "gelu", d_gelu, 1);
    mk(g, &p[8], "gemm", NULL, d_f2, 3);
    mk(g, &p[9], "elementwise", "add", d_add, 1);
    if (g->rc)
        return -1;
    if (!g->op_level)
        return add(g, pfx, "block", NULL, p, 10, -1, &in, 1);
    static const char *const sub[10] = {"ln1", "qkv", "attn", "proj", "add1",
                                        "ln2", "ffn1", "gelu", "ffn2", "add2"};
    char id[128];
    int x[10];
    for (int i = 0; i < 10; i++) {
        int ins[2], ni = 1;
        ins[0] = i == 0 ? in : x[i - 1];
        if (i == 4) { /* residual around attention */
            ins[1] = in;
            ni = 2;
        } else if (i == 9) { /* residual around the FFN */
            ins[1] = x[4];
            ni = 2;
        }
        snprintf(id, sizeof id, "%s.%s", pfx, sub[i]);
        x[i] = add(g, id, p[i].kind, &p[i], NULL, 0, -1, ins, ni);
    }
    return x[9];
}

/* One MLP layer: GEMM + ReLU for a micro-batch of per-sample vectors. */
static int mlp_layer(gen *g, const char *pfx, int in, int64_t k, int64_t n)
{
    ps_op p[2];
    int64_t dg[3] = {1, n, k}, dr[1] = {n};
    mk(g, &p[0], "gemm", NULL, dg, 3);
    mk(g, &p[1], "elementwise", "relu", dr, 1);
    if (g->rc)
        return -1;
    if (!g->op_level)
        return add(g, pfx, "block", NULL, p, 2, -1, &in, in >= 0);
    char id[128];
    snprintf(id, sizeof id, "%s.fc", pfx);
    int a = add(g, id, "gemm", &p[0], NULL, 0, -1, &in, in >= 0);
    snprintf(id, sizeof id, "%s.relu", pfx);
    return add(g, id, "elementwise", &p[1], NULL, 0, -1, &a, 1);
}

static double wbytes(const gen *g) { return ps_op_dtype_bytes(g->dtype); }

static int gen_mmt(gen *g, const kv *k)
{
    long long B, L, S, H, A, F;
    if (kv_int(k, "branches", 1, &B, g->e) || kv_int(k, "layers", 1, &L, g->e) ||
        kv_int(k, "seq", 1, &S, g->e) || kv_int(k, "hidden", 1, &H, g->e) ||
        kv_int(k, "heads", 1, &A, g->e) || kv_int(k, "ffn", 1, &F, g->e))
        return g->e->code;
    if (H % A)
        return ps_errf(g->e, PS_EINPUT, "builtin mmt: hidden %lld is not a multiple of heads %lld",
                       H, A);
    int *outs = malloc((size_t)B * sizeof *outs);
    if (!outs)
        return ps_errf(g->e, PS_ERUN, "out of memory");
    char id[128];
    for (long long b = 0; b < B && !g->rc; b++) {
        snprintf(id, sizeof id, "in%lld", b);
        int x = add(g, id, "input", NULL, NULL, 0, wbytes(g) * S * H, NULL, 0);
        for (long long l = 0; l < L && !g->rc; l++) {
            snprintf(id, sizeof id, "b%lld.l%lld", b, l);
            x = transformer_layer(g, id, x, S, H, A, F, "none");
        }
        outs[b] = x;
    }
    int c = B > 1 ? add(g, "concat", "concat", NULL, NULL, 0, -1, outs, (int)B) : outs[0];
    free(outs);
    ps_op fuse;
    int64_t d[3] = {S, H, B * H};
    mk(g, &fuse, "gemm", NULL, d, 3);
    add(g, "fuse", "gemm", &fuse, NULL, 0, -1, &c, 1);
    return g->rc;
}

static int mlp_branch(gen *g, const char *pfx, long long layers, long long in_feat,
                      long long width)
{
    char id[128];
    snprintf(id, sizeof id, "%s.in", pfx);
    int x = add(g, id, "input", NULL, NULL, 0, wbytes(g) * in_feat, NULL, 0);
    long long k = in_feat;
    for (long long l = 0; l < layers && !g->rc; l++) {
        snprintf(id, sizeof id, "%s.l%lld", pfx, l);
        x = mlp_layer(g, id, x, k, width);
        k = width;
    }
    return x;
}

static int top_mlp(gen *g, int in, long long k, long long layers, long long width)
{
    char id[64];
    int x = in;
    for (long long l = 0; l < layers && !g->rc; l++) {
        snprintf(id, sizeof id, "top.l%lld", l);
        x = mlp_layer(g, id, x, k, width);
        k = width;
    }
    return x;
}

static int gen_dlrm(gen *g, const kv *k)
{
    long long DB, DL, DW, DF, EB, ER, ED, EG, TL, TW;
    if (kv_int(k, "dense_branches", 0, &DB, g->e) || kv_int(k, "dense_layers", 1, &DL, g->e) ||
        kv_int(k, "dense_width", 1, &DW, g->e) || kv_int(k, "dense_features", 1, &DF, g->e) ||
        kv_int(k, "emb_branches", 0, &EB, g->e) || kv_int(k, "emb_rows", 1, &ER, g->e) ||
        kv_int(k, "emb_dim", 1, &ED, g->e) || kv_int(k, "emb_bag", 1, &EG, g->e) ||
        kv_int(k, "top_layers", 1, &TL, g->e) || kv_int(k, "top_width", 1, &TW, g->e))
        return g->e->code;
    if (DB + EB < 1)
        return ps_errf(g->e, PS_EINPUT, "builtin dlrm: needs at least one branch");
    int *outs = malloc((size_t)(DB + EB) * sizeof *outs);
    if (!outs)
        return ps_errf(g->e, PS_ERUN, "out of memory");
    char id[128];
    for (long long b = 0; b < DB && !g->rc; b++) {
        snprintf(id, sizeof id, "dense%lld", b);
        outs[b] = mlp_branch(g, id, DL, DF, DW);
    }
    for (long long b = 0; b < EB && !g->rc; b++) {
        snprintf(id, sizeof id, "emb%lld.in", b);
        int x = add(g, id, "input", NULL, NULL, 0, 8.0 * EG, NULL, 0);
        ps_op eb;
        int64_t d[4] = {ER, ED, EG, 1};
        mk(g, &eb, "embedding_bag", "sum", d, 4);
        snprintf(id, sizeof id, "emb%lld", b);
        outs[DB + b] = add(g, id, "embedding_bag", &eb, NULL, 0, -1, &x, 1);
    }
    int c = DB + EB > 1 ? add(g, "concat", "concat", NULL, NULL, 0, -1, outs, (int)(DB + EB))
                        : outs[0];
    free(outs);
    top_mlp(g, c, DB * DW + EB * ED, TL, TW);
    return g->rc;
}

static int gen_candle(gen *g, const kv *k)
{
    long long B, BL, W, F, TL, TW;
    if (kv_int(k, "branches", 1, &B, g->e) || kv_int(k, "branch_layers", 1, &BL, g->e) ||
        kv_int(k, "width", 1, &W, g->e) || kv_int(k, "features", 1, &F, g->e) ||
        kv_int(k, "top_layers", 1, &TL, g->e) || kv_int(k, "top_width", 1, &TW, g->e))
        return g->e->code;
    int *outs = malloc((size_t)B * sizeof *outs);
    if (!outs)
        return ps_errf(g->e, PS_ERUN, "out of memory");
    char id[64];
    for (long long b = 0; b < B && !g->rc; b++) {
        snprintf(id, sizeof id, "enc%lld", b);
        outs[b] = mlp_branch(g, id, BL, F, W);
    }
    int c = B > 1 ? add(g, "concat", "concat", NULL, NULL, 0, -1, outs, (int)B) : outs[0];
    free(outs);
    top_mlp(g, c, B * W, TL, TW);
    return g->rc;
}

static int gen_gpt(gen *g, const kv *k)
{
    long long L, S, H, A, F, V;
    if (kv_int(k, "layers", 1, &L, g->e) || kv_int(k, "seq", 1, &S, g->e) ||
        kv_int(k, "hidden", 1, &H, g->e) || kv_int(k, "heads", 1, &A, g->e) ||
        kv_int(k, "ffn", 1, &F, g->e) || kv_int(k, "vocab", 1, &V, g->e))
        return g->e->code;
    if (H % A)
        return ps_errf(g->e, PS_EINPUT,
                       "builtin transformer: hidden %lld is not a multiple of heads %lld", H, A);
    int x = add(g, "tokens", "input", NULL, NULL, 0, 8.0 * S, NULL, 0);
    ps_op emb;
    int64_t de[4] = {V, H, 1, S}; /* one lookup per position: a bag of 1 */
    mk(g, &emb, "embedding_bag", "sum", de, 4);
    x = add(g, "embed", "embedding_bag", &emb, NULL, 0, -1, &x, 1);
    char id[64];
    for (long long l = 0; l < L && !g->rc; l++) {
        snprintf(id, sizeof id, "l%lld", l);
        x = transformer_layer(g, id, x, S, H, A, F, "causal");
    }
    ps_op ln, head;
    int64_t dl[2] = {S, H}, dh[3] = {S, V, H};
    mk(g, &ln, "reduction", "layernorm", dl, 2);
    mk(g, &head, "gemm", NULL, dh, 3);
    x = add(g, "ln_f", "reduction", &ln, NULL, 0, -1, &x, 1);
    add(g, "lm_head", "gemm", &head, NULL, 0, -1, &x, 1);
    return g->rc;
}

/* ---- replay-sized models ---- */

/* A GEMM of m rows per sample (n x k weight) as its own node; in op
 * granularity with an activation it becomes two nodes. */
static int gemm_node(gen *g, const char *id, int in, int64_t m, int64_t n, int64_t k)
{
    ps_op p;
    int64_t d[3] = {m, n, k};
    mk(g, &p, "gemm", NULL, d, 3);
    if (g->rc)
        return -1;
    return add(g, id, "gemm", &p, NULL, 0, -1, &in, 1);
}

static int gen_candle_small(gen *g, const kv *k)
{
    long long B, BL, LS, F, W, WS, TL, TW, O;
    if (kv_int(k, "branches", 1, &B, g->e) || kv_int(k, "branch_layers", 1, &BL, g->e) ||
        kv_int(k, "layer_step", 0, &LS, g->e) || kv_int(k, "features", 1, &F, g->e) ||
        kv_int(k, "width", 1, &W, g->e) || kv_int(k, "width_step", 0, &WS, g->e) ||
        kv_int(k, "top_layers", 0, &TL, g->e) || kv_int(k, "top_width", 1, &TW, g->e) ||
        kv_int(k, "outputs", 0, &O, g->e))
        return g->e->code;
    if (B > 64)
        return ps_errf(g->e, PS_EINPUT, "builtin candle-uno-small: branches %lld > 64", B);
    int outs[64];
    long long cat = 0;
    char id[64];
    for (long long b = 0; b < B && !g->rc; b++) {
        snprintf(id, sizeof id, "enc%lld", b);
        outs[b] = mlp_branch(g, id, BL + b * LS, F, W + b * WS);
        cat += W + b * WS;
    }
    int c = B > 1 ? add(g, "concat", "concat", NULL, NULL, 0, -1, outs, (int)B) : outs[0];
    int x = TL ? top_mlp(g, c, cat, TL, TW) : c;
    if (O)
        gemm_node(g, "head", x, 1, O, TL ? TW : cat);
    return g->rc;
}

/* One FFN block over seq rows: GEMM h->f, GELU, GEMM f->h. */
static int ffn_block(gen *g, const char *pfx, int in, int64_t seq, int64_t h, int64_t f)
{
    ps_op p[3];
    int64_t d1[3] = {seq, f, h}, da[1] = {seq * f}, d2[3] = {seq, h, f};
    mk(g, &p[0], "gemm", NULL, d1, 3);
    mk(g, &p[1], "elementwise", "gelu", da, 1);
    mk(g, &p[2], "gemm", NULL, d2, 3);
    if (g->rc)
        return -1;
    if (!g->op_level)
        return add(g, pfx, "block", NULL, p, 3, -1, &in, 1);
    static const char *const sub[3] = {"fc1", "gelu", "fc2"};
    char id[128];
    int x = in;
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "%s.%s", pfx, sub[i]);
        x = add(g, id, p[i].kind, &p[i], NULL, 0, -1, &x, 1);
    }
    return x;
}

static int gen_mmt_small(gen *g, const kv *k)
{
    long long B, L, LS, S, F, H, FF, HD;
    if (kv_int(k, "branches", 1, &B, g->e) || kv_int(k, "layers", 1, &L, g->e) ||
        kv_int(k, "layer_step", 0, &LS, g->e) || kv_int(k, "seq", 1, &S, g->e) ||
        kv_int(k, "features", 1, &F, g->e) || kv_int(k, "hidden", 1, &H, g->e) ||
        kv_int(k, "ffn", 1, &FF, g->e) || kv_int(k, "head", 1, &HD, g->e))
        return g->e->code;
    if (B > 64)
        return ps_errf(g->e, PS_EINPUT, "builtin mmt-small: branches %lld > 64", B);
    int outs[64];
    char id[128];
    for (long long b = 0; b < B && !g->rc; b++) {
        snprintf(id, sizeof id, "in%lld", b);
        int x = add(g, id, "input", NULL, NULL, 0, wbytes(g) * S * F, NULL, 0);
        snprintf(id, sizeof id, "b%lld.proj", b);
        x = gemm_node(g, id, x, S, H, F);
        for (long long l = 0; l < L + b * LS && !g->rc; l++) {
            snprintf(id, sizeof id, "b%lld.l%lld", b, l);
            x = ffn_block(g, id, x, S, H, FF);
        }
        outs[b] = x;
    }
    int c = B > 1 ? add(g, "concat", "concat", NULL, NULL, 0, -1, outs, (int)B) : outs[0];
    gemm_node(g, "head", c, S, HD, B * H);
    return g->rc;
}

pp_model *pp_model_builtin(const char *name, const json_t *params, ps_err *e)
{
    const pp_knob *knobs = pp_builtin_knobs(name);
    if (!knobs) {
        ps_errf(e, PS_EINPUT, "unknown builtin model \"%s\" (known: mmt, dlrm, candle-uno, "
                "transformer, candle-uno-small, mmt-small)", name ? name : "");
        return NULL;
    }
    kv k = {0};
    gen g = {.e = e};
    int rc = kv_init(&k, name, knobs, params, e);
    if (!rc)
        rc = kv_common(&k, &g.dtype, &g.op_level, e);
    const char *canon = knobs == mmt_knobs            ? "mmt"
                        : knobs == dlrm_knobs         ? "dlrm"
                        : knobs == candle_knobs       ? "candle-uno"
                        : knobs == candle_small_knobs ? "candle-uno-small"
                        : knobs == mmt_small_knobs    ? "mmt-small"
                                                      : "transformer";
    if (!rc && !(g.m = pp_model_new(canon, e)))
        rc = e ? e->code : PS_ERUN;
    if (!rc) {
        rc = knobs == mmt_knobs            ? gen_mmt(&g, &k)
             : knobs == dlrm_knobs         ? gen_dlrm(&g, &k)
             : knobs == candle_knobs       ? gen_candle(&g, &k)
             : knobs == candle_small_knobs ? gen_candle_small(&g, &k)
             : knobs == mmt_small_knobs    ? gen_mmt_small(&g, &k)
                                           : gen_gpt(&g, &k);
        if (!rc)
            rc = g.rc;
    }
    if (!rc)
        rc = pp_model_finish(g.m, e);
    json_decref(k.vals);
    if (rc) {
        pp_model_free(g.m);
        return NULL;
    }
    return g.m;
}
