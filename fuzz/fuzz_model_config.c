/* Model configurations from hostile files: what every weights flag runs
 * between opening a file and allocating a model.  The first byte picks the
 * reader (its low 7 bits modulo 6; bit 7 set: the SiT's or ViT's heads come
 * from its width, as without --heads; clear: 1 head); the rest is the file:
 *   0: a diffusers AutoencoderKL config.json (vae_diffusers_read_config),
 *   1: a VAE config JSON (vae_config_from_json, then vae_config_check),
 *   2-5: a weights file (weights_open: .pt/.pth or safetensors) whose shapes
 *        and metadata configure a VAE (vae_config_detect), a SiT
 *        (sit_config_from_weights), a ViT (vit_config_from_checkpoint) or a
 *        CNN classifier (cnn_config_from_checkpoint).
 * A configuration that passes its model's check builds the parameter table
 * and, where that is small, loads the weights (param_load checks every
 * shape against the table).  Seeds: fuzz/corpus/model_config/, small models
 * written by dev/ref/model_config_seeds_ref.py. */
#include "common.h"
#include "io/safetensors.h"
#include "io/weights_file.h"
#include "models/cnn_classifier.h"
#include "models/params.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vae_diffusers.h"
#include "models/vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Models up to this many floats are loaded (4 MiB). */
#define LOAD_MAX_FLOATS ((size_t)1 << 20)

static int heads; /* given to the SiT's and the ViT's detection; 0: from the width */

static void load_if_small(const param_table *t, const safetensors *st, const char *prefix)
{
    if (param_count_all(t) > LOAD_MAX_FLOATS)
        return;
    float *w = param_alloc(t);
    param_load(t, w, st, prefix, PARAM_IGNORE_EXTRA);
    free(w);
}

static void diffusers_config(void *path)
{
    /* The reader takes a folder: copy the input into <scratch>/config.json. */
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/%s", fuzz_scratch_dir(), VAE_DIFFUSERS_CONFIG);
    FILE *in = fopen(path, "rb"), *out = fopen(cfg_path, "wb");
    if (in && out) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, n, out);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    vae_config cfg;
    vae_diffusers_read_config(fuzz_scratch_dir(), &cfg);
    vae m;
    vae_build(&m, &cfg);
    vae_free(&m);
}

static void vae_json(void *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char text[8193];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    vae_config cfg;
    if (vae_config_from_json(text, &cfg) != 0)
        return;
    vae_config_check(&cfg);
    vae m;
    vae_build(&m, &cfg);
    vae_free(&m);
}

static void detect_vae(void *ctx)
{
    const safetensors *st = ctx;
    vae_config cfg;
    if (vae_config_detect(st, "", &cfg) != 0)
        return;
    vae_config_check(&cfg);
    vae m;
    vae_build(&m, &cfg);
    load_if_small(&m.table, st, "");
    vae_free(&m);
}

static void detect_sit(void *ctx)
{
    const safetensors *st = ctx;
    sit_config cfg = sit_config_default();
    cfg.encoder_depth = 1; /* not in the shapes: the CLI takes it from the run's options */
    sit_config_from_weights(&cfg, st, "", heads);
    sit_config_check(&cfg);
    sit m;
    sit_build(&m, &cfg);
    load_if_small(&m.table, st, "");
    sit_free(&m);
}

static void detect_vit(void *ctx)
{
    const safetensors *st = ctx;
    vit_config cfg = vit_config_from_checkpoint(st, "", 0, heads);
    vit_config_check(&cfg);
    vit m;
    vit_build(&m, &cfg);
    load_if_small(&m.table, st, "");
    vit_free(&m);
}

static void detect_cnn(void *ctx)
{
    const safetensors *st = ctx;
    if (!cnn_in_file(st, ""))
        return;
    cnn_config cfg = cnn_config_from_checkpoint(st, "", 0);
    cnn_config_check(&cfg);
    cnn_classifier m;
    cnn_build(&m, &cfg);
    load_if_small(&m.table, st, "");
    cnn_free(&m);
}

static void (*const detectors[4])(void *) = {detect_vae, detect_sit, detect_vit, detect_cnn};
static int detector;

static void weights(void *path)
{
    safetensors *st = weights_open(path);
    detectors[detector](st);
    safetensors_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = (data[0] & 0x7f) % 6;
    detector = mode >= 2 ? mode - 2 : 0;
    heads = data[0] & 0x80 ? 0 : 1;
    void (*reader)(void *) = mode == 0 ? diffusers_config : mode == 1 ? vae_json : weights;
    fuzz_run(reader, (void *)fuzz_write_input(data + 1, size - 1));
    return 0;
}
