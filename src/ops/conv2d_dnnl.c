#include "ops/conv2d_dnnl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"
#include "core/thread_scratch.h"

/* Shapes whose primitives are kept: a model's layers at a batch size or
 * two; past it the oldest entry is dropped and made again when needed.
 * Dropping does not wait for other threads: threads running convolutions
 * at once must not cycle through more shapes than this together (our only
 * such callers run one model's few layers per thread). */
#define DNNL_CACHE_SIZE 64
/* Buffers carved from a thread's scratch buffer start on a cache line. */
#define DNNL_ALIGN 64

enum { PORT_IN, PORT_OUT, PORT_ADD }; /* read; overwritten; added to ours */

/* A compiled oneDNN primitive and the scratch memory it asks for (user
 * scratchpad mode: carved from the calling thread's buffer, so that calls
 * from several threads at once never share oneDNN's own scratch). */
typedef struct op {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t scratch_md;
    size_t scratch_bytes;
} op;

/* One tensor argument of a pass: our NCHW/OIHW memory, and where oneDNN's
 * layout differs (or the result must be added), a buffer of its own with a
 * reorder into it (inputs) or out of it (outputs). */
typedef struct port {
    int arg, dir;
    dnnl_memory_desc_t user_md, prim_md;
    int own;      /* has its own buffer */
    size_t bytes; /* that buffer, rounded up to DNNL_ALIGN */
    op reorder;   /* compiled with the pass */
} port;

typedef struct pass {
    dnnl_primitive_desc_t pd;
    op conv;
    int n;
    port p[4];
    size_t bytes; /* scratch: the ports' buffers and the largest scratchpad */
} pass;

enum { ENTRY_EMPTY = 0, ENTRY_READY, ENTRY_DECLINED };

typedef struct entry {
    int state;
    conv2d_shape key;
    int threads; /* the OpenMP threads it was made for (see run_threads) */
    pass fwd[2]; /* without, with bias */
    pass bwd_data, bwd_weights;
} entry;

static dnnl_engine_t engine;
static _Thread_local dnnl_stream_t stream; /* one per thread: a stream is not shared between threads */
/* Each thread's scratch buffer, grown to the largest pass it has run.  Not
 * the caller's workspace: oneDNN's scratchpad sizes are its own business and
 * need not grow with the batch, which conv2d_workspace_floats promises. */
static _Thread_local thread_scratch scratch_buf;
static entry cache[DNNL_CACHE_SIZE];
static int cache_next;

static void ok(dnnl_status_t st, const char *what)
{
    if (st != dnnl_success)
        die("conv2d (oneDNN): %s failed with status %d", what, (int)st);
}

static int same_shape(const conv2d_shape *a, const conv2d_shape *b)
{
    return a->B == b->B && a->C_in == b->C_in && a->H == b->H && a->W == b->W && a->C_out == b->C_out &&
           a->kh == b->kh && a->kw == b->kw && a->stride == b->stride && a->pad_top == b->pad_top &&
           a->pad_left == b->pad_left && a->pad_bottom == b->pad_bottom && a->pad_right == b->pad_right;
}

static size_t round_up(size_t n) { return (n + DNNL_ALIGN - 1) / DNNL_ALIGN * DNNL_ALIGN; }

