"""Sigstore signatures attached to a package: bundle referrers and cosign's tag scheme.

**Bundle referrers** (cosign 3, sigstore-python): an OCI 1.1 manifest whose ``artifactType``
is a bundle media type, one layer holding the bundle JSON, ``subject`` = the workload
manifest. :class:`SigstoreChecker` verifies one offline against the consumer's pinned
``trusted_root.json`` (sigstore-python does every Sigstore check, see
:mod:`motte.sign._sigstore`) and only for signers someone trusts: a keyless identity
(certificate identity + OIDC issuer) that the namespace's root or the consumer's policy
names. A bundle by anyone else is not verified at all, and never changes an outcome.

What a verified bundle means for motte:

- a DSSE in-toto statement of a motte predicate (publication, release, provenance ...)
  means what the same statement means in a DSSE envelope signed by a key;
- cosign's image signature (DSSE predicate ``https://sigstore.dev/cosign/sign/v1``) and a
  message signature over the manifest bytes mean "this identity signed this digest": a
  publication of the digest (they carry no package name; see docs/supply-chain.md);
- SLSA provenance (``https://slsa.dev/provenance/v1``, GitHub's build types included) is
  build evidence for ``motte trust``.

**cosign's tag scheme** (``sha256-<hex>.sig``, ``.att``): read, and each signature is turned
into the v0.1 bundle it amounts to and handed to sigstore-python, whose verdict is reported.
Those tags carry a SET (``dev.sigstore.cosign/bundle``) but no inclusion proof, and
sigstore-python cannot verify such an entry: its bundle model (sigstore-models) refuses a
tlog entry without ``inclusionProof`` ("failed to load bundle: ... tlogEntries.0.
inclusionProof Field required"), and its client rule requires a proof with a checkpoint for
every bundle version, v0.1 included ("entry must contain inclusion proof, with
checkpoint"). They are ignored with that reason, never accepted unchecked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motte.errors import MotteError
from motte.oci import (
    ArtifactNotFoundError,
    Descriptor,
    MalformedArtifactError,
    Reference,
    Repository,
    read_referrers,
)
from motte.oci import mediatypes as mt
from motte.sign._errors import SigningUsageError
from motte.sign._predicates import MESSAGE_SIGNATURE
from motte.sign._sigstore import (
    MAX_BUNDLE_BYTES,
    SigstoreRefusedError,
    SigstoreVerified,
    default_trusted_root,
    parse_bundle,
    verify_bundle,
)
from motte.sign._trustroot import KeylessIdentity

_COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
_COSIGN_CERT = "dev.sigstore.cosign/certificate"
_COSIGN_BUNDLE = "dev.sigstore.cosign/bundle"


@dataclass(frozen=True, slots=True)
class StoredBundle:
    """A Sigstore bundle attached to a package: where it was found and its bytes."""

    referrer: str  # the referrer manifest's digest, or "sha256-<hex>.sig layer N"
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def read_sigstore_bundles(
    repo: Repository, subject: str, *, skipped: list[tuple[str, str]] | None = None
) -> list[StoredBundle]:
    """Every bundle referrer of ``subject``, its layer verified by digest.

    One that cannot be read is left out and, with ``skipped``, reported: anyone with push
    access can attach one.
    """
    out = []
    for r in read_referrers(
        repo, subject, skipped=skipped, artifact_types=mt.SIGSTORE_BUNDLE_ARTIFACTS
    ):
        what = f"referrer {r.desc.digest}"
        try:
            layers = r.manifest.layers
            if len(layers) != 1 or layers[0].media_type not in mt.SIGSTORE_BUNDLE_ARTIFACTS:
                raise MalformedArtifactError(f"{what}: expected one Sigstore bundle layer")
            if layers[0].size > MAX_BUNDLE_BYTES:
                raise MalformedArtifactError(f"{what}: bundle larger than {MAX_BUNDLE_BYTES}")
            data = repo.blob(layers[0], f"{what} layer 0 (Sigstore bundle)")
        except MotteError as e:
            if skipped is not None:
                skipped.append((r.desc.digest, e.message))
            continue
        out.append(StoredBundle(r.desc.digest, data))
    return out


def attach_bundle(
    repo: Repository, subject: Descriptor, bundle: bytes, *, created: str | None = None
) -> Descriptor:
    """Attach ``bundle`` to ``subject`` as cosign 3 does: an OCI 1.1 referrer whose
    ``artifactType`` and one layer are the bundle media type, with the empty config.

    For a bundle made elsewhere (``sigstore sign``, ``cosign sign-blob --bundle``) about a
    package's manifest digest. The bundle is not checked here: verification decides.
    """
    from motte.oci import Manifest

    empty = Descriptor.of(mt.OCI_EMPTY, mt.OCI_EMPTY_BYTES)
    layer = Descriptor.of(mt.SIGSTORE_BUNDLE_V03, bundle)
    content = "dsse-envelope" if b'"dsseEnvelope"' in bundle else "message-signature"
    annotations = {"dev.sigstore.bundle.content": content}
    if created:
        annotations[mt.ANN_CREATED] = created
    manifest = Manifest(
        config=empty,
        layers=(layer,),
        artifact_type=mt.SIGSTORE_BUNDLE_V03,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        annotations=annotations,
    )
    data = manifest.to_bytes()
    desc = Descriptor.of(mt.OCI_MANIFEST, data)
    with repo.session() as sink:
        for d, blob in ((empty, mt.OCI_EMPTY_BYTES), (layer, bundle)):
            if not sink.has_blob(d.digest):
                sink.put_blob(d, iter([blob]), f"bundle blob {d.digest}", advance=lambda n: None)
        sink.put_manifest(desc, data, subject=subject.digest)
    return desc


class SigstoreChecker:
    """Verifies package bundles for the keyless signers someone trusts, offline.

    ``identities`` are the signers whose bundles count (the namespace's and the policy's);
    the trusted root is loaded on first use from ``trusted_root`` (default
    ``MOTTE_HOME/sigstore/trusted_root.json``). Every failure raises a
    :class:`~motte.errors.MotteError` whose message says why the bundle was ignored.
    """

    def __init__(
        self, identities: Sequence[KeylessIdentity], trusted_root: Path | None = None
    ) -> None:
        self.identities = tuple(dict.fromkeys(identities))
        self.trusted_root_path = trusted_root
        self._root: Any = None
        self._root_problem: str | None = None

    def _trusted_root(self) -> Any:
        if self._root is None and self._root_problem is None:
            path = self.trusted_root_path or default_trusted_root()
            try:
                from motte.sign._sigstore import load_trusted_root

                if self.trusted_root_path is None and not path.exists():
                    raise SigningUsageError(
                        f"no Sigstore trusted root is pinned ({path})",
                        hint="motte key sigstore-root install FILE",
                    )
                self._root = load_trusted_root(path)
            except MotteError as e:
                self._root_problem = e.message
        if self._root_problem is not None:
            raise SigstoreRefusedError(f"cannot verify Sigstore bundles: {self._root_problem}")
        return self._root

    def check(self, data: bytes, subject: str, where: str) -> SigstoreVerified:
        """Verify ``data`` (a bundle) as a signature about ``subject`` by a trusted signer."""
        if not self.identities:
            raise SigstoreRefusedError(
                f"{where}: Sigstore bundle not checked: nobody you trust signs keyless "
                "(no identity in the namespace's trust root or your policy)"
            )
        bundle = parse_bundle(data, where)
        identity, issuer = certificate_signer(bundle.signing_certificate)
        trusted = [i for i in self.identities if i.issuer == issuer and i.identity in identity]
        if not trusted:
            names = ", ".join(identity) or "no identity"
            raise SigstoreRefusedError(
                f"{where}: Sigstore bundle signed by {names} (issuer {issuer or 'unknown'}), "
                "not an identity you trust"
            )
        return verify_bundle(
            subject,
            bundle,
            self._trusted_root(),
            identity=trusted[0].identity,
            issuer=trusted[0].issuer,
            where=where,
        )


def certificate_signer(cert: Any) -> tuple[list[str], str | None]:
    """The certificate's identities (SAN values) and OIDC issuer, unverified.

    Only to pick which trusted identity to verify against: sigstore-python's policy then
    checks the pair exactly, after the certificate chain. The issuer is read from
    1.3.6.1.4.1.57264.1.8 (a DER UTF8String), else the legacy .1.1 (raw bytes).
    """
    from cryptography import x509

    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.RFC822Name)
        names += san.get_values_for_type(x509.UniformResourceIdentifier)
        names += [
            on.value.decode("utf-8", "replace")
            for on in san.get_values_for_type(x509.OtherName)
            if on.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7"
        ]
    except (x509.ExtensionNotFound, ValueError):
        pass
    issuer = None
    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except (x509.ExtensionNotFound, AttributeError):
            continue
        issuer = _der_utf8(raw) if der else raw.decode("utf-8", "replace")
        if issuer:
            break
    return names, issuer


def _der_utf8(raw: bytes) -> str | None:
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    n, i = raw[1], 2
    if n & 0x80:
        width = n & 0x7F
        n, i = int.from_bytes(raw[2 : 2 + width], "big"), 2 + width
    return raw[i : i + n].decode("utf-8", "replace")


def statement_kind(verified: SigstoreVerified) -> tuple[str, dict[str, Any]]:
    """(predicate type, predicate) of a verified bundle; a message signature gets its own."""
    if verified.statement is None:
        return MESSAGE_SIGNATURE, {}
    predicate = verified.statement.get("predicate")
    ptype = verified.statement.get("predicateType")
    return (
        str(ptype) if isinstance(ptype, str) else "",
        predicate if isinstance(predicate, dict) else {},
    )


# -- cosign's tag scheme ---------------------------------------------------------------------


def read_cosign_tags(repo: Repository, ref: Reference, subject: str) -> list[tuple[str, str]]:
    """(where, why ignored) for each signature in ``subject``'s cosign ``.sig``/``.att`` tags.

    Each signature is rebuilt as the v0.1 bundle it amounts to and parsed by sigstore-python,
    whose reason is reported; nothing from these tags is counted (see the module docstring).
    """
    out: list[tuple[str, str]] = []
    hexpart = subject.split(":", 1)[1]
    for suffix in ("sig", "att"):
        tag = f"sha256-{hexpart}.{suffix}"
        try:
            _, data = repo.resolve(
                Reference(ref.namespace, ref.name, tag, None, ref.registry, ref.scheme)
            )
        except ArtifactNotFoundError:
            continue
        except MotteError as e:
            out.append((tag, f"cosign tag {tag}: {e.message}"))
            continue
        try:
            doc = json.loads(data)
            layers = [
                Descriptor.from_dict(d, f"{tag}.layers[{i}]") for i, d in enumerate(doc["layers"])
            ]
        except (ValueError, KeyError, TypeError, MotteError) as e:
            why = e.message if isinstance(e, MotteError) else "not an image manifest with layers"
            out.append((tag, f"cosign tag {tag}: {why}"))
            continue
        for i, layer in enumerate(layers[:64]):
            where = f"{tag} layer {i}"
            out.append((where, f"cosign tag {where}: {_legacy_reason(repo, layer, where)}"))
    return out


def _legacy_reason(repo: Repository, layer: Descriptor, where: str) -> str:
    """Why one cosign tag-scheme signature is not counted, in sigstore-python's words."""
    ann = layer.annotations
    if not ann.get(_COSIGN_CERT):
        return "a keyed cosign signature (no certificate): not read, only keyless signers are"
    if not ann.get(_COSIGN_BUNDLE):
        return "no transparency log entry (no dev.sigstore.cosign/bundle annotation)"
    try:
        blob = repo.blob(layer, where)
        bundle = legacy_bundle(ann, blob, layer.media_type)
        parse_bundle(bundle, where)
    except MotteError as e:
        reason = e.message.removeprefix(f"{where}: ")
    except (ValueError, KeyError, TypeError) as e:
        return f"its annotations do not parse: {e}"
    else:
        return "parsed as a Sigstore bundle, but cosign's tag scheme is not counted"
    if "inclusion proof" in reason or "inclusionProof" in reason:
        return (
            "it carries a SET but no inclusion proof, and sigstore-python cannot verify "
            f"that: {reason.removeprefix('not a Sigstore bundle: ')} (its bundle model "
            "requires an inclusion proof, and its client one with a checkpoint); re-sign "
            "with cosign 3, which attaches bundles as OCI referrers"
        )
    return reason


