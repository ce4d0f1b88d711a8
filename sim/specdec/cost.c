/* sim/specdec: step costs of speculative decoding (see cost.h for the
 * formulas).  Model shapes and cluster presets carry their sources. */
#include "sim/specdec/cost.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "costmodel/catalog.h"

#define GIB 1073741824.0

/* Shapes from the models' published configurations:
 *  - LLaMA-7B / 65B: Touvron et al., "LLaMA: Open and Efficient Foundation
 *    Language Models" (2023), Table 2 (dim, heads, layers; 6.7B / 65.2B) and
 *    the released params.json / HF config (intermediate_size 11008 / 22016,
 *    vocab 32000, SwiGLU, untied lm_head).
 *  - OPT-13B / 30B / 125M: Zhang et al., "OPT: Open Pre-trained Transformer
 *    Language Models" (2022), Table 1 (layers, heads, d_model), ffn = 4
 *    d_model, vocab 50272 and 2048 (+2) learned positions per the HF configs
 *    (facebook/opt-*); tied input/output embeddings.
 *  - LLaMA-68M: JackFram/llama-68m HF config (the SpecInfer SSM): 2 layers,
 *    hidden 768, 12 heads, intermediate 3072, vocab 32000. */
static sd_model_desc models[] = {
    {"llama-7b", "llama", 32, 4096, 32, 11008, 32000, 2048, 0, 6.7e9,
     "LLaMA paper Table 2; HF config (intermediate 11008)"},
    {"llama-65b", "llama", 80, 8192, 64, 22016, 32000, 2048, 0, 65.2e9,
     "LLaMA paper Table 2; HF config (intermediate 22016)"},
    {"opt-13b", "opt", 40, 5120, 40, 20480, 50272, 2048, 0, 13e9,
     "OPT paper Table 1; HF facebook/opt-13b config"},
    {"opt-30b", "opt", 48, 7168, 56, 28672, 50272, 2048, 0, 30e9,
     "OPT paper Table 1; HF facebook/opt-30b config"},
    {"llama-68m", "llama", 2, 768, 12, 3072, 32000, 2048, 0, 68e6,
     "HF JackFram/llama-68m config (SpecInfer's SSM)"},
    {"opt-125m", "opt", 12, 768, 12, 3072, 50272, 2048, 0, 125e6,
     "OPT paper Table 1; HF facebook/opt-125m config"},
};
#define NMODELS ((int)(sizeof models / sizeof models[0]))

double sd_model_params(const sd_model_desc *m)
{
    double h = m->hidden, f = m->ffn, V = m->vocab, L = m->layers;
    if (!strcmp(m->family, "opt"))
        return L * (4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h) + V * h +
               (m->max_pos + 2) * h + 2 * h;
    return L * (4 * h * h + 3 * h * f + 2 * h) + 2 * V * h + h;
}

/* Parameters touched by one forward pass: everything but the rows of the
 * embedding tables that are only gathered (llama: the input table; opt: the
 * positions; opt's token table is read whole as the tied lm_head). */
static double params_read(const sd_model_desc *m)
{
    if (!strcmp(m->family, "opt"))
        return sd_model_params(m) - (m->max_pos + 2) * (double)m->hidden;
    return sd_model_params(m) - (double)m->vocab * m->hidden;
}

static void init_models(void)
{
    for (int i = 0; i < NMODELS; i++)
        if (models[i].params == 0)
            models[i].params = sd_model_params(&models[i]);
}

int sd_model_count(void) { return NMODELS; }

const sd_model_desc *sd_model_at(int i)
{
    init_models();
    return i >= 0 && i < NMODELS ? &models[i] : NULL;
}

