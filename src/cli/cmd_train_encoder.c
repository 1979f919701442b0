/* repae train-encoder — train a small DINOv2-family ViT as the REPA target
 * encoder (spec §8 replaced by supervised training: no pretrained DINOv2
 * can be had here), on Fashion-MNIST or a shard, with a linear head on the
 * cls token and cross-entropy (train/classifier_trainer.h); or, with
 * --arch cnn, the CNN classifier whose features our Fréchet distances use
 * (models/cnn_classifier.h), with the same optimiser and schedule.
 *
 * Output layout:
 *   <output-dir>/<exp-name>/args.json
 *   <output-dir>/<exp-name>/metrics.jsonl            one line per step; epoch lines with test_accuracy
 *   <output-dir>/<exp-name>/encoder.safetensors      --arch vit: the ViT WITHOUT the head (pure DINOv2
 *                                                    keys, for `repae train --enc-ckpt`), config in metadata
 *   <output-dir>/<exp-name>/classifier.safetensors   --arch cnn: the CNN WITH its head; metadata format
 *                                                    repae-cnn-classifier, arch, config (widths, groups),
 *                                                    enc_mean/enc_std (`repae eval --feature-net cnn`)
 *
 * --evaluate FILE skips training: it tests a saved CNN classifier (its head)
 * on the test data and prints the accuracy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/train_setup.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/options.h"
#include "core/progress.h"
#include "data/loader.h"
#include "core/path.h"
#include "train/classifier_trainer.h"
#include "train/run_loop.h"

/* CPU time of the whole process (every thread), for the run's report. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static const char *usage =
    "usage: repae train-encoder [options]\n"
    "\n"
    "Trains a DINOv2-style ViT (cls token, LayerScale, optional registers) from\n"
    "scratch as a classifier (linear head on the final-norm cls token,\n"
    "cross-entropy, AdamW with a linear warm-up and cosine decay to 0), reports\n"
    "the test accuracy after every epoch, and writes the encoder WITHOUT its head\n"
    "as <dir>/encoder.safetensors: DINOv2 keys, loadable by `repae train\n"
    "--enc-ckpt` as the REPA target encoder (its patch tokens are the targets).\n"
    "\n"
    "The token grids must match: REPA pairs the encoder's (img-size/patch)^2 patch\n"
    "tokens one to one with the SiT's tokens.  For 32x32 images, a VAE with 2\n"
    "downsamples (ch-mult 1,2,2: 8x8 latent) and SiT patch 2 (4x4 = 16 tokens),\n"
    "the encoder needs --patch 8 (4x4 = 16 tokens).  1-channel inputs are\n"
    "normalised as (u/255 - enc-mean)/enc-std, the same as `repae train\n"
    "--enc-mean/--enc-std`; 3-channel ones get the DINOv2 preprocessing.\n"
    "`repae train` takes the head count from the width (192->3, 384->6, 768->12);\n"
    "other --heads must be passed to it as --enc-heads.\n"
    "\n"
    "--arch cnn trains the evaluation network instead: a VGG-style CNN (per\n"
    "--cnn-widths entry a stage of [3x3 conv, GroupNorm(--cnn-groups), ReLU] x 2\n"
    "and a 2x2 max-pool; global average pool; linear head), every channel\n"
    "normalised as (u/255 - enc-mean)/enc-std, saved WITH its head as\n"
    "<dir>/classifier.safetensors for `repae eval --feature-net cnn --weights F`\n"
    "(FD in its pooled features).  The ViT flags (--patch ... --layerscale-init)\n"
    "do not apply to it.  --evaluate F tests such a file on the test data.";

typedef struct enc_options {
    const char *arch, *cnn_widths, *evaluate;
    int cnn_groups, crop_pad;
    const char *data, *eval_data;
    int image_size, channels, max_images, max_eval_images;
    int img_size, patch, embed_dim, depth, heads, num_register_tokens;
    float mlp_ratio, layerscale_init;
    int epochs, batch_size, eval_batch;
    long long max_train_steps, warmup_steps, seed;
    float learning_rate, weight_decay, max_grad_norm, enc_mean, enc_std;
    bool hflip;
    const char *output_dir, *exp_name, *save_dtype;
} enc_options;

static int enc_options_table(enc_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--arch", OPT_CHOICE, &o->arch, "vit",
        "vit: the DINOv2-style REPA encoder; cnn: the VGG-style evaluation network", .choices = "vit|cnn");
    OPT("--data", OPT_STRING, &o->data, "fashion-mnist", "training data: 'fashion-mnist' (train split) or a shard");
    OPT("--eval-data", OPT_STRING, &o->eval_data, NULL,
        "test data: a shard (default: the Fashion-MNIST test split with --data fashion-mnist, else none)");
    OPT("--image-size", OPT_INT, &o->image_size, "32", "Fashion-MNIST images are padded to this size", .min = 28,
        .max = 1024);
    OPT("--channels", OPT_INT, &o->channels, "1", "Fashion-MNIST channels (1, or 3 = replicated)", .min = 1, .max = 3);
    OPT("--max-images", OPT_INT, &o->max_images, "0", "train on the first N images only (0 = all)", .min = 0,
        .max = 1e9);
    OPT("--max-eval-images", OPT_INT, &o->max_eval_images, "0", "test on the first N images only (0 = all)",
        .min = 0, .max = 1e9);
    OPT("--img-size", OPT_INT, &o->img_size, "0",
        "the ViT's input size (0: the image size; 3-channel inputs are resized to it)", .min = 0, .max = 1024);
    OPT("--patch", OPT_INT, &o->patch, "8", "patch size (32 px and patch 8: 4x4 = 16 tokens)", .min = 1, .max = 64);
    OPT("--embed-dim", OPT_INT, &o->embed_dim, "192", "width D", .min = 8, .max = 4096);
    OPT("--depth", OPT_INT, &o->depth, "6", "transformer blocks", .min = 1, .max = 64);
    OPT("--heads", OPT_INT, &o->heads, "3", "attention heads (D must divide by it)", .min = 1, .max = 64);
    OPT("--mlp-ratio", OPT_FLOAT, &o->mlp_ratio, "4", "MLP width / D", .min = 0.25, .max = 16);
    OPT("--num-register-tokens", OPT_INT, &o->num_register_tokens, "0", "register tokens (DINOv2-reg: 4)", .min = 0,
        .max = 64);
    OPT("--layerscale-init", OPT_FLOAT, &o->layerscale_init, "0.1",
        "initial LayerScale gammas (0: no LayerScale; DINOv2's hub value is 1e-5)", .min = 0, .max = 10);
    OPT("--cnn-widths", OPT_STRING, &o->cnn_widths, "32,64,128",
        "--arch cnn: stage widths (each stage: two 3x3 convs, then a 2x2 max-pool)");
    OPT("--cnn-groups", OPT_INT, &o->cnn_groups, "8", "--arch cnn: GroupNorm groups (every width must divide by it)",
        .min = 1, .max = 4096);
    OPT("--evaluate", OPT_STRING, &o->evaluate, NULL,
        "no training: test this --arch cnn classifier file (with its head) on the test data");
    OPT("--epochs", OPT_INT, &o->epochs, "5", "passes over the training data", .min = 1, .max = 100000);
    OPT("--max-train-steps", OPT_INT64, &o->max_train_steps, "0", "stop after N steps (0: --epochs decides)",
        .min = 0, .max = 1e12);
    OPT("--batch-size", OPT_INT, &o->batch_size, "128", "batch size", .min = 1, .max = 65536);
    OPT("--eval-batch", OPT_INT, &o->eval_batch, "250", "batch size of the test pass", .min = 1, .max = 65536);
    OPT("--learning-rate", OPT_FLOAT, &o->learning_rate, "1e-3", "AdamW peak learning rate", .min = 0, .max = 1);
    OPT("--warmup-steps", OPT_INT64, &o->warmup_steps, "200",
        "linear warm-up steps before the cosine decay (at most a fifth of the run)",
        .min = 0, .max = 1e12);
    OPT("--weight-decay", OPT_FLOAT, &o->weight_decay, "0.05", "AdamW decoupled weight decay", .min = 0, .max = 10);
    OPT("--max-grad-norm", OPT_FLOAT, &o->max_grad_norm, "1.0", "gradient clipping (0: none)", .min = 0, .max = 1e9);
    OPT("--hflip", OPT_FLAG, &o->hflip, NULL, "random horizontal flips");
    OPT("--crop-pad", OPT_INT, &o->crop_pad, "0",
        "random crops of the image zero-padded by N px (random shifts of up to N px; 0: none)", .min = 0, .max = 64);
    OPT("--enc-mean", OPT_FLOAT, &o->enc_mean, "0.5", "1-channel input mean (as repae train --enc-mean)", .min = -10,
        .max = 10);
    OPT("--enc-std", OPT_FLOAT, &o->enc_std, "0.5", "1-channel input std (as repae train --enc-std)", .min = 1e-6,
        .max = 10);
    OPT("--save-dtype", OPT_CHOICE, &o->save_dtype, "f32",
        "dtype of the saved network (f16 halves the file; loads as float32)", .choices = "f32|f16");
    OPT("--seed", OPT_INT64, &o->seed, "0", "random seed", .min = 0, .max = 9e18);
    OPT("--output-dir", OPT_STRING, &o->output_dir, "exps", "where runs go");
    OPT("--exp-name", OPT_STRING, &o->exp_name, "encoder-fmnist", "run name (a folder under --output-dir)");
#undef OPT
    return n;
}

static void set_common_metadata(st_writer *w, const enc_options *o, double test_acc, long long step)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%g", o->enc_mean);
    st_writer_set_metadata(w, "enc_mean", buf);
    snprintf(buf, sizeof buf, "%g", o->enc_std);
    st_writer_set_metadata(w, "enc_std", buf);
    snprintf(buf, sizeof buf, "%lld", step);
    st_writer_set_metadata(w, "step", buf);
    if (!isnan(test_acc)) {
        snprintf(buf, sizeof buf, "%.6f", test_acc);
        st_writer_set_metadata(w, "test_accuracy", buf);
    }
}

/* The encoder without its head: DINOv2 keys only, config in metadata. */
static void save_encoder(const vit *m, const float *params, const char *path, const enc_options *o, double test_acc,
                         long long step)
{
    const vit_config *c = &m->cfg;
    st_writer *w = st_writer_new();
    uint16_t *half = param_save_as(w, &m->table, params, "head.", !strcmp(o->save_dtype, "f16"));
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"img_size\": %d, \"patch\": %d, \"in_chans\": %d, \"embed_dim\": %d, \"depth\": %d, \"heads\": %d, "
             "\"mlp_ratio\": %g, \"num_register_tokens\": %d, \"layerscale\": %s, \"ln_eps\": %g}",
             c->img_size, c->patch, c->in_chans, c->embed_dim, c->depth, c->heads, c->mlp_ratio,
             c->num_register_tokens, c->layerscale ? "true" : "false", c->ln_eps);
    st_writer_set_metadata(w, "format", "repae-encoder");
    st_writer_set_metadata(w, "config", buf);
    set_common_metadata(w, o, test_acc, step);
    st_writer_set_metadata(w, "trained_by", "repae train-encoder (supervised classification, head dropped)");
    st_writer_save(w, path);
    st_writer_free(w);
    free(half);
}