def legacy_bundle(annotations: dict[str, str], blob: bytes, media_type: str) -> bytes:
    """The v0.1 bundle a cosign tag-scheme signature amounts to (cosign's own mapping).

    Certificate from ``dev.sigstore.cosign/certificate``, the signature from
    ``dev.cosignproject.cosign/signature`` over the layer (a simple-signing payload), or
    the layer itself as a DSSE envelope (``.att``), and the tlog entry from
    ``dev.sigstore.cosign/bundle`` (``SignedEntryTimestamp`` + ``Payload``): no proof.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(annotations[_COSIGN_CERT].encode())
    rekor = json.loads(annotations[_COSIGN_BUNDLE])
    payload = rekor["Payload"]
    body = json.loads(base64.b64decode(payload["body"]))
    entry = {
        "logIndex": str(payload["logIndex"]),
        "logId": {"keyId": base64.b64encode(bytes.fromhex(payload["logID"])).decode()},
        "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
        "integratedTime": str(payload["integratedTime"]),
        "inclusionPromise": {"signedEntryTimestamp": rekor["SignedEntryTimestamp"]},
        "canonicalizedBody": payload["body"],
    }
    content: dict[str, Any]
    if media_type == mt.DSSE_ENVELOPE_LAYER:
        content = {"dsseEnvelope": json.loads(blob)}
    else:
        content = {
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(hashlib.sha256(blob).digest()).decode(),
                },
                "signature": annotations[_COSIGN_SIGNATURE],
            }
        }
    doc = {
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {
                "certificates": [
                    {"rawBytes": base64.b64encode(cert.public_bytes(Encoding.DER)).decode()}
                ]
            },
            "tlogEntries": [entry],
        },
        **content,
    }
    return json.dumps(doc).encode()
