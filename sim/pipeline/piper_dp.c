/* Piper's DP, exactly and faster (see piper_dp.h for the model and what is
 * done differently).  Re-derived from the algorithm's description and the
 * behaviour of msr-fiddle/piper's algo.cpp; no code copied. */
#include "sim/pipeline/piper_dp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

#define PINF 1e30
#define PIPER_IDEALS_LIMIT 40000L
#define PIPER_DEVICES_LIMIT 10000

typedef struct ptm {
    char *id;
    double tps, par, ma, mb;
    double *sfw; /* per incoming edge of the node (its in-list order) */
    double *sbw; /* per outgoing edge */
} ptm;

struct pp_piper_inst {
    int n, m, tmax;
    double mem, bw, unit;
    int maxdev, mbs;
    int *nid;
    char **nname;
    int *esrc, *edst;
    double *ecost;
    int *in_off, *in_e, *out_off, *out_e; /* edge indices, file order */
    int *tfirst, *tcount;                 /* [v * (tmax+1) + t] -> tm */
    ptm *tm;
    int ntm;
    unsigned char *uniform; /* [v*(tmax+1)+t]: TMPCs share params and syncs */
    int *fast;              /* first index of least timePerSample */
};

#define VT(in, v, t) ((size_t)(v) * ((size_t)(in)->tmax + 1) + (size_t)(t))

void pp_piper_free(pp_piper_inst *in)
{
    if (!in)
        return;
    for (int i = 0; i < in->ntm; i++) {
        free(in->tm[i].id);
        free(in->tm[i].sfw);
        free(in->tm[i].sbw);
    }
    if (in->nname)
        for (int i = 0; i < in->n; i++)
            free(in->nname[i]);
    free(in->nname);
    free(in->nid);
    free(in->esrc);
    free(in->edst);
    free(in->ecost);
    free(in->in_off);
    free(in->in_e);
    free(in->out_off);
    free(in->out_e);
    free(in->tfirst);
    free(in->tcount);
    free(in->tm);
    free(in->uniform);
    free(in->fast);
    free(in);
}

int pp_piper_nnodes(const pp_piper_inst *in) { return in->n; }
int pp_piper_nedges(const pp_piper_inst *in) { return in->m; }
int pp_piper_node_id(const pp_piper_inst *in, int i) { return in->nid[i]; }
const char *pp_piper_node_name(const pp_piper_inst *in, int i) { return in->nname[i]; }
void pp_piper_edge(const pp_piper_inst *in, int k, int *src, int *dst, double *bytes)
{
    *src = in->esrc[k];
    *dst = in->edst[k];
    *bytes = in->ecost[k];
}
double pp_piper_bandwidth(const pp_piper_inst *in) { return in->bw; }
double pp_piper_max_memory(const pp_piper_inst *in) { return in->mem; }
int pp_piper_max_devices(const pp_piper_inst *in) { return in->maxdev; }
int pp_piper_mbs(const pp_piper_inst *in) { return in->mbs; }
double pp_piper_time_unit_s(const pp_piper_inst *in) { return in->unit; }

int pp_piper_ntmpcs(const pp_piper_inst *in, int i, int t)
{
    if (i < 0 || i >= in->n || t < 1 || t > in->tmax)
        return 0;
    return in->tcount[VT(in, i, t)];
}

int pp_piper_tmpc(const pp_piper_inst *in, int i, int t, int l, pp_piper_tmpc_info *out)
{
    if (l < 0 || l >= pp_piper_ntmpcs(in, i, t))
        return -1;
    const ptm *x = &in->tm[in->tfirst[VT(in, i, t)] + l];
    out->id = x->id;
    out->time_per_sample = x->tps;
    out->parameter_size = x->par;
    out->memory_a = x->ma;
    out->memory_b = x->mb;
    return 0;
}

/* ------------------------------------------------------------ parsing */

static int get_num(const json_t *o, const char *what, const char *path, const char *key,
                   double *out, ps_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: missing", what, path, key);
    if (!json_is_number(v))
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: expected a number", what, path, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: not finite", what, path, key);
    return 0;
}

static int get_int(const json_t *o, const char *what, const char *path, const char *key,
                   long long *out, ps_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: missing", what, path, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 1e15) {
        *out = (long long)json_real_value(v);
        return 0;
    }
    return ps_errf(e, PS_EINPUT, "%s: %s.%s: expected an integer", what, path, key);
}

typedef struct idmap {
    int id, idx;
} idmap;

