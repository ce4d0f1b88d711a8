/* `plansim costmodel ...`: predict an op's time, validate the model on held
 * out measurements, list the device catalog. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "costmodel/costmodel.h"
#include "experiments/cli.h"
#include "experiments/plot.h"

/* Catalog plus `cpu`: from the database's all-core peaks when there is a CPU
 * database, else measured now (only when asked for). */
static cm_catalog *load_catalog(const char *catalog_path, const ps_db *db, int need_cpu,
                                ps_err *e)
{
    cm_catalog *cat = cm_catalog_new(e);
    if (!cat)
        return NULL;
    int rc = 0;
    const char *kind = db ? ps_db_attr(db, "device_kind") : NULL;
    if (db && (!kind || strcmp(kind, "cuda"))) {
        const char *names[4] = {"gemm_fp32_flops_per_s", "gemm_fp64_flops_per_s",
                                "memcpy_bytes_per_s", "launch_s"};
        const char *prefer[4] = {PS_PEAK_GEMM_FP32_ALL, PS_PEAK_GEMM_FP64_ALL,
                                 PS_PEAK_MEMCPY_ALL, PS_PEAK_LAUNCH};
        const char *plain[4] = {PS_PEAK_GEMM_FP32, PS_PEAK_GEMM_FP64, PS_PEAK_MEMCPY,
                                PS_PEAK_LAUNCH};
        double v[4];
        for (int i = 0; i < 4; i++)
            if (ps_db_peak_get(db, prefer[i], &v[i]) && ps_db_peak_get(db, plain[i], &v[i]))
                v[i] = 0;
        rc = cm_catalog_set_cpu_peaks(cat, names, v, 4, ps_db_path(db), e);
    } else if (need_cpu) {
        rc = cm_catalog_measure_cpu(cat, e);
    }
    if (!rc && catalog_path)
        rc = cm_catalog_load_json(cat, catalog_path, e);
    if (rc) {
        cm_catalog_free(cat);
        return NULL;
    }
    return cat;
}

/* The catalog name of the device a database was measured on. */
static const char *db_device_name(const ps_db *db)
{
    const char *kind = ps_db_attr(db, "device_kind");
    if (!kind || strcmp(kind, "cuda"))
        return "cpu";
    const char *n = ps_db_attr(db, "device_name");
    const char *c = n ? cm_catalog_match(n) : NULL;
    return c ? c : "gpu";
}

static json_t *parse_op_arg(const char *arg, ps_err *e)
{
    if (arg[0] == '@')
        return ps_json_load_file(arg + 1, e);
    return ps_json_load_str(arg, "--op", e);
}