const sd_model_desc *sd_model_find(const char *name, ps_err *e)
{
    init_models();
    for (int i = 0; i < NMODELS; i++)
        if (name && !strcmp(models[i].name, name))
            return &models[i];
    char list[256] = "";
    for (int i = 0; i < NMODELS; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", models[i].name);
    }
    ps_errf(e, PS_EINPUT, "unknown model '%s' (known: %s)", name ? name : "(null)", list);
    return NULL;
}

/* Cluster presets.  Device numbers come from costmodel/catalog.c.
 *  - a10x*: AWS g5.12xlarge, 4 A10 per node on PCIe Gen4 (no NVLink), and
 *    the SpecInfer paper's 100 Gbps between the two nodes (12.5e9 B/s); the
 *    inter-node latency of 30 us is an estimate for TCP over AWS ENA, not a
 *    datasheet figure.
 *  - h100x*: HGX H100 nodes, 8 SXM GPUs on NVLink4; between nodes one NDR
 *    400 Gb/s InfiniBand port per GPU (catalog ib_ndr). */
typedef struct cluster_desc {
    const char *name, *device, *inter_link;
    int gpus_per_node, nodes;
    double inter_alpha, inter_beta; /* used when inter_link is NULL */
} cluster_desc;

static const cluster_desc clusters[] = {
    {"a10x1", "a10", NULL, 1, 1, 30e-6, 12.5e9},
    {"a10x4", "a10", NULL, 4, 1, 30e-6, 12.5e9},
    {"a10x8", "a10", NULL, 4, 2, 30e-6, 12.5e9},
    {"h100x1", "h100-sxm", "ib_ndr", 1, 1, 0, 0},
    {"h100x4", "h100-sxm", "ib_ndr", 4, 1, 0, 0},
    {"h100x8", "h100-sxm", "ib_ndr", 8, 1, 0, 0},
    {"h100x16", "h100-sxm", "ib_ndr", 8, 2, 0, 0},
};
#define NCLUSTERS ((int)(sizeof clusters / sizeof clusters[0]))

struct sd_cost {
    int measured;
    /* measured */
    double *tab_n, *tab_s;
    int tab_k;
    double draft_per_tok;
    /* analytic */
    const sd_model_desc *llm, *ssm;
    char cluster[32];
    cm_device dev;
    double intra_alpha, intra_beta, inter_alpha, inter_beta, host_alpha, host_beta;
    int tp, pp, offload, kpl, n_ssm;
    double flops, bw, launch, overhead; /* effective */
    double flops_eff, mem_eff;
    double bpe;             /* bytes per element (FP16) */
    double gpu_weight_bytes; /* offload: resident */
    double streamed_bytes;  /* offload: per step */
};

void sd_cost_cfg_default(sd_cost_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->flops_eff = 1;
    cfg->mem_eff = 1;
    cfg->launch_s = -1;
    cfg->gpu_weight_bytes = -1;
    cfg->n_ssm = 1;
}

void sd_cost_free(sd_cost *c)
{
    if (!c)
        return;
    free(c->tab_n);
    free(c->tab_s);
    free(c);
}

int sd_cost_is_measured(const sd_cost *c) { return c->measured; }
int sd_cost_gpus(const sd_cost *c) { return c->measured ? 1 : c->tp * c->pp; }

double sd_cost_llm_weight_bytes(const sd_cost *c)
{
    return c->measured ? 0 : params_read(c->llm) * c->bpe;
}

