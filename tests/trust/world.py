"""A small supply chain built for real in a test: keys, a root, a git source, a package.

Everything goes through the real code: Ed25519 keys from ``cryptography``, a TUF-style root
installed as the consumer's, the embedded transparency log, a git repository whose build
script produces the module, ``build_package``, and the real signing and rebuild paths. Only
the scale is small (a module of a few bytes, built by ``printf``), so tests stay fast.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from motte.oci import build_package, parse_reference
from motte.sign import (
    PrivateKey,
    attest_build,
    attest_review,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    new_root,
    propose,
    sign_artifact,
    with_namespace,
)
from motte.trust import Policy, parse_policy

BUILDER = "https://ci.example.org/builders/v1"
#: A deterministic build: the module is a wasm header and the committed payload.
BUILD_SH = "printf '\\000asm\\001\\000\\000\\000' > hello.wasm\ncat payload.bin >> hello.wasm\n"
#: A build that stamps the time into its output: never the same bytes twice.
STAMPED_BUILD_SH = BUILD_SH + "date +%s%N >> hello.wasm\n"


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def pem_body(key: PrivateKey) -> str:
    """The base64 DER of the public key: the line a policy lists."""
    lines = key.public.to_pem().decode().strip().splitlines()
    return "".join(lines[1:-1])


@dataclass
class World:
    root: Path
    tmp: Path
    root_key: PrivateKey = field(default_factory=generate_key)
    alice: PrivateKey = field(default_factory=generate_key)
    ci: PrivateKey = field(default_factory=generate_key)
    rebuilder: PrivateKey = field(default_factory=generate_key)
    auditor: PrivateKey = field(default_factory=generate_key)
    stranger: PrivateKey = field(default_factory=generate_key)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    # -- the publisher's side ----------------------------------------------------------------

    def delegate(self, *signers: PrivateKey) -> None:
        """A new root version delegating ``acme`` to ``signers``, installed by the consumer."""
        meta = current_root(self.root, now=self.now)
        if meta is None:
            propose(
                self.root,
                new_root([self.root_key.public], 1, expires=default_expiry(self.now)),
                [self.root_key],
                now=self.now,
            )
            meta = current_root(self.root, now=self.now)
        assert meta is not None
        nxt = with_namespace(
            meta, "acme", [k.public for k in signers], 1, expires=default_expiry(self.now)
        )
        propose(self.root, nxt, [self.root_key], now=self.now)
        install_root(self.root, now=self.now)

    def source(
        self, name: str, payload: bytes, build_sh: str = BUILD_SH, committed: bytes | None = None
    ) -> tuple[Path, str]:
        """A git repository with Motte.toml, build.sh and payload.bin; returns (dir, commit).

        ``committed`` commits a hello.wasm beside the source (otherwise it is ignored).
        """
        repo = self.tmp / name
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        (repo / "Motte.toml").write_text('workload = "hello.wasm"\n')
        (repo / "build.sh").write_text(build_sh)
        (repo / "payload.bin").write_bytes(payload)
        if committed is None:
            (repo / ".gitignore").write_text("hello.wasm\n")
        else:
            (repo / "hello.wasm").write_bytes(committed)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "release")
        return repo, git(repo, "rev-parse", "HEAD")

    def release(
        self,
        tag: str,
        payload: bytes,
        *,
        signer: PrivateKey | None = None,
        build_sh: str = BUILD_SH,
        motte_toml: str | None = None,
        provenance: bool = True,
        local_build_sh: str | None = None,
        committed: bytes | None = None,
    ) -> str:
        """Build from a fresh source repo, package as acme/hello:TAG, sign, attest; digest.

        ``build_sh`` is committed and recorded; the publisher's own build runs
        ``local_build_sh`` when given (a recipe that only works in a rebuild's environment).
        ``committed``: a hello.wasm committed beside the source, packaged as it is (the
        publisher's build is not run).
        """
        repo, commit = self.source(f"src-{tag}", payload, build_sh, committed)
        if committed is None:
            subprocess.run(["sh", "-c", local_build_sh or build_sh], cwd=repo, check=True)
        if motte_toml is not None:
            (repo / "Motte.toml").write_text(motte_toml)
        ref = f"acme/hello:{tag}"
        digest = build_package(repo, parse_reference(ref)).digest
        sign_artifact(ref, [signer or self.alice])
        if provenance:
            attest_build(
                ref,
                [self.ci],
                source=f"file://{repo}",
                commit=commit,
                command="sh build.sh",
                builder=BUILDER,
            )
        return digest

    def audit(self, tag: str, key: PrivateKey | None = None, *, days_ago: int = 10) -> None:
        attest_review(
            f"acme/hello:{tag}",
            [key or self.auditor],
            reviewer="mailto:audits@example.org",
            scope="full",
            result="pass",
            kind="audit",
            now=self.now - dt.timedelta(days=days_ago),
        )

    # -- the consumer's side -----------------------------------------------------------------

    def policy_text(self, *, extra: str = "", require: str | None = None) -> str:
        req = require or '["build", "integrity", "responsiveness", "provenance", "expertise"]'
        return f"""
require = {req}

[build]
reproducible = true

[[build.builders]]
id = "{BUILDER}"
keys = ["{pem_body(self.ci)}"]

[[build.rebuilders]]
name = "our-rebuilder"
keys = ["{pem_body(self.rebuilder)}"]

[responsiveness]
refuse_open_advisories = true
max_advisory_age_days = 30

[provenance]
sensitive = ["Motte.toml"]

[expertise]
max_audit_age_days = 365

[[expertise.auditors]]
name = "audits.example.org"
keys = ["{pem_body(self.auditor)}"]
{extra}"""

    def policy(self, **kw: str) -> Policy:
        return parse_policy(self.policy_text(**kw), name="policy.toml")


def make_world(tmp_path: Path) -> World:
    w = World(tmp_path / "acme-root", tmp_path)
    w.delegate(w.alice)
    return w
