#include "cli/irepa_options.h"

#include <string.h>

#include "core/error.h"

int irepa_options_table(irepa_options *io, option_spec *opts)
{
    const option_spec t[] = {IREPA_OPTION_SPECS(*io)};
    memcpy(opts, t, sizeof t);
    return IREPA_N_OPTS;
}

void irepa_apply_sit(const irepa_options *io, sit_config *sc)
{
    if (strcmp(io->projection_layer_type, "conv") != 0) {
        sc->projector_type = SIT_PROJECTOR_MLP;
        return;
    }
    if (io->kernel_size % 2 == 0)
        die("--proj-kwargs-kernel-size %d: the kernel must be odd (1, 3, 5 or 7) so that padding k/2 keeps the "
            "token grid", io->kernel_size);
    sc->projector_type = SIT_PROJECTOR_CONV;
    sc->projector_kernel = io->kernel_size;
}

bool irepa_spatial_norm(const irepa_options *io) { return !strcmp(io->spnorm_method, "zscore"); }

void irepa_warn_unused(const irepa_options *io, const char *command, bool have_repa)
{
    if (!have_repa && (irepa_spatial_norm(io) || !strcmp(io->projection_layer_type, "conv")))
        warn("%s: --projection-layer-type / --spnorm-method have no effect without REPA (no --enc-ckpt)", command);
}
