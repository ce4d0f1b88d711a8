/* PipeDream profile import: graph.txt -> plansim model (import.h).
 *
 * The format (PipeDream's graph/graph.py writes it; docs/peer-graphs.md):
 *   node line:  <id> -- <description> -- forward_compute_time=<ms>,
 *               backward_compute_time=<ms>, activation_size=<bytes>|[b1; b2; ...],
 *               parameter_size=<bytes>[ -- stage_id=<n>]
 *   edge line:  a leading tab (any leading white space), <src id> -- <dst id>
 * Accepted liberally: blank lines, CR LF endings, any white space around the
 * separators and after the commas, edges before the nodes they name, nodes
 * without edges, a description that itself contains " -- " (the metadata is
 * the segment that starts with forward_compute_time=), list separators ";"
 * or ",", a trailing stage_id segment (ignored).  A repeated edge is kept
 * once.  Errors name the file and the line. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "sim/pipeline/import.h"

typedef struct pd_node {
    char *id, *desc;
    int line;
    double fwd_ms, bwd_ms, act, par;
    int drop;
    int nin, nout; /* live degrees (after dedup / drops) */
} pd_node;

typedef struct pd_edge {
    int from, to, line;
} pd_edge;

typedef struct pd_graph {
    const char *path;
    pd_node *nodes;
    int n, cap;
    pd_edge *edges;
    int ne, cape;
    /* id -> node index (open addressing) */
    int *hash;
    size_t hcap;
} pd_graph;

static int find_id(const pd_graph *g, const char *id)
{
    if (!g->hcap)
        return -1;
    size_t i = ps_fnv1a_str(PS_FNV1A_OFFSET, id) & (g->hcap - 1);
    while (g->hash[i] >= 0) {
        if (!strcmp(g->nodes[g->hash[i]].id, id))
            return g->hash[i];
        i = (i + 1) & (g->hcap - 1);
    }
    return -1;
}

static int hash_put(pd_graph *g, int idx, ps_err *e)
{
    if ((size_t)(idx + 1) * 2 > g->hcap) {
        size_t nc = g->hcap ? g->hcap * 2 : 64;
        while ((size_t)(idx + 1) * 2 > nc)
            nc *= 2;
        int *h = malloc(nc * sizeof *h);
        if (!h)
            return ps_errf(e, PS_ERUN, "%s: out of memory", g->path);
        for (size_t i = 0; i < nc; i++)
            h[i] = -1;
        free(g->hash);
        g->hash = h;
        g->hcap = nc;
        for (int k = 0; k < idx; k++) {
            size_t i = ps_fnv1a_str(PS_FNV1A_OFFSET, g->nodes[k].id) & (nc - 1);
            while (h[i] >= 0)
                i = (i + 1) & (nc - 1);
            h[i] = k;
        }
    }
    size_t i = ps_fnv1a_str(PS_FNV1A_OFFSET, g->nodes[idx].id) & (g->hcap - 1);
    while (g->hash[i] >= 0)
        i = (i + 1) & (g->hcap - 1);
    g->hash[i] = idx;
    return 0;
}

static void pd_graph_free(pd_graph *g)
{
    for (int i = 0; i < g->n; i++) {
        free(g->nodes[i].id);
        free(g->nodes[i].desc);
    }
    free(g->nodes);
    free(g->edges);
    free(g->hash);
}

/* Trim in place; returns the start. */
static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* The position of the next "--" separator at or after s, NULL if none. */
static char *find_sep(char *s) { return strstr(s, "--"); }