sd_cost *sd_cost_analytic(const sd_cost_cfg *cfg, ps_err *e)
{
    const sd_model_desc *llm = sd_model_find(cfg->llm, e);
    if (!llm) {
        ps_err_prefix(e, "llm: ");
        return NULL;
    }
    const char *ssm_name = cfg->ssm;
    if (!ssm_name)
        ssm_name = strcmp(llm->family, "opt") ? "llama-68m" : "opt-125m";
    const sd_model_desc *ssm = sd_model_find(ssm_name, e);
    if (!ssm) {
        ps_err_prefix(e, "ssm: ");
        return NULL;
    }
    const cluster_desc *cl = NULL;
    for (int i = 0; i < NCLUSTERS; i++)
        if (cfg->cluster && !strcmp(cfg->cluster, clusters[i].name))
            cl = &clusters[i];
    if (!cl) {
        char list[256] = "";
        for (int i = 0; i < NCLUSTERS; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", clusters[i].name);
        }
        ps_errf(e, PS_EINPUT, "cluster: unknown cluster '%s' (known: %s)",
                cfg->cluster ? cfg->cluster : "(null)", list);
        return NULL;
    }
    int gpus = cl->gpus_per_node * cl->nodes;
    int tp = cfg->tp > 0 ? cfg->tp : cl->gpus_per_node;
    int pp = cfg->pp > 0 ? cfg->pp : gpus / tp;
    if (tp > cl->gpus_per_node) {
        ps_errf(e, PS_EINPUT, "tp: %d exceeds the %d GPUs per node of cluster %s (tensor "
                "parallelism stays inside a node)", tp, cl->gpus_per_node, cl->name);
        return NULL;
    }
    if (tp * pp != gpus) {
        ps_errf(e, PS_EINPUT, "tp, pp: tp %d x pp %d must use the %d GPUs of cluster %s", tp, pp,
                gpus, cl->name);
        return NULL;
    }
    if (pp > llm->layers) {
        ps_errf(e, PS_EINPUT, "pp: %d stages for %d layers of %s", pp, llm->layers, llm->name);
        return NULL;
    }
    if (!(cfg->flops_eff > 0 && cfg->flops_eff <= 1) || !(cfg->mem_eff > 0 && cfg->mem_eff <= 1)) {
        ps_errf(e, PS_EINPUT, "flops_eff, mem_eff: must be in (0, 1], got %g and %g",
                cfg->flops_eff, cfg->mem_eff);
        return NULL;
    }
    if (cfg->n_ssm < 1 || cfg->n_ssm > 64) {
        ps_errf(e, PS_EINPUT, "n_ssm: %d outside 1..64", cfg->n_ssm);
        return NULL;
    }
    if (cfg->step_overhead_s < 0 || !isfinite(cfg->step_overhead_s)) {
        ps_errf(e, PS_EINPUT, "step_overhead_s: must be >= 0, got %g", cfg->step_overhead_s);
        return NULL;
    }
    if (cfg->offload && gpus != 1) {
        ps_errf(e, PS_EINPUT, "offload: modelled for one GPU only (cluster %s has %d)", cl->name,
                gpus);
        return NULL;
    }
    cm_catalog *cat = cm_catalog_new(e);
    if (!cat)
        return NULL;
    sd_cost *c = calloc(1, sizeof *c);
    const cm_device *dev = cm_catalog_device(cat, cl->device, e);
    const cm_link *intra = dev ? cm_catalog_link(cat, dev->intra_link, e) : NULL;
    const cm_link *host = dev ? cm_catalog_link(cat, dev->host_link, e) : NULL;
    const cm_link *inter = cl->inter_link ? cm_catalog_link(cat, cl->inter_link, e) : NULL;
    if (!c || !dev || !intra || !host || (cl->inter_link && !inter)) {
        if (!c)
            ps_errf(e, PS_ERUN, "cost: out of memory");
        free(c);
        cm_catalog_free(cat);
        return NULL;
    }
    c->llm = llm;
    c->ssm = ssm;
    snprintf(c->cluster, sizeof c->cluster, "%s", cl->name);
    c->dev = *dev;
    c->intra_alpha = intra->latency_s;
    c->intra_beta = intra->bw_bytes_per_s;
    c->host_alpha = host->latency_s;
    c->host_beta = host->bw_bytes_per_s;
    c->inter_alpha = inter ? inter->latency_s : cl->inter_alpha;
    c->inter_beta = inter ? inter->bw_bytes_per_s : cl->inter_beta;
    cm_catalog_free(cat);
    c->tp = tp;
    c->pp = pp;
    c->offload = cfg->offload;
    c->kpl = cfg->kernels_per_layer > 0 ? cfg->kernels_per_layer : 12;
    c->n_ssm = cfg->n_ssm;
    c->flops_eff = cfg->flops_eff;
    c->mem_eff = cfg->mem_eff;
    c->flops = c->dev.peak_flops[CM_FP16] * cfg->flops_eff;
    c->bw = c->dev.mem_bw_bytes_per_s * cfg->mem_eff;
    c->launch = cfg->launch_s >= 0 ? cfg->launch_s : c->dev.launch_s;
    c->overhead = cfg->step_overhead_s;
    c->bpe = 2; /* FP16 */
    double wbytes = sd_model_params(llm) * c->bpe, sbytes = sd_model_params(ssm) * c->bpe;
    double per_gpu = wbytes / (tp * pp);
    if (c->offload) {
        double resident = cfg->gpu_weight_bytes >= 0 ? cfg->gpu_weight_bytes
                                                     : c->dev.mem_bytes - 4 * GIB - sbytes;
        if (resident < 0)
            resident = 0;
        if (resident > sd_cost_llm_weight_bytes(c))
            resident = sd_cost_llm_weight_bytes(c);
        if (resident + sbytes > c->dev.mem_bytes) {
            ps_errf(e, PS_EINPUT, "gpu_weight_bytes: %.3g bytes resident + SSM exceed the %s's "
                    "%.3g bytes", resident, c->dev.name, c->dev.mem_bytes);
            sd_cost_free(c);
            return NULL;
        }
        c->gpu_weight_bytes = resident;
        c->streamed_bytes = sd_cost_llm_weight_bytes(c) - resident;
    } else if (per_gpu + sbytes > c->dev.mem_bytes) {
        ps_errf(e, PS_EINPUT,
                "cluster: %s needs %.1f GiB of weights per GPU with tp %d x pp %d (+ %.2f GiB "
                "SSM), more than the %s's %.0f GiB: use more GPUs or \"offload\": true",
                llm->name, per_gpu / GIB, tp, pp, sbytes / GIB, c->dev.name,
                c->dev.mem_bytes / GIB);
        sd_cost_free(c);
        return NULL;
    }
    return c;
}

