/* tiny_vae.h — the tiny VAE configuration the VAE tests share (test_vae,
 * test_latent_cache): two levels, nin_shortcut in both directions,
 * attention at level 1 (nominal 4) besides mid, 1 input channel, 2 output
 * channels, 4 GroupNorm groups. */
#ifndef REPAE_TEST_TINY_VAE_H
#define REPAE_TEST_TINY_VAE_H

#include "models/vae.h"

vae_config tiny_vae_config(void);

#endif
