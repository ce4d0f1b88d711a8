/* sim/des outputs: the timeline as a ps_table and as a Chrome trace. */
#include "sim/des/des_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *res_name(const des *d, int32_t r)
{
    return r >= 0 ? d->res[r].name : "none";
}

int des_timeline_table(const des *d, ps_table **out, ps_err *e)
{
    *out = NULL;
    ps_table *t = ps_table_new();
    if (!t)
        return ps_errf(e, PS_ERUN, "des: out of host memory");
    int c_task = ps_table_add_col(t, "task", PS_COL_INT, "");
    int c_name = ps_table_add_col(t, "name", PS_COL_STR, "");
    int c_res = ps_table_add_col(t, "resource", PS_COL_STR, "");
    int c_start = ps_table_add_col(t, "start_s", PS_COL_DOUBLE, "s");
    int c_end = ps_table_add_col(t, "end_s", PS_COL_DOUBLE, "s");
    int c_t0 = ps_table_add_col(t, "tag0", PS_COL_INT, "");
    int c_t1 = ps_table_add_col(t, "tag1", PS_COL_INT, "");
    if (c_task < 0 || c_name < 0 || c_res < 0 || c_start < 0 || c_end < 0 || c_t0 < 0 || c_t1 < 0) {
        ps_table_free(t);
        return ps_errf(e, PS_ERUN, "des: timeline table: cannot add columns");
    }
    for (uint32_t x = 0; x < d->nt; x++) {
        if (isnan(d->start_s[x]))
            continue;
        size_t row = ps_table_add_row(t);
        if (row == (size_t)-1) {
            ps_table_free(t);
            return ps_errf(e, PS_ERUN, "des: timeline table: out of host memory at task %u", x);
        }
        ps_table_set_i(t, row, c_task, x);
        ps_table_set_s(t, row, c_name, d->lab[d->label[x]]);
        ps_table_set_s(t, row, c_res, res_name(d, d->t[x].res));
        ps_table_set_d(t, row, c_start, d->start_s[x]);
        ps_table_set_d(t, row, c_end, d->end_s[x]);
        ps_table_set_i(t, row, c_t0, d->tag0[x]);
        ps_table_set_i(t, row, c_t1, d->tag1[x]);
    }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Chrome trace                                                        */

static void put_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* End of the slice drawn for a task: the holding time for transfers (the
 * link is free again after it, even though the data lands α later). */
static double slice_end(const des *d, uint32_t x)
{
    int k = d->t[x].kind;
    return (k == K_LINK || k == K_SHARED) ? d->rel_s[x] : d->end_s[x];
}

typedef struct lane_sort {
    uint32_t group;
    double start, end;
    uint32_t task;
} lane_sort;

static int cmp_lane(const void *a, const void *b)
{
    const lane_sort *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->task > y->task) - (x->task < y->task);
}

typedef struct trace_tids {
    uint32_t *tid;     /* per task */
    uint32_t *lanes;   /* per group (resource, or nres = no resource): lanes used */
    uint32_t *first;   /* per group: tid of its lane 1 (lane 0 is group + 1) */
} trace_tids;

typedef struct lane_end {
    double end;
    uint32_t lane;
} lane_end;

static int lane_less(const lane_end *a, const lane_end *b)
{
    return a->end < b->end || (a->end == b->end && a->lane < b->lane);
}

/* Slices on one Perfetto track must nest, so a group whose tasks overlap
 * (delays, shared-link flows) is spread over lanes: sorted by start, each
 * task takes the lane that freed up earliest if it is free by then. */
static int assign_lanes(const des *d, trace_tids *tt)
{
    uint32_t ng = (uint32_t)d->nres + 1, next_tid = ng + 1;
    size_t n = 0;
    lane_sort *v = malloc(((size_t)d->nt + 1) * sizeof *v);
    lane_end *h = malloc(((size_t)d->nt + 1) * sizeof *h); /* min-heap */
    if (!v || !h) {
        free(v);
        free(h);
        return -1;
    }
    /* One track per resource even if idle; the no-resource group only if used. */
    for (uint32_t g = 0; g < ng; g++)
        tt->lanes[g] = g < (uint32_t)d->nres;
    for (uint32_t x = 0; x < d->nt; x++) {
        if (d->t[x].state != ST_DONE)
            continue;
        uint32_t g = d->t[x].res < 0 ? (uint32_t)d->nres : (uint32_t)d->t[x].res;
        if (g < (uint32_t)d->nres && d->res[g].kind != K_SHARED)
            tt->tid[x] = g + 1;
        else
            v[n++] = (lane_sort){g, d->start_s[x], slice_end(d, x), x};
    }
    qsort(v, n, sizeof *v, cmp_lane);
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        uint32_t g = v[lo].group, lanes = 0;
        size_t hn = 0;
        for (hi = lo; hi < n && v[hi].group == g; hi++) {
            uint32_t lane;
            if (hn && h[0].end <= v[hi].start) {
                lane = h[0].lane;
                h[0] = h[--hn];
                for (size_t j = 0;;) {
                    size_t c = 2 * j + 1, m = j;
                    if (c < hn && lane_less(&h[c], &h[m]))
                        m = c;
                    if (c + 1 < hn && lane_less(&h[c + 1], &h[m]))
                        m = c + 1;
                    if (m == j)
                        break;
                    lane_end tmp = h[j];
                    h[j] = h[m];
                    h[m] = tmp;
                    j = m;
                }
            } else {
                lane = lanes++;
            }
            size_t j = hn++;
            h[j] = (lane_end){v[hi].end, lane};
            while (j) {
                size_t p = (j - 1) / 2;
                if (!lane_less(&h[j], &h[p]))
                    break;
                lane_end tmp = h[j];
                h[j] = h[p];
                h[p] = tmp;
                j = p;
            }
            tt->tid[v[hi].task] = lane; /* the lane for now; the tid below */
        }
        tt->lanes[g] = lanes;
        tt->first[g] = next_tid;
        next_tid += lanes - 1;
        for (size_t i = lo; i < hi; i++) {
            uint32_t lane = tt->tid[v[i].task];
            tt->tid[v[i].task] = lane == 0 ? g + 1 : tt->first[g] + lane - 1;
        }
    }
    free(v);
    free(h);
    return 0;
}

