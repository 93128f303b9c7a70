"""Start a Keep the way ``motte run`` does: name the workload, attest, fetch, prepare.

What ``motte run TARGET`` may be pointed at:

* a local ``.wasm``, a ``Motte.toml``, a directory holding one, or a ``sha256:`` digest of a
  module in the local store (:func:`motte.manifest.resolve_target`); an existing path wins;
* otherwise a package reference, ``[registry/]namespace/name[:tag][@sha256:...]`` (the local
  OCI store, or a registry): a tag is resolved once, to a digest, before anything else.

The **workload digest** a Keep attests and its certificate names is the package digest for
a package (it covers Motte.toml and the module), and the module's digest for a local run.

With a Steward (``--steward`` or the manifest's ``steward``) the order is fixed:

1. know the digest (from the reference, the tag's resolution, the manifest's ``workload =
   "sha256:..."``, or the module file read once);
2. attest (:func:`motte.keep._attest.attest_keep`): the Steward verifies the evidence and
   issues the certificate, or refuses and nothing is fetched;
3. fetch by that digest and refuse bytes whose digest differs;
4. prepare (compile, link) and hand back the workload and its TLS identity.

A package is opened and verified once (:func:`motte.oci.open_package`): that one
:class:`motte.oci.VerifiedPackage` goes to the trust judgement and to the Keep, so its bytes
are read and hashed once (after the pull from a registry, which checks them as they come).

With a trust policy (``--trust-policy FILE``, else this host's
``MOTTE_HOME/trust/policy.toml`` when it exists), a package runs only if the policy accepts
it (:func:`motte.trust.enforce`, after the fetch and before anything is prepared), and a
local file or module digest does not run at all: there is no package to judge. A package's
own Motte.toml never chooses the policy it is judged by.

**Requests and grants** (:func:`motte.manifest.apply_grants`): a package run by reference
gets only the host resources this host grants (``--grant`` flags, the host policy file);
each request without a grant is one line of the refusal, before anything is prepared. A
manifest on this host's disk is the operator's own and is granted as written (the flags
override). Either way the listeners bind loopback unless a grant says where.

A package's own ``steward`` cannot be honoured before the package is fetched, so a package
whose Motte.toml names one must be run with ``--steward``: motte refuses rather than run a
workload its author meant to be attested.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from motte._digest import workload_digest
from motte.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from motte.keep._attest import KeepIdentity
    from motte.keep._workload import PreparedWorkload
    from motte.manifest import Granted, Grants, Overrides
    from motte.oci import Reference


class Launched:
    """A prepared workload, what it was started from, and its identity (None: no Steward)."""

    def __init__(
        self,
        workload: PreparedWorkload,
        *,
        digest: str,
        identity: KeepIdentity | None,
        reference: Reference | None,
        granted: Granted | None = None,
    ) -> None:
        self.workload = workload
        self.manifest = workload.manifest
        #: What the host granted, and in which mode (None: a bare module, the empty grant).
        self.granted = granted
        #: The workload digest attested (the package digest, or the module's for a local run).
        self.digest = digest
        self.identity = identity
        self.reference = reference


def _looks_local(target: str) -> bool:
    return target.startswith("sha256:") or os.path.lexists(target)


def _reference(target: str) -> Reference | None:
    from motte.oci import ReferenceSyntaxError, parse_reference

    try:
        return parse_reference(target)
    except ReferenceSyntaxError:
        return None


def launch(
    target: str,
    *,
    steward: str | None = None,
    backend: str | None = None,
    allow_insecure_sim: bool = False,
    sans: Sequence[str] = (),
    trust_policy: str | os.PathLike[str] | None = None,
    overrides: Overrides | None = None,
    on_attested: Callable[[KeepIdentity], None] | None = None,
    grants: Grants | None = None,
    host_policy: str | os.PathLike[str] | None = None,
    allow_rollback: bool = False,
) -> Launched:
    """Attest (when a Steward is configured), fetch, judge (when a trust policy is
    configured), grant and prepare ``target``; see the module docstring. ``overrides`` are
    the command line's changes to the manifest; ``grants`` its ``--grant`` flags;
    ``host_policy`` the host policy file (default :func:`motte.manifest.host_policy_path`);
    ``on_attested`` hears of the identity as soon as the Steward has issued it (before
    anything is fetched); ``allow_rollback`` lets the trust policy accept an older, expired
    or moved release, loudly and recorded (``motte run --allow-rollback``)."""
    from motte.manifest import Grants, Overrides

    overrides = overrides or Overrides()
    grants = grants or Grants()
    ref = None if _looks_local(target) else _reference(target)
    policy = _trust_policy_path(trust_policy)
    if ref is None:
        if policy is not None:
            from motte.trust import TrustUsageError

            raise TrustUsageError(
                f"{target}: a trust policy ({policy}) applies to this run, and a local "
                "workload is not a package it can judge",
                hint="package, sign and log it (motte package, motte sign), then run it by "
                "reference",
            )
        return _launch_local(
            target, steward, backend, allow_insecure_sim, sans, overrides, on_attested, grants
        )
    from motte.oci import ArtifactNotFoundError

    try:
        return _launch_package(
            ref,
            steward,
            backend,
            allow_insecure_sim,
            sans,
            overrides,
            on_attested,
            policy,
            grants,
            host_policy,
            allow_rollback,
        )
    except ArtifactNotFoundError as e:
        if ref.is_local and not any(c in target for c in ":@"):
            # Spelled like a path, and no such path either: say both.
            raise NotFoundError(
                f"{target}: no such file or directory, and no package {target} in the local store",
                hint=e.hint,
            ) from None
        raise


def _trust_policy_path(flag: str | os.PathLike[str] | None) -> Path | None:
    """The policy file a run enforces: the flag, else the host's when it exists."""
    if flag is not None:
        return Path(flag)
    from motte.home import motte_home

    host = motte_home() / "trust" / "policy.toml"
    return host if host.is_file() else None