sd_cost *sd_cost_from_table(const double *n_tokens, const double *verify_s, int k,
                            double draft_s_per_token, ps_err *e)
{
    if (k < 1 || !n_tokens || !verify_s) {
        ps_errf(e, PS_EINPUT, "cost table: needs at least one (n_tokens, verify_s) pair");
        return NULL;
    }
    for (int i = 0; i < k; i++) {
        if (!(n_tokens[i] > 0) || !isfinite(n_tokens[i]) || (i && !(n_tokens[i] > n_tokens[i - 1]))) {
            ps_errf(e, PS_EINPUT, "cost table: n_tokens[%d] = %g must be positive and strictly "
                    "increasing", i, n_tokens[i]);
            return NULL;
        }
        if (!(verify_s[i] >= 0) || !isfinite(verify_s[i])) {
            ps_errf(e, PS_EINPUT, "cost table: verify_s[%d] = %g must be finite and >= 0", i,
                    verify_s[i]);
            return NULL;
        }
    }
    if (!(draft_s_per_token >= 0) || !isfinite(draft_s_per_token)) {
        ps_errf(e, PS_EINPUT, "cost table: draft_s_per_token = %g must be finite and >= 0",
                draft_s_per_token);
        return NULL;
    }
    sd_cost *c = calloc(1, sizeof *c);
    if (c) {
        c->tab_n = malloc((size_t)k * sizeof *c->tab_n);
        c->tab_s = malloc((size_t)k * sizeof *c->tab_s);
    }
    if (!c || !c->tab_n || !c->tab_s) {
        sd_cost_free(c);
        ps_errf(e, PS_ERUN, "cost table: out of memory");
        return NULL;
    }
    memcpy(c->tab_n, n_tokens, (size_t)k * sizeof *c->tab_n);
    memcpy(c->tab_s, verify_s, (size_t)k * sizeof *c->tab_s);
    c->tab_k = k;
    c->measured = 1;
    c->draft_per_tok = draft_s_per_token;
    return c;
}