static int parse_num(const char *path, int line, const char *key, const char *txt, double *out,
                     ps_err *e)
{
    char *end;
    while (isspace((unsigned char)*txt))
        txt++;
    if (!*txt)
        return ps_errf(e, PS_EINPUT, "%s:%d: %s: missing value", path, line, key);
    double v = strtod(txt, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (end == txt || *end)
        return ps_errf(e, PS_EINPUT, "%s:%d: %s: '%s' is not a number", path, line, key, txt);
    if (!isfinite(v))
        return ps_errf(e, PS_EINPUT, "%s:%d: %s: %s is not finite", path, line, key, txt);
    if (v < 0)
        return ps_errf(e, PS_EINPUT, "%s:%d: %s: %s is negative", path, line, key, txt);
    *out = v;
    return 0;
}

/* activation_size: a number or [b1; b2; ...] (sum). */
static int parse_act(const char *path, int line, char *txt, double *out, ps_err *e)
{
    txt = trim(txt);
    if (*txt != '[')
        return parse_num(path, line, "activation_size", txt, out, e);
    size_t n = strlen(txt);
    if (n < 2 || txt[n - 1] != ']')
        return ps_errf(e, PS_EINPUT, "%s:%d: activation_size: '%s': an unclosed list", path,
                       line, txt);
    txt[n - 1] = 0;
    char *p = txt + 1;
    double sum = 0;
    int cnt = 0;
    for (;;) {
        char *q = p + strcspn(p, ";,");
        char c = *q;
        *q = 0;
        double v;
        if (parse_num(path, line, "activation_size (list element)", p, &v, e))
            return e ? e->code : PS_EINPUT;
        sum += v;
        cnt++;
        if (!c)
            break;
        p = q + 1;
    }
    (void)cnt;
    *out = sum;
    return 0;
}

/* Metadata: comma-separated key=value (commas inside [...] belong to the list). */
static int parse_meta(const char *path, int line, char *meta, pd_node *nd, ps_err *e)
{
    static const char *const keys[] = {"forward_compute_time", "backward_compute_time",
                                       "activation_size", "parameter_size"};
    int seen[4] = {0};
    char *p = meta;
    while (*p) {
        /* the end of this field: the next comma outside brackets */
        char *q = p;
        int depth = 0;
        for (; *q; q++) {
            if (*q == '[')
                depth++;
            else if (*q == ']')
                depth--;
            else if (*q == ',' && depth <= 0)
                break;
        }
        char c = *q;
        *q = 0;
        char *f = trim(p);
        if (*f) {
            char *eq = strchr(f, '=');
            if (!eq)
                return ps_errf(e, PS_EINPUT, "%s:%d: '%s': expected key=value", path, line, f);
            *eq = 0;
            char *k = trim(f), *v = eq + 1;
            int ki = -1;
            for (int i = 0; i < 4; i++)
                if (!strcmp(k, keys[i]))
                    ki = i;
            if (ki < 0)
                return ps_errf(e, PS_EINPUT,
                               "%s:%d: unknown field '%s' (expected forward_compute_time, "
                               "backward_compute_time, activation_size, parameter_size)",
                               path, line, k);
            if (seen[ki]++)
                return ps_errf(e, PS_EINPUT, "%s:%d: %s given twice", path, line, k);
            int rc = ki == 0   ? parse_num(path, line, k, v, &nd->fwd_ms, e)
                     : ki == 1 ? parse_num(path, line, k, v, &nd->bwd_ms, e)
                     : ki == 2 ? parse_act(path, line, v, &nd->act, e)
                               : parse_num(path, line, k, v, &nd->par, e);
            if (rc)
                return rc;
        }
        if (!c)
            break;
        p = q + 1;
    }
    for (int i = 0; i < 4; i++)
        if (!seen[i])
            return ps_errf(e, PS_EINPUT, "%s:%d: node '%s': missing %s", path, line, nd->id,
                           keys[i]);
    return 0;
}

static int add_node_line(pd_graph *g, int line, char *s, ps_err *e)
{
    char *sep = find_sep(s);
    if (!sep)
        return ps_errf(e, PS_EINPUT,
                       "%s:%d: expected a node line '<id> -- <description> -- "
                       "forward_compute_time=..., ...' (or a tab-indented edge line)",
                       g->path, line);
    *sep = 0;
    char *id = trim(s);
    char *rest = sep + 2;
    /* the metadata segment: the last "--" followed by forward_compute_time */
    char *meta = NULL, *p = rest;
    char *last_sep = NULL;
    while ((p = find_sep(p))) {
        char *a = p + 2;
        while (isspace((unsigned char)*a))
            a++;
        if (!strncmp(a, "forward_compute_time", 20)) {
            last_sep = p;
            meta = a;
        }
        p += 2;
    }
    if (!*id)
        return ps_errf(e, PS_EINPUT, "%s:%d: empty node id", g->path, line);
    if (!meta)
        return ps_errf(e, PS_EINPUT,
                       "%s:%d: node '%s': no metadata segment '-- forward_compute_time=<ms>, "
                       "backward_compute_time=<ms>, activation_size=<bytes>, "
                       "parameter_size=<bytes>'",
                       g->path, line, id);
    *last_sep = 0;
    /* a trailing " -- stage_id=N" segment (optimizer output) is ignored */
    char *st = find_sep(meta);
    while (st) {
        char *a = st + 2;
        while (isspace((unsigned char)*a))
            a++;
        if (!strncmp(a, "stage_id", 8)) {
            *st = 0;
            break;
        }
        st = find_sep(st + 2);
    }
    char *desc = trim(rest);
    for (const char *c = id; *c; c++)
        if (isspace((unsigned char)*c))
            return ps_errf(e, PS_EINPUT, "%s:%d: node id '%s' contains white space", g->path,
                           line, id);
    int dup = find_id(g, id);
    if (dup >= 0)
        return ps_errf(e, PS_EINPUT, "%s:%d: duplicate node id '%s' (first defined on line %d)",
                       g->path, line, id, g->nodes[dup].line);
    if (g->n == g->cap) {
        int nc = g->cap ? g->cap * 2 : 64;
        pd_node *nn = realloc(g->nodes, (size_t)nc * sizeof *nn);
        if (!nn)
            return ps_errf(e, PS_ERUN, "%s: out of memory", g->path);
        g->nodes = nn;
        g->cap = nc;
    }
    pd_node *nd = &g->nodes[g->n];
    memset(nd, 0, sizeof *nd);
    nd->line = line;
    nd->id = strdup(id);
    nd->desc = strdup(desc);
    if (!nd->id || !nd->desc) {
        free(nd->id);
        free(nd->desc);
        return ps_errf(e, PS_ERUN, "%s: out of memory", g->path);
    }
    g->n++;
    if (hash_put(g, g->n - 1, e))
        return e ? e->code : PS_ERUN;
    return parse_meta(g->path, line, meta, nd, e);
}

/* Edge lines are resolved after all nodes are read; keep the text. */
typedef struct raw_edge {
    char *a, *b;
    int line;
} raw_edge;

static int parse_edge_line(const char *path, int line, char *s, raw_edge *out, ps_err *e)
{
    char *sep = find_sep(s);
    if (!sep)
        return ps_errf(e, PS_EINPUT, "%s:%d: expected an edge line '<src id> -- <dst id>'", path,
                       line);
    *sep = 0;
    char *a = trim(s), *b = trim(sep + 2);
    if (!*a || !*b || find_sep(b))
        return ps_errf(e, PS_EINPUT,
                       "%s:%d: expected an edge line '<src id> -- <dst id>' (two ids)", path,
                       line);
    for (const char *c = b; *c; c++)
        if (isspace((unsigned char)*c))
            return ps_errf(e, PS_EINPUT, "%s:%d: '%s': expected one destination id", path, line,
                           b);
    out->a = a;
    out->b = b;
    out->line = line;
    return 0;
}

static int cmp_edge(const void *x, const void *y)
{
    const pd_edge *a = x, *b = y;
    if (a->from != b->from)
        return (a->from > b->from) - (a->from < b->from);
    if (a->to != b->to)
        return (a->to > b->to) - (a->to < b->to);
    return (a->line > b->line) - (a->line < b->line);
}

/* Cycle check with the line of one edge on the cycle in the message. */
static int check_acyclic(pd_graph *g, ps_err *e)
{
    int n = g->n, rc = 0;
    int *off = calloc((size_t)n + 1, sizeof *off), *adj = malloc(((size_t)g->ne + 1) * sizeof *adj);
    int *eidx = malloc(((size_t)g->ne + 1) * sizeof *eidx);
    int *color = calloc((size_t)n, sizeof *color), *stk = malloc(((size_t)n + 1) * sizeof *stk);
    int *it = malloc(((size_t)n + 1) * sizeof *it), *via = malloc(((size_t)n + 1) * sizeof *via);
    if (!off || !adj || !eidx || !color || !stk || !it || !via) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", g->path);
        goto done;
    }
    for (int k = 0; k < g->ne; k++)
        off[g->edges[k].from + 1]++;
    for (int i = 0; i < n; i++)
        off[i + 1] += off[i];
    {
        int *fill = calloc((size_t)n + 1, sizeof *fill);
        if (!fill) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", g->path);
            goto done;
        }
        for (int k = 0; k < g->ne; k++) {
            int f = g->edges[k].from;
            adj[off[f] + fill[f]] = g->edges[k].to;
            eidx[off[f] + fill[f]++] = k;
        }
        free(fill);
    }
    for (int s = 0; s < n && !rc; s++) {
        if (color[s])
            continue;
        int sp = 0;
        stk[sp] = s;
        it[sp] = off[s];
        color[s] = 1;
        while (sp >= 0 && !rc) {
            int v = stk[sp];
            if (it[sp] == off[v + 1]) {
                color[v] = 2;
                sp--;
                continue;
            }
            int k = it[sp]++;
            int w = adj[k];
            if (color[w] == 1) {
                /* the cycle: w ... v -> w */
                char buf[1024];
                size_t len = 0;
                int from = 0;
                while (stk[from] != w)
                    from++;
                for (int q = from; q <= sp && len + 64 < sizeof buf; q++)
                    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s -> ",
                                            g->nodes[stk[q]].id);
                snprintf(buf + len, sizeof buf - len, "%s", g->nodes[w].id);
                rc = ps_errf(e, PS_EINPUT, "%s:%d: edge %s -- %s closes a cycle: %s", g->path,
                             g->edges[eidx[k]].line, g->nodes[v].id, g->nodes[w].id, buf);
                break;
            }
            if (!color[w]) {
                color[w] = 1;
                sp++;
                stk[sp] = w;
                it[sp] = off[w];
                via[sp] = k;
            }
        }
    }