static int idmap_cmp(const void *a, const void *b)
{
    const idmap *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int find_idx(const idmap *map, int n, int id)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (map[mid].id == id)
            return map[mid].idx;
        if (map[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int parse_key_int(const char *k, long *out)
{
    char *end;
    if (!*k)
        return -1;
    long v = strtol(k, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

/* Read a sync map (keys: neighbour ids) into arr[] indexed like the node's
 * edge list `lst` (edge indices), `other` giving the neighbour of edge k. */
static int read_sync(const json_t *obj, const char *what, const char *path, const char *key,
                     const pp_piper_inst *in, const idmap *map, const int *lst, int cnt,
                     const int *other, double *arr, ps_err *e)
{
    json_t *s = json_object_get(obj, key);
    if (!s)
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: missing", what, path, key);
    if (!json_is_object(s))
        return ps_errf(e, PS_EINPUT, "%s: %s.%s: expected an object of node id -> bytes", what,
                       path, key);
    for (int k = 0; k < cnt; k++)
        arr[k] = NAN;
    const char *kk;
    json_t *v;
    json_object_foreach(s, kk, v)
    {
        long nid;
        if (parse_key_int(kk, &nid))
            return ps_errf(e, PS_EINPUT, "%s: %s.%s: key \"%s\" is not a node id", what, path,
                           key, kk);
        if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
            return ps_errf(e, PS_EINPUT, "%s: %s.%s[\"%s\"]: expected a non-negative number",
                           what, path, key, kk);
        int idx = find_idx(map, in->n, (int)nid);
        int hit = -1;
        for (int k = 0; k < cnt && idx >= 0; k++)
            if (other[lst[k]] == idx)
                hit = k;
        if (hit < 0)
            return ps_errf(e, PS_EINPUT, "%s: %s.%s: node %s is not joined to this node by an "
                           "edge (%s)", what, path, key, kk,
                           strcmp(key, "syncTimeFw") ? "outgoing" : "incoming");
        arr[hit] = json_number_value(v);
    }
    for (int k = 0; k < cnt; k++)
        if (isnan(arr[k]))
            return ps_errf(e, PS_EINPUT, "%s: %s.%s: no entry for the edge %s node %d", what,
                           path, key, strcmp(key, "syncTimeFw") ? "to" : "from",
                           in->nid[other[lst[k]]]);
    return 0;
}

pp_piper_inst *pp_piper_from_json(const json_t *doc, const char *what, ps_err *e)
{
    if (!what)
        what = "piper input";
    if (!json_is_object(doc)) {
        ps_errf(e, PS_EINPUT, "%s: $: expected an object", what);
        return NULL;
    }
    pp_piper_inst *in = calloc(1, sizeof *in);
    idmap *map = NULL;
    int *indeg = NULL, *stack = NULL;
    int rc = 0;
    if (!in) {
        ps_errf(e, PS_ERUN, "%s: out of memory", what);
        return NULL;
    }
    long long mdev = 0, mbs = 0;
    if ((rc = get_num(doc, what, "$", "maxMemoryPerDevice", &in->mem, e)) ||
        (rc = get_int(doc, what, "$", "maxDevices", &mdev, e)) ||
        (rc = get_num(doc, what, "$", "bandwidth", &in->bw, e)) ||
        (rc = get_int(doc, what, "$", "mbsInBatch", &mbs, e)))
        goto fail;
    if (mdev < 1 || mdev > PIPER_DEVICES_LIMIT) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.maxDevices: %lld is not in 1..%d", what, mdev,
                     PIPER_DEVICES_LIMIT);
        goto fail;
    }
    if (in->bw < 1e-9 || in->mem < 1e-9) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.%s: must be positive", what,
                     in->bw < 1e-9 ? "bandwidth" : "maxMemoryPerDevice");
        goto fail;
    }
    if (mbs < 1 || mbs > (1LL << 30)) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.mbsInBatch: %lld must be >= 1", what, mbs);
        goto fail;
    }
    in->maxdev = (int)mdev;
    in->mbs = (int)mbs;
    in->unit = 1;
    json_t *ju = json_object_get(doc, "timeUnit");
    if (ju) {
        const char *u = json_string_value(ju);
        if (u && !strcmp(u, "ms"))
            in->unit = 1e-3;
        else if (!u || strcmp(u, "s")) {
            rc = ps_errf(e, PS_EINPUT, "%s: $.timeUnit: expected \"s\" or \"ms\"", what);
            goto fail;
        }
    }
    json_t *nodes = json_object_get(doc, "nodes"), *edges = json_object_get(doc, "edges");
    if (!json_is_array(nodes) || json_array_size(nodes) == 0) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.nodes: expected a non-empty array", what);
        goto fail;
    }
    if (!json_is_array(edges)) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.edges: expected an array", what);
        goto fail;
    }
    in->n = (int)json_array_size(nodes);
    in->m = (int)json_array_size(edges);
    int n = in->n, m = in->m;
    in->nid = calloc((size_t)n, sizeof(int));
    in->nname = calloc((size_t)n, sizeof(char *));
    map = malloc((size_t)n * sizeof *map);
    in->esrc = malloc(((size_t)m + 1) * sizeof(int));
    in->edst = malloc(((size_t)m + 1) * sizeof(int));
    in->ecost = malloc(((size_t)m + 1) * sizeof(double));
    in->in_off = calloc((size_t)n + 1, sizeof(int));
    in->out_off = calloc((size_t)n + 1, sizeof(int));
    in->in_e = malloc(((size_t)m + 1) * sizeof(int));
    in->out_e = malloc(((size_t)m + 1) * sizeof(int));
    if (!in->nid || !in->nname || !map || !in->esrc || !in->edst || !in->ecost || !in->in_off ||
        !in->out_off || !in->in_e || !in->out_e) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
        goto fail;
    }
    char path[128];
    for (int i = 0; i < n; i++) {
        json_t *o = json_array_get(nodes, (size_t)i);
        snprintf(path, sizeof path, "$.nodes[%d]", i);
        if (!json_is_object(o)) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s: expected a node object", what, path);
            goto fail;
        }
        long long id;
        if ((rc = get_int(o, what, path, "id", &id, e)))
            goto fail;
        if (id < -2147483647LL || id > 2147483647LL) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s.id: out of range", what, path);
            goto fail;
        }
        in->nid[i] = (int)id;
        const char *nm = json_string_value(json_object_get(o, "name"));
        in->nname[i] = strdup(nm ? nm : "");
        if (!in->nname[i]) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
            goto fail;
        }
        map[i].id = (int)id;
        map[i].idx = i;
    }
    qsort(map, (size_t)n, sizeof *map, idmap_cmp);
    for (int i = 1; i < n; i++)
        if (map[i].id == map[i - 1].id) {
            rc = ps_errf(e, PS_EINPUT, "%s: $.nodes[%d]: duplicate node id %d", what,
                         map[i].idx > map[i - 1].idx ? map[i].idx : map[i - 1].idx, map[i].id);
            goto fail;
        }
    for (int k = 0; k < m; k++) {
        json_t *o = json_array_get(edges, (size_t)k);
        snprintf(path, sizeof path, "$.edges[%d]", k);
        if (!json_is_object(o)) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s: expected an edge object", what, path);
            goto fail;
        }
        long long s, d;
        if ((rc = get_int(o, what, path, "sourceId", &s, e)) ||
            (rc = get_int(o, what, path, "destId", &d, e)) ||
            (rc = get_num(o, what, path, "communicationCost", &in->ecost[k], e)))
            goto fail;
        if (in->ecost[k] < 0) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s.communicationCost: negative (%g)", what, path,
                         in->ecost[k]);
            goto fail;
        }
        int si = find_idx(map, n, (int)s), di = find_idx(map, n, (int)d);
        if (si < 0 || di < 0 || s != (int)s || d != (int)d) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s.%s: %lld is not a node id", what, path,
                         si < 0 ? "sourceId" : "destId", si < 0 ? s : d);
            goto fail;
        }
        if (si == di) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s: a self-loop on node %lld", what, path, s);
            goto fail;
        }
        in->esrc[k] = si;
        in->edst[k] = di;
        in->out_off[si + 1]++;
        in->in_off[di + 1]++;
    }
    for (int i = 0; i < n; i++) {
        in->out_off[i + 1] += in->out_off[i];
        in->in_off[i + 1] += in->in_off[i];
    }
    {
        int *fi = calloc((size_t)n, sizeof(int)), *fo = calloc((size_t)n, sizeof(int));
        if (!fi || !fo) {
            free(fi);
            free(fo);
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
            goto fail;
        }
        for (int k = 0; k < m; k++) {
            in->out_e[in->out_off[in->esrc[k]] + fo[in->esrc[k]]++] = k;
            in->in_e[in->in_off[in->edst[k]] + fi[in->edst[k]]++] = k;
        }
        free(fi);
        free(fo);
    }
    /* duplicate edges */
    for (int v = 0; v < n; v++)
        for (int a = in->out_off[v]; a < in->out_off[v + 1]; a++)
            for (int b = in->out_off[v]; b < a; b++)
                if (in->edst[in->out_e[a]] == in->edst[in->out_e[b]]) {
                    rc = ps_errf(e, PS_EINPUT, "%s: $.edges[%d]: duplicate edge %d -> %d", what,
                                 in->out_e[a], in->nid[v], in->nid[in->edst[in->out_e[a]]]);
                    goto fail;
                }
    /* acyclic (Kahn) */
    indeg = calloc((size_t)n, sizeof(int));
    stack = malloc((size_t)n * sizeof(int));
    if (!indeg || !stack) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
        goto fail;
    }
    {
        int top = 0, seen = 0;
        for (int k = 0; k < m; k++)
            indeg[in->edst[k]]++;
        for (int v = 0; v < n; v++)
            if (!indeg[v])
                stack[top++] = v;
        while (top) {
            int v = stack[--top];
            seen++;
            for (int a = in->out_off[v]; a < in->out_off[v + 1]; a++)
                if (!--indeg[in->edst[in->out_e[a]]])
                    stack[top++] = in->edst[in->out_e[a]];
        }
        if (seen != n) {
            int on = -1;
            for (int v = 0; v < n && on < 0; v++)
                if (indeg[v])
                    on = v;
            rc = ps_errf(e, PS_EINPUT, "%s: $.edges: the graph has a cycle (through node %d, "
                         "$.nodes[%d])", what, in->nid[on], on);
            goto fail;
        }
    }
    /* TMPCs */
    in->tmax = 1;
    for (int i = 0; i < n; i++) {
        json_t *T = json_object_get(json_array_get(nodes, (size_t)i), "TMPCs");
        snprintf(path, sizeof path, "$.nodes[%d].TMPCs", i);
        if (!json_is_object(T)) {
            rc = ps_errf(e, PS_EINPUT, "%s: %s: expected an object of degree -> [TMPC]", what,
                         path);
            goto fail;
        }
        const char *k;
        json_t *v;
        json_object_foreach(T, k, v)
        {
            long t;
            if (parse_key_int(k, &t) || t < 1 || t > PIPER_DEVICES_LIMIT) {
                rc = ps_errf(e, PS_EINPUT, "%s: %s: key \"%s\" is not a number of devices", what,
                             path, k);
                goto fail;
            }
            if (!json_is_array(v)) {
                rc = ps_errf(e, PS_EINPUT, "%s: %s[\"%s\"]: expected an array of TMPCs", what,
                             path, k);
                goto fail;
            }
            if (json_array_size(v) > 2) {
                rc = ps_errf(e, PS_EINPUT, "%s: %s[\"%s\"]: %zu TMPCs; Piper's fast knapsack "
                             "heuristic takes at most 2", what, path, k, json_array_size(v));
                goto fail;
            }
            if (t > in->tmax)
                in->tmax = (int)t;
            in->ntm += (int)json_array_size(v);
        }
    }
    size_t nvt = (size_t)n * ((size_t)in->tmax + 1);
    in->tfirst = calloc(nvt, sizeof(int));
    in->tcount = calloc(nvt, sizeof(int));
    in->uniform = calloc(nvt, 1);
    in->fast = calloc(nvt, sizeof(int));
    in->tm = calloc((size_t)in->ntm + 1, sizeof(ptm));
    if (!in->tfirst || !in->tcount || !in->uniform || !in->fast || !in->tm) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
        goto fail;
    }
    {
        int ntm = in->ntm, at = 0;
        in->ntm = 0; /* counts filled entries (for free) */
        for (int i = 0; i < n; i++) {
            json_t *T = json_object_get(json_array_get(nodes, (size_t)i), "TMPCs");
            for (int t = 1; t <= in->tmax; t++) {
                char key[16];
                snprintf(key, sizeof key, "%d", t);
                json_t *arr = json_object_get(T, key);
                if (!arr) {
                    /* also accept keys with leading zeros etc. */
                    const char *k2;
                    json_t *v2;
                    json_object_foreach(T, k2, v2)
                    {
                        long tt;
                        if (!parse_key_int(k2, &tt) && tt == t)
                            arr = v2;
                    }
                }
                size_t cnt = arr ? json_array_size(arr) : 0;
                in->tfirst[VT(in, i, t)] = at;
                in->tcount[VT(in, i, t)] = (int)cnt;
                for (size_t l = 0; l < cnt; l++, at++) {
                    json_t *o = json_array_get(arr, l);
                    ptm *x = &in->tm[at];
                    in->ntm = at + 1;
                    snprintf(path, sizeof path, "$.nodes[%d].TMPCs[\"%d\"][%zu]", i, t, l);
                    if (!json_is_object(o)) {
                        rc = ps_errf(e, PS_EINPUT, "%s: %s: expected a TMPC object", what, path);
                        goto fail;
                    }
                    const char *tid = json_string_value(json_object_get(o, "id"));
                    if (!tid || !*tid) {
                        rc = ps_errf(e, PS_EINPUT, "%s: %s.id: expected a non-empty string",
                                     what, path);
                        goto fail;
                    }
                    x->id = strdup(tid);
                    int nin = in->in_off[i + 1] - in->in_off[i];
                    int nout = in->out_off[i + 1] - in->out_off[i];
                    x->sfw = malloc(((size_t)nin + 1) * sizeof(double));
                    x->sbw = malloc(((size_t)nout + 1) * sizeof(double));
                    if (!x->id || !x->sfw || !x->sbw) {
                        rc = ps_errf(e, PS_ERUN, "%s: out of memory", what);
                        goto fail;
                    }
                    for (size_t l2 = 0; l2 < l; l2++)
                        if (!strcmp(in->tm[at - (int)(l - l2)].id, tid)) {
                            rc = ps_errf(e, PS_EINPUT, "%s: %s.id: \"%s\" repeats within the "
                                         "node and degree", what, path, tid);
                            goto fail;
                        }
                    if ((rc = get_num(o, what, path, "timePerSample", &x->tps, e)) ||
                        (rc = get_num(o, what, path, "parameterSize", &x->par, e)) ||
                        (rc = get_num(o, what, path, "memoryUsageA", &x->ma, e)) ||
                        (rc = get_num(o, what, path, "memoryUsageB", &x->mb, e)))
                        goto fail;
                    if (x->tps < 0 || x->par < 0 || x->ma < 0 || x->mb < 0) {
                        rc = ps_errf(e, PS_EINPUT, "%s: %s.%s: negative", what, path,
                                     x->tps < 0   ? "timePerSample"
                                     : x->par < 0 ? "parameterSize"
                                     : x->ma < 0  ? "memoryUsageA"
                                                  : "memoryUsageB");
                        goto fail;
                    }
                    if ((rc = read_sync(o, what, path, "syncTimeFw", in, map,
                                        in->in_e + in->in_off[i], nin, in->esrc, x->sfw, e)) ||
                        (rc = read_sync(o, what, path, "syncTimeBw", in, map,
                                        in->out_e + in->out_off[i], nout, in->edst, x->sbw, e)))
                        goto fail;
                }
                /* uniform: all TMPCs share parameterSize and sync sizes */
                int uni = 1, fi = 0;
                const ptm *b0 = &in->tm[in->tfirst[VT(in, i, t)]];
                for (size_t l = 1; l < cnt; l++) {
                    const ptm *x = b0 + l;
                    if (x->par != b0->par)
                        uni = 0;
                    for (int k = 0; k < in->in_off[i + 1] - in->in_off[i]; k++)
                        if (x->sfw[k] != b0->sfw[k])
                            uni = 0;
                    for (int k = 0; k < in->out_off[i + 1] - in->out_off[i]; k++)
                        if (x->sbw[k] != b0->sbw[k])
                            uni = 0;
                    if (b0[fi].tps > x->tps)
                        fi = (int)l;
                }
                in->uniform[VT(in, i, t)] = (unsigned char)uni;
                in->fast[VT(in, i, t)] = fi;
            }
        }
        (void)ntm;
    }
    free(map);
    free(indeg);
    free(stack);
    return in;