/* The CNN with its head; what a loader needs in metadata (the state dict
 * cannot tell the GroupNorm groups). */
static void save_cnn(const cnn_classifier *m, const float *params, const char *path, const enc_options *o, int img_size,
                     double test_acc, long long step)
{
    st_writer *w = st_writer_new();
    uint16_t *half = param_save_as(w, &m->table, params, NULL, !strcmp(o->save_dtype, "f16"));
    char buf[1024], widths[256];
    cnn_config_to_json(&m->cfg, buf, sizeof buf);
    st_writer_set_metadata(w, "format", CNN_FILE_FORMAT);
    st_writer_set_metadata(w, "arch", "cnn");
    st_writer_set_metadata(w, "config", buf);
    size_t n = 0;
    for (int s = 0; s < m->cfg.n_stages; s++)
        n += (size_t)snprintf(widths + n, sizeof widths - n, "%s%d", s ? "," : "", m->cfg.widths[s]);
    st_writer_set_metadata(w, "widths", widths);
    snprintf(buf, sizeof buf, "%d", m->cfg.groups);
    st_writer_set_metadata(w, "groups", buf);
    snprintf(buf, sizeof buf, "%d", img_size);
    st_writer_set_metadata(w, "img_size", buf);
    set_common_metadata(w, o, test_acc, step);
    st_writer_set_metadata(w, "trained_by", "repae train-encoder --arch cnn (supervised classification)");
    st_writer_save(w, path);
    st_writer_free(w);
    free(half);
}

