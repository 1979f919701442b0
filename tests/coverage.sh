#!/bin/sh
# Line coverage of src/ by the unit tests (`make coverage`, docs/testing.md).
# Reads the .gcda/.gcno files that the suite left in the build folder given
# (build-cov: built with gcc's --coverage) and prints, per source file, the
# lines executed, then every function that no test called.  A line no test
# reaches is a line no test can fail on: the list says where a test is missing.
#   sh tests/coverage.sh [BUILD]   (default build-cov)
# Writes BUILD/coverage.txt (the table) and BUILD/coverage-uncalled.txt.
build=${1:-build-cov}
[ -d "$build/src" ] || { echo "coverage.sh: $build/src: no coverage build (run make coverage)" >&2; exit 1; }
command -v gcov > /dev/null || { echo "coverage.sh: gcov not found (Debian package gcc)" >&2; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

table=$build/coverage.txt
uncalled=$build/coverage-uncalled.txt
: > "$tmp/rows"
: > "$uncalled"
for src in $(find src -name '*.c' | sort); do
    obj=$build/$(dirname "$src")
    base=$(basename "$src" .c)
    if [ ! -e "$obj/$base.gcda" ]; then
        # Never run by any test (or not built): every line counts as missed.
        lines=$(grep -c . "$src")
        printf '%s 0 %s never-run\n' "$src" "$lines" >> "$tmp/rows"
        continue
    fi
    # -n: no .gcov files; -f: one summary per function.  gcov names the
    # source as the object's path recorded it; match on the file name.
    gcov -n -f -o "$obj" "$src" > "$tmp/out" 2> /dev/null
    awk -v src="$src" -v uncalled="$uncalled" '
        /^Function / { fn = $2; gsub(/\047/, "", fn); next }
        /^File /     { infile = index($0, src) > 0; next }
        /^Lines executed:/ {
            split($0, a, /[:% ]+/)   # Lines executed:P% of N
            pct = a[3]; n = a[5]
            if (fn != "") { if (pct + 0 == 0 && n > 0) print src ": " fn "()" >> uncalled; fn = ""; next }
            if (infile) { hit = int(pct * n / 100 + 0.5); print src, hit, n, "run"; infile = 0 }
        }' "$tmp/out" >> "$tmp/rows"
done

awk '{ hit += $2; n += $3; printf "%6.1f %%  %5d of %5d  %s%s\n", ($3 ? 100 * $2 / $3 : 100), $2, $3, $1,
       ($4 == "never-run" ? "  (no test runs it)" : "") }
     END { printf "%6.1f %%  %5d of %5d  all of src/\n", 100 * hit / n, hit, n }' "$tmp/rows" \
    | sort -n > "$table"
echo "line coverage of src/ by make test (lowest first; $table):"
cat "$table"
echo
echo "functions no test calls: $(wc -l < "$uncalled") ($uncalled)"
