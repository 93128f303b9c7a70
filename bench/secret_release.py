#!/usr/bin/env python3
"""Secrets: what a release costs a Keep, and what encryption costs a Keep's start.

    python bench/secret_release.py [--rounds 15] [--json]

One Steward process (``motte steward serve``, a dev policy accepting this installation's
sim keeps) serves throughout; this process plays the Keep, warm (imports and the sim
measurement done), interleaving the cases of each table in every round.

1. The protocol (goal: a release within 2x an attestation):

   - ``attest (GET /nonce + POST /attest)``  the baseline: key pair, nonce, sim evidence,
     CSR, the Steward's verification and issuance, the chain checked (motte.keep's
     ``attest_keep``, today's path);
   - ``release 1 secret``  release key, nonce, sim evidence, ``POST /secrets/release``, the
     Steward's verification, policy and HPKE sealing, the value opened;
   - ``release 4 secrets``  the same with four.

2. The start of a 32 MiB module (goal: encrypted within 1.2x of clear): ``launch`` (what
   ``motte run`` calls) of a package from the local store, attested, with the compiled code
   cached (the steady state of a host that ran it before): clear, against encrypted
   (``motte package --encrypt``: the content key released, 32 MiB decrypted and checked,
   the sealed compiled code opened). The module is a WASI command with a 32 MiB passive
   data segment, so its bytes (not its compile) dominate, as they would for the crypto.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Case, dump, interleave, table, verdict

MiB = 1 << 20
DIGEST = "sha256:" + "ab" * 32


def motte_command() -> list[str]:
    script = Path(sys.executable).parent / "motte"
    return [str(script)] if script.exists() else [sys.executable, "-m", "motte"]


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def section(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + leb(len(body)) + body


def big_module(size: int) -> bytes:
    """A WASI command (``_start`` does nothing) carrying ``size`` bytes of passive data."""
    data = os.urandom(size)
    name = b"_start"
    return b"".join(
        [
            b"\0asm\1\0\0\0",
            section(1, b"\x01\x60\x00\x00"),  # type: () -> ()
            section(3, b"\x01\x00"),  # one function of type 0
            section(7, b"\x01" + leb(len(name)) + name + b"\x00\x00"),  # export _start
            section(12, b"\x01"),  # data count: 1
            section(10, b"\x01\x02\x00\x0b"),  # code: no locals, end
            section(11, b"\x01\x01" + leb(len(data)) + data),  # one passive segment
        ]
    )


def start_steward(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [*motte_command(), "steward", "serve", "--listen", "127.0.0.1:0"],
        env=env,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        m = re.search(r"serving on (http://\S+)", raw.decode())
        if m:
            # Keep draining its log so the pipe never fills.
            import threading

            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError("the Steward did not start")


def timed(fn) -> Case:  # type: ignore[no-untyped-def]
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="motte-bench-secrets-"))
    home = tmp / "home"
    env = {**os.environ, "MOTTE_HOME": str(home)}
    os.environ["MOTTE_HOME"] = str(home)
    motte = motte_command()

    def run(*args: str, stdin: bytes | None = None) -> None:
        subprocess.run([*motte, *args], env=env, check=True, capture_output=True, input=stdin)

    run("steward", "init", "--allow-insecure-sim")
    policy = tmp / "release.toml"
    policy.write_text(
        f'signed = ["bench/big"]\ndigests = ["{DIGEST}"]\nallow_insecure_sim = true\n'
    )
    for i in range(4):
        run("secret", "put", f"s{i}", "--policy", str(policy), stdin=os.urandom(32))
    big = tmp / "big"
    big.mkdir()
    (big / "big.wasm").write_bytes(big_module(32 * MiB))
    (big / "Motte.toml").write_text('workload = "big.wasm"\n')
    run("package", str(big), "--tag", "bench/big:clear")
    run("package", str(big), "--tag", "bench/big:enc", "--encrypt", "--release-policy", str(policy))
    # Exact digests for the content key: the packages are unsigned here.
    from motte.oci import open_package, parse_reference

    enc_digest = open_package(parse_reference("bench/big:enc"), attachments=False).digest
    policy.write_text(policy.read_text().replace(DIGEST, f'{DIGEST}", "{enc_digest}'))
    run("secret", "policy", "content-key/bench/big", str(policy))

    steward, url = start_steward(env)
    try:
        from motte.keep import launch
        from motte.keep._attest import attest_keep
        from motte.keep._release import release_secrets
        from motte.keep.backends import SimBackend
        from motte.steward import Wanted

        sim = SimBackend(allow_insecure_sim=True)
        one, four = [Wanted("s0")], [Wanted(f"s{i}") for i in range(4)]
        attest = Case(
            "attest (GET /nonce + POST /attest)", timed(lambda: attest_keep(url, DIGEST, sim))
        )
        rel1 = Case("release 1 secret", timed(lambda: release_secrets(url, DIGEST, sim, one)))
        rel4 = Case("release 4 secrets", timed(lambda: release_secrets(url, DIGEST, sim, four)))
        protocol = [attest, rel1, rel4]
        interleave(protocol, ns.rounds)

        def start(tag: str):  # type: ignore[no-untyped-def]
            def go() -> None:
                launched = launch(
                    f"bench/big:{tag}", steward=url, backend="sim", allow_insecure_sim=True
                )
                assert launched.workload.cache_status == "hit", launched.workload.cache_status

            return go

        # Warm both caches (the first start compiles).
        for tag in ("clear", "enc"):
            launch(f"bench/big:{tag}", steward=url, backend="sim", allow_insecure_sim=True)
        clear = Case("start, 32 MiB module, clear", timed(start("clear")))
        encrypted = Case("start, 32 MiB module, encrypted", timed(start("enc")))
        starts = [clear, encrypted]
        interleave(starts, max(5, ns.rounds // 2))
    finally:
        steward.terminate()
        steward.wait(30)

    rows = table(
        f"the protocol, {ns.rounds} rounds (this process as the Keep, sim evidence)",
        protocol,
        attest,
        {},
    )
    rows += table(
        "launch of a packaged 32 MiB module, attested, compiled code cached",
        starts,
        clear,
        {},
    )
    r_release = rel1.median / attest.median
    r_start = encrypted.median / clear.median
    print()
    print(verdict("a release round trip / an attestation", r_release, 2.0))
    print(verdict("an encrypted start / a clear start", r_start, 1.2))
    if ns.json:
        dump(rows, {"release_ratio": r_release, "start_ratio": r_start})
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