/* --arch cnn's configuration from the flags; dies naming the flag. */
static cnn_config cnn_config_from_options(const enc_options *o, int C, int H, int W, int K)
{
    cnn_config c = {.in_chans = C, .groups = o->cnn_groups, .num_classes = K, .gn_eps = 1e-5f};
    c.n_stages = parse_int_list("--cnn-widths", o->cnn_widths, c.widths, CNN_MAX_STAGES);
    if (c.n_stages < 1)
        die("train-encoder --cnn-widths: give at least one stage width (e.g. 32,64,128)");
    for (int s = 0; s < c.n_stages; s++)
        if (c.widths[s] % c.groups)
            die("train-encoder --cnn-groups %d: the stage width %d (--cnn-widths %s) is not divisible by it",
                c.groups, c.widths[s], o->cnn_widths);
    int max_stages = 0;
    while ((H >> (max_stages + 1)) >= 1 && (W >> (max_stages + 1)) >= 1)
        max_stages++;
    if (c.n_stages > max_stages)
        die("train-encoder --cnn-widths %s: %d stages halve %dx%d images to nothing (at most %d stages)",
            o->cnn_widths, c.n_stages, H, W, max_stages);
    return c;
}

/* --evaluate FILE: the test accuracy of a saved CNN classifier. */
static int evaluate_file(const enc_options *o, const option_spec *opts, int n_opts, const dataset *test)
{
    safetensors *st = safetensors_open(o->evaluate);
    if (safetensors_find(st, "cls_token"))
        die("train-encoder --evaluate '%s': a ViT encoder file (saved without its head); --evaluate takes a "
            "classifier from `repae train-encoder --arch cnn`",
            o->evaluate);
    cnn_classifier m;
    float *mw = cnn_from_checkpoint(&m, st, "", 0, PARAM_STRICT);
    if (m.cfg.num_classes <= 0)
        die("train-encoder --evaluate '%s': the CNN has no head (head.weight)", o->evaluate);
    if (m.cfg.num_classes != test->num_classes || m.cfg.in_chans != test->channels)
        die("train-encoder --evaluate '%s': a %d-class, %d-channel classifier for %d-class, %d-channel test data",
            o->evaluate, m.cfg.num_classes, m.cfg.in_chans, test->num_classes, test->channels);
    float mean = options_given(opts, n_opts, "--enc-mean") ? o->enc_mean : safetensors_meta_f32(st, "enc_mean", 0.5f);
    float std = options_given(opts, n_opts, "--enc-std") ? o->enc_std : safetensors_meta_f32(st, "enc_std", 0.5f);
    safetensors_close(st);
    classifier_config cc = {.batch = 1, .mean = mean, .std = std};
    int eval_batch = test->n < o->eval_batch ? test->n : o->eval_batch;
    classifier_trainer t;
    classifier_trainer_init_cnn(&t, &cc, &m, mw, test->channels, test->height, test->width, eval_batch);
    double t0 = wall_seconds();
    int correct = classifier_evaluate(&t, test->images, test->labels, test->n);
    printf("%s: %s, enc_mean %g enc_std %g\n", o->evaluate, cnn_config_to_json(&m.cfg, (char[512]){0}, 512), mean,
           std);
    printf("test accuracy: %.4f (%d of %d images, %s; %.1f s)\n", (double)correct / test->n, correct, test->n,
           test->source, wall_seconds() - t0);
    classifier_trainer_free(&t);
    cnn_free(&m);
    free(mw);
    return 0;
}