static int json_num_array(const json_t *a, const char *where, double **out, int *n, ps_err *e)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return ps_errf(e, PS_EINPUT, "%s: expected a non-empty array of numbers, got %s", where,
                       ps_json_type_name(a));
    *n = (int)json_array_size(a);
    *out = malloc((size_t)*n * sizeof **out);
    if (!*out)
        return ps_errf(e, PS_ERUN, "%s: out of memory", where);
    for (int i = 0; i < *n; i++) {
        char at[200];
        snprintf(at, sizeof at, "%s[%d]", where, i);
        if (ps_json_as_num(json_array_get(a, (size_t)i), at, &(*out)[i], e)) {
            free(*out);
            *out = NULL;
            return PS_EINPUT;
        }
    }
    return 0;
}

sd_cost *sd_cost_from_json(const json_t *j, const char *where, ps_err *e)
{
    if (!json_is_object(j)) {
        ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where, ps_json_type_name(j));
        return NULL;
    }
    const json_t *tab = json_object_get(j, "table");
    if (tab) {
        static const char *const keys[] = {"table", "draft_s_per_token", "note", NULL};
        static const char *const tkeys[] = {"n_tokens", "verify_s", NULL};
        char at[200];
        snprintf(at, sizeof at, "%s.table", where);
        double d = 0, *n = NULL, *s = NULL;
        int kn = 0, ks = 0;
        if (ps_json_check_keys(j, where, keys, e) ||
            ps_json_get_num(j, where, "draft_s_per_token", 1, &d, e))
            return NULL;
        if (!json_is_object(tab)) {
            ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", at, ps_json_type_name(tab));
            return NULL;
        }
        if (ps_json_check_keys(tab, at, tkeys, e))
            return NULL;
        char an[220], as[220];
        snprintf(an, sizeof an, "%s.n_tokens", at);
        snprintf(as, sizeof as, "%s.verify_s", at);
        if (json_num_array(json_object_get(tab, "n_tokens"), an, &n, &kn, e) ||
            json_num_array(json_object_get(tab, "verify_s"), as, &s, &ks, e)) {
            free(n);
            return NULL;
        }
        sd_cost *c = NULL;
        if (kn != ks)
            ps_errf(e, PS_EINPUT, "%s: n_tokens has %d entries, verify_s %d", at, kn, ks);
        else if (!(c = sd_cost_from_table(n, s, kn, d, e)))
            ps_err_prefix(e, "%s: ", where);
        free(n);
        free(s);
        return c;
    }
    static const char *const keys[] = {"llm", "ssm", "cluster", "tp", "pp", "offload",
                                       "flops_eff", "mem_eff", "launch_s", "kernels_per_layer",
                                       "step_overhead_s", "gpu_weight_bytes", "n_ssm", "note",
                                       NULL};
    sd_cost_cfg cfg;
    sd_cost_cfg_default(&cfg);
    long long tp = 0, pp = 0, kpl = 0, nssm = 1;
    cfg.ssm = NULL;
    if (ps_json_check_keys(j, where, keys, e) ||
        ps_json_get_str(j, where, "llm", 1, &cfg.llm, e) ||
        ps_json_get_str(j, where, "ssm", 0, &cfg.ssm, e) ||
        ps_json_get_str(j, where, "cluster", 1, &cfg.cluster, e) ||
        ps_json_get_int(j, where, "tp", 0, &tp, e) || ps_json_get_int(j, where, "pp", 0, &pp, e) ||
        ps_json_get_bool(j, where, "offload", 0, &cfg.offload, e) ||
        ps_json_get_num(j, where, "flops_eff", 0, &cfg.flops_eff, e) ||
        ps_json_get_num(j, where, "mem_eff", 0, &cfg.mem_eff, e) ||
        ps_json_get_num(j, where, "launch_s", 0, &cfg.launch_s, e) ||
        ps_json_get_int(j, where, "kernels_per_layer", 0, &kpl, e) ||
        ps_json_get_num(j, where, "step_overhead_s", 0, &cfg.step_overhead_s, e) ||
        ps_json_get_num(j, where, "gpu_weight_bytes", 0, &cfg.gpu_weight_bytes, e) ||
        ps_json_get_int(j, where, "n_ssm", 0, &nssm, e))
        return NULL;
    if (tp < 0 || tp > 64 || pp < 0 || pp > 64 || kpl < 0 || kpl > 1000 || nssm < 1 || nssm > 64) {
        ps_errf(e, PS_EINPUT, "%s: tp/pp/kernels_per_layer/n_ssm out of range", where);
        return NULL;
    }
    cfg.tp = (int)tp;
    cfg.pp = (int)pp;
    cfg.kernels_per_layer = (int)kpl;
    cfg.n_ssm = (int)nssm;
    sd_cost *c = sd_cost_analytic(&cfg, e);
    if (!c)
        ps_err_prefix(e, "%s.", where);
    return c;
}

