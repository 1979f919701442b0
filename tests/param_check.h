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

/* Parameters after a few AdamW steps against the fixture's "<prefix><name>"
 * tensors.  AdamW moves every element by about lr per step whatever its
 * gradient's size, so an element whose gradient is near zero (|g| ~ eps =
 * 1e-8) moves by a fraction of lr that fp32 rounding in the gradient decides:
 * such elements legitimately differ from torch by up to ~lr·steps.  So: every
 * element within max_motion, and all but a few (≤ 0.5% of the model) within
 * atol.  A wrong gradient moves most elements the wrong way and fails the
 * second bound at once.  TEST_VERBOSE=1 prints the counts. */
void check_params_after_adam(const safetensors *st, const param_table *tab, const float *values, const char *prefix,
                             double atol, double max_motion);

/* Fixture tensor "step<step>.<what>" of a golden multi-step run (malloc'd). */
float *golden_step_tensor(const safetensors *st, int step, const char *what);

#endif