/* The network to train: the CNN (--arch cnn) or the ViT, from the flags;
 * returns its new weights buffer (the caller frees it). */
static float *build_network(const enc_options *o, bool cnn, int C, int H, int K, vit *m, vit_config *vc,
                          cnn_classifier *cm, int W)
{
    if (cnn) {
        cnn_config cc = cnn_config_from_options(o, C, H, W, K);
        cnn_build(cm, &cc);
        float *params = param_alloc(&cm->table);
        cnn_init_weights(cm, params, (uint64_t)o->seed + 7);
        return params;
    }
    *vc = (vit_config){.img_size = o->img_size ? o->img_size : H, .patch = o->patch, .in_chans = C,
                       .embed_dim = o->embed_dim, .depth = o->depth, .heads = o->heads, .mlp_ratio = o->mlp_ratio,
                       .num_register_tokens = o->num_register_tokens, .layerscale = o->layerscale_init > 0,
                       .layerscale_init = o->layerscale_init, .num_classes = K, .ln_eps = 1e-6f};
    if (vc->img_size % vc->patch)
        die("train-encoder --patch %d: the ViT input (%d px) must be a multiple of the patch size", o->patch,
            vc->img_size);
    if (o->embed_dim % o->heads)
        die("train-encoder --heads %d: the width %d must be divisible by the head count", o->heads, o->embed_dim);
    if (C == 1 && vc->img_size != H)
        die("train-encoder --img-size %d: 1-channel images are not resized; use %d (the image size)", vc->img_size,
            H);
    vit_build(m, vc);
    float *params = param_alloc(&m->table);
    vit_init_weights(m, params, (uint64_t)o->seed + 7);
    return params;
}

