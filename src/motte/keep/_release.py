"""The Keep's side of secret release: fresh evidence for a key that exists only here.

:func:`release_secrets`:

1. a fresh P-256 release key pair, in this process's memory only (never written, never
   sent but its public half, dropped when the call returns);
2. ``GET /nonce`` from the Steward;
3. evidence from the Keep's backend with REPORT_DATA = ``release_report_data(release key,
   workload digest, nonce)`` (:mod:`motte.steward._release`);
4. ``POST /secrets/release`` naming the secrets (and versions) wanted, with the package's
   signed statements for release policies that name a signed namespace/name;
5. each sealed value is opened with the release key (HPKE), its ``info`` binding the
   secret's name and version, the workload digest and the nonce.

A TLS-terminating proxy, a log or the host between the Keep and the Steward sees the
public key and ciphertext only. A refusal raises :class:`motte.steward.SecretRefusedError`
with every reason the Steward gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from motte.keep.backends import Backend
    from motte.steward import Wanted


@dataclass(frozen=True, slots=True)
class ReleasedSecret:
    """A value the Steward released to this Keep. ``repr`` never shows it."""

    name: str
    version: int
    value: bytes = field(repr=False)


def release_secrets(
    steward: str,
    workload_digest: str,
    backend: Backend,
    wanted: Sequence[Wanted],
    *,
    statements: Sequence[bytes] = (),
    timeout: float = 30.0,
) -> dict[str, ReleasedSecret]:
    """The values of ``wanted``, released to this Keep; see the module doc."""
    from motte.steward import (
        ReleaseFormatError,
        ReleaseRequest,
        StewardClient,
        StewardUnreachableError,
        new_release_key,
        open_sealed,
        parse_answer,
        release_info,
        release_report_data,
        spki_of,
    )

    key = new_release_key()
    spki = spki_of(key.public_key())
    with StewardClient(steward, timeout=timeout) as client:
        nonce = client.nonce()
        evidence = backend.evidence(release_report_data(spki, workload_digest, nonce))
        request = ReleaseRequest(
            evidence, workload_digest, nonce, spki, tuple(wanted), tuple(statements)
        )
        answer = client.release(request.to_bytes())
    try:
        sealed = parse_answer(answer)
    except ReleaseFormatError as e:
        raise StewardUnreachableError(f"Steward {steward}: the release answer: {e}") from None
    asked = {w.name: w.version for w in wanted}
    out: dict[str, ReleasedSecret] = {}
    for item in sealed:
        if item.name not in asked or item.name in out:
            raise StewardUnreachableError(
                f"Steward {steward}: released {item.name}, which was not asked for"
            )
        if asked[item.name] not in (None, item.version):
            raise StewardUnreachableError(
                f"Steward {steward}: released {item.name} version {item.version}, not the "
                f"version {asked[item.name]} asked for"
            )
        info = release_info(item.name, item.version, workload_digest, nonce)
        value = open_sealed(key, item.sealed, info)
        if value is None:
            raise StewardUnreachableError(
                f"Steward {steward}: the sealed value of {item.name} does not open with this "
                "Keep's release key (changed on the way, or sealed for another request)"
            )
        out[item.name] = ReleasedSecret(item.name, item.version, value)
    missing = sorted(set(asked) - set(out))
    if missing:
        raise StewardUnreachableError(f"Steward {steward}: the answer lacks {', '.join(missing)}")
    return out
