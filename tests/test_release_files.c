/* The official release's files, in torch's real layouts at tiny sizes
 * (dev/ref/torch_release_ref.py, ../pt_checkpoint.pt of torch_file_ref.py):
 *
 *  - exps/NAME/{args.json, checkpoints/0000002.pt} of train_repae.py: `repae
 *    sample --ckpt .../0000002.pt` and nothing else gives the same images as
 *    the safetensors copy sampled with every model flag explicit (SiT heads,
 *    VAE, latent statistics = save_vae_weights.py's rule on the EMA
 *    BatchNorm); without args.json the pickled Namespace configures it; the
 *    options' path_type is used; a malformed args.json is named;
 *  - a train_ldm_only.py checkpoint (no vae): the VAE and its -latents-stats
 *    sidecar found through args.json's vae_ckpt (beside exps/) give the same
 *    images as the explicit flags; without the VAE, or without its sidecar,
 *    a clear error;
 *  - DINOv2 hub state dicts (mask_token, ls1/ls2.gamma, register_tokens of
 *    the _reg4 files) load strictly, every value as in the file;
 *  - pytorch-fid's Inception .pth layout (its names and order, 1/16 width):
 *    loads directly, num_batches_tracked and fc.bias ignored, every table
 *    tensor as in the file; AuxLogits or a 1000-class fc are refused;
 *  - LPIPS from its heads-only vgg.pth (legacy format) + torchvision's
 *    vgg16 .pth: features.<i> land in net.slice<k>.<i>, value for value;
 *    `train --lpips-ckpt` without the VGG, or with the wrong width, fails
 *    naming the file;
 *  - the release's VAE triple (bare VAE state dict, -latents-stats.pt,
 *    -discriminator-ckpt.pt) with the hub encoder: `repae train`,
 *    `cache-latents`, `train-ldm` and `reconstruct` run on them.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/weights_file.h"
#include "eval/feature_net.h"
#include "models/discriminator.h"
#include "models/inception.h"
#include "models/lpips.h"
#include "models/vit.h"
#include "train/latents_stats.h"
#include "test.h"

#define FIX "tests/fixtures/io/"
#define REL FIX "release/"

static char tmp_dir[64], repae_bin[256];
static char out_buf[1 << 16], err_buf[1 << 14];

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *b = read_file_all(from, &n);
    FILE *f = fopen(to, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n, "cannot write %s", to);
    if (f)
        fclose(f);
    free(b);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* snprintf that checks the result fits (and so draws no truncation warning). */
#define FMT(buf, ...) CHECK(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf, "%s: too long", #buf)

/* exps/<name>/checkpoints/<step>.pt (+ args.json if given); returns the checkpoint path. */
static const char *make_run(const char *name, const char *ckpt, const char *step, const char *args_json)
{
    static char path[512];
    char dir[512];
    FMT(dir, "%s/exps", tmp_dir);
    mkdir(dir, 0755);
    FMT(dir, "%s/exps/%s", tmp_dir, name);
    mkdir(dir, 0755);
    if (args_json) {
        FMT(path, "%s/args.json", dir);
        copy_file(args_json, path);
    }
    FMT(path, "%s/checkpoints", dir);
    mkdir(path, 0755);
    FMT(path, "%s/checkpoints/%s.pt", dir, step);
    copy_file(ckpt, path);
    return path;
}

static int repae(const char *args)
{
    char cmd[4096];
    FMT(cmd, "%s %s", repae_bin, args);
    return run_command(cmd, out_buf, sizeof out_buf, err_buf, sizeof err_buf);
}

/* `repae sample --ckpt CKPT EXTRA` into <tmp>/s/<name>.npz; returns the npz bytes (NULL on failure). */
static char *sample(const char *name, const char *ckpt, const char *extra, size_t *n)
{
    char args[3000];
    snprintf(args, sizeof args, "sample --ckpt '%s' --num-samples 3 --num-steps 3 --sample-dir '%s' --name %s --no-png %s",
             ckpt, tmp("s"), name, extra);
    int rc = repae(args);
    CHECK(rc == 0, "`repae %s` failed (%d): %s", args, rc, err_buf);
    char npz[600];
    snprintf(npz, sizeof npz, "%s/s/%s.npz", tmp_dir, name);
    return rc == 0 && access(npz, R_OK) == 0 ? read_file_all(npz, n) : NULL;
}

