/* eval_setup.h — what `repae eval` and `repae reconstruct` share: the
 * feature-network flags (one option table, appended to each command's own),
 * opening the network they name, statistics files with the network's name
 * in their metadata, and the JSON line of results. */
#ifndef REPAE_EVAL_SETUP_H
#define REPAE_EVAL_SETUP_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "core/options.h"
#include "eval/feature_net.h"
#include "eval/feature_stats.h"

#define FNET_MAX_OPTS 6

typedef struct fnet_options {
    const char *feature_net; /* "inception" | "vit" | "cnn" */
    const char *weights;
    const char *layer;       /* vit: "cls" | "mean-patch" */
    int enc_heads;
    float enc_mean, enc_std;
} fnet_options;

/* Appends the feature-network options to opts[n..]; returns the new count. */
int fnet_options_table(fnet_options *o, option_spec *opts, int n);
/* Opens the network (dies without --weights, naming the conversion tool
 * for Inception).  --enc-mean/--enc-std given on the command line override
 * the weights file's metadata. */
void fnet_open(const fnet_options *o, const option_spec *opts, int n_opts, feature_net *f, int max_batch);
/* "FID" for the real Inception, "FD (<name> features)" for anything else:
 * a Fréchet distance in another network's space is not comparable to FID. */
const char *fnet_fd_label(const feature_net *f, char *buf, size_t size);

/* Statistics file (the ADM names mu, sigma, mu_s, sigma_s as F64; spatial
 * may be NULL) with metadata format "repae-feature-stats", version, n, n_s,
 * feature_net (f->name), image_size ("HxWxC") and source.  Atomic. */
void eval_stats_save(const char *path, const feature_net *f, const feature_stats *pool, const feature_stats *spatial,
                     int H, int W, int C, const char *source);
/* Loads the pool (and, if `spatial` is not NULL and the file has mu_s, the
 * spatial) statistics; dies naming the file if it was made by another
 * feature network or has another dimension.  Returns 1 if spatial was loaded. */
int eval_stats_load(const char *path, const feature_net *f, feature_stats *pool, feature_stats *spatial);

/* Appends one JSON line (cJSON_PrintUnformatted; NaN becomes null) to path
 * and deletes j. */
void json_line_append(const char *path, cJSON *j);

#endif
