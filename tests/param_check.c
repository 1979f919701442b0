#include "param_check.h"

#include <stdio.h>
#include <stdlib.h>

#include "test.h"

int check_params_against_fixture(const safetensors *st, const param_table *t, const float *values, const char *prefix,
                                 int kind_filter, double atol, double rtol)
{
    int failed = 0;
    char key[PARAM_NAME_MAX + 64];
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        if (kind_filter >= 0 && (int)e->kind != kind_filter)
            continue;
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        const st_tensor *s = safetensors_find(st, key);
        if (!s) {
            CHECK(0, "fixture '%s' has no tensor '%s'", st->path, key);
            failed++;
            continue;
        }
        if ((size_t)s->numel != e->numel) {
            CHECK(0, "'%s': %zu elements in the table, %lld in the fixture", key, e->numel, (long long)s->numel);
            failed++;
            continue;
        }
        float *want = malloc(e->numel * sizeof(float) + 1);
        safetensors_read_f32(st, s, want);
        failed += !check_close(key, values + e->offset, want, e->numel, atol, rtol);
        free(want);
    }
    return failed;
}