static int same_bytes(const char *a, size_t na, const char *b, size_t nb)
{
    return a && b && na == nb && na > 100 && !memcmp(a, b, na);
}

/* The explicit-flags reference: the safetensors copy, its EMA BatchNorm
 * turned into a statistics file with save_vae_weights.py's rule. */
static const char *bn_stats_file(void)
{
    const char *path = tmp("bn-latents-stats.safetensors");
    safetensors *st = safetensors_open(FIX "pt_checkpoint_ref.safetensors");
    float mean[4], var[4], bias[4], scale[4];
    safetensors_load_f32(st, "ema.bn.running_mean", 1, (int64_t[]){4}, mean);
    safetensors_load_f32(st, "ema.bn.running_var", 1, (int64_t[]){4}, var);
    safetensors_close(st);
    latents_stats_from_bn(mean, var, 4, bias, scale, "test");
    latents_stats_write(path, bias, scale, 4, "the EMA BatchNorm of pt_checkpoint_ref.safetensors");
    return path;
}

static void test_release_run_folder_samples_with_ckpt_only(void)
{
    size_t n0, n1, n2;
    char extra[1200];
    snprintf(extra, sizeof extra,
             "--vae-ckpt '%s' --latents-stats '%s' --heads 2 --path-type linear", FIX "pt_checkpoint_ref.safetensors",
             bn_stats_file());
    char *ref = sample("explicit", FIX "pt_checkpoint_ref.safetensors", extra, &n0);
    const char *ck = make_run("tiny", FIX "pt_checkpoint.pt", "0000002", REL "repae_args.json");
    char *a = sample("release", ck, "", &n1);
    CHECK(strstr(out_buf, "exps/tiny/args.json") && strstr(out_buf, "ema.bn.running_mean/var") &&
              strstr(out_buf, "(vae.*)"),
          "sample did not take args.json, the VAE and the BatchNorm statistics from the run:\n%s", out_buf);
    CHECK(same_bytes(a, n1, ref, n0), "the release folder samples differ from the explicit-flags run");
    /* Without args.json: the pickled Namespace. */
    ck = make_run("noargs", FIX "pt_checkpoint.pt", "0000002", NULL);
    char *b = sample("noargs", ck, "", &n2);
    CHECK(strstr(out_buf, "the file's own options"), "without args.json the pickled args configure it:\n%s", out_buf);
    CHECK(same_bytes(b, n2, ref, n0), "samples from the pickled args differ from the explicit-flags run");
    /* The training weights (model.*) differ from the EMA. */
    char *c = sample("model", ck, "--no-ema", &n2);
    CHECK(c && strstr(out_buf, "keys model.*") && !same_bytes(c, n2, ref, n0), "--no-ema samples model.*");
    free(ref), free(a), free(b), free(c);
}

static void test_release_args_json_is_read(void)
{
    /* args.json's path_type is the sampler's default ... */
    char dir[512], *text = NULL;
    size_t n;
    text = read_file_all(REL "repae_args.json", &n);
    char *p = strstr(text, "\"enc_type\"");
    CHECK(p != NULL, "repae_args.json lacks enc_type");
    const char *ck = make_run("cosine", FIX "pt_checkpoint.pt", "0000002", NULL);
    snprintf(dir, sizeof dir, "%s/exps/cosine/args.json", tmp_dir);
    if (p) {
        FILE *f = fopen(dir, "w");
        fprintf(f, "%.*s\"path_type\": \"cosine\", %s", (int)(p - text), text, p);
        fclose(f);
    }
    free(text);
    char *a = sample("cosine", ck, "--mode sde", &n);
    CHECK(a && strstr(out_buf, "cosine path"), "args.json's path_type is not used:\n%s", out_buf);
    free(a);
    a = sample("cosine_given", ck, "--mode sde --path-type linear", &n);
    CHECK(a && strstr(out_buf, "linear path"), "--path-type overrides args.json:\n%s", out_buf);
    free(a);
    /* ... and a broken one is named. */
    write_text(dir, "{\"model\": \"SiT-XL/2\",");
    char args[1200];
    snprintf(args, sizeof args, "sample --ckpt '%s' --num-samples 1 --sample-dir '%s' --no-png", ck, tmp("s"));
    int rc = repae(args);
    CHECK(rc == 1 && strstr(err_buf, "exps/cosine/args.json") && strstr(err_buf, "not a JSON object"),
          "a malformed args.json: %d %s", rc, err_buf);
}

