#!/bin/sh
# The motte demo (`make demo`): workloads running in a Keep, narrated.
#
# Each step prints what it shows, runs real commands and checks their exit status, so a
# broken step fails the demo instead of scrolling past. Add a step with:
#     step "Title" "What the reader should notice."
#     expect STATUS command args...
set -u

cd "$(dirname "$0")/.."
MOTTE="${MOTTE:-.venv/bin/motte}"
PYTHON="${PYTHON:-.venv/bin/python}"
# The demo keeps its state (compiled cache, keys) in its own home, not the user's.
MOTTE_HOME="${MOTTE_HOME:-$PWD/.motte-demo}"
export MOTTE_HOME

if [ -t 1 ]; then bold=$(printf '\033[1m'); dim=$(printf '\033[2m'); off=$(printf '\033[0m')
else bold=""; dim=""; off=""; fi
n=0

step() {
    n=$((n + 1))
    printf '\n%s== %d. %s%s\n' "$bold" "$n" "$1" "$off"
    printf '%s%s%s\n' "$dim" "$2" "$off" | fold -s -w 92
}

# expect STATUS CMD...: show the command, run it, check its exit status.
expect() {
    want=$1
    shift
    printf '%s$ %s%s\n' "$bold" "$*" "$off"
    "$@"
    got=$?
    if [ "$got" -ne "$want" ]; then
        printf 'demo: expected exit status %s, got %s\n' "$want" "$got" >&2
        exit 1
    fi
    printf '%s(exit status %s)%s\n' "$dim" "$got" "$off"
}

step "A workload in a Keep" \
"examples/hello is C compiled to WebAssembly (WASI preview1). Its Motte.toml grants it the \
argument 'world' and one environment variable; arguments after -- replace the manifest's, \
--env adds to its environment. It prints every variable it can see: nothing of the host's."
expect 0 "$MOTTE" run examples/hello
expect 0 "$MOTTE" run examples/hello --env LANG=C -- Alice Bob

step "Deny by default" \
"examples/files is granted one directory, examples/files/data, at /data, read-only. It can \
read there; the host's files, escapes with '..' and writes are refused by the sandbox."
expect 0 "$MOTTE" run examples/files -- cat /data/poem.txt
expect 1 "$MOTTE" run examples/files -- cat /etc/passwd
expect 1 "$MOTTE" run examples/files -- cat /data/../../../README.md
expect 1 "$MOTTE" run examples/files -- write /data/graffiti.txt "was here"

step "Compute at near-native speed" \
"examples/sha256 hashes 256 MiB generated in the guest. Python's hashlib computes the same \
digest outside the Keep to check it. The first run compiles the module and caches the \
artifact (HMAC-authenticated); later runs load it in a millisecond."
expect 0 "$MOTTE" run examples/sha256 -- 256
printf '%s$ python: hashlib.sha256 over the same 256 MiB%s\n' "$bold" "$off"
"$PYTHON" -c "import hashlib; b = bytes(((i * 2654435761) % 2**32) >> 24 for i in range(1 << 20)); h = hashlib.sha256(); [h.update(b) for _ in range(256)]; print(h.hexdigest() + '  256 MiB (hashlib)')"

step "WASI 0.2 components" \
"The same hello program wrapped as a WASI 0.2 command component. motte tells a component \
from a module by its header and runs both the same way."
expect 0 "$MOTTE" run examples/hello-component

step "Runaway guests, stopped by their limits" \
"examples/runaway holds three guests that would take a host down. The infinite loop gets \
1 s of CPU time from its manifest; the memory bomb grows until the 16 MiB limit refuses it, \
then aborts; the recursion overflows the 512 KiB wasm stack. Each stops with one line saying \
which limit or trap, and its own exit status: 152 (CPU time, 128 + SIGXCPU), 134 (a trap)."
expect 152 "$MOTTE" run examples/runaway
expect 134 "$MOTTE" run examples/runaway/bomb.wasm --memory 16
expect 134 "$MOTTE" run examples/runaway/recurse.wasm

printf '\n%sDone.%s The demo kept its state in %s (rm -rf it to start over).\n' \
    "$bold" "$off" "$MOTTE_HOME"
