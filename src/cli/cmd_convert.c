/* repae convert — write the tensors of any weights file (a PyTorch .pt/.pth,
 * zip or legacy, or a safetensors file) as a safetensors file, optionally
 * only those under one key prefix (stripped), keeping dtypes and metadata.
 * The PyTorch file is read natively (io/torch_file.h): no Python, and its
 * pickle can run nothing. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/options.h"
#include "io/safetensors.h"
#include "io/weights_file.h"

static const char *usage =
    "usage: repae convert IN OUT.safetensors [--prefix P]\n"
    "\n"
    "IN: a PyTorch .pt/.pth (torch.save, zip or legacy format) or a safetensors file,\n"
    "recognised by content.  Nested dicts become dotted names (a train_repae.py\n"
    "checkpoint gives model.*, ema.*, vae.*, discriminator.*, opt.*); non-tensor\n"
    "values (steps, the pickled argparse.Namespace `args` as JSON) become metadata.\n"
    "--prefix ema. keeps only the tensors under ema. and writes them without it\n"
    "(the official key names: a file that --vae-ckpt, --weights, ... take directly).\n"
    "Dtypes are kept (F16/BF16 stay half precision).";

/* The prefix as a key group: "ema" and "ema." both mean "ema.". */
static const char *resolve_prefix(const safetensors *st, const char *prefix, char *buf, size_t n)
{
    size_t len = strlen(prefix);
    snprintf(buf, n, "%s%s", prefix, len && prefix[len - 1] == '.' ? "" : ".");
    len = strlen(buf);
    for (int i = 0; i < st->n_tensors; i++)
        if (!strncmp(st->tensors[i].name, buf, len) && st->tensors[i].name[len])
            return buf;
    char groups[512] = "";
    for (int i = 0; i < st->n_tensors && strlen(groups) < 400; i++) {
        const char *dot = strchr(st->tensors[i].name, '.');
        char g[128];
        snprintf(g, sizeof g, "%.*s.", dot ? (int)(dot - st->tensors[i].name) : 0, st->tensors[i].name);
        if (dot && !strstr(groups, g))
            snprintf(groups + strlen(groups), sizeof groups - strlen(groups), " %s", g);
    }
    die("convert --prefix '%s': no tensor of '%s' starts with it (prefixes there:%s)", prefix, st->path,
        groups[0] ? groups : " none");
}

int cmd_convert(int argc, char **argv)
{
    const char *prefix = NULL;
    const option_spec opts[] = {
        {"--prefix", OPT_STRING, &prefix, NULL, "only tensors under this key prefix, written without it"},
    };
    int rest = options_parse("convert", usage, opts, N_OPTS(opts), argc, argv);
    if (rest != 3)
        die("convert: expected IN and OUT (got %d file arguments); see 'repae convert --help'", rest - 1);
    const char *in = argv[1], *out = argv[2];
    safetensors *st = weights_open(in);
    char pbuf[512];
    const char *p = prefix ? resolve_prefix(st, prefix, pbuf, sizeof pbuf) : "";
    size_t plen = strlen(p);
    st_writer *w = st_writer_new();
    int n = 0;
    long long elems = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (strncmp(t->name, p, plen) != 0 || !t->name[plen])
            continue;
        st_writer_add(w, t->name + plen, t->dtype, t->ndim, t->shape, safetensors_tensor_bytes(st, t));
        n++;
        elems += t->numel;
    }
    for (int i = 0; i < st->n_meta; i++)
        st_writer_set_metadata(w, st->meta[i].key, st->meta[i].value);
    st_writer_set_metadata(w, "converted_from", st->format);
    st_writer_save(w, out);
    st_writer_free(w);
    printf("%s: %d tensors (%lld elements)%s%s written to %s\n", in, n, elems, plen ? " under " : "", p, out);
    safetensors_close(st);
    return 0;
}