static void test_ldm_only_checkpoint(void)
{
    const char *ck = make_run("ldm", REL "ldm_ckpt.pt", "4000000", REL "ldm_args.json");
    char args[1200];
    snprintf(args, sizeof args, "sample --ckpt '%s' --num-samples 1 --sample-dir '%s' --no-png", ck, tmp("s"));
    int rc = repae(args);
    CHECK(rc == 1 && strstr(err_buf, "LDM-only checkpoint") && strstr(err_buf, "pretrained/pt_vae/pt_vae.pt") &&
              strstr(err_buf, "--vae-ckpt"),
          "an LDM-only checkpoint whose VAE is missing: %d %s", rc, err_buf);
    /* The release layout: pretrained/<vae>/ beside exps/. */
    mkdir(tmp("pretrained"), 0755);
    mkdir(tmp("pretrained/pt_vae"), 0755);
    copy_file(REL "pt_vae.pt", tmp("pretrained/pt_vae/pt_vae.pt"));
    copy_file(REL "pt_vae-latents-stats.pt", tmp("pretrained/pt_vae/pt_vae-latents-stats.pt"));
    size_t n0, n1;
    char *a = sample("ldm", ck, "", &n1);
    CHECK(strstr(out_buf, "pretrained/pt_vae/pt_vae-latents-stats.pt") && strstr(out_buf, "exps/ldm/args.json"),
          "the LDM run's VAE and statistics:\n%s", out_buf);
    char extra[1200];
    snprintf(extra, sizeof extra, "--vae-ckpt '%s' --latents-stats '%s'", REL "pt_vae.pt", REL "pt_vae-latents-stats.pt");
    char *ref = sample("ldm_explicit", REL "ldm_ckpt.pt", extra, &n0);
    CHECK(same_bytes(a, n1, ref, n0), "the LDM run folder samples differ from the explicit-flags run");
    /* The BatchNorm is not a source for an LDM-only run (generate.py): a
     * VAE without its sidecar is an error. */
    unlink(tmp("pretrained/pt_vae/pt_vae-latents-stats.pt"));
    rc = repae(args);
    CHECK(rc == 1 && strstr(err_buf, "no latent statistics") && strstr(err_buf, "--latents-stats"),
          "an LDM-only run without the VAE's statistics: %d %s", rc, err_buf);
    free(a), free(ref);
}

/* Every parameter of the ViT loaded from the hub file equals the file's tensor. */
static void check_hub(const char *path, int regs)
{
    safetensors *st = weights_open(path);
    vit m;
    float *mw = vit_from_checkpoint(&m, st, "", 0, 2, PARAM_STRICT);
    CHECK(m.cfg.embed_dim == 8 && m.cfg.depth == 1 && m.cfg.patch == 14 && m.cfg.num_register_tokens == regs &&
              m.cfg.layerscale && m.npatch == 16,
          "%s: config D %d depth %d patch %d regs %d", path, m.cfg.embed_dim, m.cfg.depth, m.cfg.patch,
          m.cfg.num_register_tokens);
    int bad = 0, seen = 0;
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        const st_tensor *t = safetensors_find(st, e->name);
        if (!t || (size_t)t->numel != e->numel) {
            bad++;
            continue;
        }
        float *v = xmalloc(e->numel * sizeof(float));
        safetensors_read_f32(st, t, v);
        bad += memcmp(v, mw + e->offset, e->numel * sizeof(float)) != 0;
        seen += !strcmp(e->name, "mask_token") || !strcmp(e->name, "blocks.0.ls2.gamma") ||
                !strcmp(e->name, "register_tokens");
        free(v);
    }
    CHECK(bad == 0 && m.table.n == st->n_tensors && seen == 2 + (regs > 0),
          "%s: %d of %d parameters differ from the file's %d tensors", path, bad, m.table.n, st->n_tensors);
    vit_free(&m);
    free(mw);
    safetensors_close(st);
}