done:
    free(off);
    free(adj);
    free(eidx);
    free(color);
    free(stk);
    free(it);
    free(via);
    return rc;
}

static int starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static void default_name(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    static const char *const sfx[] = {".graph.txt", ".txt", NULL};
    for (int i = 0; sfx[i]; i++) {
        size_t l = strlen(out), s = strlen(sfx[i]);
        if (l > s && !strcmp(out + l - s, sfx[i])) {
            out[l - s] = 0;
            break;
        }
    }
    if (!out[0])
        snprintf(out, n, "model");
}

pp_model *pp_import_pipedream(const char *path, const pp_import_opts *opts, ps_err *e)
{
    pp_import_opts defo = {0};
    if (!opts)
        opts = &defo;
    double batch = opts->batch > 0 ? opts->batch : 128;
    if (!isfinite(batch)) {
        ps_errf(e, PS_EINPUT, "pipedream import: batch %g must be finite and > 0", batch);
        return NULL;
    }
    size_t len = 0;
    char *txt = ps_file_read(path, &len, e);
    if (!txt)
        return NULL;
    pd_graph g = {.path = path};
    raw_edge *re = NULL;
    int nre = 0, capre = 0, rc = 0;
    pp_model *m = NULL;
    int *map = NULL;
    if (memchr(txt, 0, len)) {
        rc = ps_errf(e, PS_EINPUT, "%s: a NUL byte: not a PipeDream graph.txt", path);
        goto done;
    }
    /* pass 1: lines */
    {
        char *p = txt;
        int line = 0;
        while (p && *p) {
            line++;
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = 0;
            char *s = p;
            p = nl ? nl + 1 : NULL;
            int indented = isspace((unsigned char)s[0]);
            char *t = trim(s);
            if (!*t)
                continue;
            if (indented) {
                if (nre == capre) {
                    capre = capre ? capre * 2 : 128;
                    raw_edge *nr = realloc(re, (size_t)capre * sizeof *nr);
                    if (!nr) {
                        rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
                        goto done;
                    }
                    re = nr;
                }
                if ((rc = parse_edge_line(path, line, t, &re[nre], e)))
                    goto done;
                nre++;
            } else if ((rc = add_node_line(&g, line, t, e))) {
                goto done;
            }
        }
    }
    if (g.n == 0) {
        rc = ps_errf(e, PS_EINPUT, "%s: no node lines: not a PipeDream graph.txt", path);
        goto done;
    }
    /* pass 2: edges */
    g.edges = malloc(((size_t)nre + 1) * sizeof *g.edges);
    if (!g.edges) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
        goto done;
    }
    for (int k = 0; k < nre; k++) {
        int a = find_id(&g, re[k].a), b = find_id(&g, re[k].b);
        if (a < 0 || b < 0) {
            rc = ps_errf(e, PS_EINPUT, "%s:%d: edge %s -- %s: unknown node id '%s'", path,
                         re[k].line, re[k].a, re[k].b, a < 0 ? re[k].a : re[k].b);
            goto done;
        }
        if (a == b) {
            rc = ps_errf(e, PS_EINPUT, "%s:%d: edge %s -- %s: a self-loop (a cycle)", path,
                         re[k].line, re[k].a, re[k].b);
            goto done;
        }
        g.edges[g.ne++] = (pd_edge){a, b, re[k].line};
    }
    /* repeated edges are kept once (the first line) */
    if (g.ne > 1) {
        qsort(g.edges, (size_t)g.ne, sizeof *g.edges, cmp_edge);
        int w = 1;
        for (int k = 1; k < g.ne; k++)
            if (g.edges[k].from != g.edges[w - 1].from || g.edges[k].to != g.edges[w - 1].to)
                g.edges[w++] = g.edges[k];
        g.ne = w;
    }
    if ((rc = check_acyclic(&g, e)))
        goto done;
    /* PipeDream's optimizer drops Input* sources, then the sinks that are
     * left whose description starts with __getitem__ (one pass). */
    for (int k = 0; k < g.ne; k++) {
        g.nodes[g.edges[k].to].nin++;
        g.nodes[g.edges[k].from].nout++;
    }
    if (!opts->keep_bookkeeping) {
        for (int i = 0; i < g.n; i++)
            if (g.nodes[i].nin == 0 && starts_with(g.nodes[i].desc, "Input"))
                g.nodes[i].drop = 1;
        for (int k = 0; k < g.ne; k++)
            if (g.nodes[g.edges[k].from].drop)
                g.nodes[g.edges[k].to].nin--;
        int *outlive = calloc((size_t)g.n, sizeof *outlive);
        if (!outlive) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
            goto done;
        }
        for (int k = 0; k < g.ne; k++)
            if (!g.nodes[g.edges[k].from].drop && !g.nodes[g.edges[k].to].drop)
                outlive[g.edges[k].from]++;
        for (int i = 0; i < g.n; i++)
            if (!g.nodes[i].drop && outlive[i] == 0 && starts_with(g.nodes[i].desc, "__getitem__"))
                g.nodes[i].drop = 2;
        free(outlive);
    }
    {
        char name[256];
        if (opts->name)
            snprintf(name, sizeof name, "%s", opts->name);
        else
            default_name(path, name, sizeof name);
        m = pp_model_new(name, e);
        if (!m) {
            rc = e ? e->code : PS_ERUN;
            goto done;
        }
        map = malloc((size_t)g.n * sizeof *map);
        if (!map) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
            goto done;
        }
        int kept = 0;
        for (int i = 0; i < g.n; i++) {
            map[i] = -1;
            if (g.nodes[i].drop)
                continue;
            const pd_node *nd = &g.nodes[i];
            pp_op_spec s = {.id = nd->id,
                            .kind = "opaque",
                            .param_bytes = nd->par,
                            .out_bytes = nd->act / batch,
                            .act_bytes = nd->act / batch,
                            .measured = {.has = 1,
                                         .batch = batch,
                                         .fwd_s = nd->fwd_ms / 1000.0,
                                         .bwd_input_s = nd->bwd_ms / 1000.0,
                                         .bwd_weight_s = 0}};
            int idx = pp_model_add_op(m, &s, e);
            if (idx < 0) {
                ps_err_prefix(e, "%s:%d: ", path, nd->line);
                rc = e ? e->code : PS_EINPUT;
                goto done;
            }
            map[i] = idx;
            kept++;
        }
        if (!kept) {
            rc = ps_errf(e, PS_EINPUT, "%s: no nodes left after dropping the Input* sources and "
                         "__getitem__ sinks", path);
            goto done;
        }
        /* edges in file order of their lines (inputs keep that order) */
        pd_edge *byline = malloc(((size_t)g.ne + 1) * sizeof *byline);
        if (!byline) {
            rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
            goto done;
        }
        memcpy(byline, g.edges, (size_t)g.ne * sizeof *byline);
        for (int k = 1; k < g.ne; k++) { /* insertion sort by line: nearly sorted */
            pd_edge x = byline[k];
            int q = k - 1;
            while (q >= 0 && byline[q].line > x.line) {
                byline[q + 1] = byline[q];
                q--;
            }
            byline[q + 1] = x;
        }
        for (int k = 0; k < g.ne && !rc; k++) {
            int a = map[byline[k].from], b = map[byline[k].to];
            if (a < 0 || b < 0)
                continue;
            if ((rc = pp_model_add_input(m, b, a, e)))
                ps_err_prefix(e, "%s:%d: ", path, byline[k].line);
        }
        free(byline);
        if (rc)
            goto done;
        if ((rc = pp_model_finish(m, e))) {
            ps_err_prefix(e, "%s: ", path);
            goto done;
        }
    }
