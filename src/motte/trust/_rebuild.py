"""``motte rebuild``: build a package again from its recorded source and compare, byte for byte.

The recipe is the package's SLSA provenance (source repository, commit, command), accepted
only when signed by a key the namespace's trust root delegates (or a key pinned with
``keys``): a rebuild runs that command, so it must come from someone you already trust.

1. Clone the source into a fresh temporary directory and check out the exact commit.
2. Delete the module the package names (its config's module path, and the one the
   checkout's Motte.toml names) from the checkout: a module committed beside its source must
   not stand in for one the command builds.
3. Run the command with ``/bin/sh -c`` in the checkout, with a scrubbed environment (a
   minimal PATH, a throwaway HOME and TMPDIR, ``SOURCE_DATE_EPOCH`` = the commit's time,
   ``TZ=UTC``, ``LC_ALL=C.UTF-8``) in its own process group, killed at the time limit.
4. The module the checkout's Motte.toml names after the build must be a file the command
   made (not one committed at that commit). Package the checkout (its Motte.toml and that
   module) exactly as ``motte package`` does, into a throwaway store, and compare the module
   digest and the package digest with the published ones.

A rebuild whose recipe is trusted ends in one of three results: ``match``, ``mismatch`` or
``failed`` (the source could not be cloned, the commit checked out, the command failed, ran
out of time or did not produce the module). Each is a result, not an error, and ``attest``
signs it as a rebuild statement, logged and attached, so that policies naming this
rebuilder can count it. Errors are rebuilds that never got to the recipe (no trusted
recipe, two recipes, git not installed here): nothing is attested for those.

Nothing runs unless a person asked for ``motte rebuild``: ``motte trust`` only reads rebuild
statements.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from motte.errors import MotteError
from motte.oci import (
    MANIFEST_FILE,
    LocalStore,
    Manifest,
    Reference,
    build_package,
    module_path_from_manifest,
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
from motte.trust._git import GitFailed, git_env, one_line, run_git
from motte.trust._predicates import REBUILD, Rebuild, RebuildFailure
from motte.trust._verdict import rfc3339

DEFAULT_TIMEOUT = 600.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Recipe:
    provenance: Provenance
    statement: str  # sha256 of the provenance envelope
    signer: str  # keyid


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild of a trusted recipe came to: a comparison, or a failure and why."""

    reference: str  # pinned
    recipe: Recipe
    expected: str
    rebuilt: str | None  # None when the rebuild failed
    expected_module: str
    rebuilt_module: str | None
    seconds: float
    failure: RebuildFailure | None = None
    attestation: SignResult | None = None

    @property
    def matched(self) -> bool:
        return (
            self.failure is None
            and self.expected == self.rebuilt
            and self.expected_module == self.rebuilt_module
        )

    @property
    def result(self) -> str:
        """``match``, ``mismatch`` or ``failed``, as the rebuild statement says."""
        if self.failure is not None:
            return "failed"
        return "match" if self.matched else "mismatch"

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
            self.failure,
        )


class _Failed(Exception):
    """The recipe could not be rebuilt: a result to attest, not an error of this machine."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.failure = RebuildFailure(stage, one_line(reason))


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


def _git(args: list[str], work: Path, what: str, stage: str) -> str:
    try:
        return run_git(args, work, what)
    except GitFailed as e:
        raise _Failed(stage, e.reason) from None


def _run_build(command: str, src: Path, work: Path, epoch: str, timeout: float) -> None:
    log_path = work / "build.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=src,
            env=git_env(work, epoch),
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
            raise _Failed(
                "timeout", f"build command {command!r} did not finish in {timeout:g} s"
            ) from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if status != 0:
        tail = log_path.read_bytes().decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:]
        last = tail[-1] if tail else "(no output)"
        raise _Failed("build", f"build command {command!r} exited with status {status}: {last}")


def _relative(value: object) -> str | None:
    """``value`` as a plain relative path inside a directory, or None."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        return None
    return path.as_posix()


def _published_module(config: bytes) -> str | None:
    """The module path the published package's config names (``motte package`` writes it)."""
    try:
        data = json.loads(config)
    except (ValueError, UnicodeDecodeError):
        return None
    return _relative(data.get("module")) if isinstance(data, dict) else None


def _checkout_module(src: Path) -> str | None:
    """The module path the checkout's Motte.toml names, or None (no file, or unreadable)."""
    try:
        return module_path_from_manifest((src / MANIFEST_FILE).read_bytes(), MANIFEST_FILE, src)
    except (OSError, MotteError):
        return None


