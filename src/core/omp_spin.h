/* omp_spin.h — how long idle OpenMP threads spin before they sleep.
 *
 * libgomp's default (about 300,000 spins when neither OMP_WAIT_POLICY nor
 * GOMP_SPINCOUNT is set) made our two-thread training steps bimodal on a
 * 2-vCPU VM: in most processes every part ran ~1.4× slower (BENCHMARKS.md,
 * "Noise"), and under contention up to 13× slower.  GOMP_SPINCOUNT=10000
 * gave the fast state in every process measured, and sleeps almost at once
 * when the other core is busy.  libgomp reads the variable when it is
 * loaded, before main(), so the only way to set it from the program is to
 * set it and run the program again:
 *
 *   int main(int argc, char **argv) { omp_spin_default(argv); ... }
 *
 * does that (execv of /proc/self/exe) once, unless GOMP_SPINCOUNT or
 * OMP_WAIT_POLICY is already set: the user's choice always wins.  If the
 * re-run is impossible the program just goes on with libgomp's default.
 */
#ifndef REPAE_OMP_SPIN_H
#define REPAE_OMP_SPIN_H

#define REPAE_GOMP_SPINCOUNT "10000"

void omp_spin_default(char **argv);

#endif