static int cmd_predict(int argc, char **argv)
{
    static const struct option lo[] = {
        {"db", required_argument, 0, 'd'},     {"op", required_argument, 0, 'p'},
        {"phase", required_argument, 0, 'P'},  {"device", required_argument, 0, 'D'},
        {"catalog", required_argument, 0, 'c'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *db_path = NULL, *op_arg = NULL, *phase_s = NULL, *device = NULL,
               *catalog = NULL;
    int json = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'd': db_path = optarg; break;
        case 'p': op_arg = optarg; break;
        case 'P': phase_s = optarg; break;
        case 'D': device = optarg; break;
        case 'c': catalog = optarg; break;
        case 'j': json = 1; break;
        case 'h':
            printf(
                "usage: plansim costmodel predict --db DB.h5 --op JSON [--phase PHASE]\n"
                "                                 [--device NAME] [--catalog FILE.json] [--json]\n\n"
                "Predicts the time of one op.  The answer says where it came from: \"db\" (an\n"
                "exact measurement), \"fit\" (regression over the measured grid) or\n"
                "\"roofline\" (peaks x fitted efficiencies), with a relative uncertainty.\n\n"
                "  --db FILE        profile database (plansim profile run); optional with --device\n"
                "  --op JSON        the op, e.g. '{\"kind\":\"gemm\",\"m\":512,\"n\":512,\"k\":512}'\n"
                "                   (or @FILE.json); kinds and dims: costmodel/README.md\n"
                "  --phase PHASE    fwd (default), bwd_input or bwd_weight (training ops)\n"
                "  --device NAME    a catalog device (plansim costmodel devices); the database\n"
                "                   is used only when it was measured on that device\n"
                "  --catalog FILE   override or add catalog entries (JSON)\n"
                "  --json           one JSON object: time_s, source, uncertainty, ...\n\n"
                "Exit codes: 0 success, 1 failure, 2 bad usage or input (unknown kind, zero\n"
                "or negative dimension, a corrupt or foreign database).\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!op_arg)
        return ps_cli_usage(argv[0], "--op is required");
    if (!db_path && !device)
        return ps_cli_usage(argv[0], "give --db, --device, or both");
    int phase = phase_s ? cm_phase_from_name(phase_s) : CM_PHASE_FWD;
    if (phase < 0)
        return ps_cli_usage(argv[0], "--phase: '%s' is not fwd, bwd_input or bwd_weight",
                            phase_s);
    ps_err e = {0};
    ps_op op;
    json_t *oj = parse_op_arg(op_arg, &e);
    if (!oj)
        return ps_cli_fail(&e);
    static const char *const extra[] = {"phase", NULL};
    int rc = ps_op_from_json_ex(oj, "--op", extra, &op, &e);
    if (!rc && !phase_s && json_is_string(json_object_get(oj, "phase"))) {
        phase = cm_phase_from_name(json_string_value(json_object_get(oj, "phase")));
        if (phase < 0)
            rc = ps_errf(&e, PS_EINPUT, "--op.phase: '%s' is not fwd, bwd_input or bwd_weight",
                         json_string_value(json_object_get(oj, "phase")));
    }
    json_decref(oj);
    if (rc)
        return ps_cli_fail(&e);

    ps_db *db = NULL;
    cm_catalog *cat = NULL;
    cm_model *m = NULL;
    char note[256] = "";
    if (db_path && ps_db_open(db_path, &db, &e))
        return ps_cli_fail(&e);
    cat = load_catalog(catalog, db, device && !strcmp(device, "cpu"), &e);
    if (!cat)
        goto fail;
    const char *dbdev = db ? db_device_name(db) : NULL;
    if (db && (!device || !strcmp(device, dbdev))) {
        m = cm_model_from_db(db, cat, NULL, &e);
    } else {
        const cm_device *d = cm_catalog_device(cat, device, &e);
        if (!d)
            goto fail;
        if (db)
            snprintf(note, sizeof note, "%s was measured on %s, not %s: catalog roofline",
                     db_path, dbdev, device);
        m = cm_model_roofline(d, &e);
    }
    if (!m)
        goto fail;
    cm_pred p;
    if (cm_op_time_phase(m, &op, (cm_phase)phase, &p, &e))
        goto fail;
    char desc[256], asdesc[256] = "";
    ps_op_describe(&op, desc, sizeof desc);
    ps_op phop;
    if (!cm_phase_op(&op, (cm_phase)phase, &phop, NULL) && !ps_op_equal(&phop, &op))
        ps_op_describe(&phop, asdesc, sizeof asdesc);
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "time_s", json_real(p.time_s));
        json_object_set_new(j, "source", json_string(cm_source_name(p.source)));
        json_object_set_new(j, "uncertainty", json_real(p.rel_uncertainty));
        json_object_set_new(j, "phase", json_string(cm_phase_name((cm_phase)phase)));
        json_object_set_new(j, "device", json_string(cm_model_device(m)->name));
        json_object_set_new(j, "op", ps_op_to_json(&op));
        if (asdesc[0])
            json_object_set_new(j, "runs_as", ps_op_to_json(&phop));
        json_object_set_new(j, "flops", json_real(p.flops));
        json_object_set_new(j, "bytes", json_real(p.bytes));
        json_object_set_new(j, "npoints", json_integer(p.npoints));
        if (p.note[0] || note[0])
            json_object_set_new(j, "note", json_string(note[0] ? note : p.note));
        if (db_path)
            json_object_set_new(j, "db", json_string(db_path));
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s (%s) on %s\n", desc, cm_phase_name((cm_phase)phase),
               cm_model_device(m)->name);
        if (asdesc[0])
            printf("runs as      %s\n", asdesc);
        printf("time_s       %.6g\nsource       %s\nuncertainty  +-%.1f%%\n", p.time_s,
               cm_source_name(p.source), 100 * p.rel_uncertainty);
        if (p.note[0])
            printf("note         %s\n", p.note);
        if (note[0])
            printf("note         %s\n", note);
    }
    cm_model_free(m);
    cm_catalog_free(cat);
    ps_db_close(db);
    return 0;
fail:
    cm_model_free(m);
    cm_catalog_free(cat);
    ps_db_close(db);
    return ps_cli_fail(&e);
}

/* ---- validation plot ---------------------------------------------------- */