/* What the run loop's callbacks need. */
typedef struct enc_run {
    classifier_trainer t;
    loader ld;
    const enc_options *o;
    bool cnn;
    vit *m;
    cnn_classifier *cm;
    const dataset *test;
    int H, bpe;
    uint8_t *images;
    int32_t *labels;
    double test_acc, cpu0;
    classifier_logs last;
} enc_run;

static const char *const enc_log_names[] = {"loss", "accuracy", "grad_norm", "lr"};
static const char *const enc_extra_names[] = {"test_accuracy", "cpu_s"};

static long long run_step(void *ctx, double *logs)
{
    enc_run *r = ctx;
    loader_next(&r->ld, r->images, r->labels);
    classifier_step(&r->t, r->images, r->labels, &r->last);
    logs[0] = r->last.loss, logs[1] = r->last.accuracy, logs[2] = r->last.grad_norm, logs[3] = r->last.lr;
    return r->t.step;
}

static void run_status(void *ctx, const double *logs, char *buf, size_t size)
{
    snprintf(buf, size, "loss %.4f acc %.3f test %.4f lr %.2e", logs[0], logs[1], ((enc_run *)ctx)->test_acc,
             logs[3]);
}

/* The network file, rewritten at every epoch's end (no resume). */
static void run_save(void *ctx, const char *path, long long epoch, long long position)
{
    enc_run *r = ctx;
    if (r->cnn)
        save_cnn(r->cm, r->t.params, path, r->o, r->H, r->test_acc, r->t.step);
    else
        save_encoder(r->m, r->t.params, path, r->o, r->test_acc, r->t.step);
}

static long long run_current_step(void *ctx) { return ((enc_run *)ctx)->t.step; }

static void run_check_same(void *ctx)
{
    enc_run *r = ctx;
    dist_check_same(r->t.params, r->t.table->total, "the network's parameters");
}

/* The epoch's end: test accuracy. */
static void run_evaluate(void *ctx, long long step, const char *png, double *extras)
{
    enc_run *r = ctx;
    r->test_acc = (double)classifier_evaluate(&r->t, r->test->images, r->test->labels, r->test->n) / r->test->n;
    extras[0] = r->test_acc, extras[1] = cpu_seconds() - r->cpu0;
    fprintf(stderr, "epoch %lld (step %lld): test accuracy %.4f (%.0f s of CPU so far)\n",
            (step + r->bpe - 1) / r->bpe, step, r->test_acc, extras[1]);
}