fail:
    free(map);
    free(indeg);
    free(stack);
    pp_piper_free(in);
    (void)rc;
    return NULL;
}

pp_piper_inst *pp_piper_load(const char *path, ps_err *e)
{
    json_t *doc = ps_json_load_file(path, e);
    if (!doc)
        return NULL;
    pp_piper_inst *in = pp_piper_from_json(doc, path, e);
    json_decref(doc);
    return in;
}

/* ------------------------------------------------------------ the stage cost */

typedef struct popt {
    int K, SB, mbs;
    double bw, cap, scale;
} popt;

static int resolve_opts(const pp_piper_inst *in, const pp_piper_opts *o, popt *p, ps_err *e)
{
    pp_piper_opts z = {0};
    if (!o)
        o = &z;
    p->K = o->devices > 0 ? o->devices : in->maxdev;
    p->mbs = o->mbs > 0 ? o->mbs : in->mbs;
    p->bw = o->bandwidth > 0 ? o->bandwidth : in->bw;
    p->cap = o->mem_bytes > 0 ? o->mem_bytes : in->mem;
    p->scale = o->time_scale > 0 ? o->time_scale : 1;
    if (p->K > PIPER_DEVICES_LIMIT || o->devices < 0 || o->mbs < 0)
        return ps_errf(e, PS_EINPUT, "piper: devices %d / micro-batches %d out of range", p->K,
                       p->mbs);
    p->SB = p->mbs < p->K ? p->mbs : p->K;
    return 0;
}

/* Piper's knapsack heuristic for one stage at (t, d) for y = 1..maxY, the
 * per-TMPC contributions computed as its getAllTPSsForIdealPair does.
 * knap[0..maxY] (knap[0] = INF).  yrec > 0: choice[] gets the TMPC index per
 * node (list order) at y = yrec.  list: the stage's nodes ascending; inS:
 * membership. */
typedef struct lit_scratch {
    double *contrib, *ma, *mb, *mem; /* [node*2 + l] */
    int *H, *fastest, *lowest;
    struct srt {
        double key;
        int i, l;
    } *sorter;
} lit_scratch;

static int srt_cmp(const void *a, const void *b)
{
    const struct srt *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->i != y->i)
        return x->i - y->i;
    return x->l - y->l;
}

