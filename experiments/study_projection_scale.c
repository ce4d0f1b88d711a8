/* Study projection_scale (issue 8, experiment 4): the predicted time per
 * image on a catalog device (H100 by default) of projecting with an encoder
 * (pSp-sized, one forward pass + one generator forward) vs per-image
 * optimization (100 = PULSE, 1000, 5000 = Image2StyleGAN iterations of
 * generator forward + backward [+ VGG-16 perceptual loss]) of a StyleGAN2
 * 1024^2 generator, by batch size, from the cost model (sim/projection).
 * The Fashion-MNIST models of the projection_fmnist study can be predicted
 * on the same device (scale "fmnist") for the small-scale comparison. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel/costmodel.h"
#include "experiments/study.h"
#include "profile/db.h"
#include "sim/projection/cost.h"

/* Published anchors (docs/projection.md; HyperStyle, Alaluf et al. 2022,
 * Table 1, as recalled in the project's notes): per image. */
#define ANCHOR_ENCODER_S 0.06
#define ANCHOR_OPT_S 227.0

static const ps_param_spec params[] = {
    {"scale", PS_PARAM_STR, "\"stylegan2\"", "", "stylegan2 (1024^2 + pSp) | fmnist (real/gan.h)"},
    {"batch", PS_PARAM_INT, "1", "", "images per batch (both methods)"},
    {"device", PS_PARAM_STR, "\"h100-sxm\"", "", "catalog device (costmodel/catalog.c)"},
    {"db", PS_PARAM_STR, "\"\"", "",
     "profile database of that device (cm_model_from_db); empty: roofline with default "
     "efficiencies"},
    {"dtype", PS_PARAM_STR, "\"tf32\"", "", "op dtype: fp32 | tf32 | fp16 | bf16"},
    {"vgg", PS_PARAM_BOOL, "true", "", "stylegan2: add the VGG-16 perceptual loss per iteration"},
    {"res", PS_PARAM_INT, "1024", "px", "stylegan2 output side"},
    {"enc_res", PS_PARAM_INT, "256", "px", "encoder (and VGG) input side"},
    {"zdim", PS_PARAM_INT, "32", "", "fmnist: latent size"},
    {"g_ch1", PS_PARAM_INT, "64", "", "fmnist: generator channels at 7^2 (gan_config_default)"},
    {"g_ch2", PS_PARAM_INT, "32", "", "fmnist: generator channels at 14^2"},
    {"p_ch1", PS_PARAM_INT, "32", "", "fmnist: projector channels 1"},
    {"p_ch2", PS_PARAM_INT, "64", "", "fmnist: projector channels 2"},
    {"p_hidden", PS_PARAM_INT, "256", "", "fmnist: projector hidden width (0: none)"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_ENC_S,
    M_ITER_S,
    M_OPT100,
    M_OPT1000,
    M_OPT5000,
    M_SP100,
    M_SP1000,
    M_SP5000,
    M_GEN_FWD,
    M_GEN_BWD,
    M_ENC_FWD,
    M_VGG,
    M_GEN_P,
    M_ENC_P,
    M_GEN_GF,
    M_ENC_GF,
    M_ROOF,
    M_COUNT
};

static const ps_metric_spec metrics[M_COUNT + 1] = {
    [M_ENC_S] = {"encoder_s_per_image", "s", "(encoder forward + generator forward) / batch"},
    [M_ITER_S] = {"opt_iter_s_per_image", "s", "one optimization iteration / batch"},
    [M_OPT100] = {"opt_100_s_per_image", "s", "100 iterations (PULSE's default)"},
    [M_OPT1000] = {"opt_1000_s_per_image", "s", "1000 iterations"},
    [M_OPT5000] = {"opt_5000_s_per_image", "s", "5000 iterations (Image2StyleGAN)"},
    [M_SP100] = {"speedup_100", "", "optimization (100 it) / encoder, per image"},
    [M_SP1000] = {"speedup_1000", "", "optimization (1000 it) / encoder, per image"},
    [M_SP5000] = {"speedup_5000", "", "optimization (5000 it) / encoder, per image"},
    [M_GEN_FWD] = {"gen_fwd_ms", "ms", "generator forward, whole batch"},
    [M_GEN_BWD] = {"gen_bwd_ms", "ms", "generator backward to its input, whole batch"},
    [M_ENC_FWD] = {"enc_fwd_ms", "ms", "encoder forward, whole batch"},
    [M_VGG] = {"vgg_fwd_bwd_ms", "ms", "VGG-16 loss forward + backward, whole batch"},
    [M_GEN_P] = {"gen_params", "", "generator parameters (mapping included)"},
    [M_ENC_P] = {"enc_params", "", "encoder parameters"},
    [M_GEN_GF] = {"gen_gflop_per_image", "GFLOP", "generator forward"},
    [M_ENC_GF] = {"enc_gflop_per_image", "GFLOP", "encoder forward"},
    [M_ROOF] = {"roofline_op_fraction", "", "ops predicted by the roofline (not measured)"},
};

static int run_point(const ps_point *p, double *m, ps_err *e)
{
    cm_catalog *cat = cm_catalog_new(e);
    if (!cat)
        return PS_ERUN;
    int rc = 0;
    cm_model *cm = NULL;
    ps_db *db = NULL;
    const cm_device *dev = cm_catalog_device(cat, ps_point_str(p, "device"), e);
    if (!dev) {
        ps_err_prefix(e, "device: ");
        rc = PS_EINPUT;
        goto done;
    }
    const char *dbp = ps_point_str(p, "db");
    if (dbp && *dbp) {
        char path[1024];
        ps_point_path(p, dbp, path, sizeof path);
        if (ps_db_open(path, &db, e) || !(cm = cm_model_from_db(db, cat, dev, e))) {
            ps_err_prefix(e, "db: ");
            rc = e && e->code ? e->code : PS_EINPUT;
            goto done;
        }
    } else if (!(cm = cm_model_roofline(dev, e))) {
        rc = PS_ERUN;
        goto done;
    }
    pjs_setup s = {0};
    s.scale = ps_point_str(p, "scale");
    s.batch = ps_point_int(p, "batch");
    s.vgg = ps_point_bool(p, "vgg");
    s.dtype = ps_point_str(p, "dtype");
    s.res = (int)ps_point_int(p, "res");
    s.enc_res = (int)ps_point_int(p, "enc_res");
    s.zdim = (int)ps_point_int(p, "zdim");
    s.g_ch1 = (int)ps_point_int(p, "g_ch1");
    s.g_ch2 = (int)ps_point_int(p, "g_ch2");
    s.p_ch1 = (int)ps_point_int(p, "p_ch1");
    s.p_ch2 = (int)ps_point_int(p, "p_ch2");
    s.p_hidden = ps_point_int(p, "p_hidden") > 0 ? (int)ps_point_int(p, "p_hidden") : -1;
    s.iters = 1;
    pjs_pred pr;
    if ((rc = pjs_predict(cm, &s, &pr, e)))
        goto done;
    double b = (double)s.batch;
    m[M_ENC_S] = pr.encoder_per_image_s;
    m[M_ITER_S] = pr.opt_iter_per_image_s;
    m[M_OPT100] = 100 * pr.opt_iter_per_image_s;
    m[M_OPT1000] = 1000 * pr.opt_iter_per_image_s;
    m[M_OPT5000] = 5000 * pr.opt_iter_per_image_s;
    m[M_SP100] = m[M_OPT100] / m[M_ENC_S];
    m[M_SP1000] = m[M_OPT1000] / m[M_ENC_S];
    m[M_SP5000] = m[M_OPT5000] / m[M_ENC_S];
    m[M_GEN_FWD] = 1e3 * pr.gen_fwd_s;
    m[M_GEN_BWD] = 1e3 * pr.gen_bwd_s;
    m[M_ENC_FWD] = 1e3 * pr.enc_fwd_s;
    m[M_VGG] = 1e3 * (pr.vgg_fwd_s + pr.vgg_bwd_s);
    m[M_GEN_P] = pr.gen_params;
    m[M_ENC_P] = pr.enc_params;
    m[M_GEN_GF] = pr.gen_flops_fwd / b / 1e9;
    m[M_ENC_GF] = pr.enc_flops_fwd / b / 1e9;
    m[M_ROOF] = pr.nops ? (double)pr.roofline_ops / pr.nops : NAN;
done:
    cm_model_free(cm);
    if (db)
        ps_db_close(db);
    cm_catalog_free(cat);
    return rc;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    int cs = ps_table_col(pts, "scale"), cb = ps_table_col(pts, "batch");
    int ce = ps_table_col(pts, metrics[M_ENC_S].name), c5 = ps_table_col(pts, metrics[M_OPT5000].name);
    int c1 = ps_table_col(pts, metrics[M_OPT1000].name), c100 = ps_table_col(pts, metrics[M_OPT100].name);
    ps_summary_add(out, "anchor_encoder_s_per_image", NULL, ANCHOR_ENCODER_S, "s");
    ps_summary_add(out, "anchor_opt_s_per_image", NULL, ANCHOR_OPT_S, "s");
    ps_summary_add(out, "anchor_speedup", NULL, ANCHOR_OPT_S / ANCHOR_ENCODER_S, "");
    if (cb < 0 || ce < 0 || c5 < 0)
        return 0;
    for (size_t r = 0; r < pts->nrows; r++) {
        char lab[64];
        snprintf(lab, sizeof lab, "%s_b%lld", cs >= 0 ? ps_table_get_s(pts, r, cs) : "stylegan2",
                 (long long)ps_table_get_i(pts, r, cb));
        double enc = ps_table_get_d(pts, r, ce);
        ps_summary_add(out, "time_per_image_s", lab, enc, "s");
        char l2[80];
        snprintf(l2, sizeof l2, "%s_opt5000", lab);
        ps_summary_add(out, "time_per_image_s", l2, ps_table_get_d(pts, r, c5), "s");
        ps_summary_add(out, "speedup_100", lab, ps_table_get_d(pts, r, c100) / enc, "");
        ps_summary_add(out, "speedup_1000", lab, ps_table_get_d(pts, r, c1) / enc, "");
        ps_summary_add(out, "speedup_5000", lab, ps_table_get_d(pts, r, c5) / enc, "");
    }
    return 0;
}

const ps_study ps_study_projection_scale = {
    .name = "projection_scale",
    .summary = "projection at StyleGAN2 scale: predicted time per image on an H100 of a pSp "
               "encoder vs per-image optimization (100/1000/5000 iterations), by batch size",
    .params = params,
    .metrics = metrics,
    .run_point = run_point,
    .summarize = summarize,
};
