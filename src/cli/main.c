/* repae — command-line entry point: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "core/dist.h"
#include "core/omp_spin.h"
#include "cli/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int parallel; /* runs data-parallel under mpirun */
} commands[] = {
    {"inspect", cmd_inspect, "tensors, metadata and recognised models of a file; --arch NAME: a preset's parameter table"},
    {"convert", cmd_convert, "write a PyTorch .pt/.pth (or any weights file) as safetensors, optionally one key prefix"},
    {"sample", cmd_sample, "generate images (ODE/SDE, CFG) into PNGs and an ADM .npz", 1},
    {"forward", cmd_forward, "run a VAE, SiT or ViT on tensors from a file (checks converted weights)"},
    {"train", cmd_train, "end-to-end REPA-E training (VAE + SiT + discriminator)", 1},
    {"train-vae", cmd_train_vae, "pre-train a VAE from scratch with the regularisation loss (L1+LPIPS+KL+GAN)", 1},
    {"train-encoder", cmd_train_encoder, "train a small DINOv2-style ViT classifier as the REPA target encoder", 1},
    {"export-vae", cmd_export_vae, "write the VAE and its latents statistics (EMA BatchNorm) of a REPA-E checkpoint"},
    {"prepare", cmd_prepare, "pack Fashion-MNIST or an image folder (ADM centre crop) into a shard or an ADM .npz"},
    {"cache-latents", cmd_cache_latents, "encode a dataset once with a frozen VAE (for train-ldm)", 1},
    {"train-ldm", cmd_train_ldm, "latent diffusion on cached latents, with or without REPA", 1},
    {"plot", cmd_plot, "plot loss curves from a run's metrics.jsonl as a PNG"},
    {"speedup", cmd_speedup, "steps each run needs to reach the baseline's FD (a comparison's results.jsonl): table + JSON"},
    {"eval", cmd_eval, "FID, sFID, IS, precision/recall of a sample .npz against a reference (ADM suite)", 1},
    {"reconstruct", cmd_reconstruct, "VAE reconstruction metrics: PSNR, SSIM, rFID and latent statistics", 1},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: repae <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`repae <command> --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
    omp_spin_default(argv);
    dist_init(&argc, &argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (dist_world() > 1 && !commands[i].parallel) {
                if (dist_rank() == 0)
                    fprintf(stderr, "repae: error: '%s' does not run over several processes yet; run it without "
                                    "mpirun (train, train-vae, train-ldm, train-encoder, sample, cache-latents, eval and reconstruct do)\n", argv[1]);
                return 1;
            }
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "repae: error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
