#!/bin/sh
# The performance issue's targets, read off the tables of several `make bench`
# runs on this host: each row's ratios, their median, the target, and
# whether it is met.
#   sh bench/targets.sh TABLE...       (tables that run_bench.sh wrote)
#   make bench-targets                  (BENCH_RUNS=3 `make bench` runs, then this)
# Targets (the "done when"; medians over the runs):
#   small REPA-E step, plain and full  >= 1.6x      SiT-B/2 fwd+bwd  >= 1.6x
#   VAE f8d4                           >= 2.0x      sampling         >= 1.5x
#   every convolution row of bench_ops >= 1.0x
#   our spread <= 10 % on every model and step row, in every run
#   our peak RSS below torch's on every model and step row, in every run
# The control row host_steadiness_gemm_x60 is listed for reading the spread:
# its work cannot vary, so its spread is the host's own (BENCHMARKS.md).
# Prints one line per target and a last line "targets: N of M met"; exits 0
# whatever the verdict (a benchmark, not a test: nothing fails on speed), 2
# when a table cannot be read.
set -eu
[ $# -ge 1 ] || { echo "usage: sh bench/targets.sh TABLE..." >&2; exit 2; }
for t in "$@"; do
    [ -r "$t" ] || { echo "bench/targets.sh: cannot read table $t" >&2; exit 2; }
done
awk -v runs=$# '
# A table row: name, ours ms, torch ms, ratio ("2.08x" or "-"), ours MiB,
# torch MiB, others% ("o/t"), spread% ("o/t"), note.
FNR == 1 { run++ }
NF >= 8 && $1 ~ /^[A-Za-z0-9_]+$/ {
    name = $1
    if (!(name in seen)) { seen[name] = 1; order[++rows] = name }
    r = $4; sub(/x$/, "", r)
    if (r != "-") { ratio[name, ++nratio[name]] = r + 0 }
    if ($5 != "-" && $6 != "-") { rss_o[name, run] = $5 + 0; rss_t[name, run] = $6 + 0 }
    split($8, sp, "/")
    if (sp[1] != "-") { spread[name, ++nspread[name]] = sp[1] + 0; spread_run[name, nspread[name]] = run }
}
function median(name,    n, i, j, v, tmp) {
    n = nratio[name]
    for (i = 1; i <= n; i++) v[i] = ratio[name, i]
    for (i = 2; i <= n; i++) { tmp = v[i]; for (j = i - 1; j >= 1 && v[j] > tmp; j--) v[j + 1] = v[j]; v[j + 1] = tmp }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function readings(name,    i, s) {
    s = ""
    for (i = 1; i <= nratio[name]; i++) s = s (i > 1 ? " " : "") sprintf("%.2f", ratio[name, i])
    return s
}
function verdict(label, name, target,    m, ok) {
    total++
    if (!(name in nratio)) { printf "%-40s %-26s %8s  >= %.1fx  no reading\n", label, "-", "-", target; return }
    m = median(name)
    ok = m >= target
    met += ok
    printf "%-40s %-26s %7.2fx  >= %.1fx  %s\n", label, readings(name), m, target, ok ? "met" : "NOT met"
}
END {
    printf "%d run(s)\n", runs
    printf "%-40s %-26s %8s  %-7s  %s\n", "target row", "ratios (torch / ours)", "median", "target", "verdict"
    verdict("small REPA-E step, plain", "repae_step_small_plain_B32", 1.6)
    verdict("small REPA-E step, full", "repae_step_small_full_B32", 1.6)
    verdict("SiT-B/2 forward + backward", "sit_b2_train_B4", 1.6)
    verdict("VAE f8d4 256^2", "vae_f8d4_train_256_B1", 2.0)
    for (k = 1; k <= rows; k++) if (order[k] ~ /^sample_/) verdict("sampling (" order[k] ")", order[k], 1.5)
    # every convolution row with a torch side
    worst = ""; nconv = 0; convok = 1
    for (k = 1; k <= rows; k++) {
        n = order[k]
        if (n !~ /^conv/ || !(n in nratio)) continue
        nconv++; m = median(n)
        if (m < 1.0) { convok = 0; below = below " " n sprintf("(%.2fx)", m) }
        if (worst == "" || m < worstm) { worst = n; worstm = m }
    }
    total++
    if (nconv == 0) printf "%-40s no convolution rows with a torch side\n", "every convolution row >= 1.0x"
    else {
        met += convok
        printf "%-40s %d rows, lowest median %.2fx (%s)  %s%s\n", "every convolution row >= 1.0x", nconv, worstm, worst,
               convok ? "met" : "NOT met:", convok ? "" : below
    }
    # spread and memory on the model and step rows
    over = ""; rssbad = ""
    for (k = 1; k <= rows; k++) {
        n = order[k]
        if (n !~ /^(sit_|vae_|sample_|repae_step_)/) continue
        for (i = 1; i <= nspread[n]; i++)
            if (spread[n, i] > 10) over = over sprintf(" %s %d%% (run %d);", n, spread[n, i], spread_run[n, i])
        for (i = 1; i <= runs; i++) if ((n, i) in rss_o && rss_o[n, i] >= rss_t[n, i]) rssbad = rssbad " " n
    }
    sub(/;$/, "", over)
    total++; met += (over == "")
    printf "%-40s %s\n", "our spread <= 10 % on model/step rows", over == "" ? "met" : "NOT met:" over
    ctl = ""
    for (i = 1; i <= nspread["host_steadiness_gemm_x60"]; i++) ctl = ctl " " spread["host_steadiness_gemm_x60", i] "%"
    if (ctl != "") printf "%-40s%s (the host alone: nothing in it can vary)\n", "  control row spread per reading", ctl
    total++; met += (rssbad == "")
    printf "%-40s %s\n", "our peak RSS below torch", rssbad == "" ? "met" : "NOT met:" rssbad
    printf "targets: %d of %d met\n", met, total
}' "$@"
