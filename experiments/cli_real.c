/* `plansim real ...`: the real backend's own commands — train and evaluate
 * the CNN (Fashion-MNIST) and the tiny GPT (fortunes), the training-step
 * benchmark against OpenBLAS's GEMM peak, and a summary of the datasets. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "experiments/cli.h"
#include "kernels/cpu_blas.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "real/data_text.h"
#include "real/gpt.h"
#include "real/train.h"

/* The full-size CNN's training recipe (docs/real.md: >= 91% in < 5 min). */
#define CNN_EPOCHS 4
#define CNN_BATCH 128
#define CNN_LR 2e-3
/* --quick: the small CNN on 2000 / 1000 images, two epochs (0.79-0.80). */
#define QUICK_TRAIN_N 2000
#define QUICK_TEST_N 1000
#define QUICK_BATCH 32
#define QUICK_LR 3e-3
#define QUICK_EPOCHS 2
/* GPT: steps of B x T tokens. */
#define GPT_STEPS 600
#define GPT_QUICK_STEPS 40
#define GPT_B 16
#define GPT_T 128

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static json_t *epochs_json(const train_result *r)
{
    json_t *a = json_array();
    for (int i = 0; i < r->epochs; i++) {
        const train_epoch *t = &r->ep[i];
        json_t *o = json_object();
        json_object_set_new(o, "epoch", json_integer(i + 1));
        json_object_set_new(o, "loss", json_real(t->loss));
        json_object_set_new(o, "train_acc", json_real(t->train_acc));
        json_object_set_new(o, "test_acc", isnan(t->test_acc) ? json_null() : json_real(t->test_acc));
        json_object_set_new(o, "lr", json_real(t->lr));
        json_object_set_new(o, "train_s", json_real(t->seconds));
        json_object_set_new(o, "eval_s", json_real(t->eval_s));
        json_object_set_new(o, "steps", json_integer(t->steps));
        json_array_append_new(a, o);
    }
    return a;
}

/* ------------------------------------------------------------------ train */

typedef struct train_args {
    const char *model, *out;
    long epochs, threads, batch, steps, train_n;
    double lr;
    long seed;
    int quick, json, verbose;
} train_args;