static dnnl_primitive_attr_t user_scratchpad_attr(void)
{
    dnnl_primitive_attr_t attr;
    ok(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
    ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
    return attr;
}

/* Compiles the primitive of pd (which it then owns). */
static void op_make(op *o, dnnl_primitive_desc_t pd)
{
    ok(dnnl_primitive_create(&o->prim, pd), "primitive_create");
    o->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    o->scratch_bytes = round_up(dnnl_memory_desc_get_size(&o->scratch_md));
}

static void port_init(pass *ps, int arg, int dir, const dnnl_memory_desc_t *user_md, dnnl_query_t what, int index)
{
    port *p = &ps->p[ps->n++];
    p->arg = arg;
    p->dir = dir;
    p->user_md = *user_md;
    p->prim_md = *dnnl_primitive_desc_query_md(ps->pd, what, index);
    p->own = dir == PORT_ADD || !dnnl_memory_desc_equal(user_md, &p->prim_md);
    p->bytes = p->own ? round_up(dnnl_memory_desc_get_size(&p->prim_md)) : 0;
}

/* The pass's primitive and its ports' reorders (an added output's with a
 * sum post-op: ours = oneDNN's + ours); the scratch bytes it needs. */
static void pass_compile(pass *ps)
{
    op_make(&ps->conv, ps->pd);
    size_t buffers = 0, scratch = ps->conv.scratch_bytes;
    for (int i = 0; i < ps->n; i++) {
        port *p = &ps->p[i];
        buffers += p->bytes;
        if (!p->own)
            continue;
        dnnl_primitive_attr_t attr = user_scratchpad_attr();
        dnnl_post_ops_t ops = NULL;
        if (p->dir == PORT_ADD) {
            ok(dnnl_post_ops_create(&ops), "post_ops_create");
            ok(dnnl_post_ops_append_sum(ops, 1.0f), "post_ops_append_sum");
            ok(dnnl_primitive_attr_set_post_ops(attr, ops), "primitive_attr_set_post_ops");
        }
        dnnl_primitive_desc_t rpd;
        if (p->dir == PORT_IN)
            ok(dnnl_reorder_primitive_desc_create(&rpd, &p->user_md, engine, &p->prim_md, engine, attr), "reorder");
        else
            ok(dnnl_reorder_primitive_desc_create(&rpd, &p->prim_md, engine, &p->user_md, engine, attr), "reorder");
        op_make(&p->reorder, rpd);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_primitive_attr_destroy(attr);
        if (ops)
            dnnl_post_ops_destroy(ops);
        if (p->reorder.scratch_bytes > scratch)
            scratch = p->reorder.scratch_bytes;
    }
    ps->bytes = buffers + scratch;
}

static void pass_destroy(pass *ps)
{
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].reorder.prim)
            dnnl_primitive_destroy(ps->p[i].reorder.prim);
    if (ps->conv.prim)
        dnnl_primitive_destroy(ps->conv.prim);
    if (ps->pd)
        dnnl_primitive_desc_destroy(ps->pd);
    memset(ps, 0, sizeof *ps);
}

static void entry_destroy(entry *e)
{
    pass_destroy(&e->fwd[0]);
    pass_destroy(&e->fwd[1]);
    pass_destroy(&e->bwd_data);
    pass_destroy(&e->bwd_weights);
    e->state = ENTRY_EMPTY;
}

static void set_dims(dnnl_dims_t d, int64_t a, int64_t b, int64_t c, int64_t e)
{
    d[0] = a, d[1] = b, d[2] = c, d[3] = e;
}

/* The passes with oneDNN's preferred layouts, all compiled here (under the
 * cache's lock, so no thread runs a half-made pass); 0 when oneDNN declines
 * the shape (then conv2d.c keeps its own kernels). */
