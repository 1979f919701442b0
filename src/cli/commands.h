/* commands.h — one entry point per subcommand; argv[0] is the command name. */
#ifndef REPAE_COMMANDS_H
#define REPAE_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_vae(int argc, char **argv);
int cmd_train_encoder(int argc, char **argv);
int cmd_export_vae(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_cache_latents(int argc, char **argv);
int cmd_train_ldm(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_speedup(int argc, char **argv);

#endif