static void test_dinov2_hub_files(void)
{
    check_hub(REL "dinov2_tiny_pretrain.pth", 0);
    check_hub(REL "dinov2_tiny_reg4_pretrain.pth", 4);
}

static void test_release_discriminator_file(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 4, 1});
    float *p = param_alloc(&d.table);
    safetensors *st = weights_open(REL "pt_vae-discriminator-ckpt.pt");
    param_load(&d.table, p, st, "", PARAM_STRICT);
    const param_entry *e = param_find(&d.table, "main.3.running_var");
    float v[8];
    CHECK(e && e->numel == 8, "main.3.running_var [8] expected");
    if (e) {
        safetensors_load_f32(st, "main.3.running_var", 1, (int64_t[]){8}, v);
        CHECK(!memcmp(v, p + e->offset, sizeof v) && v[0] >= 0.5f, "the discriminator's BatchNorm buffers load");
    }
    safetensors_close(st);
    free(p);
    disc_free(&d);
}

static void test_release_vae_files_train_and_friends(void)
{
    char args[4000];
    /* REPA-E from the released VAE + statistics + discriminator and the hub
     * DINOv2: f1 VAE at 32 px -> 32x32 latents, SiT patch 16 -> 2x2 tokens =
     * the encoder's 28 px / 14. */
    snprintf(args, sizeof args,
             "train --channels 3 --image-size 32 --max-images 8 --batch-size 2 --max-train-steps 1 --sampling-steps 0 "
             "--checkpointing-steps 1 --preview-images 2 --sit-depth 1 --sit-hidden 16 --sit-heads 2 --sit-patch 16 "
             "--projector-dim 16 --encoder-depth 1 --vae-ckpt '%s' --latents-stats '%s' --disc-ckpt '%s' --disc-ndf 4 "
             "--disc-layers 1 --enc-type dinov2-vit-b --enc-ckpt '%s' --enc-heads 2 --output-dir '%s' --exp-name r",
             REL "pt_vae.pt", REL "pt_vae-latents-stats.pt", REL "pt_vae-discriminator-ckpt.pt",
             REL "dinov2_tiny_pretrain.pth", tmp_dir);
    int rc = repae(args);
    CHECK(rc == 0 && access(tmp("r/checkpoints/0000001.safetensors"), R_OK) == 0, "train on the release files: %d %s",
          rc, err_buf);
    snprintf(args, sizeof args, "cache-latents --vae-ckpt '%s' --output '%s' --channels 3 --max-images 8 --batch-size 4",
             REL "pt_vae.pt", tmp("lat.cache"));
    rc = repae(args);
    CHECK(rc == 0, "cache-latents with the release VAE: %d %s", rc, err_buf);
    snprintf(args, sizeof args,
             "train-ldm --latents '%s' --channels 3 --vae-ckpt '%s' --latents-stats '%s' --sit-depth 1 --sit-hidden 16 "
             "--sit-heads 2 --sit-patch 16 --projector-dim 16 --encoder-depth 1 --enc-ckpt '%s' --enc-heads 2 "
             "--batch-size 2 --max-train-steps 1 --checkpointing-steps 1 --sampling-steps 1 --preview-images 2 "
             "--output-dir '%s' --exp-name l",
             tmp("lat.cache"), REL "pt_vae.pt", REL "pt_vae-latents-stats.pt", REL "dinov2_tiny_reg4_pretrain.pth",
             tmp_dir);
    rc = repae(args);
    CHECK(rc == 0, "train-ldm with the release VAE, statistics and a reg4 hub encoder: %d %s", rc, err_buf);
    snprintf(args, sizeof args, "reconstruct --vae-ckpt '%s' --channels 3 --max-images 4 --batch-size 4",
             REL "pt_vae.pt");
    rc = repae(args);
    CHECK(rc == 0, "reconstruct with the release VAE: %d %s", rc, err_buf);
}

