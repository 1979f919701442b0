#include "param_check.h"

#include <math.h>
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

void check_params_after_adam(const safetensors *st, const param_table *tab, const float *values, const char *prefix,
                             double atol, double max_motion)
{
    size_t total = 0, outliers = 0;
    double worst = 0;
    const char *worst_name = "";
    char key[PARAM_NAME_MAX + 64];
    for (int i = 0; i < tab->n; i++) {
        const param_entry *e = &tab->entries[i];
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        const st_tensor *t = safetensors_find(st, key);
        if (!t || (size_t)t->numel != e->numel) {
            CHECK(0, "fixture lacks '%s' or its size differs", key);
            continue;
        }
        float *want = fixture_f32(st, key, NULL);
        for (size_t k = 0; k < e->numel; k++) {
            double err = fabs((double)values[e->offset + k] - want[k]);
            if (err > atol)
                outliers++;
            if (err > worst)
                worst = err, worst_name = e->name;
        }
        total += e->numel;
        free(want);
    }
    CHECK(worst <= max_motion, "%s: %s differs from torch by %.3g (more than the %.3g AdamW can move it)", prefix,
          worst_name, worst, max_motion);
    CHECK(outliers * 200 <= total, "%s: %zu of %zu elements differ from torch by more than %.1g", prefix, outliers,
          total, atol);
    if (getenv("TEST_VERBOSE"))
        printf("       %-28s %zu of %zu elements beyond %.1g, worst %.3g (%s)\n", prefix, outliers, total, atol,
               worst, worst_name);
}

float *golden_step_tensor(const safetensors *st, int step, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "step%d.%s", step, what);
    return fixture_f32(st, name, NULL);
}