/* PLOT_DIR/costmodel_validate.{dat,gp,png,svg}: one gnuplot index block per
 * kind, the script = variables + plots/costmodel_validate.gp, so it reruns
 * on its own. */
static int write_plot(const char *dir, const cm_validate_point *pts, size_t np, const char *title,
                      json_t *rep, ps_err *e)
{
    if (ps_mkdir_p(dir, e))
        return PS_EINPUT;
    char tdir[2048], tpath[4200], dat[4200], gp[4200];
    if (ps_plot_scripts_dir(tdir, sizeof tdir, e))
        return PS_ERUN;
    snprintf(tpath, sizeof tpath, "%s/costmodel_validate.gp", tdir);
    char *tmpl = ps_file_read(tpath, NULL, e);
    if (!tmpl)
        return PS_ERUN;
    size_t cap = 4096 + np * 160, used = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) {
        free(tmpl);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    used += (size_t)snprintf(buf + used, cap - used,
                             "# plansim costmodel validate: measured_s predicted_s rel_err "
                             "source; one index block per op kind\n");
    char kinds[PS_OPK_COUNT][PS_OP_KIND_LEN];
    int nk = 0;
    for (int k = 0; k < PS_OPK_COUNT; k++) {
        int any = 0;
        for (size_t i = 0; i < np; i++)
            if (ps_op_kind_id_of(pts[i].op.kind) == k) {
                if (!any)
                    used += (size_t)snprintf(buf + used, cap - used, "%s# %s\n",
                                             nk ? "\n\n" : "", ps_op_kind_name(k));
                any = 1;
                char shape[160];
                ps_op_shape_str(&pts[i].op, shape, sizeof shape);
                used += (size_t)snprintf(buf + used, cap - used, "%.6e %.6e %.4f %s # %s %s %s\n",
                                         pts[i].measured_s, pts[i].predicted_s, pts[i].rel_err,
                                         cm_source_name(pts[i].source), pts[i].op.dtype,
                                         pts[i].op.variant, shape);
            }
        if (any)
            snprintf(kinds[nk++], PS_OP_KIND_LEN, "%s", ps_op_kind_name(k));
    }
    snprintf(dat, sizeof dat, "%s/costmodel_validate.dat", dir);
    rc = ps_file_write_atomic(dat, buf, used, e);
    if (!rc) {
        used = 0;
        used += (size_t)snprintf(
            buf + used, cap - used,
            "# Generated by plansim %s costmodel validate: the variables below feed the\n"
            "# template plots/costmodel_validate.gp, copied after them.  Rerun from\n"
            "# anywhere with\n"
            "#   gnuplot costmodel_validate.gp     (writes costmodel_validate.png and .svg)\n"
            "#   gnuplot -e 'formats=\"svg\"' costmodel_validate.gp\n\n"
            "# Paths are relative to this script's folder.\n"
            "if (exists(\"ARG0\") && strstrt(ARG0, \"/\") > 0) {\n"
            "    _i = strlen(ARG0)\n"
            "    while (ARG0[_i:_i] ne \"/\") { _i = _i - 1 }\n"
            "    cd ARG0[1:_i]\n"
            "}\n"
            "datafile = \"costmodel_validate.dat\"\n"
            "if (!exists(\"outbase\")) { outbase = \"costmodel_validate\" }\n"
            "fig_title = '%s'\nnkinds = %d\n",
            ps_version, title, nk);
        for (int k = 0; k < nk; k++)
            used += (size_t)snprintf(buf + used, cap - used, "kind%d = '%s'\n", k, kinds[k]);
        used += (size_t)snprintf(buf + used, cap - used, "kinds = \"");
        for (int k = 0; k < nk; k++)
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", k ? " " : "", kinds[k]);
        used += (size_t)snprintf(buf + used, cap - used, "\"\n\n");
        size_t tl = strlen(tmpl);
        if (used + tl + 1 > cap) {
            char *nb = realloc(buf, used + tl + 1);
            if (!nb)
                rc = ps_errf(e, PS_ERUN, "out of memory");
            else
                buf = nb, cap = used + tl + 1;
        }
        if (!rc) {
            memcpy(buf + used, tmpl, tl);
            used += tl;
            snprintf(gp, sizeof gp, "%s/costmodel_validate.gp", dir);
            rc = ps_file_write_atomic(gp, buf, used, e);
        }
    }
    free(buf);
    free(tmpl);
    if (rc)
        return rc;
    json_object_set_new(rep, "dat", json_string(dat));
    json_object_set_new(rep, "gp", json_string(gp));
    char gnuplot[4096];
    if (!ps_plot_find_gnuplot(gnuplot, sizeof gnuplot))
        return ps_errf(e, PS_ERUN, "gnuplot not found (install gnuplot-nox); %s and %s written",
                       dat, gp);
    /* temporary output names, renamed on success: a final name never holds
     * a half-drawn figure */
    char errline[512];
    int st = ps_plot_run_gnuplot(gnuplot, dir, "costmodel_validate.gp", "costmodel_validate.tmp",
                                 errline, sizeof errline);
    if (st)
        return ps_errf(e, PS_ERUN, "gnuplot %s/costmodel_validate.gp failed (exit %d): %s", dir,
                       st, errline);
    char png[4200], svg[4200], tpng[4200], tsvg[4200];
    snprintf(png, sizeof png, "%s/costmodel_validate.png", dir);
    snprintf(svg, sizeof svg, "%s/costmodel_validate.svg", dir);
    snprintf(tpng, sizeof tpng, "%s/costmodel_validate.tmp.png", dir);
    snprintf(tsvg, sizeof tsvg, "%s/costmodel_validate.tmp.svg", dir);
    if (rename(tpng, png) || rename(tsvg, svg))
        return ps_errf(e, PS_ERUN, "%s: renaming the drawn figures: %s", dir, strerror(errno));
    json_object_set_new(rep, "png", json_string(png));
    json_object_set_new(rep, "svg", json_string(svg));
    return 0;
}

