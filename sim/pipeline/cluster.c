/* Clusters: JSON, built-ins, links, all-reduce.  See cluster.h. */
#include "sim/pipeline/cluster.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

/* The shipped cluster files, also compiled in so that `--cluster summit`
 * works from any folder.  tests/test_pp_plan.c checks that
 * experiments/clusters/NAME.json says the same. */
static const struct {
    const char *name, *json;
} builtins[] = {
    {"summit",
     "{\"name\": \"summit\", \"device\": \"v100-16g\", \"devices_per_node\": 4, \"nodes\": 16,"
     " \"intra_link\": \"nvlink2\", \"inter_link\": \"ib_edr\", \"allreduce\": \"ring\"}"},
    {"dgx-h100",
     "{\"name\": \"dgx-h100\", \"device\": \"h100-sxm\", \"devices_per_node\": 8, \"nodes\": 8,"
     " \"intra_link\": \"nvlink4\", \"inter_link\": \"ib_ndr\", \"allreduce\": \"ring\"}"},
};

static const char *const builtin_names[] = {"summit", "dgx-h100", NULL};

const char *const *pp_cluster_builtin_names(void) { return builtin_names; }

static int get_link(const json_t *doc, const char *what, const char *key, const cm_catalog *cat,
                    cm_ab *ab, char *name, ps_err *e)
{
    json_t *v = json_object_get(doc, key);
    if (!v)
        return ps_errf(e, PS_EINPUT, "%s: $.%s: missing (a catalog link name or "
                       "{\"latency_s\": ..., \"bw_bytes_per_s\": ...})", what, key);
    if (json_is_string(v)) {
        const cm_link *l = cm_catalog_link(cat, json_string_value(v), e);
        if (!l) {
            ps_err_prefix(e, "%s: $.%s: ", what, key);
            return e ? e->code : PS_EINPUT;
        }
        *ab = cm_ab_of_link(l);
        snprintf(name, CM_NAME_MAX, "%s", l->name);
        return 0;
    }
    char where[64];
    snprintf(where, sizeof where, "$.%s", key);
    static const char *const keys[] = {"latency_s", "bw_bytes_per_s", NULL};
    double a = 0, b = 0;
    int rc;
    if (!json_is_object(v))
        return ps_errf(e, PS_EINPUT, "%s: %s: expected a link name or an object", what, where);
    if ((rc = ps_json_check_keys(v, where, keys, e)) ||
        (rc = ps_json_get_num(v, where, "latency_s", 1, &a, e)) ||
        (rc = ps_json_get_num(v, where, "bw_bytes_per_s", 1, &b, e))) {
        ps_err_prefix(e, "%s: ", what);
        return rc;
    }
    if (!(a >= 0) || !isfinite(a) || !(b > 0) || !isfinite(b))
        return ps_errf(e, PS_EINPUT, "%s: %s: latency_s must be >= 0 and bw_bytes_per_s > 0 "
                       "(got %g, %g)", what, where, a, b);
    ab->alpha_s = a;
    ab->beta_bytes_per_s = b;
    name[0] = 0;
    return 0;
}

int pp_cluster_from_json(const json_t *doc, const char *what, const cm_catalog *cat_in,
                         pp_cluster *out, ps_err *e)
{
    static const char *const keys[] = {"name", "device", "devices_per_node", "nodes",
                                       "memory_bytes", "memory_reserved_bytes", "intra_link",
                                       "inter_link", "allreduce", "description", NULL};
    if (!what)
        what = "cluster";
    memset(out, 0, sizeof *out);
    if (!json_is_object(doc))
        return ps_errf(e, PS_EINPUT, "%s: $: expected a cluster object", what);
    cm_catalog *own = NULL;
    const cm_catalog *cat = cat_in;
    if (!cat && !(cat = own = cm_catalog_new(e)))
        return e ? e->code : PS_ERUN;
    int rc = ps_json_check_keys(doc, "$", keys, e);
    const char *name = "cluster", *dev = NULL, *alg = "ring";
    long long dpn = 1, nodes = 0;
    double mem = NAN, reserved = 0;
    if (rc || (rc = ps_json_get_str(doc, "$", "name", 0, &name, e)) ||
        (rc = ps_json_get_str(doc, "$", "device", 1, &dev, e)) ||
        (rc = ps_json_get_int(doc, "$", "devices_per_node", 1, &dpn, e)) ||
        (rc = ps_json_get_int(doc, "$", "nodes", 0, &nodes, e)) ||
        (rc = ps_json_get_num(doc, "$", "memory_bytes", 0, &mem, e)) ||
        (rc = ps_json_get_num(doc, "$", "memory_reserved_bytes", 0, &reserved, e)) ||
        (rc = ps_json_get_str(doc, "$", "allreduce", 0, &alg, e))) {
        ps_err_prefix(e, "%s: ", what);
        goto out;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    const cm_device *d = cm_catalog_device(cat, dev, e);
    if (!d) {
        ps_err_prefix(e, "%s: $.device: ", what);
        rc = e ? e->code : PS_EINPUT;
        goto out;
    }
    out->device = *d;
    if (dpn < 1 || dpn > 4096 || nodes < 0 || nodes > 1000000) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.devices_per_node must be in 1..4096 and $.nodes >= 0 "
                     "(got %lld, %lld)", what, dpn, nodes);
        goto out;
    }
    out->devices_per_node = (int)dpn;
    out->nodes = (int)nodes;
    if (isnan(mem))
        mem = d->mem_bytes;
    if (!(mem > 0) || !isfinite(mem) || !(reserved >= 0) || reserved >= mem) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.memory_bytes %g must be > 0 and more than "
                     "$.memory_reserved_bytes %g", what, mem, reserved);
        goto out;
    }
    out->mem_bytes = mem - reserved;
    if ((rc = get_link(doc, what, "intra_link", cat, &out->intra, out->intra_name, e)) ||
        (rc = get_link(doc, what, "inter_link", cat, &out->inter, out->inter_name, e)))
        goto out;
    int a = cm_alg_from_name(alg);
    if (a < 0) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.allreduce: \"%s\"; expected ring, tree or hier", what,
                     alg);
        goto out;
    }
    out->allreduce = (cm_alg)a;