def _check_flags(steward: str | None, backend: str | None, sans: Sequence[str]) -> None:
    if steward is None and (backend is not None or sans):
        flag = "--backend" if backend is not None else "--san"
        raise UsageError(
            f"{flag} needs a Steward: without one the Keep is not attested",
            hint='add --steward URL (or steward = "https://..." in Motte.toml)',
        )


def _attest(
    steward: str,
    digest: str,
    backend: str | None,
    allow_insecure_sim: bool,
    sans: Sequence[str],
    on_attested: Callable[[KeepIdentity], None] | None,
) -> KeepIdentity:
    from motte.keep._attest import DEFAULT_SANS, attest_keep
    from motte.keep.backends import choose_backend
    from motte.steward import check_steward_url

    check_steward_url(steward)
    chosen = choose_backend(backend, allow_insecure_sim=allow_insecure_sim)
    identity = attest_keep(steward, digest, chosen, sans=tuple(sans) or DEFAULT_SANS)
    if on_attested is not None:
        on_attested(identity)
    return identity


def _client_identity(identity: KeepIdentity | None) -> tuple[bytes, bytes] | None:
    """What the Keep's outbound TLS presents: its attested certificate (mutual TLS)."""
    return None if identity is None else (identity.chain_pem, identity.key_pem)


