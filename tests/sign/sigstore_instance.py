"""A Sigstore instance of our own, built with ``cryptography``, for keyless tests offline.

The public-good instance cannot sign in a test (it needs an OIDC login and the network),
so this module plays each of its parts with real keys and real encodings, and sigstore-python
verifies the result exactly as it verifies bundles from the real instance:

- **Fulcio**: a self-signed ECDSA P-256 CA that issues a 10-minute leaf with the identity as
  its (critical) SAN, KeyUsage digitalSignature, EKU codeSigning, the OIDC issuer in both
  extensions sigstore-python and cosign read (1.3.6.1.4.1.57264.1.1, raw bytes, which
  sigstore-python's ``Identity`` policy checks; and .1.8, a DER UTF8String), and an embedded
  RFC 6962 precertificate SCT.
- **CT log**: an ECDSA P-256 key signing that SCT over (issuer key hash, TBS without the SCT
  extension), as RFC 6962 section 3.2 says.
- **Rekor v1**: an ECDSA P-256 log key; each entry (hashedrekord 0.0.1 for a message
  signature, dsse 0.0.1 for a DSSE envelope) gets an RFC 6962 inclusion proof in a tree of
  several leaves, a C2SP signed-note checkpoint over its root, and a SET (the log key's
  signature over the RFC 8785 JSON of body, integratedTime, logID and logIndex).

:meth:`SigstoreInstance.trusted_root` is the ``trusted_root.json`` a consumer pins.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
GITHUB = "https://token.actions.githubusercontent.com"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _der_octet_string(data: bytes) -> bytes:
    return b"\x04" + _der_len(len(data)) + data


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_len(len(raw)) + raw


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def _inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), lowest level first."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*_inclusion_path(index, leaves[:k]), _mth(leaves[k:])]
    return [*_inclusion_path(index - k, leaves[k:]), _mth(leaves[:k])]


def _rfc8785(obj: dict[str, Any]) -> bytes:
    # Only strings and integers here, keys ASCII: sorted compact JSON is RFC 8785.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class SigstoreInstance:
    """A CA, a CT log and a Rekor v1 log; ``now`` is when the instance signs."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    name: str = "motte-test"
    ca_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    #: Leaf hashes of every entry logged so far (a few others first, so proofs have a path).
    leaves: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        start = self.now - dt.timedelta(days=1)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} fulcio"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.leaves = [_leaf_hash(b"other entry %d" % i) for i in range(3)]

    # -- the trusted root a consumer pins ----------------------------------------------------

    def trusted_root(self) -> bytes:
        start = (self.now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def log(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": b64(hashlib.sha256(spki(key)).digest())},
            }

        doc = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(f"https://rekor.{self.name}.invalid", self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name} fulcio"},
                    "uri": f"https://fulcio.{self.name}.invalid",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log(f"https://ctfe.{self.name}.invalid", self.ct_key)],
            "timestampAuthorities": [],
        }
        return json.dumps(doc, indent=2).encode()

    # -- Fulcio ----------------------------------------------------------------------------

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        identity: str,
        issuer: str,
        *,
        legacy_issuer: bool = True,
        with_sct: bool = True,
    ) -> x509.Certificate:
        """A Fulcio-style leaf for ``key``: SAN ``identity``, OIDC ``issuer``, SCT embedded."""
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(seconds=30))
            .not_valid_after(self.now + dt.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        )
        if legacy_issuer:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), False
            )
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OIDC_ISSUER_V2, _der_utf8(issuer)), False
        )
        precert = builder.sign(self.ca_key, hashes.SHA256())
        if not with_sct:
            return precert
        sct_list = self._sct(precert.tbs_certificate_bytes)
        leaf = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST, _der_octet_string(sct_list)), False
        ).sign(self.ca_key, hashes.SHA256())
        # The SCT signs the TBS without its own extension: the two must agree.
        assert leaf.tbs_precertificate_bytes == precert.tbs_certificate_bytes
        return leaf

    def _sct(self, tbs: bytes) -> bytes:
        """An RFC 6962 SignedCertificateTimestampList with one precert SCT over ``tbs``."""
        log_id = hashlib.sha256(spki(self.ct_key)).digest()
        millis = int(self.now.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(spki(self.ca_key)).digest()
        signed = (
            struct.pack("!BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)
        )
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B", 0)
            + log_id
            + struct.pack("!QH", millis, 0)
            + struct.pack("!BBH", 4, 3, len(sig))
            + sig
        )
        one = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(one)) + one

    # -- Rekor v1 --------------------------------------------------------------------------

    def log_entry(self, body: bytes) -> dict[str, Any]:
        """Append ``body`` and return its bundle tlog entry: proof, checkpoint and SET."""
        self.leaves.append(_leaf_hash(body))
        index, size = len(self.leaves) - 1, len(self.leaves)
        root = _mth(self.leaves)
        path = _inclusion_path(index, self.leaves)
        log_id = hashlib.sha256(spki(self.rekor_key)).digest()
        origin = f"rekor.{self.name}.invalid - 1"
        note = f"{origin}\n{size}\n{b64(root)}\n"
        sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + f"\n\u2014 rekor.{self.name}.invalid {b64(log_id[:4] + sig)}\n"
        integrated = int(self.now.timestamp())
        set_payload = _rfc8785(
            {
                "body": b64(body),
                "integratedTime": integrated,
                "logID": log_id.hex(),
                "logIndex": index,
            }
        )
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        kind = json.loads(body)
        return {
            "logIndex": str(index),
            "logId": {"keyId": b64(log_id)},
            "kindVersion": {"kind": kind["kind"], "version": kind["apiVersion"]},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": b64(set_sig)},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(size),
                "hashes": [b64(h) for h in path],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": b64(body),
        }

    # -- signing, as cosign / sigstore-python do --------------------------------------------

    def sign_dsse(
        self,
        statement: dict[str, Any],
        identity: str,
        issuer: str = GITHUB,
        **issue: Any,
    ) -> bytes:
        """A v0.3 bundle with a DSSE envelope over ``statement`` (in-toto), logged as dsse 0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key, identity, issuer, **issue)
        payload_type = "application/vnd.in-toto+json"
        payload = json.dumps(statement, separators=(",", ":")).encode()
        sig = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(sig)}],
        }
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [{"signature": b64(sig), "verifier": b64(cert_pem)}],
            },
        }
        return self._bundle(cert, self.log_entry(_rfc8785(body)), {"dsseEnvelope": envelope})

    def sign_message(
        self, artifact: bytes, identity: str, issuer: str = GITHUB, **issue: Any
    ) -> bytes:
        """A v0.3 bundle with a message signature over ``artifact``, logged as hashedrekord."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key, identity, issuer, **issue)
        digest = hashlib.sha256(artifact).digest()
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                "signature": {"content": b64(sig), "publicKey": {"content": b64(cert_pem)}},
            },
        }
        content = {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                "signature": b64(sig),
            }
        }
        return self._bundle(cert, self.log_entry(_rfc8785(body)), content)

    def _bundle(
        self, cert: x509.Certificate, entry: dict[str, Any], content: dict[str, Any]
    ) -> bytes:
        doc = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry],
            },
            **content,
        }
        return json.dumps(doc, indent=2).encode()


def statement(
    subject_digest: str, predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 about one sha256 digest."""
    algo, _, hexpart = subject_digest.partition(":")
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "workload", "digest": {algo: hexpart}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def cosign_legacy_signature(
    inst: SigstoreInstance, manifest_digest: str, identity: str, issuer: str = GITHUB
) -> tuple[bytes, dict[str, str]]:
    """A ``.sig`` layer as cosign's tag scheme stores it: the simple-signing payload and
    its annotations (signature, certificate, and the Rekor SET with its entry, no proof)."""
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": "registry.example/acme/hello"},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    bundle = json.loads(inst.sign_message(payload, identity, issuer))
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    cert = x509.load_der_x509_certificate(
        base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"])
    )
    rekor = {
        "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": int(entry["integratedTime"]),
            "logIndex": int(entry["logIndex"]),
            "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
        },
    }
    annotations = {
        "dev.cosignproject.cosign/signature": bundle["messageSignature"]["signature"],
        "dev.sigstore.cosign/certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "dev.sigstore.cosign/chain": inst.ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        "dev.sigstore.cosign/bundle": json.dumps(rekor),
    }
    return payload, annotations