static void literal_stage(const pp_piper_inst *in, const popt *p, lit_scratch *ws,
                          const unsigned char *inS, const int *list, int cnt, int t, int d,
                          int maxY, double *knap, int yrec, int *choice)
{
    for (int y = 0; y <= maxY; y++)
        knap[y] = PINF;
    for (int i = 0; i < cnt; i++) {
        int v = list[i];
        size_t vt = VT(in, v, t);
        int nl = in->tcount[vt];
        for (int l = 0; l < nl; l++) {
            const ptm *x = &in->tm[in->tfirst[vt] + l];
            double ec = 0;
            for (int a = in->in_off[v]; a < in->in_off[v + 1]; a++) {
                int eidx = in->in_e[a];
                if (!inS[in->esrc[eidx]])
                    ec += 2 * (in->ecost[eidx] + x->sfw[a - in->in_off[v]]);
            }
            for (int a = in->out_off[v]; a < in->out_off[v + 1]; a++) {
                int eidx = in->out_e[a];
                if (!inS[in->edst[eidx]])
                    ec += 2 * (in->ecost[eidx] + x->sbw[a - in->out_off[v]]);
            }
            double bytes = ec / d + 4.0 * (d - 1) * x->par / d / p->mbs;
            ws->contrib[i * 2 + l] = bytes / p->bw + x->tps * p->scale / d;
            ws->ma[i * 2 + l] = x->ma;
            ws->mb[i * 2 + l] = x->mb;
        }
        ws->fastest[i] = 0;
        for (int l = 1; l < nl; l++)
            if (ws->contrib[i * 2 + ws->fastest[i]] > ws->contrib[i * 2 + l])
                ws->fastest[i] = l;
    }
    for (int y = 1; y <= maxY; y++) {
        double memf = 0;
        for (int i = 0; i < cnt; i++) {
            int nl = in->tcount[VT(in, list[i], t)];
            for (int l = 0; l < nl; l++)
                ws->mem[i * 2 + l] = ws->ma[i * 2 + l] * y + ws->mb[i * 2 + l];
            memf += ws->mem[i * 2 + ws->fastest[i]];
        }
        if (memf <= p->cap) {
            double s = 0;
            for (int i = 0; i < cnt; i++)
                s += ws->contrib[i * 2 + ws->fastest[i]];
            knap[y] = s;
            if (y == yrec && choice)
                for (int i = 0; i < cnt; i++)
                    choice[i] = ws->fastest[i];
            continue;
        }
        double meml = 0;
        for (int i = 0; i < cnt; i++) {
            int nl = in->tcount[VT(in, list[i], t)];
            ws->lowest[i] = 0;
            for (int l = 1; l < nl; l++)
                if (ws->mem[i * 2 + ws->lowest[i]] > ws->mem[i * 2 + l])
                    ws->lowest[i] = l;
            meml += ws->mem[i * 2 + ws->lowest[i]];
        }
        if (meml > p->cap)
            break; /* infeasible here and for every larger y */
        double shave = memf - p->cap;
        int ns = 0;
        for (int i = 0; i < cnt; i++) {
            ws->H[i] = ws->fastest[i];
            int nl = in->tcount[VT(in, list[i], t)];
            for (int l = 0; l < nl; l++) {
                double sav = ws->mem[i * 2 + ws->H[i]] - ws->mem[i * 2 + l];
                if (sav > 1e-9) {
                    ws->sorter[ns].key = (ws->contrib[i * 2 + l] - ws->contrib[i * 2 + ws->H[i]]) / sav;
                    ws->sorter[ns].i = i;
                    ws->sorter[ns].l = l;
                    ns++;
                }
            }
        }
        qsort(ws->sorter, (size_t)ns, sizeof *ws->sorter, srt_cmp);
        for (int q = 0; q < ns; q++) {
            int bi = ws->sorter[q].i, bl = ws->sorter[q].l;
            shave -= ws->mem[bi * 2 + ws->H[bi]] - ws->mem[bi * 2 + bl];
            ws->H[bi] = bl;
            if (shave < 1e-9)
                break;
        }
        double s = 0;
        for (int i = 0; i < cnt; i++)
            s += ws->contrib[i * 2 + ws->H[i]];
        knap[y] = s;
        if (y == yrec && choice)
            for (int i = 0; i < cnt; i++)
                choice[i] = ws->H[i];
    }
}

static int scratch_alloc(lit_scratch *ws, int n)
{
    size_t n2 = (size_t)n * 2 + 2;
    ws->contrib = malloc(n2 * sizeof(double));
    ws->ma = malloc(n2 * sizeof(double));
    ws->mb = malloc(n2 * sizeof(double));
    ws->mem = malloc(n2 * sizeof(double));
    ws->H = malloc(((size_t)n + 1) * sizeof(int));
    ws->fastest = malloc(((size_t)n + 1) * sizeof(int));
    ws->lowest = malloc(((size_t)n + 1) * sizeof(int));
    ws->sorter = malloc(n2 * sizeof *ws->sorter);
    return ws->contrib && ws->ma && ws->mb && ws->mem && ws->H && ws->fastest && ws->lowest &&
                   ws->sorter
               ? 0
               : -1;
}

static void scratch_free(lit_scratch *ws)
{
    free(ws->contrib);
    free(ws->ma);
    free(ws->mb);
    free(ws->mem);
    free(ws->H);
    free(ws->fastest);
    free(ws->lowest);
    free(ws->sorter);
}

/* ------------------------------------------------------------ ideals */

typedef struct pid {
    size_t n, words, ewords;
    pp_word *bits;
    int *size;
    int *sub_off, *sub; /* immediate sub-ideals (CSR) */
    pp_word *srcout;    /* edges whose source is outside the ideal */
    pp_word *dstin;     /* edges whose destination is inside */
    /* per (ideal, t): sums over the fastest TMPCs */
    double *C, *P, *A, *B, *X, *Y;
    int *nsup, *nnonuni;
} pid;

static void pid_free(pid *p)
{
    free(p->bits);
    free(p->size);
    free(p->sub_off);
    free(p->sub);
    free(p->srcout);
    free(p->dstin);
    free(p->C);
    free(p->P);
    free(p->A);
    free(p->B);
    free(p->X);
    free(p->Y);
    free(p->nsup);
    free(p->nnonuni);
    memset(p, 0, sizeof *p);
}

/* The ideals of the instance's graph (pp_ideals_enum) into p. */
static int enum_ideals(const pp_piper_inst *in, long limit, pid *p, int *over, ps_err *e)
{
    /* successor / predecessor ops from the edge lists */
    int *succ = malloc(((size_t)in->m + 1) * sizeof *succ);
    int *pred = malloc(((size_t)in->m + 1) * sizeof *pred);
    if (!succ || !pred) {
        free(succ);
        free(pred);
        return ps_errf(e, PS_ERUN, "piper: out of memory");
    }
    for (int a = 0; a < in->m; a++) {
        succ[a] = in->edst[in->out_e[a]];
        pred[a] = in->esrc[in->in_e[a]];
    }
    pp_ideals id;
    int rc = pp_ideals_enum(in->n, in->out_off, succ, in->in_off, pred, limit, &id, over, e);
    free(succ);
    free(pred);
    p->n = id.n, p->words = id.words, p->bits = id.bits, p->size = id.size; /* pid_free owns */
    p->sub_off = id.sub_off, p->sub = id.sub;
    return rc;
}

/* Per-ideal sums (see the header): index [i * (tmax+1) + t]. */
static int ideal_sums(const pp_piper_inst *in, const popt *po, pid *p, ps_err *e)
{
    (void)po;
    size_t NI = p->n, T1 = (size_t)in->tmax + 1, ew = p->ewords, w = p->words;
    p->srcout = calloc(NI * ew + 1, sizeof(pp_word));
    p->dstin = calloc(NI * ew + 1, sizeof(pp_word));
    p->C = calloc(NI * T1, sizeof(double));
    p->P = calloc(NI * T1, sizeof(double));
    p->A = calloc(NI * T1, sizeof(double));
    p->B = calloc(NI * T1, sizeof(double));
    p->X = calloc(NI * T1, sizeof(double));
    p->Y = calloc(NI * T1, sizeof(double));
    p->nsup = calloc(NI * T1, sizeof(int));
    p->nnonuni = calloc(NI * T1, sizeof(int));
    if (!p->srcout || !p->dstin || !p->C || !p->P || !p->A || !p->B || !p->X || !p->Y ||
        !p->nsup || !p->nnonuni)
        return ps_errf(e, PS_ERUN, "piper: out of memory");
    for (size_t i = 0; i < NI; i++) {
        const pp_word *I = p->bits + i * w;
        for (int k = 0; k < in->m; k++) {
            if (!pp_bit_get(I, in->esrc[k]))
                pp_bit_set(p->srcout + i * ew, k);
            if (pp_bit_get(I, in->edst[k]))
                pp_bit_set(p->dstin + i * ew, k);
        }
        for (int t = 1; t <= in->tmax; t++) {
            size_t it = i * T1 + (size_t)t;
            for (int v = 0; v < in->n; v++) {
                if (!pp_bit_get(I, v))
                    continue;
                size_t vt = VT(in, v, t);
                if (!in->tcount[vt])
                    continue;
                p->nsup[it]++;
                if (!in->uniform[vt])
                    p->nnonuni[it]++;
                const ptm *x = &in->tm[in->tfirst[vt] + in->fast[vt]];
                p->C[it] += x->tps;
                p->P[it] += x->par;
                p->A[it] += x->ma;
                p->B[it] += x->mb;
            }
            for (int k = 0; k < in->m; k++) {
                int u = in->esrc[k], v = in->edst[k];
                if (pp_bit_get(I, u) || !pp_bit_get(I, v))
                    continue;
                /* fwd term of v (its TMPC at t), bwd term of u */
                size_t vt = VT(in, v, t), ut = VT(in, u, t);
                if (in->tcount[vt]) {
                    const ptm *x = &in->tm[in->tfirst[vt] + in->fast[vt]];
                    int a = 0;
                    while (in->in_e[in->in_off[v] + a] != k)
                        a++;
                    p->X[it] += 2 * (in->ecost[k] + x->sfw[a]);
                }
                if (in->tcount[ut]) {
                    const ptm *x = &in->tm[in->tfirst[ut] + in->fast[ut]];
                    int a = 0;
                    while (in->out_e[in->out_off[u] + a] != k)
                        a++;
                    p->Y[it] += 2 * (in->ecost[k] + x->sbw[a]);
                }
            }
        }
    }
    return 0;
}