json_t *sd_cost_to_json(const sd_cost *c)
{
    if (c->measured) {
        json_t *n = json_array(), *s = json_array();
        for (int i = 0; i < c->tab_k; i++) {
            json_array_append_new(n, json_real(c->tab_n[i]));
            json_array_append_new(s, json_real(c->tab_s[i]));
        }
        return json_pack("{s:{s:o,s:o},s:f}", "table", "n_tokens", n, "verify_s", s,
                         "draft_s_per_token", c->draft_per_tok);
    }
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:b,s:f,s:f,s:f,s:f,s:f,s:f}", "llm",
                     c->llm->name, "ssm", c->ssm->name, "cluster", c->cluster, "device",
                     c->dev.name, "tp", c->tp, "pp", c->pp, "offload", c->offload, "flops_eff",
                     c->flops_eff, "mem_eff", c->mem_eff, "launch_s", c->launch,
                     "step_overhead_s", c->overhead, "knee_tokens", sd_cost_knee(c),
                     "streamed_bytes", c->streamed_bytes);
}

static double table_interp(const sd_cost *c, double T)
{
    int k = c->tab_k;
    if (k == 1)
        return c->tab_s[0];
    int i = 0;
    if (T <= c->tab_n[0])
        i = 0;
    else if (T >= c->tab_n[k - 1])
        i = k - 2;
    else
        while (i < k - 2 && T > c->tab_n[i + 1])
            i++;
    double x0 = c->tab_n[i], x1 = c->tab_n[i + 1];
    double y = c->tab_s[i] + (c->tab_s[i + 1] - c->tab_s[i]) * (T - x0) / (x1 - x0);
    return y > 0 ? y : 0;
}

/* One forward pass of model m over T tokens of B requests at mean context
 * ctx, split tp x pp, on the cost's device. */
