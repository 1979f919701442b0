#include "tiny_vae.h"

vae_config tiny_vae_config(void)
{
    vae_config c;
    vae_preset("f8d4", &c);
    c.ch = 8;
    c.n_levels = 2;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.num_res_blocks = 1;
    c.z_channels = 3;
    c.n_attn = 1;
    c.attn_resolutions[0] = 4;
    c.resolution = 8;
    c.in_channels = 1;
    c.out_ch = 2;
    c.norm_groups = 4;
    return c;
}