static int train_cnn(const train_args *a)
{
    ps_err e = {0};
    double t0 = ps_now_s();
    fmnist_set tr, te;
    int64_t ntr = a->train_n > 0 ? a->train_n : a->quick ? QUICK_TRAIN_N : 0;
    if (fmnist_load(NULL, "train", ntr, &tr, &e))
        return ps_cli_fail(&e);
    if (fmnist_load(NULL, "t10k", a->quick ? QUICK_TEST_N : 0, &te, &e)) {
        fmnist_free(&tr);
        return ps_cli_fail(&e);
    }
    double data_s = ps_now_s() - t0;
    cnn_config c = a->quick ? cnn_config_small() : cnn_config_default();
    train_opts o = train_opts_default();
    o.epochs = (int)(a->epochs > 0 ? a->epochs : a->quick ? QUICK_EPOCHS : CNN_EPOCHS);
    o.batch = a->batch > 0 ? a->batch : a->quick ? QUICK_BATCH : CNN_BATCH;
    o.opt.lr = a->lr > 0 ? a->lr : a->quick ? QUICK_LR : CNN_LR;
    o.seed = (uint64_t)a->seed;
    o.eval_every_epoch = !a->quick;
    o.verbose = a->verbose;
    o.label = "cnn";
    cnn net;
    train_result r;
    int rc = cnn_init(&net, &c, rt_cpu(), RT_F32, o.batch, (uint64_t)a->seed, &e);
    if (!rc) {
        train_model m = train_model_cnn(&net);
        train_data dtr = train_data_fmnist(&tr), dte = train_data_fmnist(&te);
        rc = train_classifier(&m, &dtr, &dte, &o, &r, &e);
    }
    char cfg[256], meta[512];
    cnn_config_str(&c, cfg, sizeof cfg);
    if (!rc && a->out) {
        snprintf(meta, sizeof meta, "seed=%ld epochs=%d batch=%lld lr=%g train_n=%lld", a->seed,
                 o.epochs, (long long)o.batch, o.opt.lr, (long long)tr.n);
        rc = cnn_save(&net, a->out, meta, &e);
    }
    double total_s = ps_now_s() - t0;
    if (!rc) {
        if (a->json) {
            json_t *j = json_object();
            json_object_set_new(j, "model", json_string("cnn"));
            json_object_set_new(j, "config", json_string(cfg));
            json_object_set_new(j, "params", json_integer(rt_params_numel(net.params, net.ntrain)));
            json_object_set_new(j, "quick", json_boolean(a->quick));
            json_object_set_new(j, "seed", json_integer(a->seed));
            json_object_set_new(j, "threads", json_integer(a->threads));
            json_object_set_new(j, "blas_core", json_string(ps_cpu_blas_core()));
            json_object_set_new(j, "train_examples", json_integer(tr.n));
            json_object_set_new(j, "test_examples", json_integer(te.n));
            json_object_set_new(j, "batch", json_integer(o.batch));
            json_object_set_new(j, "lr", json_real(o.opt.lr));
            json_object_set_new(j, "test_acc", json_real(r.test_acc));
            json_object_set_new(j, "final_loss", json_real(r.final_loss));
            json_object_set_new(j, "data_s", json_real(data_s));
            json_object_set_new(j, "train_s", json_real(r.train_s));
            json_object_set_new(j, "eval_s", json_real(r.eval_s));
            json_object_set_new(j, "total_s", json_real(total_s));
            json_object_set_new(j, "epochs", epochs_json(&r));
            json_object_set_new(j, "weights", a->out ? json_string(a->out) : json_null());
            ps_cli_print_json(j);
            json_decref(j);
        } else {
            printf("%s\n%lld params, %d epochs of %lld images, batch %lld, AdamW lr %g cosine, "
                   "%ld threads (OpenBLAS %s)\n",
                   cfg, (long long)rt_params_numel(net.params, net.ntrain), o.epochs,
                   (long long)tr.n, (long long)o.batch, o.opt.lr, a->threads,
                   ps_cpu_blas_core());
            for (int i = 0; i < r.epochs; i++)
                printf("epoch %d: loss %.4f train acc %.2f%% test acc %s%.2f%% (%.1f s)\n", i + 1,
                       r.ep[i].loss, 100 * r.ep[i].train_acc,
                       isnan(r.ep[i].test_acc) ? "-" : "", 100 * r.ep[i].test_acc,
                       r.ep[i].seconds);
            printf("test accuracy %.2f%% on %lld images; time %.1f s (data %.1f s, training "
                   "%.1f s, evaluation %.1f s)\n",
                   100 * r.test_acc, (long long)te.n, total_s, data_s, r.train_s, r.eval_s);
            if (a->out)
                printf("weights: %s\n", a->out);
        }
    }
    cnn_free(&net);
    fmnist_free(&tr);
    fmnist_free(&te);
    return rc ? ps_cli_fail(&e) : 0;
}

static void gpt_config_str(const gpt_config *c, char *buf, size_t n)
{
    snprintf(buf, n, "gpt vocab=%d ctx=%d dim=%d heads=%d layers=%d tied=%d", c->vocab, c->ctx,
             c->dim, c->heads, c->layers, c->tied);
}

static int gpt_config_parse(const char *s, gpt_config *c, ps_err *e)
{
    gpt_config t = {0};
    if (!s || sscanf(s, "gpt vocab=%d ctx=%d dim=%d heads=%d layers=%d tied=%d", &t.vocab, &t.ctx,
                     &t.dim, &t.heads, &t.layers, &t.tied) != 6)
        return ps_errf(e, PS_EINPUT, "'%s' is not a GPT config string", s ? s : "(null)");
    if (gpt_config_check(&t, e))
        return e->code;
    *c = t;
    return 0;
}