static void test_pytorch_fid_inception_loads_directly(void)
{
    const char *path = REL "pt_inception_fid_layout.pth";
    safetensors *st = weights_open(path);
    inception m;
    inception_build(&m, 16);
    float *p = param_alloc(&m.table);
    inception_load(&m, p, st);
    int bad = 0, nbt = 0;
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        const st_tensor *t = safetensors_find(st, e->name);
        float *v = xmalloc(e->numel * sizeof(float));
        if (t && (size_t)t->numel == e->numel)
            safetensors_read_f32(st, t, v);
        bad += !t || (size_t)t->numel != e->numel || memcmp(v, p + e->offset, e->numel * sizeof(float)) != 0;
        free(v);
    }
    for (int i = 0; i < st->n_tensors; i++)
        nbt += strstr(st->tensors[i].name, "num_batches_tracked") != NULL;
    CHECK(bad == 0 && m.table.n == 94 * 5 + 1 && nbt == 94 && safetensors_find(st, "fc.bias") &&
              st->n_tensors == m.table.n + 95,
          "pytorch-fid layout: %d of %d tensors differ (file: %d tensors, %d counters)", bad, m.table.n, st->n_tensors,
          nbt);
    free(p);
    inception_free(&m);
    safetensors_close(st);
    /* The path `repae eval --weights` takes. */
    feature_net f;
    feature_net_open_inception(&f, path, 1);
    CHECK(f.dim == 128 && !strcmp(f.name, "inception/16"), "eval's Inception from the .pth: dim %d, %s", f.dim, f.name);
    feature_net_free(&f);
}

/* Files that are not the FID Inception. */
static void load_inception_file(void *path)
{
    safetensors *st = weights_open(path);
    inception m;
    inception_build(&m, 1);
    float *p = param_alloc(&m.table);
    inception_load(&m, p, st);
}

static void test_other_inceptions_refused(void)
{
    st_writer *w = st_writer_new();
    float x[4] = {0};
    st_writer_add_f32(w, "Conv2d_1a_3x3.conv.weight", 1, (int64_t[]){1}, x);
    st_writer_add_f32(w, "AuxLogits.fc.weight", 1, (int64_t[]){4}, x);
    const char *aux = tmp("aux.safetensors");
    st_writer_save(w, aux);
    st_writer_free(w);
    expect_die("AuxLogits", load_inception_file, (void *)aux, "unexpected tensor 'AuxLogits.fc.weight'");
    w = st_writer_new();
    float *fc = alloc_zeros(1000);
    st_writer_add_f32(w, "fc.weight", 2, (int64_t[]){1000, 1}, fc);
    const char *tv = tmp("tv.safetensors");
    st_writer_save(w, tv);
    st_writer_free(w);
    free(fc);
    expect_die("1000 classes", load_inception_file, (void *)tv, "fc.weight has 1000 classes");
}

typedef struct lp_ctx {
    const char *heads, *vgg;
} lp_ctx;

static void load_lpips64(void *p)
{
    const lp_ctx *c = p;
    lpips l;
    lpips_build(&l, 64);
    float *w = param_alloc(&l.table);
    lpips_load_files(&l, w, c->heads, c->vgg);
}