static void put_thread_meta(FILE *f, uint32_t tid, const char *name, uint32_t lane, uint32_t sort)
{
    fprintf(f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{\"name\":", tid);
    if (lane == 0) {
        put_json_str(f, name);
    } else {
        char buf[512];
        snprintf(buf, sizeof buf, "%s #%u", name, lane);
        put_json_str(f, buf);
    }
    fprintf(f, "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,"
               "\"args\":{\"sort_index\":%u}},\n", tid, sort);
}

static int write_trace(const des *d, FILE *f, const trace_tids *tt)
{
    fputs("{\"traceEvents\":[\n", f);
    fputs("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"plansim des\"}},\n", f);
    uint32_t ng = (uint32_t)d->nres + 1, sort = 0;
    for (uint32_t g = 0; g < ng; g++) {
        const char *name = g < (uint32_t)d->nres ? d->res[g].name : "no resource";
        for (uint32_t l = 0; l < tt->lanes[g]; l++)
            put_thread_meta(f, l == 0 ? g + 1 : tt->first[g] + l - 1, name, l, sort++);
    }
    static const char *cat[] = {"delay", "stream", "link", "shared_link"};
    int first = 1;
    for (uint32_t x = 0; x < d->nt; x++) {
        const dtask *T = &d->t[x];
        if (T->state != ST_DONE)
            continue;
        char nm[200];
        des_fmt_name(d, x, nm, sizeof nm);
        if (!first)
            fputs(",\n", f);
        first = 0;
        fputs("{\"name\":", f);
        put_json_str(f, nm);
        double ts = d->start_s[x] * 1e6, dur = (slice_end(d, x) - d->start_s[x]) * 1e6;
        fprintf(f, ",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.6f,\"dur\":%.6f,\"pid\":1,\"tid\":%u,"
                   "\"args\":{\"task\":%u,\"label\":",
                cat[T->kind], ts, dur, tt->tid[x], x);
        put_json_str(f, d->lab[d->label[x]]);
        fprintf(f, ",\"tag0\":%d,\"tag1\":%d", d->tag0[x], d->tag1[x]);
        if (T->kind == K_LINK || T->kind == K_SHARED)
            fprintf(f, ",\"bytes\":%.17g,\"arrive_us\":%.6f", T->work, d->end_s[x] * 1e6);
        fputs("}}", f);
    }
    fputs("\n],\"displayTimeUnit\":\"ns\"}\n", f);
    return ferror(f) ? -1 : 0;
}

int des_write_trace(const des *d, const char *path, ps_err *e)
{
    if (!path || !*path)
        return ps_errf(e, PS_EINPUT, "des: trace: empty path");
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    trace_tids tt = {0};
    tt.tid = malloc(((size_t)d->nt + 1) * sizeof *tt.tid);
    tt.lanes = calloc((size_t)d->nres + 1, sizeof *tt.lanes);
    tt.first = calloc((size_t)d->nres + 1, sizeof *tt.first);
    int rc = 0;
    if (!tmp || !tt.tid || !tt.lanes || !tt.first || assign_lanes(d, &tt)) {
        rc = ps_errf(e, PS_ERUN, "des: trace: out of host memory");
        goto out;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = ps_errf(e, PS_ERUN, "des: trace: cannot open '%s': %s", tmp, strerror(errno));
        goto out;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int wrc = write_trace(d, f, &tt);
    int werr = errno;
    if (fclose(f) != 0 && !wrc) {
        wrc = -1;
        werr = errno;
    }
    if (wrc) {
        remove(tmp);
        rc = ps_errf(e, PS_ERUN, "des: trace: cannot write '%s': %s", tmp, strerror(werr));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        werr = errno;
        remove(tmp);
        rc = ps_errf(e, PS_ERUN, "des: trace: cannot rename '%s' to '%s': %s", tmp, path, strerror(werr));
    }
out:
    free(tmp);
    free(tt.tid);
    free(tt.lanes);
    free(tt.first);
    return rc;
}