/* fwd + bwd term of edge k at t (fastest TMPCs), for the jump correction */
static double jump_term(const pp_piper_inst *in, int k, int t)
{
    int u = in->esrc[k], v = in->edst[k];
    double s = 0;
    size_t vt = VT(in, v, t), ut = VT(in, u, t);
    if (in->tcount[vt]) {
        const ptm *x = &in->tm[in->tfirst[vt] + in->fast[vt]];
        int a = 0;
        while (in->in_e[in->in_off[v] + a] != k)
            a++;
        s += 2 * (in->ecost[k] + x->sfw[a]);
    }
    if (in->tcount[ut]) {
        const ptm *x = &in->tm[in->tfirst[ut] + in->fast[ut]];
        int a = 0;
        while (in->out_e[in->out_off[u] + a] != k)
            a++;
        s += 2 * (in->ecost[k] + x->sbw[a]);
    }
    return s;
}

typedef struct sctx {
    const pp_piper_inst *in;
    const popt *po;
    pid *p;
    int literal;
    double *jt;          /* jump_term[k * (tmax+1) + t] */
    unsigned char *inS;  /* scratch membership */
    int *list;           /* scratch stage list */
    lit_scratch ws;
    long long literal_calls;
    int lastI, lastJ, lastT; /* cache of the stage sums for (I, J, t) */
    double bC, bP, bA, bB, bE;
} sctx;

/* knap[0..maxY] for stage I \ J at (t, d); returns 0 if t unsupported. */
static int stage_knap(sctx *c, int I, int J, int t, int d, int maxY, double *knap, int yrec,
                      int *choice, int *cnt_out)
{
    const pp_piper_inst *in = c->in;
    pid *p = c->p;
    size_t T1 = (size_t)in->tmax + 1;
    size_t iI = (size_t)I * T1 + (size_t)t, iJ = (size_t)J * T1 + (size_t)t;
    int nS = p->size[I] - p->size[J];
    if (p->nsup[iI] - p->nsup[iJ] != nS)
        return 0;
    int y0 = 1;
    if (!c->literal && p->nnonuni[iI] == p->nnonuni[iJ]) {
        if (c->lastI != I || c->lastJ != J || c->lastT != t) {
            c->lastI = I;
            c->lastJ = J;
            c->lastT = t;
            c->bC = p->C[iI] - p->C[iJ];
            c->bP = p->P[iI] - p->P[iJ];
            c->bA = p->A[iI] - p->A[iJ];
            c->bB = p->B[iI] - p->B[iJ];
            double E = p->X[iI] + p->Y[iJ];
            size_t ew = p->ewords;
            const pp_word *so = p->srcout + (size_t)I * ew, *di = p->dstin + (size_t)J * ew;
            for (size_t x = 0; x < ew; x++) {
                pp_word mm = so[x] & di[x];
                while (mm) {
                    int k = (int)(x * 64 + (size_t)__builtin_ctzll(mm));
                    mm &= mm - 1;
                    E -= c->jt[(size_t)k * T1 + (size_t)t];
                }
            }
            c->bE = E;
        }
        double C = c->bC, P = c->bP, A = c->bA, B = c->bB, E = c->bE;
        double T = (E / d + 4.0 * (d - 1) * P / d / c->po->mbs) / c->po->bw +
                   C * c->po->scale / d;
        knap[0] = PINF;
        for (; y0 <= maxY && A * y0 + B <= c->po->cap; y0++)
            knap[y0] = T;
        if (y0 > maxY && (yrec <= 0 || !choice)) {
            *cnt_out = nS;
            return 1;
        }
        if (yrec > 0 && yrec < y0 && choice) {
            /* all-fastest at yrec */
            const pp_word *bi = p->bits + (size_t)I * p->words,
                          *bj = p->bits + (size_t)J * p->words;
            int q = 0;
            for (int v = 0; v < in->n; v++)
                if (pp_bit_get(bi, v) && !pp_bit_get(bj, v))
                    choice[q++] = in->fast[VT(in, v, t)];
            *cnt_out = nS;
            return 1;
        }
    }
    /* literal: Piper's own loops over the stage */
    c->literal_calls++;
    const pp_word *bi = p->bits + (size_t)I * p->words, *bj = p->bits + (size_t)J * p->words;
    int q = 0;
    for (int v = 0; v < in->n; v++) {
        int inside = pp_bit_get(bi, v) && !pp_bit_get(bj, v);
        c->inS[v] = (unsigned char)inside;
        if (inside)
            c->list[q++] = v;
    }
    if (y0 == 1) {
        literal_stage(in, c->po, &c->ws, c->inS, c->list, q, t, d, maxY, knap, yrec, choice);
    } else {
        double *tmp = malloc(((size_t)maxY + 1) * sizeof *tmp);
        if (!tmp)
            return -1;
        literal_stage(in, c->po, &c->ws, c->inS, c->list, q, t, d, maxY, tmp, yrec, choice);
        for (int y = y0; y <= maxY; y++)
            knap[y] = tmp[y];
        free(tmp);
    }
    *cnt_out = q;
    return 1;
}

void pp_piper_result_free(pp_piper_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nstages; i++) {
        free(r->stages[i].nodes);
        free(r->stages[i].tmpc);
    }
    free(r->stages);
    r->stages = NULL;
    r->nstages = 0;
}

static int ceildiv(int a, int b) { return (a + b - 1) / b; }