static int train_gpt(const train_args *a)
{
    ps_err e = {0};
    double t0 = ps_now_s();
    text_corpus corpus;
    if (text_load(NULL, &corpus, &e))
        return ps_cli_fail(&e);
    double data_s = ps_now_s() - t0;
    gpt_config c = a->quick ? gpt_config_tiny() : gpt_config_small();
    gpt_train_opts o = {.steps = a->steps > 0 ? a->steps : a->quick ? GPT_QUICK_STEPS : GPT_STEPS,
                        .B = a->batch > 0 ? a->batch : a->quick ? 8 : GPT_B,
                        .T = a->quick ? 64 : GPT_T,
                        .lr = a->lr > 0 ? a->lr : 1e-3,
                        .eval_batches = a->quick ? 4 : 16,
                        .seed = (uint64_t)a->seed};
    if (o.T > c.ctx)
        o.T = c.ctx;
    gpt m;
    gpt_train_result r;
    int rc = gpt_init(&m, &c, rt_cpu(), RT_F32, (uint64_t)a->seed, &e);
    if (!rc)
        rc = gpt_train_text(&m, &corpus, &o, &r, &e);
    char cfg[256], meta[512];
    gpt_config_str(&c, cfg, sizeof cfg);
    if (!rc && a->out) {
        snprintf(meta, sizeof meta, "%s; seed=%ld steps=%lld B=%lld T=%lld lr=%g", cfg, a->seed,
                 (long long)o.steps, (long long)o.B, (long long)o.T, o.lr);
        rc = rt_save(a->out, m.params, m.nparams, meta, &e);
    }
    double total_s = ps_now_s() - t0;
    if (!rc) {
        if (a->json) {
            json_t *j = json_object();
            json_object_set_new(j, "model", json_string("gpt"));
            json_object_set_new(j, "config", json_string(cfg));
            json_object_set_new(j, "params", json_integer(gpt_num_params(&m)));
            json_object_set_new(j, "quick", json_boolean(a->quick));
            json_object_set_new(j, "seed", json_integer(a->seed));
            json_object_set_new(j, "threads", json_integer(a->threads));
            json_object_set_new(j, "steps", json_integer(o.steps));
            json_object_set_new(j, "batch", json_integer(o.B));
            json_object_set_new(j, "seq", json_integer(o.T));
            json_object_set_new(j, "first_loss", json_real(r.first_loss));
            json_object_set_new(j, "last_loss", json_real(r.last_loss));
            json_object_set_new(j, "val_loss", json_real(r.val_loss));
            json_object_set_new(j, "data_s", json_real(data_s));
            json_object_set_new(j, "train_s", json_real(r.seconds));
            json_object_set_new(j, "total_s", json_real(total_s));
            json_object_set_new(j, "weights", a->out ? json_string(a->out) : json_null());
            ps_cli_print_json(j);
            json_decref(j);
        } else {
            printf("%s\n%lld params, %lld steps of %lld x %lld bytes, %ld threads\n", cfg,
                   (long long)gpt_num_params(&m), (long long)o.steps, (long long)o.B,
                   (long long)o.T, a->threads);
            printf("loss %.4f -> %.4f; validation loss %.4f (%.3f bits/byte); time %.1f s "
                   "(data %.1f s, training %.1f s)\n",
                   r.first_loss, r.last_loss, r.val_loss, r.val_loss / log(2.0), total_s, data_s,
                   r.seconds);
            if (a->out)
                printf("weights: %s\n", a->out);
        }
    }
    gpt_free(&m);
    text_free(&corpus);
    return rc ? ps_cli_fail(&e) : 0;
}

