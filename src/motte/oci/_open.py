"""Open a package once: :func:`open_package` reads and verifies everything a run and a trust
judgement need (the workload's manifest, Motte.toml, module, and its motte referrers) in one
pass over one repository, and returns it as one :class:`VerifiedPackage` value.
"""

from __future__ import annotations

from dataclasses import replace

from motte.errors import MotteError
from motte.oci._layout import LocalStore
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._mediatypes import DSSE_ENVELOPE_LAYER, TLOG_PROOF_LAYER
from motte.oci._package import Attachment, VerifiedPackage, read_workload
from motte.oci._reference import Reference, parse_reference
from motte.oci._repository import Repository, open_repository
from motte.oci._transfer import read_referrers

_LAYER_NAMES = {DSSE_ENVELOPE_LAYER: " (DSSE envelope)", TLOG_PROOF_LAYER: " (log proof)"}


def read_attachments(
    repo: Repository, subject: str, *, skipped: list[tuple[str, str]] | None = None
) -> tuple[Attachment, ...]:
    """The motte referrers of ``subject``, their manifests and every layer verified.

    A referrer that cannot be read intact is left out and, with ``skipped``, reported as
    (digest, why), as :func:`read_referrers` does: a stranger's junk must not deny the
    genuine package.
    """
    out = []
    for r in read_referrers(repo, subject, skipped=skipped):
        what = f"referrer {r.desc.digest}"
        try:
            layers = tuple(
                repo.blob(layer, f"{what} layer {i}{_LAYER_NAMES.get(layer.media_type, '')}")
                for i, layer in enumerate(r.manifest.layers)
            )
        except MotteError as e:
            if skipped is not None:
                skipped.append((r.desc.digest, e.message))
            continue
        out.append(Attachment(r.desc, r.manifest, layers))
    return tuple(out)


def open_package(
    ref: Reference | str,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    attachments: bool = True,
    encrypted_module: bool = True,
) -> VerifiedPackage:
    """``ref``'s package, every byte checked against the digest that names it, with its
    motte referrers (signed statements) unless ``attachments`` is false.

    ``encrypted_module=False``: an encrypted module's ciphertext is not read (nor hashed);
    a Keep decrypts it from the local store while reading it (:func:`decrypt_file`), each
    chunk authenticated by the AEAD and the plaintext checked against its signed digest.

    A tag is resolved once. A package whose own bytes do not verify raises; a referrer that
    does not verify is left out and said why (``skipped_referrers``).
    """
    if isinstance(ref, str):
        ref = parse_reference(ref)
    with open_repository(
        ref, store=store, allow_insecure_http=allow_insecure_http, limits=limits
    ) as repo:
        package = read_workload(repo, ref, encrypted_module=encrypted_module)
        if not attachments:
            return package
        skipped: list[tuple[str, str]] = []
        found = read_attachments(repo, package.digest, skipped=skipped)
    return replace(package, attachments=found, skipped_referrers=tuple(skipped))