static void print_network(bool cnn, const cnn_classifier *cm, const vit *m, const vit_config *vc, int K)
{
    if (cnn) {
        char buf[512];
        printf("CNN: %s, %.3f M parameters (%.3f M without the head), %d-dim features\n",
               cnn_config_to_json(&cm->cfg, buf, sizeof buf), param_count(&cm->table, PARAM_TRAINABLE) / 1e6,
               (param_count(&cm->table, PARAM_TRAINABLE) - (size_t)K * (cm->dim + 1)) / 1e6, cm->dim);
    } else
        printf("ViT: %d px, patch %d (%dx%d = %d tokens), width %d, depth %d, %d heads, %.3f M parameters "
               "(%.3f M without the head)\n",
               vc->img_size, vc->patch, m->grid, m->grid, m->npatch, vc->embed_dim, vc->depth, vc->heads,
               param_count(&m->table, PARAM_TRAINABLE) / 1e6,
               (param_count(&m->table, PARAM_TRAINABLE) - (size_t)K * (vc->embed_dim + 1)) / 1e6);
}

int cmd_train_encoder(int argc, char **argv)
{
    enc_options o;
    option_spec opts[48];
    int n = enc_options_table(&o, opts);
    int rest = options_parse("train-encoder", usage, opts, n, argc, argv);
    if (rest > 1)
        die("train-encoder: unexpected argument '%s'", argv[1]);
    bool cnn = !strcmp(o.arch, "cnn");
    static const char *const vit_flags[] = {"--img-size", "--patch", "--embed-dim", "--depth", "--heads",
                                            "--mlp-ratio", "--num-register-tokens", "--layerscale-init"};
    static const char *const cnn_flags[] = {"--cnn-widths", "--cnn-groups", "--evaluate"};
    for (int i = 0; i < (int)(sizeof vit_flags / sizeof *vit_flags); i++)
        if (cnn && options_given(opts, n, vit_flags[i]))
            die("train-encoder: %s is a ViT flag; --arch cnn takes --cnn-widths and --cnn-groups", vit_flags[i]);
    for (int i = 0; i < (int)(sizeof cnn_flags / sizeof *cnn_flags); i++)
        if (!cnn && options_given(opts, n, cnn_flags[i]))
            die("train-encoder: %s needs --arch cnn", cnn_flags[i]);
    char *args_json = options_to_json(opts, n);

    /* Data: the test set, then (unless only evaluating) the training set through train_setup_data. */
    dataset test = {0};
    bool have_test = false;
    if (o.eval_data || !strcmp(o.data, "fashion-mnist")) {
        test = dataset_open(o.eval_data ? o.eval_data : o.data, "test", o.image_size, o.channels, o.max_eval_images);
        have_test = true;
    }
    if (o.evaluate) {
        if (!have_test)
            die("train-encoder --evaluate: no test data (give --eval-data, or --data fashion-mnist)");
        int rc = evaluate_file(&o, opts, n, &test);
        dataset_free(&test);
        free(args_json);
        return rc;
    }
    train_options to = {.data = o.data, .data_split = "train", .image_size = o.image_size, .channels = o.channels,
                        .max_images = o.max_images};
    train_data data;
    train_setup_data(&to, &data);
    if (have_test && (test.channels != data.ds.channels || test.height != data.ds.height ||
                      test.width != data.ds.width))
        die("train-encoder: --eval-data '%s' has %dx%dx%d images, the training data %dx%dx%d", test.source,
            test.channels, test.height, test.width, data.ds.channels, data.ds.height, data.ds.width);
    int C = data.ds.channels, H = data.ds.height, W = data.ds.width, K = data.ds.num_classes;
    if (data.ds.n < o.batch_size)
        die("train-encoder: %d training images cannot fill a batch of %d (--max-images / --batch-size)", data.ds.n,
            o.batch_size);
    if (K < 2)
        die("train-encoder: '%s' has %d classes; a classifier needs at least 2", data.ds.source, K);
    if (o.crop_pad >= H || o.crop_pad >= W)
        die("train-encoder --crop-pad %d: must be smaller than the %dx%d images", o.crop_pad, H, W);

    vit m = {0};
    vit_config vc = {0};
    cnn_classifier cm = {0};
    float *weights = build_network(&o, cnn, C, H, K, &m, &vc, &cm, W);

    int bpe = data.ds.n / o.batch_size;
    long long total = (long long)o.epochs * bpe;
    if (o.max_train_steps > 0 && o.max_train_steps < total)
        total = o.max_train_steps;
    long long warmup = o.warmup_steps < total / 5 ? o.warmup_steps : total / 5; /* short runs still decay */
    classifier_config cc = {.batch = train_local_batch("train-encoder", o.batch_size), .lr = o.learning_rate, .weight_decay = o.weight_decay,
                            .max_grad_norm = o.max_grad_norm, .warmup_steps = warmup, .total_steps = total,
                            .hflip = o.hflip, .crop_pad = o.crop_pad, .mean = o.enc_mean, .std = o.enc_std,
                            .seed = (uint64_t)o.seed};
    int eval_batch = have_test && test.n < o.eval_batch ? test.n : o.eval_batch;
    enc_run r = {.o = &o, .cnn = cnn, .m = &m, .cm = &cm, .test = &test, .H = H, .bpe = bpe, .test_acc = NAN};
    if (cnn)
        classifier_trainer_init_cnn(&r.t, &cc, &cm, weights, C, H, W, eval_batch);
    else
        classifier_trainer_init(&r.t, &cc, &m, weights, C, H, W, eval_batch);
    r.ld = loader_create(&data.ds, cc.batch, (uint64_t)o.seed, dist_rank(), dist_world());

    run_dir rd;
    run_dir_open(&rd, "train-encoder", o.output_dir, o.exp_name, false);
    printf("repae train-encoder: %s\n", rd.dir);
    printf("data: %s, %d images %dx%dx%d, %d classes; test: %s\n", data.ds.source, data.ds.n, C, H, W, K,
           have_test ? test.source : "none");
    print_network(cnn, &cm, &m, &vc, K);
    printf("schedule: %lld steps (%d per epoch), warm-up %lld, cosine to 0\n", total, bpe, warmup);
    options_print(stdout, opts, n);
    if (!cnn && vit_heads_for_width(o.embed_dim) != o.heads)
        printf("note: repae train will need --enc-heads %d for this encoder\n", o.heads);
    fflush(stdout);

    char *out_path = run_dir_file(&rd, cnn ? "classifier.safetensors" : "encoder.safetensors");
    char *nan_note = path_printf("'%s' keeps the last epoch's network, if any (try a lower --learning-rate)",
                                 out_path);
    r.images = xmalloc((size_t)cc.batch * C * H * W);
    r.labels = xmalloc((size_t)cc.batch * sizeof(int32_t));
    r.cpu0 = cpu_seconds();
    run_loop rl = {.command = "train-encoder", .dir = &rd, .data = &r.ld, .max_steps = total,
                   .checkpoint_every = bpe, .preview_every = bpe, .n_logs = 4, .log_names = enc_log_names,
                   .n_extras = 2, .extra_names = enc_extra_names, .ctx = &r, .step = run_step,
                   .status = run_status, .save = run_save, .save_path = out_path, .current_step = run_current_step,
                   .preview = have_test ? run_evaluate : NULL, .check_same = run_check_same, .nan_note = nan_note};
    int exit_code = run_loop_run(&rl, 0, args_json);
    if (!run_loop_stop_signal() && exit_code == 0) {
        if (have_test)
            printf("test accuracy: %.4f (%d images)\n", r.test_acc, test.n);
        printf("%s: %s\nmetrics: %s/metrics.jsonl\nCPU time: %.0f s\n", cnn ? "classifier" : "encoder", out_path,
               rd.dir, cpu_seconds() - r.cpu0);
    }
    free(r.images), free(r.labels), free(args_json), free(out_path), free(nan_note);
    loader_free(&r.ld);
    classifier_trainer_free(&r.t);
    if (cnn)
        cnn_free(&cm);
    else
        vit_free(&m);
    free(weights);
    if (have_test)
        dataset_free(&test);
    train_data_free(&data);
    run_dir_close(&rd);
    return exit_code;
}