static int cmd_validate(int argc, char **argv)
{
    static const struct option lo[] = {
        {"db", required_argument, 0, 'd'},      {"holdout", required_argument, 0, 'H'},
        {"seed", required_argument, 0, 's'},    {"json", no_argument, 0, 'j'},
        {"output", required_argument, 0, 'o'},  {"no-plot", no_argument, 0, 'n'},
        {"catalog", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *db_path = NULL, *plot_dir = NULL, *catalog = NULL;
    int json = 0, no_plot = 0, c;
    cm_validate_opts o = {0.2, 1};
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'd': db_path = optarg; break;
        case 'H':
            if (ps_cli_double(argv[0], "--holdout", optarg, &o.holdout))
                return 2;
            if (!(o.holdout > 0 && o.holdout < 1))
                return ps_cli_usage(argv[0], "--holdout must be in (0, 1)");
            break;
        case 's': {
            long s;
            if (ps_cli_long(argv[0], "--seed", optarg, &s))
                return 2;
            if (s < 0)
                return ps_cli_usage(argv[0], "--seed must be >= 0");
            o.seed = (unsigned long)s;
            break;
        }
        case 'j': json = 1; break;
        case 'o': plot_dir = optarg; break;
        case 'n': no_plot = 1; break;
        case 'c': catalog = optarg; break;
        case 'h':
            printf(
                "usage: plansim costmodel validate --db DB.h5 [--holdout 0.2] [--seed S]\n"
                "                                  [-o PLOT_DIR] [--no-plot] [--json]\n\n"
                "Holds out a seeded random fraction of the measured ops (stratified by kind),\n"
                "fits the model on the rest (no exact hits for held-out ops), and reports\n"
                "|predicted - measured| / measured on the held-out ops: median and p90, overall\n"
                "and per kind, next to the measurements' own repeat noise (median over ops of\n"
                "(p90 - p10) / median).  Draws predicted vs measured (log-log, y = x) into\n"
                "PLOT_DIR (default: the database path without .h5, plus _validate/).\n\n"
                "  --holdout F   fraction held out, in (0, 1) (default 0.2)\n"
                "  --seed S      split seed (default 1)\n"
                "  -o DIR        plot folder: costmodel_validate.{dat,gp,png,svg}\n"
                "  --no-plot     no plot\n"
                "  --json        one JSON object: median_rel_err, p90_rel_err, per_kind, ...\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    if (!db_path)
        return ps_cli_usage(argv[0], "--db is required");
    ps_err e = {0};
    ps_db *db = NULL;
    if (ps_db_open(db_path, &db, &e))
        return ps_cli_fail(&e);
    cm_catalog *cat = load_catalog(catalog, db, 0, &e);
    json_t *rep = NULL;
    cm_validate_point *pts = NULL;
    size_t np = 0, n = ps_db_nops(db), npk = ps_db_npeaks(db);
    ps_db_row *rows = malloc((n ? n : 1) * sizeof *rows);
    ps_db_peak *pk = malloc((npk ? npk : 1) * sizeof *pk);
    int rc = 0;
    if (!cat) {
        rc = e.code;
        goto done;
    }
    if (!rows || !pk) {
        rc = ps_errf(&e, PS_ERUN, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        rows[i] = *ps_db_op_at(db, i);
    for (size_t i = 0; i < npk; i++)
        pk[i] = *ps_db_peak_at(db, i);
    cm_device dev;
    cm_db_device(db, cat, &dev);
    double t0 = ps_now_s();
    rc = cm_validate(rows, n, &dev, pk, npk, &o, &rep, &pts, &np, &e);
    if (rc)
        goto done;
    json_object_set_new(rep, "db", json_string(db_path));
    json_object_set_new(rep, "device", json_string(dev.name));
    json_object_set_new(rep, "fit_and_predict_s", json_real(ps_now_s() - t0));
    if (!no_plot) {
        char dir[4096];
        if (plot_dir) {
            snprintf(dir, sizeof dir, "%s", plot_dir);
        } else {
            size_t l = strlen(db_path);
            int h5 = l > 3 && !strcmp(db_path + l - 3, ".h5");
            snprintf(dir, sizeof dir, "%.*s_validate", (int)(h5 ? l - 3 : l), db_path);
        }
        json_t *pl = json_object();
        char title[512];
        snprintf(title, sizeof title, "%s: held-out %.0f%%, median %.1f%%, p90 %.1f%%",
                 db_path, 100 * o.holdout,
                 100 * json_real_value(json_object_get(rep, "median_rel_err")),
                 100 * json_real_value(json_object_get(rep, "p90_rel_err")));
        for (char *q = title; *q; q++)
            if (*q == '\'')
                *q = '"';
        ps_err pe = {0};
        if (write_plot(dir, pts, np, title, pl, &pe)) {
            /* The numbers are the result; a missing plot is worth a warning,
             * not a failed validation. */
            fprintf(stderr, "plansim: warning: plot: %s\n", pe.msg);
            json_object_set_new(pl, "error", json_string(pe.msg));
        }
        json_object_set_new(rep, "plot", pl);
    }
    if (json) {
        ps_cli_print_json(rep);
    } else {
        printf("held out %lld of %lld measured ops (seed %lu); fit on %lld\n\n",
               (long long)json_integer_value(json_object_get(rep, "n_test")), (long long)n,
               o.seed, (long long)json_integer_value(json_object_get(rep, "n_train")));
        printf("%-14s %5s %12s %12s %14s\n", "kind", "n", "median_err", "p90_err",
               "repeat_noise");
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(rep, "per_kind"), k, v)
        {
            printf("%-14s %5lld %11.2f%% %11.2f%% %13.2f%%\n", k,
                   (long long)json_integer_value(json_object_get(v, "n")),
                   100 * json_real_value(json_object_get(v, "median_rel_err")),
                   100 * json_real_value(json_object_get(v, "p90_rel_err")),
                   100 * json_number_value(json_object_get(v, "repeat_noise")));
        }
        printf("%-14s %5lld %11.2f%% %11.2f%% %13.2f%%\n", "all",
               (long long)json_integer_value(json_object_get(rep, "n_test")),
               100 * json_real_value(json_object_get(rep, "median_rel_err")),
               100 * json_real_value(json_object_get(rep, "p90_rel_err")),
               100 * json_number_value(json_object_get(rep, "repeat_noise")));
        json_t *pl = json_object_get(rep, "plot");
        if (pl && json_object_get(pl, "png"))
            printf("\nplot: %s\n", json_string_value(json_object_get(pl, "png")));
    }
done:
    json_decref(rep);
    free(pts);
    free(rows);
    free(pk);
    cm_catalog_free(cat);
    ps_db_close(db);
    return rc ? ps_cli_fail(&e) : 0;
}

static int cmd_devices(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"catalog", required_argument, 0, 'c'},
                                       {"db", required_argument, 0, 'd'},
                                       {"measure", no_argument, 0, 'm'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int json = 0, measure = 0, c;
    const char *catalog = NULL, *db_path = NULL;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'c': catalog = optarg; break;
        case 'd': db_path = optarg; break;
        case 'm': measure = 1; break;
        case 'h':
            printf("usage: plansim costmodel devices [--db DB.h5 | --measure] [--catalog F] "
                   "[--json]\n\n"
                   "Lists the device catalog (peaks per precision, dense tensor-core rates;\n"
                   "memory; default links) and the link types (latency, bandwidth per\n"
                   "direction), each with its source.  `cpu` appears when measured: from a CPU\n"
                   "database's /device/peaks (--db) or on the spot (--measure, about a second).\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    ps_err e = {0};
    ps_db *db = NULL;
    if (db_path && ps_db_open(db_path, &db, &e))
        return ps_cli_fail(&e);
    cm_catalog *cat = load_catalog(catalog, db, measure, &e);
    ps_db_close(db);
    if (!cat)
        return ps_cli_fail(&e);
    if (json) {
        json_t *j = json_object(), *dv = json_object(), *lk = json_object();
        for (size_t i = 0; i < cm_catalog_ndevices(cat); i++) {
            const cm_device *d = cm_catalog_device_at(cat, i);
            json_t *o = json_object(), *pf = json_object();
            json_object_set_new(o, "desc", json_string(d->desc));
            json_object_set_new(o, "is_gpu", json_boolean(d->is_gpu));
            for (int p = 0; p < CM_NPREC; p++)
                if (d->peak_flops[p] > 0)
                    json_object_set_new(pf, cm_prec_name((cm_prec)p), json_real(d->peak_flops[p]));
            json_object_set_new(o, "peak_flops", pf);
            json_object_set_new(o, "mem_bytes", json_real(d->mem_bytes));
            json_object_set_new(o, "mem_bw_bytes_per_s", json_real(d->mem_bw_bytes_per_s));
            json_object_set_new(o, "launch_s", json_real(d->launch_s));
            json_object_set_new(o, "intra_link", json_string(d->intra_link));
            json_object_set_new(o, "host_link", json_string(d->host_link));
            json_object_set_new(o, "source", json_string(d->source));
            json_object_set_new(dv, d->name, o);
        }
        for (size_t i = 0; i < cm_catalog_nlinks(cat); i++) {
            const cm_link *l = cm_catalog_link_at(cat, i);
            json_t *o = json_object();
            json_object_set_new(o, "desc", json_string(l->desc));
            json_object_set_new(o, "latency_s", json_real(l->latency_s));
            json_object_set_new(o, "bw_bytes_per_s", json_real(l->bw_bytes_per_s));
            json_object_set_new(o, "source", json_string(l->source));
            json_object_set_new(lk, l->name, o);
        }
        json_object_set_new(j, "devices", dv);
        json_object_set_new(j, "links", lk);
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("%-10s %8s %8s %8s %8s %8s %8s %8s %8s %7s %8s  %s\n", "device", "fp64", "fp32",
               "tf32", "fp16", "bf16", "fp8", "int8", "int4", "mem_GiB", "bw_GB/s", "links");
        printf("%-10s %8s %8s %8s %8s %8s %8s %8s %8s\n", "", "TFLOP/s", "", "", "", "", "", "TOP/s",
               "");
        for (size_t i = 0; i < cm_catalog_ndevices(cat); i++) {
            const cm_device *d = cm_catalog_device_at(cat, i);
            printf("%-10s", d->name);
            for (int p = 0; p < CM_NPREC; p++) {
                if (d->peak_flops[p] > 0)
                    printf(" %8.4g", d->peak_flops[p] / 1e12);
                else
                    printf(" %8s", "-");
            }
            printf(" %7.1f %8.1f  %s%s%s\n", d->mem_bytes / 1073741824.0, d->mem_bw_bytes_per_s / 1e9,
                   d->intra_link, d->intra_link[0] && d->host_link[0] ? "/" : "",
                   d->host_link);
        }
        printf("(dense tensor-core rates; sources: plansim costmodel devices --json)\n\n");
        printf("%-10s %10s %12s  %s\n", "link", "alpha_us", "beta_GB/s", "desc");
        for (size_t i = 0; i < cm_catalog_nlinks(cat); i++) {
            const cm_link *l = cm_catalog_link_at(cat, i);
            printf("%-10s %10.2f %12.2f  %s\n", l->name, l->latency_s * 1e6,
                   l->bw_bytes_per_s / 1e9, l->desc);
        }
    }
    cm_catalog_free(cat);
    return 0;
}

static const ps_verb verbs[] = {
    {"predict", "predicted time of one op (db hit, fit or roofline)", cmd_predict},
    {"validate", "held-out error of the model on a profile database", cmd_validate},
    {"devices", "the device and link catalog", cmd_devices},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_costmodel = {"costmodel", "op, communication and memory cost predictions",
                                   verbs};