def _launch_local(
    target: str,
    steward: str | None,
    backend: str | None,
    allow_insecure_sim: bool,
    sans: Sequence[str],
    overrides: Overrides,
    on_attested: Callable[[KeepIdentity], None] | None,
    grants: Grants,
) -> Launched:
    from motte.keep._workload import MAX_WORKLOAD_BYTES, PreparedWorkload, WorkloadError
    from motte.manifest import resolve_target

    manifest = resolve_target(target)
    granted = None  # a bare module or a module digest: the empty grant, nothing to resolve
    if manifest.source is not None or grants:
        from motte.manifest import apply_grants

        # This host's own manifest: granted as written, the --grant flags overriding (a flag
        # for a bare module, which asks for nothing, is an error).
        granted = apply_grants(manifest, package=None, flags=grants)
        manifest = granted.manifest
    manifest = overrides.apply(manifest)
    steward = steward or manifest.steward
    _check_flags(steward, backend, sans)
    identity = None
    module = None
    if steward is None and (manifest.secret or manifest.volume):
        what = "secrets" if manifest.secret else "sealed volumes"
        raise UsageError(
            f"{manifest.source or target}: the workload asks for {what}: only an attested "
            "Keep can obtain them",
            hint="run it with --steward URL",
        )
    if steward is None:
        workload = PreparedWorkload.prepare(manifest)
        return Launched(
            workload, digest=workload.digest, identity=None, reference=None, granted=granted
        )
    if manifest.workload.digest is not None:
        digest = manifest.workload.digest
    else:
        # Read once: the bytes whose digest is attested are the bytes that run.
        assert manifest.workload.path is not None
        where = manifest.workload.where or str(manifest.workload.path)
        from motte._regular_file import read_regular

        try:
            module = read_regular(manifest.workload.path, MAX_WORKLOAD_BYTES)
        except OSError as e:
            raise NotFoundError(
                f"{where}: cannot read {manifest.workload.path}: {e.strerror}"
            ) from None
        if len(module) > MAX_WORKLOAD_BYTES:
            raise WorkloadError(f"{where}: workload is larger than 256 MiB")
        digest = workload_digest(module)
    identity = _attest(steward, digest, backend, allow_insecure_sim, sans, on_attested)
    confidential = None
    if manifest.secret:
        from motte.keep._secrets import obtain

        assert identity.source is not None
        confidential = obtain(steward, digest, identity.source, manifest, None)
    workload = PreparedWorkload.prepare(
        manifest, module=module, client_identity=_client_identity(identity)
    )
    if workload.digest != digest:  # a digest-named blob is verified by prepare; be explicit
        raise WorkloadError(f"the workload is {workload.digest}, not the attested {digest}")
    if confidential is not None:
        workload.deliver(confidential.secrets)
        workload.confidential = confidential
    if manifest.volume:
        assert identity.source is not None
        _open_volumes(workload, steward, digest, identity.source, None, ())
    return Launched(workload, digest=digest, identity=identity, reference=None, granted=granted)


def _open_volumes(
    workload: PreparedWorkload,
    steward: str,
    digest: str,
    backend: object,
    repository: str | None,
    statements: Sequence[bytes],
) -> None:
    """Open the sealed volumes (motte.keep._volumes) after attesting, each where the host
    granted it, and hand them to the workload's instances."""
    from motte.keep._volumes import open_volumes

    volumes = open_volumes(
        steward,
        digest,
        backend,  # type: ignore[arg-type]
        workload.manifest,
        repository=repository,
        statements=statements,
    )
    workload.attach_volumes(volumes)
    volumes.start()


