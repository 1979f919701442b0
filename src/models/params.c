#include "models/params.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/finite_check.h"
#include "core/rng.h"

size_t param_add_ex(param_table *t, const char *name, param_init_rule init, float init_arg, param_kind kind, int ndim,
                    const int64_t *shape)
{
    if (ndim < 0 || ndim > PARAM_MAX_DIMS)
        die("internal: parameter '%s' has %d dimensions", name, ndim);
    if (strlen(name) >= PARAM_NAME_MAX)
        die("internal: parameter name '%s' is too long", name);
    if (param_find(t, name))
        die("internal: parameter '%s' registered twice", name);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->entries = xrealloc(t->entries, (size_t)t->cap * sizeof(param_entry));
    }
    param_entry *e = &t->entries[t->n++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->init = init;
    e->init_arg = init_arg;
    e->kind = kind;
    /* Keep each tensor 16-float aligned so kernels can assume aligned rows. */
    e->offset = t->total;
    t->total += (e->numel + 15) / 16 * 16;
    return e->offset;
}

size_t param_add(param_table *t, const char *name, param_init_rule init, int ndim, const int64_t *shape)
{
    float arg = init == INIT_NORMAL ? 0.02f : 0.0f;
    return param_add_ex(t, name, init, arg, PARAM_TRAINABLE, ndim, shape);
}

const char *param_name(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, PARAM_NAME_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

void param_table_free(param_table *t)
{
    free(t->entries);
    *t = (param_table){0};
}

const param_entry *param_find(const param_table *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    return NULL;
}

size_t param_count(const param_table *t, param_kind kind)
{
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->entries[i].kind == kind)
            n += t->entries[i].numel;
    return n;
}

size_t param_count_all(const param_table *t)
{
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->entries[i].numel;
    return n;
}

float *param_alloc(const param_table *t)
{
    size_t bytes = arena_round((t->total ? t->total : 1) * sizeof(float));
    float *p = aligned_alloc(ARENA_ALIGN, bytes);
    if (!p)
        die("out of memory allocating %.1f MiB of parameters", bytes / 1048576.0);
    memset(p, 0, bytes);
    return p;
}

static size_t fan_in_of(const param_entry *e)
{
    size_t f = 1;
    for (int i = 1; i < e->ndim; i++)
        f *= (size_t)e->shape[i];
    return f;
}

void param_init(const param_table *t, float *params, uint64_t seed)
{
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        float *p = params + e->offset;
        /* One stream per tensor: adding a tensor does not change the others. */
        rng r = rng_new(seed, 0x9a7a0000u + (uint64_t)i);
        size_t fan_in = fan_in_of(e), fan_out = e->ndim ? (size_t)e->shape[0] : 1;
        /* For conv weights [out, in, kh, kw] torch's fan_out is out*kh*kw. */
        if (e->ndim > 2)
            fan_out *= fan_in / (size_t)e->shape[1];
        switch (e->init) {
        case INIT_ZERO: memset(p, 0, e->numel * sizeof(float)); break;
        case INIT_ONE: for (size_t k = 0; k < e->numel; k++) p[k] = 1.0f; break;
        case INIT_CONSTANT: for (size_t k = 0; k < e->numel; k++) p[k] = e->init_arg; break;
        case INIT_XAVIER_UNIFORM: {
            double a = sqrt(6.0 / (double)(fan_in + fan_out));
            for (size_t k = 0; k < e->numel; k++) p[k] = (float)((2.0 * rng_uniform(&r) - 1.0) * a);
            break;
        }
        case INIT_NORMAL: for (size_t k = 0; k < e->numel; k++) p[k] = e->init_arg * rng_normal(&r); break;
        case INIT_NORMAL_ONE: for (size_t k = 0; k < e->numel; k++) p[k] = 1.0f + e->init_arg * rng_normal(&r); break;
        case INIT_TORCH_DEFAULT: {
            double a = 1.0 / sqrt((double)fan_in);
            for (size_t k = 0; k < e->numel; k++) p[k] = (float)((2.0 * rng_uniform(&r) - 1.0) * a);
            break;
        }
        case INIT_TORCH_BIAS: {
            double a = e->init_arg > 0 ? 1.0 / sqrt((double)e->init_arg) : 0.0;
            for (size_t k = 0; k < e->numel; k++) p[k] = (float)((2.0 * rng_uniform(&r) - 1.0) * a);
            break;
        }
        case INIT_EXTERNAL: break;
        }
    }
}

/* PyTorch's BatchNorm buffer name: a state-dict convention fixed by torch,
 * so the suffix identifies every BN running variance we load. */
static bool is_running_var(const char *name)
{
    size_t n = strlen(name), s = strlen("running_var");
    return n >= s && !strcmp(name + n - s, "running_var") && (n == s || name[n - s - 1] == '.');
}

/* One pass over what was just loaded: NaN/Inf anywhere (a diverged run, a
 * corrupt file) or a negative BatchNorm variance would only show up much
 * later as NaN losses or black images, far from the file that caused them. */
static void check_loaded(const param_entry *e, const float *p, const char *path, const char *key)
{
    size_t bad = finite_check_f32(p, e->numel);
    if (bad < e->numel)
        die("'%s': tensor '%s' holds %g at index %zu: the weights are not finite (a diverged run or a corrupt "
            "file)", path, key, p[bad], bad);
    if (is_running_var(e->name))
        for (size_t k = 0; k < e->numel; k++)
            if (p[k] < 0)
                die("'%s': tensor '%s' holds %g at index %zu: a BatchNorm running variance cannot be negative", path,
                    key, p[k], k);
}

void param_load(const param_table *t, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    char key[PARAM_NAME_MAX + 64];
    size_t plen = strlen(prefix);
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        const st_tensor *s = safetensors_find(st, key);
        if (!s)
            die("'%s': missing tensor '%s' (expected shape %s); is this the right model/configuration?", st->path, key,
                st_shape_str(e->ndim, e->shape, (char[160]){0}, 160));
        safetensors_load_f32(st, key, e->ndim, e->shape, params + e->offset);
        check_loaded(e, params + e->offset, st->path, key);
    }
    int extra = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        if (strncmp(name, prefix, plen) != 0)
            continue;
        if (param_find(t, name + plen))
            continue;
        if (mode == PARAM_IGNORE_EXTRA)
            continue;
        if (mode == PARAM_STRICT)
            die("'%s': unexpected tensor '%s' (shape %s) that this model does not have; wrong configuration?",
                st->path, name, st_shape_str(st->tensors[i].ndim, st->tensors[i].shape, (char[160]){0}, 160));
        if (extra++ < 5)
            warn("'%s': ignoring extra tensor '%s'", st->path, name);
    }
    if (extra > 5)
        warn("'%s': ignored %d extra tensors in all", st->path, extra);
}

void param_save(const param_table *t, const float *params, st_writer *w, const char *prefix)
{
    char key[PARAM_NAME_MAX + 64];
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        st_writer_add_f32(w, key, e->ndim, e->shape, params + e->offset);
    }
}