static int cmd_train(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"epochs", required_argument, 0, 'E'},
        {"steps", required_argument, 0, 'S'}, {"seed", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},    {"train-n", required_argument, 0, 'n'},
        {"output", required_argument, 0, 'o'}, {"quick", no_argument, 0, 'q'},
        {"json", no_argument, 0, 'j'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    train_args a = {.model = "cnn", .seed = 1, .threads = 0};
    int c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': a.model = optarg; break;
        case 'E': bad = ps_cli_long(argv[0], "--epochs", optarg, &a.epochs); break;
        case 'S': bad = ps_cli_long(argv[0], "--steps", optarg, &a.steps); break;
        case 's': bad = ps_cli_long(argv[0], "--seed", optarg, &a.seed); break;
        case 't': bad = ps_cli_long(argv[0], "--threads", optarg, &a.threads); break;
        case 'b': bad = ps_cli_long(argv[0], "--batch", optarg, &a.batch); break;
        case 'l': bad = ps_cli_double(argv[0], "--lr", optarg, &a.lr); break;
        case 'n': bad = ps_cli_long(argv[0], "--train-n", optarg, &a.train_n); break;
        case 'o': a.out = optarg; break;
        case 'q': a.quick = 1; break;
        case 'j': a.json = 1; break;
        case 'h':
            printf("usage: plansim real train [--model cnn|gpt] [--epochs N] [--steps N] "
                   "[--seed S]\n"
                   "         [--threads T] [--batch B] [--lr LR] [--train-n N] [-o WEIGHTS] "
                   "[--quick] [--json]\n\n"
                   "Trains on the CPU, deterministically for a seed (at a fixed thread count), "
                   "and\nsaves the weights with their config when -o is given.\n"
                   "  cnn  Fashion-MNIST: conv3x3(32)-BN-ReLU-pool, conv3x3(64)-BN-ReLU-pool,\n"
                   "       linear(3136->128)-ReLU-linear(10); AdamW lr %g, cosine, batch %d, %d "
                   "epochs\n"
                   "       (>= 91%% test accuracy in under 5 minutes on 2 cores; docs/real.md).\n"
                   "       --quick: the small CNN (8, 16 channels, hidden 32) on %d images, %d "
                   "epochs.\n"
                   "  gpt  the fortunes byte corpus: the small GPT (real/gpt.h), %d steps of %d "
                   "x %d\n"
                   "       bytes; --quick: the tiny one, %d steps.\n"
                   "  --threads  OpenBLAS threads (default 1; results do not depend on it)\n"
                   "  --train-n  use only the first N training images (cnn)\n"
                   "  --json     one JSON object: test_acc, train_s, total_s, epochs[] ...\n",
                   CNN_LR, CNN_BATCH, CNN_EPOCHS, QUICK_TRAIN_N, QUICK_EPOCHS, GPT_STEPS, GPT_B, GPT_T,
                   GPT_QUICK_STEPS);
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
        if (bad)
            return bad;
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    /* one OpenBLAS thread by default: these models' GEMMs are small and the
     * elementwise layers single-threaded, so a second thread mostly spins;
     * one trains as fast (CNN) or faster (GPT) on this 2-core machine and is
     * not slowed by a busy neighbour (docs/real.md) */
    if (a.threads == 0)
        a.threads = 1;
    if (a.threads < 1 || a.threads > 256)
        return ps_cli_usage(argv[0], "--threads %ld outside [1, 256]", a.threads);
    if (a.epochs < 0 || a.epochs > TRAIN_MAXEPOCHS || a.batch < 0 || a.steps < 0 ||
        a.train_n < 0 || a.lr < 0)
        return ps_cli_usage(argv[0], "--epochs, --batch, --steps, --train-n, --lr must be positive");
    ps_cpu_blas_set_threads((int)a.threads);
    a.verbose = !a.json && !getenv("PLANSIM_QUIET");
    if (!strcmp(a.model, "cnn"))
        return train_cnn(&a);
    if (!strcmp(a.model, "gpt"))
        return train_gpt(&a);
    return ps_cli_usage(argv[0], "--model '%s': expected cnn or gpt", a.model);
}

/* ------------------------------------------------------------------ eval */