static void test_lpips_heads_plus_torchvision_vgg(void)
{
    const char *heads = REL "lpips_vgg_heads_div64.pth", *vggp = REL "vgg16_div64.pth";
    lpips l;
    lpips_build(&l, 64);
    float *w = param_alloc(&l.table);
    lpips_load_files(&l, w, heads, vggp);
    safetensors *h = weights_open(heads), *v = weights_open(vggp);
    /* LPIPS's slices keep torchvision's feature indices. */
    static const int idx[13] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
    static const int slice[13] = {1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5};
    int bad = 0, n = 0;
    for (int i = 0; i < l.table.n; i++) {
        const param_entry *e = &l.table.entries[i];
        char src[160] = "";
        const safetensors *st = h;
        int s, k;
        char kind[8];
        if (sscanf(e->name, "net.slice%d.%d.%7s", &s, &k, kind) == 3) {
            for (int j = 0; j < 13; j++)
                if (idx[j] == k && slice[j] == s)
                    snprintf(src, sizeof src, "features.%d.%s", k, kind);
            st = v;
        } else
            snprintf(src, sizeof src, "%s", e->name);
        const st_tensor *t = safetensors_find(st, src);
        float *x = xmalloc(e->numel * sizeof(float));
        if (t && (size_t)t->numel == e->numel)
            safetensors_read_f32(st, t, x);
        bad += !t || (size_t)t->numel != e->numel || memcmp(x, w + e->offset, e->numel * sizeof(float)) != 0;
        n++;
        free(x);
    }
    CHECK(bad == 0 && n == 13 * 2 + 5, "LPIPS from vgg.pth + vgg16: %d of %d tensors differ", bad, n);
    safetensors_close(h), safetensors_close(v);
    free(w);
    lpips_free(&l);
    lp_ctx c = {heads, NULL};
    expect_die("heads only", load_lpips64, &c, "--lpips-vgg");
    c = (lp_ctx){vggp, NULL};
    expect_die("VGG as heads", load_lpips64, &c, "not LPIPS weights");
    c = (lp_ctx){heads, heads};
    expect_die("heads as VGG", load_lpips64, &c, "not torchvision's VGG16");
    /* The train flags reach the loader: full width wanted, tiny files given. */
    char args[2000];
    snprintf(args, sizeof args,
             "train --max-images 8 --batch-size 2 --max-train-steps 1 --sit-depth 1 --sit-hidden 16 --sit-heads 2 "
             "--vae-ch 8 --vae-norm-groups 4 --projector-dim 16 --encoder-depth 1 --disc-ndf 4 --channels 3 "
             "--output-dir '%s' --exp-name lp --lpips-ckpt '%s'", tmp_dir, heads);
    int rc = repae(args);
    CHECK(rc == 1 && strstr(err_buf, "--lpips-vgg") && strstr(err_buf, "lpips_vgg_heads_div64.pth"),
          "train --lpips-ckpt heads-only: %d %s", rc, err_buf);
    size_t len = strlen(args);
    snprintf(args + len, sizeof args - len, " --lpips-vgg '%s'", vggp);
    rc = repae(args);
    CHECK(rc == 1 && strstr(err_buf, "lin0.model.1.weight") && strstr(err_buf, "[1, 64, 1, 1]"),
          "train --lpips-vgg of the wrong width: %d %s", rc, err_buf);
}

int main(void)
{
    const char *b = getenv("BUILD");
    snprintf(repae_bin, sizeof repae_bin, "%s/repae", b && *b ? b : "build");
    if (access(repae_bin, X_OK) != 0) {
        fprintf(stderr, "%s not found: build it and run from the repository root\n", repae_bin);
        return 1;
    }
    strcpy(tmp_dir, "/tmp/repae-test-release-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_release_run_folder_samples_with_ckpt_only);
    RUN(test_release_args_json_is_read);
    RUN(test_ldm_only_checkpoint);
    RUN(test_dinov2_hub_files);
    RUN(test_release_discriminator_file);
    RUN(test_release_vae_files_train_and_friends);
    RUN(test_pytorch_fid_inception_loads_directly);
    RUN(test_other_inceptions_refused);
    RUN(test_lpips_heads_plus_torchvision_vgg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_summary();
}
