/* Memory held by a training (or inference) step on one device. */
#include <math.h>
#include <string.h>

#include "costmodel/costmodel.h"

int cm_optimizer_from_name(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "sgd"))
        return CM_OPT_SGD;
    if (!strcmp(s, "momentum"))
        return CM_OPT_MOMENTUM;
    if (!strcmp(s, "adam") || !strcmp(s, "adamw"))
        return CM_OPT_ADAM;
    return -1;
}

int cm_memory(const cm_mem_spec *s, cm_mem *out, ps_err *e)
{
    const double v[] = {s->params,      s->weight_bytes_per_param,
                        s->grad_bytes_per_param, s->activation_bytes_per_sample,
                        s->micro_batch, s->micro_batches_in_flight};
    const char *names[] = {"params",       "weight_bytes_per_param",
                           "grad_bytes_per_param", "activation_bytes_per_sample",
                           "micro_batch",  "micro_batches_in_flight"};
    for (int i = 0; i < 6; i++)
        if (!(v[i] >= 0) || !isfinite(v[i]))
            return ps_errf(e, PS_EINPUT, "memory: %s must be a finite number >= 0 (got %g)",
                           names[i], v[i]);
    if (s->optimizer < CM_OPT_SGD || s->optimizer > CM_OPT_ADAM)
        return ps_errf(e, PS_EINPUT, "memory: unknown optimizer %d", (int)s->optimizer);
    /* Optimizer state is kept in fp32 whatever the weights' width: momentum
     * one buffer, Adam two (first and second moments). */
    static const double state_bytes[] = {0, 4, 8};
    memset(out, 0, sizeof *out);
    out->weights_bytes = s->params * s->weight_bytes_per_param;
    out->grads_bytes = s->params * s->grad_bytes_per_param;
    out->optimizer_bytes = s->params * (state_bytes[s->optimizer] + (s->master_fp32 ? 4 : 0));
    out->activations_bytes =
        s->activation_bytes_per_sample * s->micro_batch * s->micro_batches_in_flight;
    out->total_bytes =
        out->weights_bytes + out->grads_bytes + out->optimizer_bytes + out->activations_bytes;
    return 0;
}

double cm_transformer_layer_activation_bytes(double seq, double batch, double hidden,
                                             double heads)
{
    if (!(hidden > 0))
        return 0;
    return seq * batch * hidden * (34 + 5 * heads * seq / hidden);
}
