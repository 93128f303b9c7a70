#!/bin/sh
# The motte demo (`make demo`): workloads running in a Keep, then the attested path (a
# Steward, a Keep serving over attested TLS, a client checking what it talks to), narrated.
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

# -- The attested path: Steward, Keep, client ------------------------------------------------
# Everything below runs in a temporary MOTTE_HOME, with real processes on 127.0.0.1 that the
# trap stops on any exit. motte never picks the sim keep by itself; here it is allowed,
# loudly, because this machine has no TEE (see `motte platform info`).

FIRST_HOME=$MOTTE_HOME
ATTESTED_HOME=$(mktemp -d "${TMPDIR:-/tmp}/motte-demo.XXXXXX")
MOTTE_HOME=$ATTESTED_HOME
export MOTTE_HOME
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null; done
    for pid in $pids; do wait "$pid" 2>/dev/null; done
    rm -rf "$ATTESTED_HOME" ${AUTHOR:+"$AUTHOR"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: until a line of FILE matches PATTERN (30 s at most); prints it.
wait_for() {
    i=0
    while [ "$i" -lt 300 ]; do
        line=$(grep -m1 -E "$2" "$1" 2>/dev/null) && { printf '%s\n' "$line"; return 0; }
        i=$((i + 1))
        sleep 0.1
    done
    printf 'demo: timed out waiting for "%s" in %s:\n' "$2" "$1" >&2
    cat "$1" >&2
    exit 1
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

step "Which TEE is here?" \
"A Keep gets its evidence from a backend: AMD SEV-SNP or Intel TDX (configfs-tsm), Intel SGX \
under Gramine, or the software keep 'sim', which protects nothing and says so. This machine \
is no confidential guest, so the demo uses sim, with the flag that names the danger."
expect 0 "$MOTTE" platform info

step "A Steward: attestation service and CA" \
"The Steward verifies a Keep's evidence against its policy and issues a short-lived \
certificate naming the TEE, the measurement and the workload. --allow-insecure-sim writes a \
development policy that accepts this installation's sim keeps, and says so loudly."
expect 0 "$MOTTE" steward init --allow-insecure-sim
"$MOTTE" steward serve --listen 127.0.0.1:0 \
    2>"$ATTESTED_HOME/steward.log" &
pids="$pids $!"
STEWARD=$(wait_for "$ATTESTED_HOME/steward.log" "serving on http://" | sed 's/.*serving on //')
printf '%s(the Steward serves on %s)%s\n' "$dim" "$STEWARD" "$off"

step "Package the workload" \
"examples/http-hello answers HTTP requests, a fresh WebAssembly instance per request. \
Packaged, it has one digest covering the module and its Motte.toml: the name the Keep \
attests and the certificate carries."
PORT=$(free_port)
mkdir "$ATTESTED_HOME/http-hello"
cp examples/http-hello/http-hello.wasm "$ATTESTED_HOME/http-hello/"
sed "s/^port = .*/port = $PORT/" examples/http-hello/Motte.toml >"$ATTESTED_HOME/http-hello/Motte.toml"
expect 0 "$MOTTE" package "$ATTESTED_HOME/http-hello" --tag demo/http-hello:1.0
DIGEST=$("$MOTTE" package "$ATTESTED_HOME/http-hello" \
    --tag demo/http-hello:1.0 --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["digest"])')

step "A Keep that proves what it is before it fetches anything" \
"motte run makes a fresh key, gets the Steward's nonce, asks the backend for evidence binding \
key, workload digest and nonce, and sends it in a CSR. Only with the Steward's certificate \
does it load the package, by that digest, and serve it over TLS 1.3 with the certificate."
printf '%s$ %s run demo/http-hello:1.0 --steward %s --backend sim --allow-insecure-sim --grant listen:web &%s\n' \
    "$bold" "$MOTTE" "$STEWARD" "$off"
"$MOTTE" run demo/http-hello:1.0 --steward "$STEWARD" \
    --backend sim --allow-insecure-sim --grant listen:web 2>"$ATTESTED_HOME/keep.log" &
pids="$pids $!"
wait_for "$ATTESTED_HOME/keep.log" "listening: " >/dev/null
sed 's/^/  /' "$ATTESTED_HOME/keep.log"

step "The client checks what it talks to" \
"motte connect trusts only the Steward's CA, checks the name, then the certificate's claims: \
the TEE kind (sim only with the flag) and the workload digest it expects. Then it sends the \
request over that same verified connection."
expect 0 "$MOTTE" connect "https://127.0.0.1:$PORT/?name=newcomer" \
    --steward-ca "$ATTESTED_HOME/steward/ca.pem" --expect-digest "$DIGEST" --allow-insecure-sim

step "Refused: another workload, and an insecure keep without consent" \
"A client that expects a different workload is refused with the reason, and so is one that \
did not accept sim keeps. Both exit with status 1."
expect 1 "$MOTTE" connect "https://127.0.0.1:$PORT/" \
    --steward-ca "$ATTESTED_HOME/steward/ca.pem" \
    --expect-digest sha256:0000000000000000000000000000000000000000000000000000000000000000 \
    --allow-insecure-sim
expect 1 "$MOTTE" connect "https://127.0.0.1:$PORT/" \
    --steward-ca "$ATTESTED_HOME/steward/ca.pem" --expect-digest "$DIGEST"

step "Refused by the Steward: a name it does not allow" \
"A Keep asking for a certificate for a name outside the Steward's allow-list is refused \
before it fetches anything: motte run exits 125 with every failed rule."
expect 125 "$MOTTE" run demo/http-hello:1.0 --steward "$STEWARD" --backend sim \
    --allow-insecure-sim --grant listen:web --san keep.evil.example

step "A Keep calls a vendor's API, with mutual TLS" \
"examples/outbound asks for one destination, 'vendor' (api.vendor.example:443), and calls \
GET /v1/hello with an API token. Here nginx plays the vendor on 127.0.0.1: it trusts only \
this Steward's CA for client certificates and wants the token. The token is a Steward \
secret, released only to this package's digest. The host grants the destination (its \
address here, and the vendor's CA bundle) and the secret. The Keep attests, gets the token, \
connects, verifies nginx, presents its attested certificate; the guest sees plain text."
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    printf 'demo: nginx is not installed (sh scripts/system-deps.sh test): skipping this part\n'
else
VENDOR="$ATTESTED_HOME/vendor"
mkdir -p "$VENDOR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=Vendor CA" -keyout "$VENDOR/ca.key" -out "$VENDOR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.vendor.example" \
    -keyout "$VENDOR/server.key" -out "$VENDOR/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.vendor.example\n' >"$VENDOR/ext"
openssl x509 -req -in "$VENDOR/server.csr" -CA "$VENDOR/ca.pem" -CAkey "$VENDOR/ca.key" \
    -CAcreateserial -days 1 -extfile "$VENDOR/ext" -out "$VENDOR/server.pem" 2>/dev/null
VPORT=$(free_port)
user=""
[ "$(id -u)" -eq 0 ] && user="user root root;"
cat >"$VENDOR/nginx.conf" <<NGINX
$user
worker_processes 1;
error_log $VENDOR/error.log;
pid $VENDOR/nginx.pid;
events { worker_connections 64; }
http {
  log_format tls '\$status \$ssl_protocol client=\$ssl_client_verify "\$request"';
  access_log $VENDOR/access.log tls;
  client_body_temp_path $VENDOR/body;
  proxy_temp_path $VENDOR/proxy;
  fastcgi_temp_path $VENDOR/fastcgi;
  uwsgi_temp_path $VENDOR/uwsgi;
  scgi_temp_path $VENDOR/scgi;
  server {
    listen 127.0.0.1:$VPORT ssl;
    ssl_certificate $VENDOR/server.pem;
    ssl_certificate_key $VENDOR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client on;
    ssl_client_certificate $ATTESTED_HOME/steward/ca.pem;
    default_type application/json;
    location = /v1/hello {
      if (\$http_authorization != "Bearer demo-token") { return 401 '{"error":"no token"}\n'; }
      return 200 '{"hello":"from the vendor"}\n';
    }
  }
}
NGINX
"$NGINX" -p "$VENDOR" -c "$VENDOR/nginx.conf" -g "daemon off;" 2>"$VENDOR/nginx.log" &
pids="$pids $!"
i=0
until "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $VPORT), 1)" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 300 ] || { echo "demo: nginx did not start" >&2; cat "$VENDOR/nginx.log" >&2; exit 1; }
    sleep 0.1
done
printf '%s(nginx, the vendor, serves https://127.0.0.1:%s; client certificates from %s)%s\n' \
    "$dim" "$VPORT" "$ATTESTED_HOME/steward/ca.pem" "$off"
expect 0 "$MOTTE" package examples/outbound --tag demo/outbound:1.0
OUT_DIGEST=$("$MOTTE" package examples/outbound --tag demo/outbound:1.0 --json \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
printf 'digests = ["%s"]\nallow_insecure_sim = true  # development only\n' "$OUT_DIGEST" \
    >"$VENDOR/release.toml"
printf '%s$ cat release.toml%s\n' "$bold" "$off"
sed 's/^/  /' "$VENDOR/release.toml"
printf '%s$ printf demo-token | %s secret put vendor-api-token --policy release.toml%s\n' \
    "$bold" "$MOTTE" "$off"
printf demo-token | "$MOTTE" secret put vendor-api-token --policy "$VENDOR/release.toml" || exit 1
GRANTS="--grant connect:vendor=127.0.0.1:$VPORT,ca=$VENDOR/ca.pem"
# shellcheck disable=SC2086
expect 0 "$MOTTE" run demo/outbound:1.0 --steward "$STEWARD" \
    --backend sim --allow-insecure-sim $GRANTS --grant secret:vendor-api-token

step "Refused: no grant, no token, a certificate not from the Steward" \
"The same package without the host's grant of the destination is refused before it runs \
(125), naming the flag. A build the release policy does not name (one limit changed) never \
gets the token: the Steward refuses the release (125). A build that does not ask for the \
token calls without it: nginx answers 401. A Keep attested by another Steward presents a \
certificate nginx's CA did not issue: 400. The guest exits 1 when the answer is not 2xx."
expect 125 "$MOTTE" run demo/outbound:1.0 --steward "$STEWARD" \
    --backend sim --allow-insecure-sim --grant secret:vendor-api-token
mkdir "$VENDOR/other" "$VENDOR/tokenless"
cp examples/outbound/outbound.wasm "$VENDOR/other/"
cp examples/outbound/outbound.wasm "$VENDOR/tokenless/"
sed 's/^wall_time = 10 /wall_time = 11 /' examples/outbound/Motte.toml >"$VENDOR/other/Motte.toml"
sed '/^\[\[secret\]\]/,$d' examples/outbound/Motte.toml >"$VENDOR/tokenless/Motte.toml"
"$MOTTE" package "$VENDOR/other" --tag demo/outbound-other:1.0 >/dev/null
"$MOTTE" package "$VENDOR/tokenless" --tag demo/outbound-tokenless:1.0 >/dev/null
# shellcheck disable=SC2086
expect 125 "$MOTTE" run demo/outbound-other:1.0 --steward "$STEWARD" --backend sim \
    --allow-insecure-sim $GRANTS --grant secret:vendor-api-token
# shellcheck disable=SC2086
expect 1 "$MOTTE" run demo/outbound-tokenless:1.0 --steward "$STEWARD" --backend sim \
    --allow-insecure-sim $GRANTS
OTHER_HOME="$ATTESTED_HOME/other-steward"
mkdir "$OTHER_HOME"
MOTTE_HOME="$OTHER_HOME" "$MOTTE" steward init --allow-insecure-sim >/dev/null 2>&1
MOTTE_HOME="$OTHER_HOME" "$MOTTE" steward serve --listen 127.0.0.1:0 \
    2>"$ATTESTED_HOME/other-steward.log" &
pids="$pids $!"
OTHER=$(wait_for "$ATTESTED_HOME/other-steward.log" "serving on http://" | sed 's/.*serving on //')
MOTTE_HOME="$OTHER_HOME" "$MOTTE" package examples/outbound --tag demo/outbound:1.0 >/dev/null
printf demo-token | MOTTE_HOME="$OTHER_HOME" "$MOTTE" secret put vendor-api-token \
    --policy "$VENDOR/release.toml" >/dev/null || exit 1
# shellcheck disable=SC2086
expect 1 env MOTTE_HOME="$OTHER_HOME" "$MOTTE" run demo/outbound:1.0 \
    --steward "$OTHER" --backend sim --allow-insecure-sim $GRANTS --grant secret:vendor-api-token
printf '%snginx access log (status, TLS version, client certificate):%s\n' "$dim" "$off"
sed 's/^/  /' "$VENDOR/access.log"
fi

step "The Steward's audit log" \
"Every decision, accepted or not, with every rule's outcome (--json for all of it)."
expect 0 "$MOTTE" steward audit

step "A secret only an attested Keep gets" \
"The Steward also keeps secrets. A database password goes in from standard input (never the \
command line), under a release policy: only a package acme signed as acme/db, and the sim \
keep only because the policy says so. The workload is packaged --encrypt: its module is \
ciphertext, its key a Steward secret under the same policy."
"$MOTTE" key new acme-root >/dev/null && "$MOTTE" key new alice >/dev/null \
    && "$MOTTE" key root init "$ATTESTED_HOME/acme-root" --root-key acme-root --key acme-root >/dev/null \
    && "$MOTTE" key root delegate "$ATTESTED_HOME/acme-root" acme --signer alice --key acme-root >/dev/null \
    && "$MOTTE" key root trust "$ATTESTED_HOME/acme-root" --name acme >/dev/null \
    || { printf 'demo: could not set up acme'"'"'s keys\n' >&2; exit 1; }
DB_PORT=$(free_port)
# The author's copy of the workload (the plaintext module) is the author's, not the host's:
# it lives outside the host's MOTTE_HOME, and goes at exit.
AUTHOR=$(mktemp -d "${TMPDIR:-/tmp}/motte-demo-author.XXXXXX")
mkdir "$AUTHOR/secret-db"
cp examples/secret-db/secret-db.wasm examples/secret-db/release.toml "$AUTHOR/secret-db/"
sed "s/^port = .*/port = $DB_PORT/" examples/secret-db/Motte.toml >"$AUTHOR/secret-db/Motte.toml"
PW=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')
export PW
printf '%s$ printf %%s "$PW" | %s secret put db-password --policy release.toml%s\n' "$bold" "$MOTTE" "$off"
printf '%s' "$PW" | "$MOTTE" secret put db-password --policy "$AUTHOR/secret-db/release.toml" \
    || exit 1
expect 0 "$MOTTE" package "$AUTHOR/secret-db" --tag acme/db:1.0 --encrypt \
    --release-policy "$AUTHOR/secret-db/release.toml"
expect 0 "$MOTTE" sign acme/db:1.0 --key alice

step "The Keep attests, then gets its password and its code" \
"motte run attests, fetches the ciphertext, asks for the password and the content key with \
fresh evidence binding a key that exists only in the Keep; the Steward seals both to it. The \
module is decrypted in memory and checked against its signed digest; the password appears \
at /run/secrets/db-password (a tmpfs) and in DB_PASSWORD. It serves over TLS 1.3. Both \
must say yes: the host grants the package the secret (--grant secret:db-password, like its \
port) and the Steward's release policy accepts the Keep."
printf '%s$ %s run acme/db:1.0 --steward %s --backend sim --allow-insecure-sim --grant listen:web --grant secret:db-password &%s\n' \
    "$bold" "$MOTTE" "$STEWARD" "$off"
"$MOTTE" run acme/db:1.0 --steward "$STEWARD" --backend sim --allow-insecure-sim \
    --grant listen:web --grant secret:db-password 2>"$ATTESTED_HOME/keep-db.log" &
DB_PID=$!
pids="$pids $DB_PID"
wait_for "$ATTESTED_HOME/keep-db.log" "listening: " >/dev/null
sed 's/^/  /' "$ATTESTED_HOME/keep-db.log"
expect 0 "$MOTTE" connect "https://127.0.0.1:$DB_PORT/" \
    --steward-ca "$ATTESTED_HOME/steward/ca.pem" --expect-digest acme/db:1.0 --allow-insecure-sim

step "The host never sees the password" \
"Grep every file of this demo's MOTTE_HOME (the local store, the compiled-code cache, the \
Steward's database, both logs) and the process list for the password, and for the module's \
marker string: nothing (grep and pgrep exit 1). The values exist only in the Steward and in \
the Keep; the module and its compiled code rest encrypted."
# Shown with $PW unexpanded: the demo itself never prints the password.
printf '%s$ grep -r -a -l -F -e "$PW" %s%s\n' "$bold" "$ATTESTED_HOME" "$off"
grep -r -a -l -F -e "$PW" "$ATTESTED_HOME"
[ $? -eq 1 ] || { printf 'demo: the password was found in a file\n' >&2; exit 1; }
printf '%s(exit status 1: in no file)%s\n' "$dim" "$off"
printf '%s$ pgrep -a -f -- "$PW"%s\n' "$bold" "$off"
pgrep -a -f -- "$PW"
[ $? -eq 1 ] || { printf 'demo: the password is in a process'"'"'s arguments\n' >&2; exit 1; }
printf '%s(exit status 1: in no process'"'"'s arguments)%s\n' "$dim" "$off"
expect 1 grep -r -a -l -F -e "motte-module-canary" "$ATTESTED_HOME"
expect 0 "$MOTTE" secret audit
kill "$DB_PID" 2>/dev/null
wait "$DB_PID" 2>/dev/null

printf '\n%sDone.%s The Steward and the Keep are stopped and %s removed; the first part kept\n' \
    "$bold" "$off" "$ATTESTED_HOME"
printf 'its state in %s (rm -rf it to start over).\n' "$FIRST_HOME"