def _remove_outputs(src: Path, paths: set[str]) -> set[str]:
    """Delete ``paths`` (files or links) from the checkout; the ones removed.

    A path whose directory leads out of the checkout (a committed symlink) is left alone:
    nothing outside the checkout is ever touched.
    """
    base = src.resolve()
    removed = set()
    for rel in sorted(paths):
        target = src / rel
        if not target.parent.resolve().is_relative_to(base):
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
            removed.add(rel)
    return removed


def _produced_module(src: Path, committed: set[str], commit: str) -> None:
    """Raise unless the module Motte.toml names now is a file the build command made.

    ``committed`` are the checkout's files that existed when the command started: a module
    that is (or links to) one of them was not produced by the command.
    """
    try:
        rel = module_path_from_manifest((src / MANIFEST_FILE).read_bytes(), MANIFEST_FILE, src)
    except OSError:
        raise _Failed("output", f"the checkout has no {MANIFEST_FILE} after the build") from None
    except MotteError as e:
        raise _Failed("output", f"packaging the rebuilt output: {e.message}") from None
    path = src / rel
    if not path.exists():
        raise _Failed("output", f"the build command did not produce {rel}")
    resolved = path.resolve()
    base = src.resolve()
    if resolved.is_relative_to(base) and resolved.relative_to(base).as_posix() in committed:
        as_what = resolved.relative_to(base).as_posix()
        named = "" if as_what == rel else f" ({rel} is {as_what})"
        raise _Failed(
            "output",
            f"the build command did not produce {rel}: it is the file committed at "
            f"{commit[:12]}{named}",
        )


def _rebuild_checkout(
    work: Path,
    p: Provenance,
    outputs: set[str],
    ref: Reference,
    timeout: float,
    progress: Callable[[str], None],
) -> tuple[str, str]:
    """Clone, check out, build and package; (package digest, module digest) or _Failed."""
    src = work / "src"
    source = p.source.removeprefix("git+")
    progress(f"cloning {source}")
    _git(["clone", "--quiet", "--no-checkout", "--", source, str(src)], work, "clone", "source")
    progress(f"checking out {p.commit[:12]}")
    _git(["-C", str(src), "checkout", "--quiet", "--detach", p.commit], work, "checkout", "commit")
    head = _git(["-C", str(src), "rev-parse", "HEAD"], work, "rev-parse", "commit")
    if head != p.commit:
        raise _Failed("commit", f"checked out {head}, not the recorded commit {p.commit}")
    epoch = _git(["-C", str(src), "log", "-1", "--format=%ct"], work, "log", "commit")
    tracked = _git(["-C", str(src), "ls-files", "-z"], work, "ls-files", "commit")
    here = _checkout_module(src)
    removed = _remove_outputs(src, outputs | ({here} if here else set()))
    if removed:
        progress(f"removed the committed {', '.join(sorted(removed))}: the build must make it")
    committed = {f for f in tracked.split("\0") if f} - removed
    progress(f"building: {p.command}")
    _run_build(p.command or "", src, work, epoch, timeout)
    progress("packaging the output")
    _produced_module(src, committed, p.commit)
    tmp_store = LocalStore(work / "store")
    try:
        out = build_package(src, Reference(ref.namespace, ref.name, "rebuilt"), store=tmp_store)
        with open_repository(out.reference, store=tmp_store) as tmp_repo:
            _, rebuilt_manifest = tmp_repo.resolve(out.reference)
    except MotteError as e:
        raise _Failed("output", f"packaging the rebuilt output: {e.message}") from None
    return out.digest, workload_layers(Manifest.from_bytes(rebuilt_manifest)).module.digest


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

    A mismatch and a failure of the recipe (clone, checkout, build, timeout, output) are
    results, attested when ``attest`` is given; errors are rebuilds that never got to a
    recipe (no trusted recipe, two recipes, git not installed).
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
        config = repo.blob(layers.config, f"config of {label}")
        stored = read_statements(repo, desc.digest)
    recipe = find_recipe([(s.envelope, f"referrer {s.referrer}") for s in stored], keys)
    # The files the package's layers name, as paths in the source: the build must make them.
    published = _published_module(config)
    outputs = {published} if published else {layers.module_name}
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="motte-rebuild-"))
    rebuilt: tuple[str, str] | None = None
    failure: RebuildFailure | None = None
    try:
        for d in ("home", "tmp"):
            (work / d).mkdir()
        rebuilt = _rebuild_checkout(work, recipe.provenance, outputs, ref, timeout, progress)
    except _Failed as f:
        failure = f.failure
        progress(f"could not rebuild: {failure.reason}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RebuildResult(
        str(ref.with_digest(desc.digest)),
        recipe,
        desc.digest,
        rebuilt[0] if rebuilt else None,
        layers.module.digest,
        rebuilt[1] if rebuilt else None,
        time.monotonic() - started,
        failure,
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
