#!/bin/sh
# Install the Debian packages a task needs, only those missing.
#   venv  python3-venv (Debian splits ensurepip out of python3)
#   test  the real peers the integration tests start on 127.0.0.1:
#         NUT upsd + dummy-ups and upsc/upsmon, the OCI registry, Go's sumdb note/tlog,
#         git (motte rebuild clones the recorded source), wrk (bench/serve.py's load),
#         ovmf (real edk2 firmware that motte measure is checked on against sev-snp-measure),
#         chromium + chromium-driver (the console's browser tests),
#         PostgreSQL, HAProxy and nginx (the store's replicas, load balancer and static tiles;
#         the tests initdb and start their own, as the postgres user when run as root; nginx
#         is also the vendor API of the outbound-connection tests and demo),
#         openssl (s_server, the TLS peer restricted to one cipher suite)
set -eu

case "${1:-test}" in
  venv) pkgs="python3-venv" ;;
  test) pkgs="nut-server nut-client docker-registry golang-go golang-golang-x-mod-dev git wrk ovmf chromium chromium-driver postgresql haproxy nginx openssl" ;;
  *) echo "usage: $0 venv|test" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "system-deps: need root or sudo to install:$missing" >&2; exit 1
fi
echo "system-deps: installing$missing"
$sudo apt-get update -qq
# The packaged services must not start on install: tests start their own on 127.0.0.1.
# Where nothing already says so, a policy-rc.d tells invoke-rc.d to start nothing for the
# length of the install (it is removed afterwards).
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 755 /usr/sbin/policy-rc.d
  guard=1
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null || status=$?
[ -n "$guard" ] && $sudo rm -f /usr/sbin/policy-rc.d
exit "${status:-0}"
