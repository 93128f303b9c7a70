"""Sigstore bundles (cosign, sigstore-python), verified offline by the ``sigstore`` package.

motte does not re-derive Sigstore's checks: sigstore-python's ``Verifier`` does them all,
against a ``trusted_root.json`` the consumer pins (never fetched: no network in
verification). In its order: the bundle's media type and version rules, verified times (a
Rekor v1 SET's integrated time, RFC 3161 timestamps from a trusted TSA), the certificate
chain to a trusted Fulcio CA at those times, the embedded SCT, the code-signing profile and
the identity policy (SAN + OIDC issuer, compared exactly), the Rekor entry (v1 inclusion
proof + checkpoint + SET, or v2 checkpoint), that entry's consistency with the bundle
(CVE-2022-36056), and the signature over the artifact or DSSE's PAE.

What motte adds: for a DSSE bundle, the in-toto statement's subject must name the
artifact's SHA-256 (sigstore-python leaves that to the caller), and the statement is
returned for motte to read (a publication, a release, SLSA provenance).

Keyed bundles (``verificationMaterial.publicKey``, no certificate) are not supported by
sigstore-python 4.x at all (``Bundle.from_json`` refuses them: "expected certificate in
bundle"); :func:`verify_keyed_bundle` verifies them with sigstore-python's own log and
timestamp checks plus the key the consumer supplies (see there).

Exit statuses for ``motte verify FILE --bundle``: 0 verified; 1 refused (the reason);
2 bad usage or a malformed bundle (not JSON, not a bundle, an unknown media type).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.errors import ExitStatus
from motte.home import motte_home
from motte.sign._errors import EnvelopeFormatError, SignatureError, SigningUsageError

if TYPE_CHECKING:
    from sigstore.models import Bundle, TrustedRoot

INTOTO_STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
MAX_BUNDLE_BYTES = 4 << 20


class SigstoreBundleError(EnvelopeFormatError):
    """A bundle or trusted root that is not one (bad JSON, schema, media type): exit 2."""

    exit_status = ExitStatus.USAGE


class SigstoreRefusedError(SignatureError):
    """A well-formed bundle that does not verify (or lacks the evidence it must carry)."""


def require_sigstore() -> None:
    """Raise a usage error naming the extra when sigstore-python is not installed."""
    try:
        import sigstore  # noqa: F401
    except ModuleNotFoundError:
        raise SigningUsageError(
            "verifying Sigstore bundles needs the sigstore package",
            hint="pip install 'motte[sigstore]'",
        ) from None


def default_trusted_root() -> Path:
    return motte_home() / "sigstore" / "trusted_root.json"


@dataclass(frozen=True, slots=True)
class SigstoreVerified:
    """What verifying a bundle established."""

    artifact_digest: str  # sha256:<hex> of what was verified
    content: str  # "message-signature" or "dsse"
    identity: str | None = None  # keyless: the certificate identity
    issuer: str | None = None
    key: str | None = None  # keyed: the keyid (SHA-256 of the DER SPKI)
    log: str = ""  # which log entry vouches for it
    #: For DSSE: the in-toto statement (parsed JSON) the bundle signs.
    statement: dict[str, Any] | None = field(default=None, compare=False)
    #: The Rekor entry: its log (first 8 bytes of the log id, hex), index, tree size, and
    #: the integrated time a verified SET vouches for (POSIX seconds), if any.
    log_id: str = ""
    log_index: int = -1
    tree_size: int = 0
    log_time: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "artifact": self.artifact_digest,
            "content": self.content,
            "log": self.log,
        }
        if self.identity is not None:
            out |= {"identity": self.identity, "issuer": self.issuer}
        if self.key is not None:
            out["key"] = self.key
        if self.statement is not None:
            out["predicate_type"] = self.statement.get("predicateType")
        return out

    def lines(self) -> list[str]:
        who = f"{self.identity} (issuer {self.issuer})" if self.identity else f"key {self.key}"
        out = [f"signer      {who}", f"content     {self.content}", f"log         {self.log}"]
        if self.statement is not None:
            out.append(f"statement   {self.statement.get('predicateType')}")
        return out


def load_trusted_root(path: Path | None = None) -> TrustedRoot:
    """A pinned Sigstore trusted root (``trusted_root.json``); never fetched over TUF."""
    require_sigstore()
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot.v1 import TrustedRoot as RawTrustedRoot

    path = path or default_trusted_root()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SigningUsageError(
            f"{path}: cannot read the Sigstore trusted root: {e.strerror}",
            hint="pin one: motte key sigstore-root install FILE (or --trusted-root FILE)",
        ) from None
    try:
        return TrustedRoot(RawTrustedRoot.from_json(data))
    except Exception as e:  # sigstore raises pydantic / its own errors alike
        raise SigstoreBundleError(
            f"{path}: not a Sigstore trusted root: {_first_line(e)}"
        ) from None


@dataclass(frozen=True, slots=True)
class TrustedRootSummary:
    """What a pinned Sigstore trusted root holds (for ``motte key sigstore-root``)."""

    path: Path
    digest: str  # sha256 of the file's bytes: compare it with the publisher's
    media_type: str
    tlogs: tuple[str, ...]  # base URLs
    ctlogs: int
    certificate_authorities: tuple[str, ...]  # URIs
    timestamp_authorities: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "digest": self.digest,
            "media_type": self.media_type,
            "tlogs": list(self.tlogs),
            "ctlogs": self.ctlogs,
            "certificate_authorities": list(self.certificate_authorities),
            "timestamp_authorities": list(self.timestamp_authorities),
        }


def summarize_trusted_root(path: Path | None = None) -> TrustedRootSummary:
    """Load (and so validate) a trusted root and say what it trusts."""
    path = path or default_trusted_root()
    root = load_trusted_root(path)
    inner = root._inner
    return TrustedRootSummary(
        path,
        "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        str(inner.media_type),
        tuple(str(t.base_url) for t in inner.tlogs or []),
        len(inner.ctlogs or []),
        tuple(str(ca.uri) for ca in inner.certificate_authorities or []),
        tuple(str(ca.uri) for ca in inner.timestamp_authorities or []),
    )


def install_trusted_root(source: Path) -> TrustedRootSummary:
    """Pin ``source`` as this installation's Sigstore trusted root, after validating it.

    It is copied to ``MOTTE_HOME/sigstore/trusted_root.json`` (atomically), where ``motte
    verify``, ``trust`` and ``run`` read it. Nothing is fetched: the consumer chooses the
    file (Sigstore's public-good root comes from its TUF repository, or a copy you trust).
    """
    from motte.fsutil import atomic_write_bytes

    summarize_trusted_root(source)  # refuses what is not a trusted root
    target = default_trusted_root()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, source.read_bytes())
    return summarize_trusted_root(target)


def parse_bundle(data: bytes, where: str) -> Bundle:
    """Parse a bundle with sigstore-python, sorting malformed (exit 2) from refused (1).

    sigstore-python checks the version rules while parsing (exactly one log entry, an
    inclusion proof with a checkpoint, a SET or a timestamp): a bundle that breaks them is
    well-formed but lacks evidence it must carry, so it is refused, not malformed.
    """
    require_sigstore()
    from sigstore.models import Bundle, InvalidBundle

    if len(data) > MAX_BUNDLE_BYTES:
        raise SigstoreBundleError(f"{where}: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        return Bundle.from_json(data)
    except InvalidBundle as e:
        text = _first_line(e)
        if text.startswith(("failed to load bundle", "unsupported bundle format")):
            raise SigstoreBundleError(f"{where}: not a Sigstore bundle: {text}") from None
        raise SigstoreRefusedError(f"{where}: {text}") from None


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split("\n")[:2]).strip()
    return text[:300]


def verify_bundle(
    artifact: bytes | str,
    bundle: Bundle,
    trusted_root: TrustedRoot,
    *,
    identity: str,
    issuer: str,
    where: str = "bundle",
) -> SigstoreVerified:
    """Verify a keyless bundle over ``artifact`` (its bytes, or ``sha256:HEX``) offline.

    The signer must be exactly (``identity``, ``issuer``). Raises
    :class:`SigstoreRefusedError` with sigstore-python's reason.
    """
    from sigstore.errors import VerificationError
    from sigstore.hashes import Hashed
    from sigstore.verify import Verifier, policy
    from sigstore_models.common.v1 import HashAlgorithm

    digest = _digest_of(artifact)
    verifier = Verifier(trusted_root=trusted_root)
    pol = policy.Identity(identity=identity, issuer=issuer)
    try:
        if bundle._dsse_envelope is not None:
            ptype, payload = verifier.verify_dsse(bundle, pol)
            statement = _statement_about(ptype, payload, digest, where)
            content = "dsse"
        else:
            statement = None
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest[7:]))
            verifier.verify_artifact(hashed, bundle, pol)
            content = "message-signature"
    except VerificationError as e:
        raise SigstoreRefusedError(f"{where}: {_first_line(e)}") from None
    entry = bundle.log_entry._inner
    return SigstoreVerified(
        digest,
        content,
        identity,
        issuer,
        None,
        _log_line(bundle),
        statement,
        log_id=bytes(entry.log_id.key_id).hex()[:16] if entry.log_id else "?",
        log_index=int(entry.log_index),
        tree_size=int(entry.inclusion_proof.tree_size) if entry.inclusion_proof else 0,
        log_time=int(entry.integrated_time)
        if entry.integrated_time and entry.inclusion_promise
        else None,
    )


def _digest_of(artifact: bytes | str) -> str:
    if isinstance(artifact, str):
        algo, _, hexpart = artifact.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise SigningUsageError(f"{artifact}: expected sha256:<64 hex digits>")
        return artifact
    return "sha256:" + hashlib.sha256(artifact).hexdigest()


def _statement_about(ptype: str, payload: bytes, digest: str, where: str) -> dict[str, Any]:
    """The DSSE payload as an in-toto statement whose subject names ``digest``."""
    if ptype != "application/vnd.in-toto+json":
        raise SigstoreRefusedError(f"{where}: DSSE payload type {ptype} is not in-toto")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SigstoreRefusedError(f"{where}: the signed statement is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") not in INTOTO_STATEMENT_TYPES:
        raise SigstoreRefusedError(f"{where}: the signed payload is not an in-toto statement")
    subjects = statement.get("subject")
    hexpart = digest.split(":", 1)[1]
    if not isinstance(subjects, list) or not any(
        isinstance(s, dict)
        and isinstance(s.get("digest"), dict)
        and s["digest"].get("sha256") == hexpart
        for s in subjects
    ):
        raise SigstoreRefusedError(f"{where}: the signed statement is not about {digest}")
    return statement


def _log_line(bundle: Bundle) -> str:
    entry = bundle.log_entry._inner
    kind = f"{entry.kind_version.kind} {entry.kind_version.version}"
    when = ""
    if entry.integrated_time and entry.inclusion_promise:
        t = dt.datetime.fromtimestamp(int(entry.integrated_time), dt.UTC)
        when = f", integrated {t.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    log_id = bytes(entry.log_id.key_id).hex()[:16] if entry.log_id else "?"
    return f"log {log_id} entry {entry.log_index} ({kind}{when})"


def verify_blob_bundle(
    file: Path,
    bundle_path: Path,
    *,
    trusted_root: Path | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    key: Path | None = None,
) -> SigstoreVerified:
    """``motte verify FILE --bundle B``: as ``cosign verify-blob``, offline.

    ``file`` may also be written ``sha256:HEX`` (an OCI manifest digest, as for cosign's
    attestations of an image) when no such file exists.
    """
    artifact: bytes | str
    if str(file).startswith("sha256:") and not file.exists():
        artifact = str(file)
    else:
        try:
            artifact = file.read_bytes()
        except OSError as e:
            raise SigningUsageError(f"{file}: {e.strerror}") from None
    try:
        data = bundle_path.read_bytes()
    except OSError as e:
        raise SigningUsageError(f"{bundle_path}: {e.strerror}") from None
    root = load_trusted_root(trusted_root)
    if key is not None:
        from motte.sign._keys import load_public_key

        return verify_keyed_bundle(
            artifact, data, root, load_public_key(str(key)), where=str(bundle_path)
        )
    assert identity is not None and issuer is not None
    bundle = parse_bundle(data, str(bundle_path))
    return verify_bundle(
        artifact, bundle, root, identity=identity, issuer=issuer, where=str(bundle_path)
    )


def verify_keyed_bundle(
    artifact: bytes | str,
    data: bytes,
    trusted_root: TrustedRoot,
    key: Any,
    *,
    where: str = "bundle",
) -> SigstoreVerified:
    """A keyed bundle (``publicKey`` hint, no certificate), with the consumer's key.

    sigstore-python 4.x refuses to parse these ("expected certificate in bundle") and has no
    keyed API (its maintainers: "won't be supported", sigstore/rekor-tiles#289). So motte
    parses the bundle with sigstore's own protobuf models and reuses sigstore-python's checks
    for everything that does not involve a certificate: the log entry's inclusion proof,
    signed checkpoint and SET (``TransparencyLogEntry._verify`` with the trusted root's
    Rekor keys) and each RFC 3161 timestamp against the trusted TSAs. What is left is the
    part a certificate would have done: the supplied key must verify the signature over the
    artifact, and the logged entry (hashedrekord 0.0.1 or 0.0.2) must name the same digest,
    signature and key (CVE-2022-36056). At least one verified time is required, as for
    keyless bundles. DSSE keyed bundles are refused (not needed by any publisher here).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from rfc3161_client import decode_timestamp_response
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import VerificationError
    from sigstore.models import TransparencyLogEntry
    from sigstore.verify import Verifier
    from sigstore_models.bundle.v1 import Bundle as RawBundle

    if len(data) > MAX_BUNDLE_BYTES:
        raise SigstoreBundleError(f"{where}: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        raw = RawBundle.from_json(data)
    except ValueError as e:
        raise SigstoreBundleError(f"{where}: not a Sigstore bundle: {_first_line(e)}") from None
    known = (
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    )
    if raw.media_type not in known:
        raise SigstoreBundleError(f"{where}: unsupported bundle media type {raw.media_type!r}")
    material = raw.verification_material
    if material.public_key is None:
        raise SigstoreRefusedError(f"{where}: not a keyed bundle: verify it with --identity")
    if raw.message_signature is None:
        raise SigstoreRefusedError(f"{where}: keyed DSSE bundles are not supported")
    if len(material.tlog_entries or []) != 1:
        raise SigstoreRefusedError(f"{where}: expected exactly one log entry in bundle")
    digest = _digest_of(artifact)
    signature = bytes(raw.message_signature.signature)
    try:
        entry = TransparencyLogEntry(material.tlog_entries[0])
        entry._verify(trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
    except VerificationError as e:
        raise SigstoreRefusedError(f"{where}: invalid log entry: {_first_line(e)}") from None
    except Exception as e:  # InvalidBundle: no proof or checkpoint
        raise SigstoreRefusedError(f"{where}: {_first_line(e)}") from None
    times = []
    inner = entry._inner
    if inner.integrated_time and inner.inclusion_promise:
        times.append("SET")
    verifier = Verifier(trusted_root=trusted_root)
    tsd = material.timestamp_verification_data
    for ts in (tsd.rfc3161_timestamps if tsd else None) or []:
        try:
            response = decode_timestamp_response(bytes(ts.signed_timestamp))
        except ValueError:
            raise SigstoreRefusedError(f"{where}: an RFC 3161 timestamp does not parse") from None
        if verifier._verify_signed_timestamp(response, signature) is not None:
            times.append("TSA")
    if not times:
        raise SigstoreRefusedError(f"{where}: not enough sources of verified time")
    # The signature, with the consumer's key (ECDSA P-256 over SHA-256 of the artifact).
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    public = load_der_public_key(key.spki_der)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SigstoreRefusedError(f"{where}: the key is not ECDSA (Sigstore keyed bundles)")
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    try:
        public.verify(signature, bytes.fromhex(digest[7:]), ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise SigstoreRefusedError(f"{where}: signature is invalid for input") from None
    md = raw.message_signature.message_digest
    if md is not None and bytes(md.digest).hex() != digest[7:]:
        raise SigstoreRefusedError(f"{where}: bundle message digest mismatch")
    # The logged entry must be this signing: digest, signature and key (CVE-2022-36056).
    try:
        body = json.loads(inner.canonicalized_body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not _hashedrekord_matches(body, digest, signature, spki):
        raise SigstoreRefusedError(
            f"{where}: transparency log entry is inconsistent with other materials"
        )
    keyid = hashlib.sha256(spki).hexdigest()
    return SigstoreVerified(
        digest, "message-signature", None, None, keyid, _log_line_raw(inner, times)
    )


def _hashedrekord_matches(body: Any, digest: str, signature: bytes, spki: bytes) -> bool:
    from cryptography.hazmat.primitives import serialization

    try:
        if not isinstance(body, dict) or body.get("kind") != "hashedrekord":
            return False
        spec = body["spec"]
        if body.get("apiVersion") == "0.0.1":
            logged_hash = spec["data"]["hash"]
            logged_sig = base64.b64decode(spec["signature"]["content"])
            pem = base64.b64decode(spec["signature"]["publicKey"]["content"])
            logged_key = serialization.load_pem_public_key(pem).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return (
                logged_hash.get("algorithm") == "sha256"
                and logged_hash.get("value") == digest[7:]
                and logged_sig == signature
                and logged_key == spki
            )
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return False


def _log_line_raw(inner: Any, times: list[str]) -> str:
    log_id = bytes(inner.log_id.key_id).hex()[:16] if inner.log_id else "?"
    kind = f"{inner.kind_version.kind} {inner.kind_version.version}"
    return f"log {log_id} entry {inner.log_index} ({kind}; verified time: {', '.join(times)})"
