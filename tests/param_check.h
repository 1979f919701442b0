/* param_check.h — compare a whole model against a fixture by name.
 *
 * Walks the parameter table, so every tensor is compared under its PyTorch
 * state-dict key and none can be skipped or compared out of order:
 *
 *   // values[e.offset...] against fixture tensor "<prefix><e.name>"
 *   check_params_against_fixture(st, &model.table, grads, "grad.", PARAM_TRAINABLE, 1e-5, 1e-4);
 *
 * kind_filter: compare only entries of that kind, or -1 for all.  A fixture
 * tensor that is missing counts as a failure.  Returns the number of tensors
 * that failed.
 */
#ifndef REPAE_PARAM_CHECK_H
#define REPAE_PARAM_CHECK_H

#include "io/safetensors.h"
#include "models/params.h"

int check_params_against_fixture(const safetensors *st, const param_table *t, const float *values, const char *prefix,
                                 int kind_filter, double atol, double rtol);

#endif
