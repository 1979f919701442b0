#!/bin/sh
# Runs every test program given on the command line, from the repository root,
# and prints one closing line "N passed, N failed" summed over all of them.
# A program that crashes or exits non-zero without a summary counts as failed.
passed=0
failed=0
crashed=""
for t in "$@"; do
    name=$(basename "$t")
    echo "== $name"
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
    line=$(printf '%s\n' "$out" | grep '^[0-9]* passed, [0-9]* failed$' | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | cut -d' ' -f1)
        f=$(echo "$line" | cut -d' ' -f3)
        passed=$((passed + p))
        failed=$((failed + f))
        echo "   $line"
    fi
    if [ $rc -ne 0 ] && { [ -z "$line" ] || [ "$f" = 0 ]; }; then
        echo "   $name exited with status $rc"
        failed=$((failed + 1))
        crashed="$crashed $name"
    fi
done
[ -n "$crashed" ] && echo "programs that crashed or exited badly:$crashed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
