#define _DEFAULT_SOURCE
#include "core/omp_spin.h"

#include <stdlib.h>
#include <unistd.h>

void omp_spin_default(char **argv)
{
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY"))
        return;
    if (setenv("GOMP_SPINCOUNT", REPAE_GOMP_SPINCOUNT, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* Still here: no /proc or exec failed; run with libgomp's default. */
}