static void forward(const sd_cost *c, const sd_model_desc *m, int tp, int pp, double B, double T,
                    double ctx, sd_cost_parts *o)
{
    memset(o, 0, sizeof *o);
    double P = params_read(m), W = P * c->bpe, h = m->hidden, L = m->layers;
    /* per stage: x / pp, summed over pp stages = x; the max is per stage,
     * and the stages are identical, so the sum of maxes = pp * max / pp. */
    o->weights_s = W / (tp * c->bw);
    o->gemm_s = 2 * P * T / (tp * c->flops);
    o->attn_s = 4 * L * h * ctx * T / (tp * c->flops);
    o->kv_s = 2 * L * h * c->bpe * ctx * B / (tp * c->bw);
    if (tp > 1) {
        double bytes = T * h * c->bpe;
        double ar = 2 * (tp - 1) * c->intra_alpha + 2.0 * (tp - 1) / tp * bytes / c->intra_beta;
        o->comm_s += L * 2 * ar;
    }
    if (pp > 1)
        o->comm_s += (pp - 1) * (c->inter_alpha + T * h * c->bpe / c->inter_beta);
    o->launch_s = L * c->kpl * c->launch + c->overhead;
    double gpu = fmax(o->weights_s, o->gemm_s) + o->attn_s + o->kv_s + o->comm_s + o->launch_s;
    o->total_s = gpu;
}

int sd_cost_verify_parts(const sd_cost *c, int batch, int tokens_per_req, int ctx,
                         sd_cost_parts *out)
{
    memset(out, 0, sizeof *out);
    if (batch < 1 || tokens_per_req < 1 || ctx < 0)
        return PS_EINPUT;
    double T = (double)batch * tokens_per_req;
    if (c->measured) {
        out->total_s = table_interp(c, T);
        return 0;
    }
    forward(c, c->llm, c->tp, c->pp, batch, T, ctx, out);
    if (c->offload && c->streamed_bytes > 0) {
        double stream = c->host_alpha + c->streamed_bytes / c->host_beta;
        out->offload_s = fmax(0, stream - out->total_s);
        out->total_s += out->offload_s;
    }
    return 0;
}

double sd_cost_verify(const sd_cost *c, int batch, int tokens_per_req, int ctx)
{
    sd_cost_parts p;
    if (sd_cost_verify_parts(c, batch, tokens_per_req, ctx, &p))
        return NAN;
    return p.total_s;
}

static double ssm_pass(const sd_cost *c, double B, double T, double ctx)
{
    sd_cost_parts p;
    forward(c, c->ssm, 1, 1, B, T, ctx, &p);
    return p.total_s;
}

double sd_cost_draft(const sd_cost *c, int batch, int tokens_per_req_per_level, int levels,
                     int ctx)
{
    if (batch < 1 || tokens_per_req_per_level < 0 || levels < 0 || ctx < 0)
        return NAN;
    if (levels == 0 || tokens_per_req_per_level == 0)
        return 0;
    double T = (double)batch * tokens_per_req_per_level;
    if (c->measured)
        return c->draft_per_tok * T * levels;
    return levels * ssm_pass(c, batch, T, ctx);
}

double sd_cost_draft_tree(const sd_cost *c, int batch, const sd_tree *t, int levels, int ctx)
{
    if (!t || batch < 1 || ctx < 0)
        return NAN;
    if (levels <= 0 || levels > t->depth)
        levels = t->depth;
    double total = 0;
    for (int d = 0; d < levels; d++) {
        int cnt = 0;
        for (int i = 0; i < t->n; i++)
            if (t->ndepth[i] == d && t->nchild[i] > 0)
                cnt++;
        if (!cnt)
            continue;
        /* the pass at depth d reads the SSM's own cache of ctx + d tokens */
        total += sd_cost_draft(c, batch, cnt, 1, ctx + d);
    }
    return total;
}

double sd_cost_prefill(const sd_cost *c, int batch, int prompt_len)
{
    if (batch < 1 || prompt_len < 1)
        return NAN;
    if (c->measured)
        return table_interp(c, (double)batch * prompt_len);
    /* causal attention over the prompt: a token at position i reads i keys,
     * mean prompt_len / 2 (the KV term then also reads that mean). */
    return sd_cost_verify(c, batch, prompt_len, prompt_len / 2);
}

double sd_cost_knee(const sd_cost *c)
{
    if (c->measured)
        return 0;
    return c->flops * c->bpe / (2 * c->bw);
}