static int cmd_eval(int argc, char **argv)
{
    static const struct option lo[] = {{"threads", required_argument, 0, 't'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    long threads = 1;
    int json = 0, c;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 't':
            if (ps_cli_long(argv[0], "--threads", optarg, &threads))
                return 2;
            break;
        case 'j': json = 1; break;
        case 'h':
            printf("usage: plansim real eval WEIGHTS [--threads T (default 1)] [--json]\n\n"
                   "Loads weights written by `plansim real train -o` (the model is rebuilt from\n"
                   "the config stored with them; a corrupt file or a shape mismatch is an error\n"
                   "naming the file and the param) and reports the CNN's accuracy on the 10000\n"
                   "Fashion-MNIST test images, or the GPT's validation loss on the fortunes "
                   "corpus.\n");
            return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc - 1)
        return ps_cli_usage(argv[0], "expected exactly one WEIGHTS file");
    if (threads < 1 || threads > 256)
        return ps_cli_usage(argv[0], "--threads %ld outside [1, 256]", threads);
    ps_cpu_blas_set_threads((int)threads);
    const char *path = argv[optind];
    ps_err e = {0};
    char *meta = NULL;
    /* the stored meta first (no params expected): which model, which config */
    if (rt_load(path, NULL, 0, &meta, &e))
        return ps_cli_fail(&e);
    double t0 = ps_now_s();
    int rc = 0;
    cnn_config cc;
    gpt_config gc;
    ps_err pe = {0};
    if (!cnn_config_parse(meta, &cc, &pe)) {
        fmnist_set te;
        cnn net;
        double acc = 0;
        if ((rc = fmnist_load(NULL, "t10k", 0, &te, &e)) == 0) {
            if (!(rc = cnn_init(&net, &cc, rt_cpu(), RT_F32, 500, 1, &e)) &&
                !(rc = cnn_load(&net, path, &e))) {
                train_model m = train_model_cnn(&net);
                train_data d = train_data_fmnist(&te);
                rc = train_evaluate(&m, &d, 500, &acc, &e);
            }
            cnn_free(&net);
            if (!rc) {
                double s = ps_now_s() - t0;
                if (json) {
                    json_t *j = json_object();
                    json_object_set_new(j, "model", json_string("cnn"));
                    json_object_set_new(j, "weights", json_string(path));
                    json_object_set_new(j, "meta", json_string(meta));
                    json_object_set_new(j, "test_examples", json_integer(te.n));
                    json_object_set_new(j, "test_acc", json_real(acc));
                    json_object_set_new(j, "seconds", json_real(s));
                    ps_cli_print_json(j);
                    json_decref(j);
                } else
                    printf("%s\n%s: test accuracy %.2f%% on %lld images (%.1f s)\n", meta, path,
                           100 * acc, (long long)te.n, s);
            }
            fmnist_free(&te);
        }
    } else if (!gpt_config_parse(meta, &gc, &pe)) {
        text_corpus corpus;
        gpt m;
        double loss = 0;
        if ((rc = text_load(NULL, &corpus, &e)) == 0) {
            int64_t T = gc.ctx < GPT_T ? gc.ctx : GPT_T;
            if (!(rc = gpt_init(&m, &gc, rt_cpu(), RT_F32, 1, &e)) &&
                !(rc = rt_load(path, m.params, m.nparams, NULL, &e)))
                rc = gpt_eval_text(&m, &corpus, 8, T, 16, 12345, &loss, &e);
            gpt_free(&m);
            text_free(&corpus);
            if (!rc) {
                double s = ps_now_s() - t0;
                if (json) {
                    json_t *j = json_object();
                    json_object_set_new(j, "model", json_string("gpt"));
                    json_object_set_new(j, "weights", json_string(path));
                    json_object_set_new(j, "meta", json_string(meta));
                    json_object_set_new(j, "val_loss", json_real(loss));
                    json_object_set_new(j, "seconds", json_real(s));
                    ps_cli_print_json(j);
                    json_decref(j);
                } else
                    printf("%s\n%s: validation loss %.4f (%.3f bits/byte) (%.1f s)\n", meta,
                           path, loss, loss / log(2.0), s);
            }
        }
    } else
        rc = ps_errf(&e, PS_EINPUT,
                     "%s: the stored config '%s' is neither a CNN's nor a GPT's (weights not "
                     "written by plansim real train?)",
                     path, meta ? meta : "");
    free(meta);
    return rc ? ps_cli_fail(&e) : 0;
}

/* ------------------------------------------------------------------ bench */

typedef struct gemm_point {
    int n;
    double gflops;
} gemm_point;

/* Best GFLOP/s of square sgemm at n (repeats until min_s has passed). */
static double sgemm_gflops(int n, double min_s)
{
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((i * 7 % 13) - 6) / 8.0f;
        b[i] = (float)((i * 5 % 11) - 5) / 8.0f;
        c[i] = 0;
    }
    ps_cpu_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    double best = 1e30, t_start = ps_now_s();
    int reps = 0;
    while (reps < 3 || ps_now_s() - t_start < min_s) {
        double t0 = ps_now_s();
        ps_cpu_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = ps_now_s() - t0;
        if (dt < best)
            best = dt;
        reps++;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

typedef struct step_bench {
    double step_s_best, step_s_mean, flops, gflops;
} step_bench;

static int cnn_bench(int64_t batch, int warmup, int steps, step_bench *sb, ps_err *e)
{
    cnn_config c = cnn_config_default();
    cnn net;
    if (cnn_init(&net, &c, rt_cpu(), RT_F32, batch, 1, e))
        return e->code;
    rt_tensor x, y;
    rt_rng r;
    rt_rng_seed(&r, 7);
    int rc = rt_tensor_new4(&x, rt_cpu(), RT_F32, batch, 1, 28, 28, e) ||
             rt_tensor_new1(&y, rt_cpu(), RT_I32, batch, e) ||
             rt_init_normal(&x, &r, 0, 1, e);
    if (!rc)
        for (int64_t i = 0; i < batch; i++)
            rt_i32(&y)[i] = (int32_t)(rt_rng_next(&r) % 10);
    rt_opt opt = train_opts_default().opt;
    double best = 1e30, sum = 0;
    for (int s = 0; s < warmup + steps && !rc; s++) {
        double t0 = ps_now_s(), loss;
        rc = rt_params_zero_grad(net.params, net.ntrain, e) || cnn_forward(&net, &x, 1, e) ||
             cnn_loss(&net, &y, &loss, e) || cnn_backward(&net, &x, &y, e) ||
             rt_opt_step(&opt, net.params, net.ntrain, e);
        double dt = ps_now_s() - t0;
        if (s >= warmup) {
            sum += dt;
            if (dt < best)
                best = dt;
        }
    }
    rt_tensor_free(&x);
    rt_tensor_free(&y);
    cnn_free(&net);
    if (rc)
        return e && e->code ? e->code : PS_ERUN;
    sb->step_s_best = best;
    sb->step_s_mean = sum / steps;
    sb->flops = cnn_flops_step(&c, batch);
    sb->gflops = sb->flops / best / 1e9;
    return 0;
}

typedef struct bench_row {
    int threads, nsizes, peak_n;
    gemm_point gp[4];
    double peak;
    step_bench cnn;
    gpt_bench_result gpt;
} bench_row;

static int bench_at(int threads, int quick, bench_row *b, ps_err *e)
{
    static const int sizes[] = {512, 1024, 1536, 2048};
    memset(b, 0, sizeof *b);
    b->threads = threads;
    ps_cpu_blas_set_threads(threads);
    b->nsizes = quick ? 2 : 4;
    for (int i = 0; i < b->nsizes; i++) {
        b->gp[i].n = sizes[i];
        b->gp[i].gflops = sgemm_gflops(sizes[i], quick ? 0.1 : 0.5);
        if (b->gp[i].gflops > b->peak) {
            b->peak = b->gp[i].gflops;
            b->peak_n = sizes[i];
        }
    }
    if (cnn_bench(128, quick ? 1 : 2, quick ? 3 : 12, &b->cnn, e))
        return e->code;
    gpt_config gc = gpt_config_small();
    int64_t T = gc.ctx < 128 ? gc.ctx : 128;
    return gpt_bench_step(&gc, rt_cpu(), 8, T, quick ? 1 : 2, quick ? 3 : 12, 1, &b->gpt, e);
}

static json_t *model_json(const char *cfg, int64_t batch, int64_t seq, double flops, double best,
                          double mean, double gflops, double peak)
{
    json_t *o = json_object();
    json_object_set_new(o, "config", json_string(cfg));
    json_object_set_new(o, "batch", json_integer(batch));
    if (seq)
        json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "flops_per_step", json_real(flops));
    json_object_set_new(o, "step_s_best", json_real(best));
    json_object_set_new(o, "step_s_mean", json_real(mean));
    json_object_set_new(o, "gflops", json_real(gflops));
    json_object_set_new(o, "fraction_of_peak", json_real(gflops / peak));
    return o;
}

static int cmd_bench(int argc, char **argv)
{
    static const char usage[] =
        "usage: plansim real bench [--json] [--quick]\n\n"
        "Training-step throughput on the CPU as a fraction of the FLOP floor set by\n"
        "OpenBLAS's measured sgemm peak on this machine, at 1 thread and at all online\n"
        "CPUs (each fraction against the peak at the same thread count):\n"
        "  peak  square sgemm, n = 512, 1024, 1536, 2048: the best GFLOP/s\n"
        "  cnn   the full-size Fashion-MNIST CNN, batch 128: forward, backward, AdamW\n"
        "  gpt   the small GPT (real/gpt.h), 8 x 128 tokens: the same\n"
        "FLOPs are counted analytically (convolutions, linears, attention; 2 per\n"
        "multiply-add; elementwise work not counted); achieved = FLOPs / best step time;\n"
        "fraction = achieved / peak.  --quick: fewer sizes and steps (seconds).\n"
        "JSON: cnn_fraction, gpt_fraction (at all CPUs) and rows[] per thread count.\n";
    int json = 0, quick = 0;
    int st = ps_cli_bench_opts(argc, argv, usage, &json, &quick);
    if (st >= 0)
        return st;
    int nthr[2] = {1, default_threads()}, nrows = nthr[1] > 1 ? 2 : 1;
    ps_err e = {0};
    double t_all = ps_now_s();
    bench_row rows[2];
    for (int i = 0; i < nrows; i++)
        if (bench_at(nthr[i], quick, &rows[i], &e))
            return ps_cli_fail(&e);
    double total_s = ps_now_s() - t_all;
    char gcfg[256], ccfg[256];
    gpt_config gc = gpt_config_small();
    gpt_config_str(&gc, gcfg, sizeof gcfg);
    cnn_config cc = cnn_config_default();
    cnn_config_str(&cc, ccfg, sizeof ccfg);
    int64_t gT = gc.ctx < 128 ? gc.ctx : 128;
    const bench_row *last = &rows[nrows - 1];
    if (json) {
        json_t *j = json_object(), *ra = json_array();
        json_object_set_new(j, "blas_core", json_string(ps_cpu_blas_core()));
        json_object_set_new(j, "quick", json_boolean(quick));
        for (int r = 0; r < nrows; r++) {
            const bench_row *b = &rows[r];
            json_t *o = json_object(), *ga = json_array();
            json_object_set_new(o, "threads", json_integer(b->threads));
            for (int i = 0; i < b->nsizes; i++) {
                json_t *g = json_object();
                json_object_set_new(g, "n", json_integer(b->gp[i].n));
                json_object_set_new(g, "gflops", json_real(b->gp[i].gflops));
                json_array_append_new(ga, g);
            }
            json_object_set_new(o, "sgemm", ga);
            json_object_set_new(o, "peak_gflops", json_real(b->peak));
            json_object_set_new(o, "peak_n", json_integer(b->peak_n));
            json_object_set_new(o, "cnn",
                                model_json(ccfg, 128, 0, b->cnn.flops, b->cnn.step_s_best,
                                           b->cnn.step_s_mean, b->cnn.gflops, b->peak));
            json_t *g = model_json(gcfg, 8, gT, b->gpt.flops_per_step, b->gpt.step_s_best,
                                   b->gpt.step_s_mean, b->gpt.gflops_best, b->peak);
            json_object_set_new(g, "params", json_integer(b->gpt.params));
            json_object_set_new(o, "gpt", g);
            json_array_append_new(ra, o);
        }
        json_object_set_new(j, "rows", ra);
        json_object_set_new(j, "threads", json_integer(last->threads));
        json_object_set_new(j, "peak_gflops", json_real(last->peak));
        json_object_set_new(j, "cnn_fraction", json_real(last->cnn.gflops / last->peak));
        json_object_set_new(j, "gpt_fraction", json_real(last->gpt.gflops_best / last->peak));
        json_object_set_new(j, "total_s", json_real(total_s));
        ps_cli_print_json(j);
        json_decref(j);
        return 0;
    }
    printf("OpenBLAS %s\ncnn: %s, batch 128\ngpt: %s, 8 x %lld tokens\n\n", ps_cpu_blas_core(),
           ccfg, gcfg, (long long)gT);
    printf("%7s %11s %6s %10s %10s %9s %10s %10s %9s\n", "threads", "peak_GF/s", "at_n",
           "cnn_step_s", "cnn_GF/s", "cnn_frac", "gpt_step_s", "gpt_GF/s", "gpt_frac");
    for (int r = 0; r < nrows; r++) {
        const bench_row *b = &rows[r];
        printf("%7d %11.1f %6d %10.4f %10.1f %8.1f%% %10.4f %10.1f %8.1f%%\n", b->threads, b->peak,
               b->peak_n, b->cnn.step_s_best, b->cnn.gflops, 100 * b->cnn.gflops / b->peak,
               b->gpt.step_s_best, b->gpt.gflops_best, 100 * b->gpt.gflops_best / b->peak);
    }
    printf("\nGFLOP per step: cnn %.3f, gpt %.3f; sgemm GFLOP/s by n:", last->cnn.flops / 1e9,
           last->gpt.flops_per_step / 1e9);
    for (int r = 0; r < nrows; r++) {
        printf("\n  %d thread%s:", rows[r].threads, rows[r].threads > 1 ? "s" : "");
        for (int i = 0; i < rows[r].nsizes; i++)
            printf(" %d: %.1f", rows[r].gp[i].n, rows[r].gp[i].gflops);
    }
    printf("\ntotal %.1f s\n", total_s);
    return 0;
}

/* ------------------------------------------------------------------ data */

static int cmd_data(int argc, char **argv)
{
    static const char usage[] =
        "usage: plansim real data [--json]\n\n"
        "The datasets the real backend reads and what was found: Fashion-MNIST (Debian\n"
        "package dataset-fashion-mnist; PLANSIM_FMNIST_DIR overrides the folder) and the\n"
        "fortunes text corpus (packages fortunes, fortunes-min; PLANSIM_TEXT_DIR).  A\n"
        "missing or corrupt dataset is reported with the package to install (exit 2).\n";
    int json = 0, quick = 0;
    int st = ps_cli_bench_opts(argc, argv, usage, &json, &quick);
    if (st >= 0)
        return st;
    (void)quick;
    ps_err e = {0};
    fmnist_set s[2];
    int64_t hist[2][FMNIST_CLASSES];
    const char *splits[2] = {"train", "t10k"};
    for (int i = 0; i < 2; i++) {
        if (fmnist_load(NULL, splits[i], 0, &s[i], &e)) {
            if (i)
                fmnist_free(&s[0]);
            return ps_cli_fail(&e);
        }
        fmnist_histogram(&s[i], hist[i], &e);
    }
    text_corpus tc;
    if (text_load(NULL, &tc, &e)) {
        fmnist_free(&s[0]);
        fmnist_free(&s[1]);
        return ps_cli_fail(&e);
    }
    if (json) {
        json_t *j = json_object(), *f = json_object();
        json_object_set_new(f, "dir", json_string(fmnist_dir()));
        for (int i = 0; i < 2; i++) {
            json_t *o = json_object(), *h = json_array();
            json_object_set_new(o, "images", json_string(s[i].images_path));
            json_object_set_new(o, "labels", json_string(s[i].labels_path));
            json_object_set_new(o, "count", json_integer(s[i].n));
            json_object_set_new(o, "rows", json_integer(s[i].rows));
            json_object_set_new(o, "cols", json_integer(s[i].cols));
            for (int c = 0; c < FMNIST_CLASSES; c++)
                json_array_append_new(h, json_integer(hist[i][c]));
            json_object_set_new(o, "label_histogram", h);
            json_object_set_new(f, i ? "test" : "train", o);
        }
        json_object_set_new(j, "fashion_mnist", f);
        json_t *t = json_object();
        json_object_set_new(t, "dir", json_string(tc.dir));
        json_object_set_new(t, "files", json_integer(tc.nfiles));
        json_object_set_new(t, "records", json_integer(tc.nrecords));
        json_object_set_new(t, "train_bytes", json_integer((json_int_t)tc.n[TEXT_TRAIN]));
        json_object_set_new(t, "val_bytes", json_integer((json_int_t)tc.n[TEXT_VAL]));
        json_object_set_new(j, "text", t);
        ps_cli_print_json(j);
        json_decref(j);
    } else {
        printf("Fashion-MNIST (%s)\n", fmnist_dir());
        for (int i = 0; i < 2; i++) {
            printf("  %-5s %6lld images %dx%d  %s\n        labels per class:", splits[i],
                   (long long)s[i].n, s[i].rows, s[i].cols, s[i].images_path);
            for (int c = 0; c < FMNIST_CLASSES; c++)
                printf(" %lld", (long long)hist[i][c]);
            printf("\n");
        }
        printf("text corpus (%s): %d files, %lld records, %zu training bytes, %zu validation "
               "bytes\n",
               tc.dir, tc.nfiles, (long long)tc.nrecords, tc.n[TEXT_TRAIN], tc.n[TEXT_VAL]);
    }
    fmnist_free(&s[0]);
    fmnist_free(&s[1]);
    text_free(&tc);
    return 0;
}

static const ps_verb verbs[] = {
    {"train", "train the CNN (Fashion-MNIST) or the tiny GPT (fortunes); save weights", cmd_train},
    {"eval", "evaluate saved weights (test accuracy / validation loss)", cmd_eval},
    {"bench", "training-step FLOP/s vs OpenBLAS's sgemm peak (make bench runs it)", cmd_bench},
    {"data", "the datasets found: counts, paths", cmd_data},
    {NULL, NULL, NULL}};

const ps_noun ps_noun_real = {"real", "the real backend: train, evaluate, benchmark on the CPU",
                              verbs};