int pp_piper_solve(const pp_piper_inst *in, const pp_piper_opts *o, pp_piper_result *r,
                   ps_err *e)
{
    pp_piper_opts z = {0};
    if (!o)
        o = &z;
    memset(r, 0, sizeof *r);
    popt po;
    int rc = resolve_opts(in, o, &po, e);
    if (rc)
        return rc;
    double t0 = ps_now_s();
    int K = po.K, SB = po.SB, tmaxu = in->tmax;
    if (o->max_tensor > 0 && o->max_tensor < tmaxu)
        tmaxu = o->max_tensor;
    pid p = {0};
    p.ewords = PP_BITS_WORDS(in->m) ? PP_BITS_WORDS(in->m) : 1;
    sctx c = {.in = in, .po = &po, .p = &p, .literal = o->literal, .lastI = -1};
    double *dp = NULL, *knap = NULL, *rowmax = NULL, *tpss = NULL, *sufmax = NULL;
    double *minrow = NULL; /* dp[i][k][SB]: the least cell of each row */
    pp_word *submap = NULL;
    int *drops = NULL, *stamp = NULL, *stack = NULL, *subs = NULL;
    char *rowchg = NULL;
    int over = 0;
    long maxi = o->max_ideals > 0 ? o->max_ideals : PIPER_IDEALS_LIMIT;
    if ((rc = enum_ideals(in, maxi, &p, &over, e)))
        goto done;
    if (over) {
        snprintf(r->note, sizeof r->note,
                 "piper: more than %ld ideals (Piper's IDEALS_LIMIT); Piper refuses the input",
                 maxi);
        r->ideals = (long long)p.n;
        goto done;
    }
    if ((rc = ideal_sums(in, &po, &p, e)))
        goto done;
    size_t NI = p.n, T1 = (size_t)in->tmax + 1;
    size_t cells = NI * (size_t)(K + 1) * (size_t)(SB + 1);
    if (cells > (size_t)4e8) {
        rc = ps_errf(e, PS_EINPUT, "piper: a dp table of %zu cells is too large", cells);
        goto done;
    }
    c.jt = calloc((size_t)in->m * T1 + 1, sizeof(double));
    c.inS = calloc((size_t)in->n, 1);
    c.list = malloc(((size_t)in->n + 1) * sizeof(int));
    dp = malloc(cells * sizeof(double));
    drops = malloc(NI * (size_t)(K + 1) * (size_t)(SB + 2) * sizeof(int));
    rowchg = calloc(NI * (size_t)(K + 1), 1);
    rowmax = malloc(((size_t)K + 1) * sizeof(double));
    knap = malloc(((size_t)SB + 3) * sizeof(double));
    tpss = malloc(((size_t)SB + 3) * sizeof(double));
    sufmax = malloc(((size_t)K + 1) * ((size_t)SB + 1) * sizeof(double));
    minrow = malloc(NI * ((size_t)K + 1) * sizeof(double));
    submap = calloc(PP_BITS_WORDS(NI) + 1, sizeof(pp_word));
    stamp = calloc(NI, sizeof(int));
    stack = malloc(NI * sizeof(int));
    subs = malloc(NI * sizeof(int));
    if (!c.jt || !c.inS || !c.list || !dp || !drops || !rowchg || !rowmax || !knap || !tpss || !sufmax || !minrow || !submap || !stamp ||
        !stack || !subs || scratch_alloc(&c.ws, in->n)) {
        rc = ps_errf(e, PS_ERUN, "piper: out of memory");
        goto done;
    }
    for (int k = 0; k < in->m; k++)
        for (int t = 1; t <= in->tmax; t++)
            c.jt[(size_t)k * T1 + (size_t)t] = jump_term(in, k, t);
#define DP(i, k, s) dp[((size_t)(i) * (size_t)(K + 1) + (size_t)(k)) * (size_t)(SB + 1) + (size_t)(s)]
#define DROPS(i, k) (drops + ((size_t)(i) * (size_t)(K + 1) + (size_t)(k)) * (size_t)(SB + 2))
    for (size_t i = 0; i < cells; i++)
        dp[i] = PINF;
    for (int k = 0; k <= K; k++) {
        minrow[k] = 0;
        for (int s = 0; s <= SB; s++)
            DP(0, k, s) = 0;
        DROPS(0, k)[0] = 1; /* count */
        DROPS(0, k)[1] = 0;
        rowchg[k] = k == 0;
    }
    long long pairs = 0;
    for (size_t id = 1; id < NI; id++) {
        /* all sub-ideals of id (DFS over immediate ones), then listed in
         * index order (a bitmap) so the per-sub tables are read in
         * increasing address order */
        int top = 0, nsub = 0;
        stack[top++] = (int)id;
        stamp[id] = (int)id + 1;
        while (top) {
            int x = stack[--top];
            for (int a = p.sub_off[x]; a < p.sub_off[x + 1]; a++) {
                int y = p.sub[a];
                if (stamp[y] != (int)id + 1) {
                    stamp[y] = (int)id + 1;
                    stack[top++] = y;
                    pp_bit_set(submap, y);
                    nsub++;
                }
            }
        }
        {
            int q = 0;
            for (size_t x = 0; x <= id / 64; x++) {
                pp_word w = submap[x];
                submap[x] = 0;
                while (w) {
                    subs[q++] = (int)(x * 64 + (size_t)__builtin_ctzll(w));
                    w &= w - 1;
                }
            }
        }
        pairs += nsub;
        for (int k = 0; k <= K; k++)
            rowmax[k] = PINF;
        for (size_t x = 0; x < (size_t)(K + 1) * (SB + 1); x++)
            sufmax[x] = PINF;
        double rowmax_all = PINF;
        for (int q = 0; q < nsub; q++) {
            int sub = subs[q];
            if (!c.literal && (q & 7) == 7) {
                /* sufmax[k][s] = max over s' >= s of dp[id][k][s'] (an upper
                 * bound on every cell a stage of degree d <= s can update) */
                rowmax_all = 0;
                for (int k = 0; k <= K; k++) {
                    double mx = 0;
                    for (int s = SB; s >= 1; s--) {
                        if (DP(id, k, s) > mx)
                            mx = DP(id, k, s);
                        sufmax[(size_t)k * (SB + 1) + s] = mx;
                    }
                    rowmax[k] = mx;
                    if (mx > rowmax_all)
                        rowmax_all = mx;
                }
            }
            /* every candidate is >= dp[sub][K][SB], the least cell of sub */
            const double *mr = minrow + (size_t)sub * (size_t)(K + 1);
            double lbsub = mr[K];
            if (!c.literal && lbsub >= rowmax_all)
                continue;
            for (int t = 1; t <= tmaxu; t++) {
                for (int d = 1; d * t <= K; d++) {
                    if (po.mbs % d)
                        continue;
                    int maxY = SB / d + 1, cnt;
                    int ok = stage_knap(&c, (int)id, sub, t, d, maxY, knap, 0, NULL, &cnt);
                    if (ok < 0) {
                        rc = ps_errf(e, PS_ERUN, "piper: out of memory");
                        goto done;
                    }
                    if (!ok)
                        break; /* t unsupported on this stage: no d works */
                    int td = t * d;
                    /* TPS(s) = knap[ceil(s / d)], s = 0..SB */
                    for (int s = 0, yy = 0; s <= SB; s++) {
                        if (s > yy * d)
                            yy++;
                        tpss[s] = knap[yy];
                    }
                    for (int k = td; k <= K; k++) {
                        if (c.literal) {
                            for (int s = d; s <= SB; s++) {
                                double tp = tpss[s];
                                double cand = DP(sub, k - td, s - d);
                                if (tp > cand)
                                    cand = tp;
                                if (cand < DP(id, k, s))
                                    DP(id, k, s) = cand;
                            }
                            continue;
                        }
                        {
                            /* every candidate of this (k, d) is >= TPS(d) and
                             * >= min_s dp[sub][k-td][s] = dp[sub][k-td][SB] */
                            double lb = mr[k - td];
                            if (knap[1] > lb)
                                lb = knap[1];
                            if (lb >= sufmax[(size_t)k * (SB + 1) + d])
                                continue;
                        }
                        if (k > td && !rowchg[(size_t)sub * (size_t)(K + 1) + (size_t)(k - td)])
                            continue;
                        const int *L = DROPS(sub, k - td);
                        int nL = L[0];
                        /* last u with f + d <= SB and dp[sub][k-td][f] > TPS(f+d) */
                        int u = -1, lo = 0, hi = nL - 1;
                        while (lo <= hi) {
                            int mid = (lo + hi) / 2;
                            int f = L[1 + mid];
                            if (f + d <= SB && DP(sub, k - td, f) > tpss[f + d]) {
                                u = mid;
                                lo = mid + 1;
                            } else {
                                hi = mid - 1;
                            }
                        }
                        for (int v = 0; v <= u; v++) {
                            int f = L[1 + v];
                            double val = DP(sub, k - td, f);
                            if (val < DP(id, k, f + d))
                                DP(id, k, f + d) = val;
                        }
                        if (u + 1 < nL) {
                            int f = L[1 + u + 1];
                            if (f + d <= SB) {
                                double val = tpss[f + d];
                                if (val < DP(id, k, f + d))
                                    DP(id, k, f + d) = val;
                            }
                        }
                    }
                }
            }
        }
        /* monotone in k and s; drops; rows equal to the previous one */
        for (int k = 0; k <= K; k++) {
            int *L = DROPS(id, k);
            L[0] = 1;
            L[1] = 0;
            int chg = k == 0;
            for (int s = 0; s <= SB; s++) {
                if (k > 0 && DP(id, k - 1, s) < DP(id, k, s))
                    DP(id, k, s) = DP(id, k - 1, s);
                if (s > 0) {
                    if (DP(id, k, s - 1) < DP(id, k, s))
                        DP(id, k, s) = DP(id, k, s - 1);
                    if (DP(id, k, s) + 1e-9 < DP(id, k, s - 1))
                        L[1 + L[0]++] = s;
                }
                if (k > 0 && DP(id, k, s) != DP(id, k - 1, s))
                    chg = 1;
            }
            rowchg[id * (size_t)(K + 1) + (size_t)k] = (char)chg;
            minrow[id * (size_t)(K + 1) + (size_t)k] = DP(id, k, SB);
        }
        if (o->time_limit_s > 0 && ps_now_s() - t0 > o->time_limit_s) {
            snprintf(r->note, sizeof r->note, "piper: time limit %g s reached (%zu of %zu ideals)",
                     o->time_limit_s, id, NI);
            r->ideals = (long long)NI;
            r->pairs = pairs;
            goto done;
        }
    }
    r->ideals = (long long)NI;
    r->pairs = pairs;
    {
        int full = (int)NI - 1; /* BFS: the only ideal of size n is last */
        double best = PINF;
        int bk = -1, bs = -1;
        for (int k = 0; k <= K; k++)
            for (int s = 1; s <= SB; s++)
                if (DP(full, k, s) + 1e-9 < best) {
                    best = DP(full, k, s);
                    bk = k;
                    bs = s;
                }
        if (best > PINF / 2) {
            snprintf(r->note, sizeof r->note,
                     "piper: no partition fits in %g bytes per device on %d devices", po.cap, K);
            goto done;
        }
        r->tps = best;
        r->feasible = 1;
        /* reconstruction, as Piper does: at (cur, k, s) find (sub, t, d) with
         * dp[cur][k][s] = max(dp[sub][k-td][s-d], TPS(s)) */
        int cur = full, ck = bk, cs = bs;
        int cap_st = 0;
        int *choice = malloc(((size_t)in->n + 1) * sizeof(int));
        if (!choice) {
            rc = ps_errf(e, PS_ERUN, "piper: out of memory");
            goto done;
        }
        while (cur != 0 && !rc) {
            double target = DP(cur, ck, cs);
            int found = 0;
            int top = 0, nsub = 0;
            stack[top++] = cur;
            stamp[cur] = -(cur + 1);
            while (top) {
                int x = stack[--top];
                for (int a = p.sub_off[x]; a < p.sub_off[x + 1]; a++) {
                    int y = p.sub[a];
                    if (stamp[y] != -(cur + 1)) {
                        stamp[y] = -(cur + 1);
                        stack[top++] = y;
                        subs[nsub++] = y;
                    }
                }
            }
            for (int q = 0; q < nsub && !found; q++) {
                int sub = subs[q];
                for (int t = 1; t <= tmaxu && t <= ck && !found; t++)
                    for (int d = 1; t * d <= ck && d <= cs && !found; d++) {
                        if (po.mbs % d)
                            continue;
                        int maxY = SB / d + 1, cnt;
                        int ok = stage_knap(&c, cur, sub, t, d, maxY, knap, 0, NULL, &cnt);
                        if (ok <= 0)
                            break;
                        double tp = knap[ceildiv(cs, d)];
                        double v = DP(sub, ck - t * d, cs - d);
                        if (tp > v)
                            v = tp;
                        if (fabs(target - v) >= 1e-9)
                            continue;
                        found = 1;
                        int yr = ceildiv(cs, d);
                        stage_knap(&c, cur, sub, t, d, maxY, knap, yr, choice, &cnt);
                        if (r->nstages == cap_st) {
                            cap_st = cap_st ? cap_st * 2 : 8;
                            pp_piper_stage *ns = realloc(r->stages, (size_t)cap_st * sizeof *ns);
                            if (!ns) {
                                rc = ps_errf(e, PS_ERUN, "piper: out of memory");
                                break;
                            }
                            r->stages = ns;
                        }
                        pp_piper_stage *st = &r->stages[r->nstages++];
                        memset(st, 0, sizeof *st);
                        st->nodes = malloc(((size_t)cnt + 1) * sizeof(int));
                        st->tmpc = malloc(((size_t)cnt + 1) * sizeof(int));
                        if (!st->nodes || !st->tmpc) {
                            rc = ps_errf(e, PS_ERUN, "piper: out of memory");
                            break;
                        }
                        const pp_word *bi = p.bits + (size_t)cur * p.words,
                                      *bj = p.bits + (size_t)sub * p.words;
                        int qq = 0;
                        for (int vv = 0; vv < in->n; vv++)
                            if (pp_bit_get(bi, vv) && !pp_bit_get(bj, vv)) {
                                st->tmpc[qq] = choice[qq];
                                st->nodes[qq++] = vv;
                            }
                        st->nnodes = qq;
                        st->d = d;
                        st->t = t;
                        st->y = yr;
                        st->tps = tp;
                        cur = sub;
                        ck -= t * d;
                        cs -= d;
                    }
            }
            if (!found && !rc)
                rc = ps_errf(e, PS_ERUN, "piper: reconstruction found no stage (dp %g)", target);
        }
        free(choice);
        if (rc)
            goto done;
        int sd = 0, dev = 0;
        for (int i = 0; i < r->nstages; i++) {
            sd += r->stages[i].d;
            dev += r->stages[i].d * r->stages[i].t;
        }
        r->sum_d = sd;
        r->devices_used = dev;
        /* memory per stage at its exact in-flight count */
        int suffix = sd;
        for (int i = 0; i < r->nstages; i++) {
            pp_piper_stage *st = &r->stages[i];
            int y = ceildiv(suffix, st->d);
            suffix -= st->d;
            double mem = 0;
            for (int q = 0; q < st->nnodes; q++) {
                const ptm *x = &in->tm[in->tfirst[VT(in, st->nodes[q], st->t)] + st->tmpc[q]];
                mem += x->ma * y + x->mb;
            }
            st->mem_bytes = mem;
        }
    }
#undef DP
#undef DROPS
done:
    r->literal_calls = c.literal_calls;
    r->search_time_s = ps_now_s() - t0;
    if (rc)
        pp_piper_result_free(r);
    free(c.jt);
    free(c.inS);
    free(c.list);
    scratch_free(&c.ws);
    free(dp);
    free(drops);
    free(rowchg);
    free(rowmax);
    free(knap);
    free(tpss);
    free(sufmax);
    free(minrow);
    free(submap);
    free(stamp);
    free(stack);
    free(subs);
    pid_free(&p);
    return rc;
}