def _launch_package(
    ref: Reference,
    steward: str | None,
    backend: str | None,
    allow_insecure_sim: bool,
    sans: Sequence[str],
    overrides: Overrides,
    on_attested: Callable[[KeepIdentity], None] | None,
    trust_policy: Path | None = None,
    grants: Grants | None = None,
    host_policy: str | os.PathLike[str] | None = None,
    allow_rollback: bool = False,
) -> Launched:
    from motte.keep._workload import PreparedWorkload, WorkloadError
    from motte.manifest import Workload, apply_grants, load_host_policy, parse_manifest
    from motte.oci import open_package, open_repository, pull

    # Read first: a malformed host policy stops the run before anything is fetched.
    policy = load_host_policy(None if host_policy is None else Path(host_policy))

    _check_flags(steward, backend, sans)
    digest = ref.digest
    if digest is None:
        # The tag is resolved once; from here on the package is named by its digest.
        with open_repository(ref) as repo:
            desc, _ = repo.resolve(ref)
        digest = desc.digest
    pinned = ref.with_digest(digest)
    identity = None
    if steward is not None:
        identity = _attest(steward, digest, backend, allow_insecure_sim, sans, on_attested)
    if not pinned.is_local:
        # Into the local store (verified, by digest): a listener's worker processes load the
        # module from there, by its digest, as the parent did.
        pull(pinned)
    # Opened and verified once: the trust judgement and the Keep both take this value.
    # The signed statements go to the trust judgement and, for secrets whose release policy
    # names a signed namespace/name, to the Steward.
    # An encrypted module stays in the store: the Keep decrypts it while reading it.
    package = open_package(
        pinned.local(),
        attachments=trust_policy is not None or steward is not None,
        encrypted_module=False,
    )
    if package.digest != digest:
        raise WorkloadError(
            f"{pinned}: the fetched package is {package.digest}, not the attested {digest}"
        )
    if trust_policy is not None:
        from motte.trust import enforce

        # Raises TrustRefusedError naming each failing area and its deciding rule.
        enforce(package, trust_policy, allow_rollback=allow_rollback)
    name = f"{pinned.pinned}/Motte.toml"
    try:
        text = package.manifest.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WorkloadError(f"{name}: not UTF-8 text (byte {e.start})") from None
    # A package's host paths (dir.host, file streams) are requests: they name nothing until
    # this host grants them (apply_grants, below). A package carries no host files.
    manifest = parse_manifest(text, base_dir=Path.cwd(), name=name, package=True)
    # The module runs from the package, named by its digest (in the local store, verified
    # on every read), never from a file the manifest's path would name here.
    manifest = manifest.replace(workload=Workload(digest=package.module_digest, where=name))
    if manifest.steward is not None and steward is None:
        raise UsageError(
            f"{name}: the package names steward {manifest.steward}, but the Keep was not "
            "attested before fetching it",
            hint=f"run it with --steward {manifest.steward}",
        )
    repository = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
    granted = apply_grants(
        manifest,
        package=str(ref),
        flags=grants,
        policy=policy.for_package(repository),
        policy_source=policy.source,
    )
    manifest = overrides.apply(granted.manifest)
    encryption = package.encryption
    if (manifest.secret or encryption is not None or manifest.volume) and identity is None:
        what = (
            "is encrypted"
            if encryption is not None
            else "asks for secrets"
            if manifest.secret
            else "asks for sealed volumes"
        )
        raise UsageError(
            f"{name}: the package {what}: only an attested Keep can obtain them",
            hint="run it with --steward URL",
        )
    statements: tuple[bytes, ...] = ()
    if package.attachments:
        statements = tuple(a.layers[0] for a in package.attachments if a.layers)
    if not manifest.secret and encryption is None:
        workload = PreparedWorkload.prepare(
            manifest, package=package, client_identity=_client_identity(identity)
        )
        if manifest.volume:
            assert steward is not None and identity is not None
            _open_volumes(workload, steward, digest, identity.source, pinned.repository, statements)
        return Launched(
            workload, digest=digest, identity=identity, reference=pinned, granted=granted
        )
    from motte.keep._secrets import obtain

    assert steward is not None and identity.source is not None
    confidential = obtain(steward, digest, identity.source, manifest, package)
    if encryption is not None:
        # The module that runs is the plaintext, named by the digest the signed manifest
        # gives it; it exists only in this process's memory.
        manifest = manifest.replace(
            workload=Workload(digest=encryption.plaintext_digest, where=name)
        )
        workload = PreparedWorkload.prepare(
            manifest,
            module=confidential.module,
            sealed_key=confidential.cache_key,
            verified_digest=encryption.plaintext_digest,  # decrypt_and_check compared it
            client_identity=_client_identity(identity),
        )
        confidential.module = None
    else:
        workload = PreparedWorkload.prepare(
            manifest, package=package, client_identity=_client_identity(identity)
        )
    workload.deliver(confidential.secrets)
    workload.confidential = confidential
    if manifest.volume:
        _open_volumes(workload, steward, digest, identity.source, pinned.repository, statements)
    return Launched(workload, digest=digest, identity=identity, reference=pinned, granted=granted)