out:
    cm_catalog_free(own);
    return rc;
}

int pp_cluster_load(const char *ref, const cm_catalog *cat, pp_cluster *out, ps_err *e)
{
    if (!ref || !*ref)
        return ps_errf(e, PS_EINPUT, "cluster: empty name");
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(ref, builtins[i].name)) {
            json_t *doc = ps_json_load_str(builtins[i].json, ref, e);
            if (!doc)
                return e ? e->code : PS_ERUN;
            int rc = pp_cluster_from_json(doc, ref, cat, out, e);
            json_decref(doc);
            return rc;
        }
    json_t *doc = ps_json_load_file(ref, e);
    if (!doc) {
        if (!strchr(ref, '/') && !strstr(ref, ".json"))
            ps_err_prefix(e, "cluster \"%s\" is neither a built-in (summit, dgx-h100) nor a file: ",
                          ref);
        return e ? e->code : PS_EINPUT;
    }
    int rc = pp_cluster_from_json(doc, ref, cat, out, e);
    json_decref(doc);
    return rc;
}

static json_t *link_json(const cm_ab *ab, const char *name)
{
    if (name[0])
        return json_string(name);
    json_t *o = json_object();
    json_object_set_new(o, "latency_s", json_real(ab->alpha_s));
    json_object_set_new(o, "bw_bytes_per_s", json_real(ab->beta_bytes_per_s));
    return o;
}

json_t *pp_cluster_to_json(const pp_cluster *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "device", json_string(c->device.name));
    json_object_set_new(o, "devices_per_node", json_integer(c->devices_per_node));
    if (c->nodes)
        json_object_set_new(o, "nodes", json_integer(c->nodes));
    json_object_set_new(o, "memory_bytes", json_real(c->mem_bytes));
    /* Links by name when they came from the catalog, so that a catalog
     * edit reaches saved plans; the numbers otherwise. */
    json_object_set_new(o, "intra_link", link_json(&c->intra, c->intra_name));
    json_object_set_new(o, "inter_link", link_json(&c->inter, c->inter_name));
    json_object_set_new(o, "allreduce", json_string(cm_alg_name(c->allreduce)));
    return o;
}

int pp_cluster_capacity(const pp_cluster *c)
{
    if (c->nodes <= 0)
        return INT_MAX;
    long long n = (long long)c->nodes * c->devices_per_node;
    return n > INT_MAX ? INT_MAX : (int)n;
}

int pp_cluster_node_of(const pp_cluster *c, int device)
{
    return device / c->devices_per_node;
}

cm_ab pp_cluster_link(const pp_cluster *c, int a, int b)
{
    return pp_cluster_node_of(c, a) == pp_cluster_node_of(c, b) ? c->intra : c->inter;
}

cm_ab pp_cluster_link_sets(const pp_cluster *c, const int *a, int na, const int *b, int nb)
{
    int node = na > 0 ? pp_cluster_node_of(c, a[0]) : 0;
    for (int i = 0; i < na; i++)
        if (pp_cluster_node_of(c, a[i]) != node)
            return c->inter;
    for (int i = 0; i < nb; i++)
        if (pp_cluster_node_of(c, b[i]) != node)
            return c->inter;
    return c->intra;
}

int pp_cluster_allreduce_s(const pp_cluster *c, const int *devs, int n, double bytes,
                           double *time_s, ps_err *e)
{
    *time_s = 0;
    if (n <= 1 || bytes <= 0)
        return 0;
    /* Distinct nodes and the most devices on one node (the topology the
     * cost model takes is uniform; the fullest node is the bottleneck). */
    int nodes = 0, per = 0;
    for (int i = 0; i < n; i++) {
        int node = pp_cluster_node_of(c, devs[i]), first = 1, cnt = 0;
        for (int k = 0; k < n; k++) {
            int nk = pp_cluster_node_of(c, devs[k]);
            if (nk == node) {
                cnt++;
                if (k < i)
                    first = 0;
            }
        }
        nodes += first;
        if (cnt > per)
            per = cnt;
    }
    cm_alg alg = c->allreduce;
    if (nodes == 1 && alg == CM_ALG_HIER)
        alg = CM_ALG_RING;
    /* Flat algorithms over several nodes run at the inter-node link for all
     * n devices; only the hierarchical one needs the node structure. */
    cm_topology t = {.nodes = nodes == 1 ? 1 : alg == CM_ALG_HIER ? nodes : n,
                     .devices_per_node = nodes == 1 ? n : alg == CM_ALG_HIER ? per : 1,
                     .intra = c->intra, .inter = c->inter};
    return cm_collective_time(&t, CM_COLL_ALLREDUCE, alg, bytes, time_s, e);
}

cm_model *pp_cluster_cost_model(const pp_cluster *c, ps_err *e)
{
    return cm_model_roofline(&c->device, e);
}
