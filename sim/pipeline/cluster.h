/* Clusters for the pipeline study: identical devices (a catalog name),
 * grouped into nodes; one α–β link class inside a node and one between
 * nodes; memory per device.  Devices are numbered 0..N-1 node by node, so
 * device d sits on node d / devices_per_node.
 *
 * JSON (experiments/clusters/summit.json, dgx-h100.json):
 *   {"name": "summit", "device": "v100-16g", "devices_per_node": 4,
 *    "nodes": 16,                       optional, 0/absent = as many as asked
 *    "memory_bytes": 16e9,              optional, default: the catalog's
 *    "memory_reserved_bytes": 1e9,      optional, runtime/workspace, default 0
 *    "intra_link": "nvlink2",           catalog link name, or
 *    "inter_link": {"latency_s": 5e-6, "bw_bytes_per_s": 12.5e9},
 *    "allreduce": "ring"}               ring | tree | hier (cm_collective_time)
 * Errors name the file and the JSON path. */
#ifndef PS_PP_CLUSTER_H
#define PS_PP_CLUSTER_H

#include <jansson.h>

#include "common/err.h"
#include "costmodel/catalog.h"
#include "costmodel/costmodel.h"

typedef struct pp_cluster {
    char name[64];
    cm_device device;          /* the catalog entry (copied) */
    int devices_per_node;      /* >= 1 */
    int nodes;                 /* 0 = unbounded */
    double mem_bytes;          /* usable per device: memory_bytes - reserved */
    cm_ab intra, inter;        /* α (s), β (B/s) */
    char intra_name[CM_NAME_MAX], inter_name[CM_NAME_MAX]; /* "" when given as numbers */
    cm_alg allreduce;
} pp_cluster;

/* `ref` is a path to a cluster JSON file, or a built-in name ("summit",
 * "dgx-h100"; the same content as experiments/clusters/NAME.json).  cat
 * may be NULL (the built-in catalog is used). */
int pp_cluster_load(const char *ref, const cm_catalog *cat, pp_cluster *out, ps_err *e);
int pp_cluster_from_json(const json_t *doc, const char *what, const cm_catalog *cat,
                         pp_cluster *out, ps_err *e);
json_t *pp_cluster_to_json(const pp_cluster *c);
/* NULL-terminated names of the built-in clusters. */
const char *const *pp_cluster_builtin_names(void);

/* Device count available: nodes x devices_per_node, or INT_MAX. */
int pp_cluster_capacity(const pp_cluster *c);
int pp_cluster_node_of(const pp_cluster *c, int device);
/* The link between two devices: intra when on one node, else inter. */
cm_ab pp_cluster_link(const pp_cluster *c, int dev_a, int dev_b);
/* The link between two device sets: inter if any pair crosses nodes. */
cm_ab pp_cluster_link_sets(const pp_cluster *c, const int *a, int na, const int *b, int nb);
/* Gradient all-reduce of `bytes` over a device set (cm_collective_time with
 * the cluster's algorithm; nodes = distinct nodes spanned, devices per node
 * = the most devices of the set on one node).  0 for one device. */
int pp_cluster_allreduce_s(const pp_cluster *c, const int *devs, int n, double bytes,
                           double *time_s, ps_err *e);
/* A roofline cost model for the cluster's device (cm_model_free it). */
cm_model *pp_cluster_cost_model(const pp_cluster *c, ps_err *e);

#endif