static int entry_make(entry *e, const conv2d_shape *s)
{
    dnnl_dims_t xd, wd, yd, bd = {s->C_out}, strides = {s->stride, s->stride};
    dnnl_dims_t pad_l = {s->pad_top, s->pad_left}, pad_r = {s->pad_bottom, s->pad_right};
    set_dims(xd, s->B, s->C_in, s->H, s->W);
    set_dims(wd, s->C_out, s->C_in, s->kh, s->kw);
    set_dims(yd, s->B, s->C_out, conv2d_out_h(s), conv2d_out_w(s));
    dnnl_memory_desc_t x_user, w_user, y_user, b_user, x_any, w_any, y_any;
    if (dnnl_memory_desc_init_by_tag(&x_user, 4, xd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_user, 4, yd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&b_user, 1, bd, dnnl_f32, dnnl_x) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&x_any, 4, xd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, dnnl_format_tag_any) != dnnl_success)
        return 0;
    dnnl_primitive_attr_t attr = user_scratchpad_attr();
    dnnl_convolution_desc_t d;
    int made = 0;
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        pass *ps = &e->fwd[with_bias];
        if (dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, &x_any, &w_any,
                                               with_bias ? &b_user : NULL, &y_any, strides, pad_l,
                                               pad_r) != dnnl_success ||
            dnnl_primitive_desc_create(&ps->pd, &d, attr, engine, NULL) != dnnl_success)
            goto done;
        port_init(ps, DNNL_ARG_SRC, PORT_IN, &x_user, dnnl_query_src_md, 0);
        port_init(ps, DNNL_ARG_WEIGHTS, PORT_IN, &w_user, dnnl_query_weights_md, 0);
        if (with_bias)
            port_init(ps, DNNL_ARG_BIAS, PORT_IN, &b_user, dnnl_query_weights_md, 1);
        port_init(ps, DNNL_ARG_DST, PORT_OUT, &y_user, dnnl_query_dst_md, 0);
    }
    pass *bdp = &e->bwd_data, *bwp = &e->bwd_weights;
    if (dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &x_any, &w_any, &y_any, strides, pad_l,
                                                 pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&bdp->pd, &d, attr, engine, e->fwd[0].pd) != dnnl_success)
        goto done;
    port_init(bdp, DNNL_ARG_DIFF_DST, PORT_IN, &y_user, dnnl_query_diff_dst_md, 0);
    port_init(bdp, DNNL_ARG_WEIGHTS, PORT_IN, &w_user, dnnl_query_weights_md, 0);
    port_init(bdp, DNNL_ARG_DIFF_SRC, PORT_ADD, &x_user, dnnl_query_diff_src_md, 0);
    if (dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &x_any, &w_any, NULL, &y_any,
                                                    strides, pad_l, pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&bwp->pd, &d, attr, engine, e->fwd[0].pd) != dnnl_success)
        goto done;
    port_init(bwp, DNNL_ARG_SRC, PORT_IN, &x_user, dnnl_query_src_md, 0);
    port_init(bwp, DNNL_ARG_DIFF_DST, PORT_IN, &y_user, dnnl_query_diff_dst_md, 0);
    port_init(bwp, DNNL_ARG_DIFF_WEIGHTS, PORT_ADD, &w_user, dnnl_query_diff_weights_md, 0);
    pass_compile(&e->fwd[0]);
    pass_compile(&e->fwd[1]);
    pass_compile(bdp);
    pass_compile(bwp);
    made = 1;
done:
    dnnl_primitive_attr_destroy(attr);
    return made;
}

/* The threads a primitive runs on: oneDNN reads omp_get_max_threads() when
 * it compiles one and then waits at its own barriers for that many.  Inside
 * one of our parallel regions a nested region gets one thread, while
 * omp_get_max_threads() still answers the outer count, so a primitive made
 * for two threads hangs there.  Calls from inside a parallel region
 * therefore set this thread's count to 1 (enter_threads) and use primitives
 * made for one thread; the table keeps them apart. */
static int run_threads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

static int enter_threads(void)
{
    int saved = omp_get_max_threads();
    if (omp_in_parallel())
        omp_set_num_threads(1);
    return saved;
}

static void leave_threads(int saved)
{
    if (omp_in_parallel())
        omp_set_num_threads(saved);
}

/* The entry of this shape for the calling context's thread count, made on
 * first use; NULL when oneDNN declines the shape. */
static entry *lookup(const conv2d_shape *s)
{
    entry *found = NULL;
    const int threads = run_threads();
#pragma omp critical(conv2d_dnnl_cache)
    {
        if (!engine)
            ok(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine_create");
        for (int i = 0; i < DNNL_CACHE_SIZE && !found; i++)
            if (cache[i].state != ENTRY_EMPTY && cache[i].threads == threads && same_shape(&cache[i].key, s))
                found = &cache[i];
        if (!found) {
            found = &cache[cache_next];
            cache_next = (cache_next + 1) % DNNL_CACHE_SIZE;
            entry_destroy(found);
            int saved = enter_threads();
            int made = entry_make(found, s);
            leave_threads(saved);
            if (!made)
                entry_destroy(found);
            found->key = *s;
            found->threads = threads;
            found->state = made ? ENTRY_READY : ENTRY_DECLINED;
        }
    }
    return found->state == ENTRY_READY ? found : NULL;
}

static dnnl_memory_t memory_at(const dnnl_memory_desc_t *md, void *ptr)
{
    dnnl_memory_t m;
    ok(dnnl_memory_create(&m, md, engine, ptr), "memory_create");
    return m;
}

/* Runs op o with its n arguments (and its scratchpad at `scratch`). */
static void op_run(const op *o, dnnl_exec_arg_t *args, int n, char *scratch)
{
    dnnl_memory_t sm = NULL;
    if (o->scratch_bytes) {
        sm = memory_at(&o->scratch_md, scratch);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sm};
    }
    ok(dnnl_primitive_execute(o->prim, stream, n, args), "primitive_execute");
    if (sm)
        dnnl_memory_destroy(sm);
}

