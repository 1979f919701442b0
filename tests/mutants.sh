#!/bin/sh
# Mutation testing: does a test fail when the code is wrong?  (`make mutants`,
# docs/testing.md; not part of CI.)  For each line of FILE that the suite
# runs, one small change at a time (an operator flipped, a comparison moved
# by one, a statement removed) is built in a copy of the tree and the tests
# named are run against it.  A mutant that every named test still passes
# "survives": either the change is harmless (an equivalent mutant: read it)
# or no test can fail on that line.
#   sh tests/mutants.sh FILE TEST...     e.g. src/ops/loss.c test_loss
# Lines are those with a non-zero count in build-cov (make coverage) when it
# has one, else every code line.  MUTANTS_MAX caps the mutants tried (0: all),
# MUTANTS_TIMEOUT the seconds per test program (a hang counts as killed).
# MUTANTS_FROM=<line> starts at that line of FILE (to go on after a stop).
# MUTANTS_RETRY=<an earlier log> tries only the mutants that survived there
# (e.g. a fast test first, then the slower ones on what it left).
# Runs on different files may go side by side: each builds its own copy
# (build-mut/tree-<file>) and keeps its own scratch files.
# Writes build-mut/<file>.log: one line per mutant, killed / survived /
# no-compile, with the line and the change.
set -u
file=${1:?usage: sh tests/mutants.sh FILE TEST...}
shift
[ $# -gt 0 ] || { echo "mutants.sh: name at least one test program (e.g. test_loss)" >&2; exit 1; }
[ -f "$file" ] || { echo "mutants.sh: $file: no such file" >&2; exit 1; }
for t in "$@"; do
    [ -f "tests/$t.c" ] || { echo "mutants.sh: tests/$t.c: no such test" >&2; exit 1; }
done
max=${MUTANTS_MAX:-0}
limit=${MUTANTS_TIMEOUT:-300}
root=$(pwd)
tag=$(echo "$file" | tr / _)
work=build-mut/tree-$tag
log=build-mut/$tag.log
retry=${MUTANTS_RETRY:-}
mkdir -p build-mut
if [ -n "$retry" ]; then
    [ -f "$retry" ] || { echo "mutants.sh: MUTANTS_RETRY=$retry: no such log" >&2; exit 1; }
    # "line<TAB>operator" of each survivor; the new log must not overwrite it.
    sed -n 's/^[^:]*:\([0-9]*\): survived   \[\(.*\)\]  .*$/\1\t\2/p' "$retry" > build-mut/$tag.retry.txt
    [ "$retry" -ef "$log" ] && log=$log.retry
fi

# A copy of the working tree (tracked and untracked files, not builds): the
# mutants are built there, in their own build folder, so the checkout and
# its builds are never touched.
rm -rf "$work"
mkdir -p "$work"
git ls-files -z --cached --others --exclude-standard | (cd "$root" && xargs -0 cp --parents -t "$work") || exit 1

# The lines to mutate: executed ones from gcov's annotated output, or all.
lines=build-mut/$tag.lines.txt
obj=build-cov/$(dirname "$file")
if [ -e "$obj/$(basename "$file" .c).gcda" ]; then
    gcov -t -o "$obj" "$file" 2> /dev/null | awk -F: '$1 ~ /^ *[0-9]+\*?$/ { gsub(/ /, "", $2); print $2 }' | sort -n -u > "$lines"
    echo "mutating the lines of $file that make coverage saw run: $(wc -l < "$lines")"
else
    awk '{ print NR }' "$file" > "$lines"
    echo "no coverage data for $file (make coverage): mutating every line"
fi
from=${MUTANTS_FROM:-1}
awk -v from="$from" '$1 >= from' "$lines" > "$lines.tmp" && mv "$lines.tmp" "$lines"

# The mutation operators, tried in turn on each line: the first occurrence of
# the pattern (sed, basic regex) is replaced.  Spaces around binary operators
# keep them apart from unary minus, pointers and increments.
ops='s/ + / - /
s/ - / + /
s/ \* / \/ /
s/ \/ / * /
s/ < / <= /
s/ <= / < /
s/ > / >= /
s/ >= / > /
s/ == / != /
s/ != / == /
s/ && / || /
s/ || / \&\& /
s/ += / -= /
s/ -= / += /
s/return true;/return false;/
s/return false;/return true;/
s/\([^a-zA-Z_0-9.]\)1\.0f/\12.0f/
s/\([^a-zA-Z_0-9.]\)0\.5f/\10.25f/
s/\([( ]\)0\([;,)]\)/\11\2/'

# One test program of the copy, in a session of its own: afterwards whatever
# it started and left behind (a `repae` that a mutant made loop, orphaned when
# the test gave up on it) is killed with its process group, so no mutant
# goes on using the cores after its test has ended.
run_test() {
    (cd "$work" && BUILD=build exec setsid timeout "$limit" "build/tests/$1") > /dev/null 2>&1 &
    pid=$!
    wait "$pid"
    status=$?
    kill -9 "-$pid" 2> /dev/null
    return "$status"
}

build_tests() {
    (cd "$work" && make -s -j2 BUILD=build WERROR= build/repae $(for t in "$@"; do printf 'build/tests/%s ' "$t"; done)) > build-mut/$tag.build.log 2>&1
}

echo "building the unmutated copy"
build_tests "$@" || { echo "mutants.sh: the unmutated tree does not build (build-mut/$tag.build.log)" >&2; exit 1; }
for t in "$@"; do
    run_test "$t" \
        || { echo "mutants.sh: $t fails before any mutation" >&2; exit 1; }
done

: > "$log"
for n in $(cat "$lines"); do
    code=$(sed -n "${n}p" "$file")
    # Comments, preprocessor lines, bare braces: nothing to mutate.
    case "$code" in
        *[!\ ]*) ;;
        *) continue ;;
    esac
    trimmed=$(printf '%s' "$code" | sed 's/^[ \t]*//')
    case "$trimmed" in
        '/*'* | '*'* | '//'* | '#'* | '{' | '}' | '};') continue ;;
    esac
    variants=$(printf '%s\n' "$ops" | while IFS= read -r op; do
        new=$(printf '%s' "$code" | sed "$op")
        [ "$new" != "$code" ] && printf '%s\t%s\n' "$op" "$new"
    done)
    # A whole statement removed (an assignment or a call on one line).
    case "$trimmed" in
        *';') case "$trimmed" in
                  return* | break* | continue* | goto* | case* | default* | else* | *'{'*) ;;
                  *) variants=$(printf '%s\n%s\t%s' "$variants" "delete" ";") ;;
              esac ;;
    esac
    printf '%s\n' "$variants" | while IFS="$(printf '\t')" read -r op new; do
        [ -n "$op" ] || continue
        if [ -n "$retry" ] && ! grep -qxF "$(printf '%s\t%s' "$n" "$op")" build-mut/$tag.retry.txt; then
            continue
        fi
        awk -v n="$n" -v new="$new" 'NR == n { print new; next } { print }' "$file" > "$work/$file"
        if ! build_tests "$@"; then
            result=no-compile
        else
            result=survived
            for t in "$@"; do
                if ! run_test "$t"; then
                    result="killed by $t"
                    break
                fi
            done
        fi
        line=$(printf '%s:%s: %s   [%s]  %s' "$file" "$n" "$result" "$op" "$(printf '%s' "$new" | sed 's/^[ \t]*//')")
        printf '%s\n' "$line" >> "$log"
        printf '%s\n' "$line"
        cp "$file" "$work/$file"
        [ "$max" -gt 0 ] && [ "$(wc -l < "$log")" -ge "$max" ] && exit 3
    done
    [ $? -eq 3 ] && break
done
total=$(wc -l < "$log")
k=$(grep -c ': killed' "$log")
s=$(grep -c ': survived' "$log")
b=$(grep -c ': no-compile' "$log")
echo "$file: $total mutants, $k killed, $s survived, $b did not compile ($log)"
[ "$s" -eq 0 ] || { echo "survivors:"; grep ': survived' "$log"; }