/* ------------------------------------------------------------ checking */

double pp_piper_eval(const pp_piper_inst *in, const pp_piper_opts *o, const pp_piper_result *r)
{
    popt po;
    if (resolve_opts(in, o, &po, NULL) || !r->nstages)
        return NAN;
    int *stage_of = malloc((size_t)in->n * sizeof(int));
    if (!stage_of)
        return NAN;
    for (int v = 0; v < in->n; v++)
        stage_of[v] = -1;
    int dev = 0, sd = 0;
    double res = 0;
    for (int i = 0; i < r->nstages && !isnan(res); i++) {
        const pp_piper_stage *st = &r->stages[i];
        if (st->d < 1 || st->t < 1 || po.mbs % st->d)
            res = NAN;
        dev += st->d * st->t;
        sd += st->d;
        for (int q = 0; q < st->nnodes && !isnan(res); q++) {
            int v = st->nodes[q];
            if (v < 0 || v >= in->n || stage_of[v] >= 0 ||
                st->tmpc[q] < 0 || st->tmpc[q] >= pp_piper_ntmpcs(in, v, st->t))
                res = NAN;
            else
                stage_of[v] = i;
        }
    }
    for (int v = 0; v < in->n && !isnan(res); v++)
        if (stage_of[v] < 0)
            res = NAN;
    for (int k = 0; k < in->m && !isnan(res); k++)
        if (stage_of[in->esrc[k]] > stage_of[in->edst[k]])
            res = NAN;
    if (dev > po.K || sd > po.mbs)
        res = NAN;
    int suffix = sd;
    for (int i = 0; i < r->nstages && !isnan(res); i++) {
        const pp_piper_stage *st = &r->stages[i];
        int d = st->d, t = st->t;
        int y = ceildiv(suffix, d);
        suffix -= d;
        double comp = 0, edge = 0, dpc = 0, mem = 0;
        for (int q = 0; q < st->nnodes; q++) {
            int v = st->nodes[q];
            const ptm *x = &in->tm[in->tfirst[VT(in, v, t)] + st->tmpc[q]];
            comp += x->tps * po.scale;
            for (int a = in->in_off[v]; a < in->in_off[v + 1]; a++) {
                int k = in->in_e[a];
                if (stage_of[in->esrc[k]] != i)
                    edge += 2 * (in->ecost[k] + x->sfw[a - in->in_off[v]]);
            }
            for (int a = in->out_off[v]; a < in->out_off[v + 1]; a++) {
                int k = in->out_e[a];
                if (stage_of[in->edst[k]] != i)
                    edge += 2 * (in->ecost[k] + x->sbw[a - in->out_off[v]]);
            }
            dpc += 4.0 * (d - 1) * x->par / d / po.mbs;
            mem += x->ma * y + x->mb;
        }
        if (mem > po.cap) {
            res = INFINITY;
            break;
        }
        double tps = (edge / d + dpc) / po.bw + comp / d;
        if (tps > res)
            res = tps;
    }
    free(stage_of);
    return res;
}

/* brute force: every sequence of stages (R \ J), J a proper closed subset */
typedef struct bctx {
    const pp_piper_inst *in;
    const popt *po;
    int tmaxu;
    unsigned *succ;  /* successor masks */
    int nst;
    unsigned smask[16];
    int sd[16], st[16];
    double best;
    lit_scratch ws;
    unsigned char *inS;
    int *list;
    double *knap;
} bctx;

static void brute_eval(bctx *b)
{
    int suffix = 0;
    for (int i = 0; i < b->nst; i++)
        suffix += b->sd[i];
    if (suffix > b->po->SB)
        return;
    double worst = 0;
    for (int i = 0; i < b->nst && worst < b->best; i++) {
        int d = b->sd[i], y = ceildiv(suffix, d), q = 0;
        suffix -= d;
        for (int v = 0; v < b->in->n; v++) {
            b->inS[v] = (unsigned char)((b->smask[i] >> v) & 1);
            if (b->inS[v])
                b->list[q++] = v;
        }
        literal_stage(b->in, b->po, &b->ws, b->inS, b->list, q, b->st[i], d, y, b->knap, 0,
                      NULL);
        if (b->knap[y] > worst)
            worst = b->knap[y];
    }
    if (worst < b->best)
        b->best = worst;
}

