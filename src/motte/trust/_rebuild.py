"""``motte rebuild``: build a package again from its recorded source and compare, byte for byte.

The recipe is the package's SLSA provenance (source repository, commit, command), accepted
only when signed by a key the namespace's trust root delegates (or a key pinned with
``keys``): a rebuild runs that command, so it must come from someone you already trust.

1. Clone the source into a fresh temporary directory and check out the exact commit.
2. Run the command with ``/bin/sh -c`` in the checkout, with a scrubbed environment (a
   minimal PATH, a throwaway HOME and TMPDIR, ``SOURCE_DATE_EPOCH`` = the commit's time,
   ``TZ=UTC``, ``LC_ALL=C.UTF-8``) in its own process group, killed at the time limit.
3. Package the checkout (its Motte.toml and the module it names) exactly as ``motte
   package`` does, into a throwaway store, and compare the module digest and the package
   digest with the published ones.

Nothing runs unless a person asked for ``motte rebuild``: ``motte trust`` only reads rebuild
statements. ``attest`` signs the result (match or mismatch) as a rebuild statement, logged
and attached, so that policies naming this rebuilder can count it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from motte.errors import MotteError
from motte.oci import (
    LocalStore,
    Manifest,
    Reference,
    build_package,
    open_repository,
    verify_workload_blobs,
    workload_layers,
)
from motte.sign import (
    SLSA_PROVENANCE,
    Envelope,
    PrivateKey,
    Provenance,
    PublicKey,
    SignatureError,
    SignResult,
    Statement,
    policy_for_namespace,
    read_statements,
    sign_statement,
    verify_envelope,
)
from motte.trust._errors import RebuildError, TrustUsageError
from motte.trust._gather import reference_for
from motte.trust._predicates import REBUILD, Rebuild
from motte.trust._verdict import rfc3339

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Protocols git may use to fetch the source (``ext::`` would run commands).
GIT_PROTOCOLS = "file:git:http:https:ssh"
DEFAULT_TIMEOUT = 600.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Recipe:
    provenance: Provenance
    statement: str  # sha256 of the provenance envelope
    signer: str  # keyid


@dataclass(frozen=True, slots=True)
class RebuildResult:
    reference: str  # pinned
    recipe: Recipe
    expected: str
    rebuilt: str
    expected_module: str
    rebuilt_module: str
    seconds: float
    attestation: SignResult | None = None

    @property
    def matched(self) -> bool:
        return self.expected == self.rebuilt and self.expected_module == self.rebuilt_module

    def predicate(self, finished: dt.datetime) -> Rebuild:
        p = self.recipe.provenance
        return Rebuild(
            p.source,
            p.commit,
            p.command or "",
            self.expected,
            self.rebuilt,
            self.expected_module,
            self.rebuilt_module,
            self.recipe.statement,
            rfc3339(finished),
        )


def find_recipe(statements: Sequence[tuple[bytes, str]], keys: Sequence[PublicKey]) -> Recipe:
    """The provenance among ``(envelope, where)`` signed by one of ``keys``; one recipe only."""
    recipes: dict[tuple[str, str, str | None], Recipe] = {}
    for envelope, where in statements:
        try:
            env = Envelope.from_bytes(envelope, where)
            verified = verify_envelope(env, keys)
            st = Statement.from_bytes(verified.payload, where)
        except (SignatureError, MotteError):
            continue
        if st.predicate_type != SLSA_PROVENANCE:
            continue
        try:
            p = Provenance.from_dict(st.predicate, where)
        except MotteError:
            continue
        digest = "sha256:" + hashlib.sha256(envelope).hexdigest()
        recipes.setdefault(
            (p.source, p.commit, p.command), Recipe(p, digest, verified.keys[0].keyid)
        )
    if not recipes:
        raise RebuildError(
            "no SLSA provenance signed by a trusted key: nothing says how to rebuild it",
            hint="the publisher records one with motte attest-build REF --source ... --commit "
            "... --command ...",
        )
    if len(recipes) > 1:
        listed = "; ".join(f"{s} at {c[:12]}: {cmd!r}" for s, c, cmd in recipes)
        raise RebuildError(f"the package has {len(recipes)} different build recipes ({listed})")
    recipe = next(iter(recipes.values()))
    if not recipe.provenance.command:
        raise RebuildError(
            f"the provenance (statement {recipe.statement[:19]}) records no build command"
        )
    return recipe


def _env(work: Path, epoch: str | None = None) -> dict[str, str]:
    env = {
        "PATH": SAFE_PATH,
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
    }
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    return env


def _git(args: list[str], work: Path, what: str) -> str:
    git = shutil.which("git", path=SAFE_PATH)
    if git is None:
        raise RebuildError("git is not installed: a rebuild clones the recorded source")
    r = subprocess.run(
        [git, *args], capture_output=True, text=True, env=_env(work), timeout=DEFAULT_TIMEOUT
    )
    if r.returncode != 0:
        detail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RebuildError(f"{what}: git exited with status {r.returncode}: {detail}")
    return r.stdout.strip()


def _run_build(command: str, src: Path, work: Path, epoch: str, timeout: float) -> None:
    log_path = work / "build.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=src,
            env=_env(work, epoch),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout ends all of it
        )
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RebuildError(
                f"build command {command!r} did not finish in {timeout:g} s",
                hint="raise --timeout if the build is just slow",
            ) from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if status != 0:
        tail = log_path.read_bytes().decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:]
        last = tail[-1] if tail else "(no output)"
        raise RebuildError(f"build command {command!r} exited with status {status}: {last}")


def rebuild(
    target: Reference | str,
    *,
    keys: Sequence[PublicKey] | None = None,
    attest: Sequence[PrivateKey] = (),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[str], None] = lambda step: None,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    trust_dir: Path | None = None,
    log_url: str | None = None,
    now: dt.datetime | None = None,
) -> RebuildResult:
    """Rebuild ``target`` from its provenance and compare (see the module docstring).

    A mismatch is a result, not an error; errors are rebuilds that could not get as far as
    a comparison (no trusted recipe, a clone or a build that failed or timed out).
    """
    if timeout <= 0:
        raise TrustUsageError(f"timeout {timeout:g} s must be positive")
    ref = reference_for(target, store)
    now = now or dt.datetime.now(dt.UTC)
    if keys is None:
        keys = policy_for_namespace(ref.namespace, trust_dir, now=now).keys
    progress(f"reading {ref}")
    with open_repository(ref, store=store, allow_insecure_http=allow_insecure_http) as repo:
        desc, data = repo.resolve(ref)
        label = f"{ref.repository}@{desc.digest}"
        layers = verify_workload_blobs(repo, desc, data, label)
        stored = read_statements(repo, desc.digest)
    recipe = find_recipe([(s.envelope, f"referrer {s.referrer}") for s in stored], keys)
    p = recipe.provenance
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="motte-rebuild-"))
    try:
        for d in ("home", "tmp"):
            (work / d).mkdir()
        src = work / "src"
        source = p.source.removeprefix("git+")
        progress(f"cloning {source}")
        _git(["clone", "--quiet", "--no-checkout", "--", source, str(src)], work, "clone")
        progress(f"checking out {p.commit[:12]}")
        _git(["-C", str(src), "checkout", "--quiet", "--detach", p.commit], work, "checkout")
        head = _git(["-C", str(src), "rev-parse", "HEAD"], work, "rev-parse")
        if head != p.commit:
            raise RebuildError(f"checked out {head}, not the recorded commit {p.commit}")
        epoch = _git(["-C", str(src), "log", "-1", "--format=%ct"], work, "log")
        progress(f"building: {p.command}")
        _run_build(p.command or "", src, work, epoch, timeout)
        progress("packaging the output")
        tmp_store = LocalStore(work / "store")
        out = build_package(src, Reference(ref.namespace, ref.name, "rebuilt"), store=tmp_store)
        with open_repository(out.reference, store=tmp_store) as tmp_repo:
            _, rebuilt_manifest = tmp_repo.resolve(out.reference)
        rebuilt_module = workload_layers(Manifest.from_bytes(rebuilt_manifest)).module.digest
    except MotteError as e:
        if isinstance(e, RebuildError):
            raise
        raise RebuildError(f"packaging the rebuilt output: {e.message}", hint=e.hint) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RebuildResult(
        str(ref.with_digest(desc.digest)),
        recipe,
        desc.digest,
        out.digest,
        layers.module.digest,
        rebuilt_module,
        time.monotonic() - started,
    )
    if attest:
        progress("signing the rebuild statement")
        signed = sign_statement(
            ref.with_digest(desc.digest),
            attest,
            REBUILD,
            result.predicate(now).to_dict(),
            store=store,
            allow_insecure_http=allow_insecure_http,
            log_url=log_url,
            now=now,
        )
        result = replace(result, attestation=signed)
    return result