done:
    if (rc) {
        pp_model_free(m);
        m = NULL;
    }
    free(map);
    free(re);
    pd_graph_free(&g);
    free(txt);
    return m;
}

int pp_import_save(const pp_model *m, const char *format, const char *src_path, double batch,
                   const char *out_path, ps_err *e)
{
    json_t *doc = pp_model_to_json(m);
    if (!doc)
        return ps_errf(e, PS_ERUN, "%s: out of memory", out_path);
    json_t *src = json_object();
    json_object_set_new(src, "format", json_string(format));
    json_object_set_new(src, "file", json_string(src_path));
    if (batch > 0)
        json_object_set_new(src, "batch", json_real(batch));
    json_object_set_new(doc, "source", src);
    char desc[600];
    snprintf(desc, sizeof desc,
             "imported from %s (%s format) by plansim pipeline import; measured times in "
             "seconds per measured.batch samples, bytes per sample (docs/peer-graphs.md)",
             src_path, format);
    json_object_set_new(doc, "description", json_string(desc));
    char *txt = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(doc);
    if (!txt)
        return ps_errf(e, PS_ERUN, "%s: out of memory", out_path);
    size_t len = strlen(txt);
    char *t2 = malloc(len + 2);
    if (!t2) {
        free(txt);
        return ps_errf(e, PS_ERUN, "%s: out of memory", out_path);
    }
    memcpy(t2, txt, len);
    t2[len] = '\n';
    t2[len + 1] = 0;
    free(txt);
    int rc = ps_file_write_atomic(out_path, t2, len + 1, e);
    free(t2);
    return rc;
}