static char *pass_scratch(size_t bytes)
{
    return thread_scratch_reserve(&scratch_buf, bytes, DNNL_ALIGN, "oneDNN's convolution scratch");
}

static void destroy_stream(void *unused)
{
    (void)unused;
    dnnl_stream_destroy(stream);
    stream = NULL;
}

/* Runs a pass on our tensors ptr[i] (in port order), its buffers carved
 * from the thread's scratch.  The memory objects are made per call, so that
 * several threads may run the same pass at once. */
static void pass_run(const pass *ps, void *const ptr[])
{
    if (!stream) {
        ok(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream_create");
        thread_scratch_at_exit(destroy_stream, NULL);
    }
    char *base = pass_scratch(ps->bytes > 0 ? ps->bytes : 1);
    dnnl_memory_t user[4], prim[4];
    dnnl_exec_arg_t args[5];
    for (int i = 0; i < ps->n; i++) {
        const port *p = &ps->p[i];
        user[i] = memory_at(&p->user_md, ptr[i]);
        prim[i] = NULL;
        if (p->own) {
            prim[i] = memory_at(&p->prim_md, base);
            base += p->bytes;
        }
        args[i] = (dnnl_exec_arg_t){p->arg, p->own ? prim[i] : user[i]};
    }
    char *scratch = base; /* shared by the pass's primitives, which run one after the other */
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].own && ps->p[i].dir == PORT_IN) {
            dnnl_exec_arg_t r[3] = {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, prim[i]}};
            op_run(&ps->p[i].reorder, r, 2, scratch);
        }
    op_run(&ps->conv, args, ps->n, scratch);
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].own && ps->p[i].dir != PORT_IN) {
            dnnl_exec_arg_t r[3] = {{DNNL_ARG_FROM, prim[i]}, {DNNL_ARG_TO, user[i]}};
            op_run(&ps->p[i].reorder, r, 2, scratch);
        }
    ok(dnnl_stream_wait(stream), "stream_wait");
    for (int i = 0; i < ps->n; i++) {
        dnnl_memory_destroy(user[i]);
        if (prim[i])
            dnnl_memory_destroy(prim[i]);
    }
}

int conv2d_dnnl_applies(const conv2d_shape *s)
{
    return conv2d_out_h(s) > 0 && conv2d_out_w(s) > 0 && s->B > 0 && lookup(s) != NULL;
}


int conv2d_dnnl_forward(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s)
{
    entry *e = lookup(s);
    if (!e)
        return 0;
    int saved = enter_threads();
    if (bias) {
        void *ptr[4] = {(void *)x, (void *)weight, (void *)bias, out};
        pass_run(&e->fwd[1], ptr);
    } else {
        void *ptr[3] = {(void *)x, (void *)weight, out};
        pass_run(&e->fwd[0], ptr);
    }
    leave_threads(saved);
    return 1;
}

int conv2d_dnnl_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                         const conv2d_shape *s)
{
    entry *e = lookup(s);
    if (!e)
        return 0;
    int saved = enter_threads();
    if (dx) {
        void *ptr[3] = {(void *)dout, (void *)weight, dx};
        pass_run(&e->bwd_data, ptr);
    }
    if (dweight) {
        void *ptr[3] = {(void *)x, (void *)dout, dweight};
        pass_run(&e->bwd_weights, ptr);
    }
    leave_threads(saved);
    return 1;
}