static void brute_rec(bctx *b, unsigned R, int devices_left)
{
    if (!R) {
        brute_eval(b);
        return;
    }
    if (b->nst >= 16)
        return;
    /* J: proper subsets of R closed under successors */
    for (unsigned J = (R - 1) & R;; J = (J - 1) & R) {
        int closed = 1;
        for (int v = 0; v < b->in->n && closed; v++)
            if (((J >> v) & 1) && (b->succ[v] & ~J))
                closed = 0;
        if (closed) {
            unsigned S = R & ~J;
            for (int t = 1; t <= b->tmaxu; t++) {
                int sup = 1;
                for (int v = 0; v < b->in->n && sup; v++)
                    if (((S >> v) & 1) && !b->in->tcount[VT(b->in, v, t)])
                        sup = 0;
                if (!sup)
                    continue;
                for (int d = 1; d * t <= devices_left; d++) {
                    if (b->po->mbs % d)
                        continue;
                    b->smask[b->nst] = S;
                    b->sd[b->nst] = d;
                    b->st[b->nst] = t;
                    b->nst++;
                    brute_rec(b, J, devices_left - d * t);
                    b->nst--;
                }
            }
        }
        if (!J)
            break;
    }
}

int pp_piper_brute(const pp_piper_inst *in, const pp_piper_opts *o, double *best, ps_err *e)
{
    popt po;
    int rc = resolve_opts(in, o, &po, e);
    if (rc)
        return rc;
    if (in->n > 12)
        return ps_errf(e, PS_EINPUT, "piper brute force: %d nodes (at most 12)", in->n);
    bctx b = {.in = in, .po = &po, .tmaxu = in->tmax, .best = PINF};
    if (o && o->max_tensor > 0 && o->max_tensor < b.tmaxu)
        b.tmaxu = o->max_tensor;
    b.succ = calloc((size_t)in->n, sizeof(unsigned));
    b.inS = calloc((size_t)in->n, 1);
    b.list = malloc((size_t)in->n * sizeof(int));
    b.knap = malloc(((size_t)po.SB + 3) * sizeof(double));
    if (!b.succ || !b.inS || !b.list || !b.knap || scratch_alloc(&b.ws, in->n)) {
        rc = ps_errf(e, PS_ERUN, "piper brute force: out of memory");
        goto done;
    }
    for (int k = 0; k < in->m; k++)
        b.succ[in->esrc[k]] |= 1u << in->edst[k];
    brute_rec(&b, (in->n == 32 ? 0u : (1u << in->n)) - 1u, po.K);
    *best = b.best > PINF / 2 ? INFINITY : b.best;
done:
    free(b.succ);
    free(b.inS);
    free(b.list);
    free(b.knap);
    scratch_free(&b.ws);
    return rc;
}

/* ------------------------------------------------------------ planner glue */

int pp_piper_plan_model(const pp_model *m, pp_pgraph *g, const pp_pcluster *pc,
                        const pp_popts *o, pp_presult *r, ps_err *e)
{
    memset(r, 0, sizeof *r);
    r->planner = PP_PLANNER_PIPER;
    r->gap_vs_sp = NAN;
    r->objective = NAN;
    r->objective_tps_s = NAN;
    r->tps_s = NAN;
    r->predicted_iteration_s = NAN;
    const json_t *doc = pp_model_piper(m);
    if (!doc)
        return ps_errf(e, PS_EINPUT, "piper: model \"%s\" carries no Piper instance",
                       pp_model_name(m));
    int rc = 0;
    if (!g->finished && (rc = pp_pgraph_finish(g, e)))
        return rc;
    pp_piper_inst *in = pp_piper_from_json(doc, "model.piper", e);
    if (!in)
        return e && e->code ? e->code : PS_EINPUT;
    int *map = malloc((size_t)in->n * sizeof(int));
    int *ops = malloc((size_t)in->n * sizeof(int));
    if (!map || !ops) {
        rc = ps_errf(e, PS_ERUN, "piper: out of memory");
        goto out;
    }
    for (int i = 0; i < in->n; i++) {
        char id[32];
        snprintf(id, sizeof id, "n%d", in->nid[i]);
        map[i] = pp_model_find(m, id);
        if (map[i] < 0) {
            rc = ps_errf(e, PS_EINPUT, "piper: the model has no op \"%s\" for Piper node %d of "
                         "its instance", id, in->nid[i]);
            goto out;
        }
    }
    pp_piper_opts po = {.devices = pc->devices,
                        .max_ideals = o->piper_max_ideals,
                        .time_limit_s = o->time_limit_s};
    int seconds = o->piper_cost == PP_PIPER_COST_SECONDS;
    if (seconds) {
        po.time_scale = in->unit;
        po.bandwidth = o->piper_bandwidth_Bps > 0 ? o->piper_bandwidth_Bps
                                                  : pc->p2p.beta_bytes_per_s;
        po.mem_bytes = pc->mem_bytes > 0 && isfinite(pc->mem_bytes) ? pc->mem_bytes : 1e300;
    } else if (o->piper_bandwidth_Bps > 0) {
        po.bandwidth = o->piper_bandwidth_Bps;
    }
    pp_piper_result pr;
    if ((rc = pp_piper_solve(in, &po, &pr, e)))
        goto out;
    r->search_time_s = pr.search_time_s;
    r->states = pr.ideals;
    r->work = pr.pairs;
    r->sequential = 1;
    r->objective_name = seconds ? "time_per_microbatch_s" : "piper_time_per_microbatch";
    /* plansim splits a micro-batch's samples among a stage's replicas,
     * Piper deals whole micro-batches to them: so one plansim micro-batch
     * carries a multiple of every stage's replica count (the least such
     * divisor of the mini-batch, else the whole mini-batch) */
    int b = o->microbatch;
    if (b <= 0 && pr.feasible) {
        long L = 1;
        for (int i = 0; i < pr.nstages; i++) {
            long r2 = (long)pr.stages[i].d * pr.stages[i].t, a = L, bb = r2;
            while (bb) {
                long tmp = a % bb;
                a = bb;
                bb = tmp;
            }
            L = L / a * r2;
            if (L > o->minibatch)
                break;
        }
        b = o->minibatch;
        for (long x = L; x <= o->minibatch; x += L)
            if (o->minibatch % x == 0) {
                b = (int)x;
                break;
            }
    }
    if (b <= 0)
        b = 1;
    if (!pr.feasible) {
        r->feasible = 0;
        snprintf(r->note, sizeof r->note, "%s", pr.note);
        pp_piper_result_free(&pr);
        goto out;
    }
    for (int i = 0; i < pr.nstages && !rc; i++) {
        const pp_piper_stage *st = &pr.stages[i];
        for (int q = 0; q < st->nnodes; q++)
            ops[q] = map[st->nodes[q]];
        /* ascending op indices */
        for (int a = 1; a < st->nnodes; a++)
            for (int c2 = a; c2 > 0 && ops[c2 - 1] > ops[c2]; c2--) {
                int tmp = ops[c2];
                ops[c2] = ops[c2 - 1];
                ops[c2 - 1] = tmp;
            }
        rc = pp_presult_add_stage(r, ops, st->nnodes, b, st->d * st->t, 0, e);
    }
    if (!rc) {
        r->feasible = 1;
        r->microbatch = b;
        r->objective = pr.tps;
        r->objective_tps_s = seconds ? pr.tps / b : pr.tps * in->unit / b;
        int tp = 0;
        for (int i = 0; i < pr.nstages; i++)
            if (pr.stages[i].t > 1)
                tp = 1;
        snprintf(r->note, sizeof r->note,
                 "piper's own DP (%s): %lld ideals, %lld pairs, %d devices, sum of data-parallel "
                 "degrees %d%s",
                 seconds ? "timePerSample in seconds, the cluster's link and memory"
                         : "the file's units, bandwidth and memory",
                 pr.ideals, pr.pairs, pr.devices_used, pr.sum_d,
                 tp ? "; tensor-parallel stages simulated as data parallelism" : "");
        rc = pp_presult_finish(g, pc, o->minibatch, r, e);
        r->search_time_s = pr.search_time_s;
    }
    pp_piper_result_free(&pr);
out:
    free(map);
    free(ops);
    pp_piper_free(in);
    return rc;
}
