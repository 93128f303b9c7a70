"""A client for the OCI distribution API (spec v1.1), over httpx.

Only what motte needs: resolve a tag, fetch manifests and blobs (streamed, bounded, verified by
the caller), upload blobs in chunks (POST, PATCH..., PUT ?digest=), push manifests, and list
referrers with the referrers API or, where a registry lacks it (404), the referrers tag schema
(an index tagged ``sha256-<hex>``). Every URL requested, redirects and token realms included,
must be HTTPS or loopback unless the caller named the danger.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from motte.oci._auth import (
    Credentials,
    find_credentials,
    no_credentials_error,
    parse_challenge,
    refused_error,
    token_from_answer,
)
from motte.oci._digest import digest_hex
from motte.oci._errors import (
    ArtifactNotFoundError,
    AuthError,
    InsecureTransportError,
    OciError,
    RegistryError,
    TooLargeError,
)
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._mediatypes import OCI_INDEX, OCI_MANIFEST
from motte.oci._model import Descriptor, Index
from motte.oci._reference import Reference, check_transport, is_loopback

#: Upload chunk size: large enough that round trips do not dominate, small enough to show
#: progress and to stay under proxies' body limits.
UPLOAD_CHUNK = 8 << 20
_DOWNLOAD_CHUNK = 1 << 20
_ACCEPT_MANIFEST = f"{OCI_MANIFEST}, {OCI_INDEX}"
_MAX_SMALL_ANSWER = 1 << 20  # error bodies, upload-session answers
_MAX_TOKEN_ANSWER = 1 << 20


@dataclass(frozen=True, slots=True)
class _Answer:
    """A registry response read in full (bounded): status, headers, body, final URL."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: httpx.URL


class _Authenticator:
    """Answers the distribution spec's Basic and Bearer challenges (see motte.oci._auth).

    Not an ``httpx.Auth``: httpx reads every response an auth flow sees in full, and a
    hostile registry could send an endless 401 body. Here a 401's body is never read, and the
    token service's answer is read up to a bound.
    """

    def __init__(self, client: RegistryClient, credentials: Credentials | None) -> None:
        self._client = client
        self.registry = client.registry
        self.credentials = credentials
        self._token: str | None = None
        self._basic = False

    def _basic_header(self) -> str:
        assert self.credentials and self.credentials.username is not None
        raw = f"{self.credentials.username}:{self.credentials.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def headers(self) -> dict[str, str]:
        creds = self.credentials
        if creds and creds.token:
            return {"Authorization": "Bearer " + creds.token}
        if self._token:
            return {"Authorization": "Bearer " + self._token}
        if self._basic and creds:
            return {"Authorization": self._basic_header()}
        return {}

    def refused(self, what: str) -> AuthError:
        creds = self.credentials
        if creds and creds.token:
            return AuthError(
                f"{self.registry}: refused the bearer token from {creds.source} ({what})",
                hint="check the token has not expired and grants this repository",
            )
        if creds is None:
            return no_credentials_error(self.registry, what)
        return refused_error(self.registry, creds, what)

    def answer(self, challenge: str, what: str) -> None:
        """Get what the challenge asks for, so the retried request carries it."""
        creds = self.credentials
        if creds and creds.token:
            raise self.refused(what)
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not creds or creds.username is None:
                raise no_credentials_error(self.registry, what)
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.registry}: 401 with an unusable challenge ({what})")
        realm = params["realm"]
        self._client._check_url(realm)
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in params.get("scope", "").split(" ") if s]
        headers = {"Authorization": self._basic_header()} if creds and creds.username else {}
        answer = self._client._call(
            "GET",
            realm,
            params=query,
            headers=headers,
            what=f"token service {realm}",
            limit=_MAX_TOKEN_ANSWER,
            authenticate=False,
        )
        if answer.status_code in (401, 403):
            raise self.refused(what)
        if answer.status_code != 200:
            raise RegistryError(
                f"{self.registry}: token service {realm} answered {answer.status_code}"
            )
        self._token = token_from_answer(answer.content, realm)


class RegistryClient:
    """One repository in one registry. Use as a context manager (closes the connection pool)."""

    def __init__(
        self,
        ref: Reference,
        *,
        allow_insecure_http: bool = False,
        credentials: Credentials | None = None,
        limits: Limits = DEFAULT_LIMITS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_transport(ref, allow_insecure_http=allow_insecure_http)
        self.ref = ref
        self.registry = ref.registry or ""
        self.limits = limits
        self._allow_insecure = allow_insecure_http
        creds = credentials if credentials is not None else find_credentials(self.registry)
        self._auth = _Authenticator(self, creds)
        self._http = httpx.Client(
            base_url=ref.base_url,
            follow_redirects=True,
            timeout=httpx.Timeout(60.0, connect=10.0),
            transport=transport,
            event_hooks={"request": [lambda r: self._check_url(str(r.url))]},
            headers={"User-Agent": "motte"},
        )
        self._path = f"/v2/{ref.repository}"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _check_url(self, url: str) -> None:
        u = httpx.URL(url)
        if u.scheme == "https":
            return
        if u.scheme == "http" and (self._allow_insecure or is_loopback(u.netloc.decode())):
            return
        raise InsecureTransportError(
            f"{self.registry}: refusing to follow the registry to {u.scheme}://{u.host} "
            "over an unprotected connection",
            hint="pass --allow-insecure-http only if you trust every network on the way",
        )

    # -- requests ---------------------------------------------------------------------------

    def _open(
        self,
        method: str,
        url: str,
        *,
        what: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
        authenticate: bool = True,
    ) -> httpx.Response:
        """Send, answering one auth challenge; the response is open (stream it, then close)."""
        for attempt in (0, 1):
            request = self._http.build_request(
                method,
                url,
                content=content,
                params=params,
                headers={**(self._auth.headers() if authenticate else {}), **(headers or {})},
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as e:
                raise RegistryError(
                    f"{self.registry}: {what}: {method} {request.url}: {e or type(e).__name__}"
                ) from e
            if response.status_code != 401 or not authenticate:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.close()  # never read: a 401 body can be as long as the peer likes
            if attempt == 1:
                raise self._auth.refused(f"{method} {request.url.path}")
            self._auth.answer(challenge, f"{method} {request.url.path}")
        raise AssertionError("unreachable")

    def _call(
        self, method: str, url: str, *, what: str, limit: int = _MAX_SMALL_ANSWER, **kw: Any
    ) -> _Answer:
        """Send and read the whole answer, refusing one larger than ``limit``."""
        response = self._open(method, url, what=what, **kw)
        try:
            body = b"" if method == "HEAD" else _read_bounded(response, limit, what)
        except httpx.TransportError as e:
            raise RegistryError(f"{self.registry}: {what}: {e or type(e).__name__}") from e
        finally:
            response.close()
        return _Answer(response.status_code, response.headers, body, response.url)

    def _fail(self, response: _Answer, what: str) -> OciError:
        status = response.status_code
        detail = _error_detail(response)
        if status == 404:
            return ArtifactNotFoundError(
                f"{self.registry}/{self.ref.repository}: {what}: not found"
            )
        if status in (401, 403):
            return AuthError(f"{self.registry}: {what}: denied ({status}){detail}")
        return RegistryError(f"{self.registry}: {what}: HTTP {status}{detail}")

    # -- manifests --------------------------------------------------------------------------

    def get_manifest(self, reference: str, what: str) -> tuple[bytes, str]:
        """The manifest (or index) bytes for a tag or digest, unverified, bounded; and its type."""
        r = self._call(
            "GET",
            f"{self._path}/manifests/{reference}",
            what=f"{what} ({reference})",
            limit=self.limits.max_manifest_bytes,
            headers={"Accept": _ACCEPT_MANIFEST},
        )
        if r.status_code != 200:
            raise self._fail(r, f"{what} ({reference})")
        return r.content, r.headers.get("content-type", "").split(";")[0].strip()

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> _Answer:
        url = f"{self._path}/manifests/{reference}"
        what = f"push manifest {reference}"
        r = self._call("PUT", url, what=what, content=data, headers={"Content-Type": media_type})
        if r.status_code not in (200, 201):
            raise self._fail(r, f"push manifest {reference}")
        return r

    # -- blobs ------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        r = self._call("HEAD", f"{self._path}/blobs/{digest}", what=f"blob {digest}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, f"blob {digest}")

    def iter_blob(self, desc: Descriptor, what: str) -> Iterator[bytes]:
        """The blob's bytes as they arrive (the caller verifies and bounds them)."""
        r = self._open("GET", f"{self._path}/blobs/{desc.digest}", what=what)
        try:
            if r.status_code != 200:
                body = _read_bounded(r, _MAX_SMALL_ANSWER, what)
                raise self._fail(_Answer(r.status_code, r.headers, body, r.url), what)
            yield from r.iter_bytes()
        except httpx.TransportError as e:
            raise RegistryError(f"{self.registry}: {what}: download failed: {e}") from e
        finally:
            r.close()

    def upload_blob(
        self,
        desc: Descriptor,
        chunks: Iterable[bytes],
        what: str,
        *,
        advance: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Upload in chunks: POST a session, PATCH each chunk, PUT ?digest= to finish."""
        r = self._call("POST", f"{self._path}/blobs/uploads/", what=f"start upload of {what}")
        if r.status_code != 202 or "location" not in r.headers:
            raise self._fail(r, f"start upload of {what}")
        location = str(r.url.join(r.headers["location"]))
        offset = 0
        try:
            for chunk in _rechunk(chunks, UPLOAD_CHUNK):
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                }
                r = self._call(
                    "PATCH", location, what=f"upload {what}", content=chunk, headers=headers
                )
                if r.status_code != 202:
                    raise self._fail(r, f"upload {what} at byte {offset}")
                location = str(r.url.join(r.headers.get("location", location)))
                offset += len(chunk)
                advance(len(chunk))
            url = httpx.URL(location).copy_merge_params({"digest": desc.digest})
            r = self._call("PUT", str(url), what=f"finish upload of {what}", content=b"")
            if r.status_code != 201:
                raise self._fail(r, f"finish upload of {what}")
        except BaseException:
            # Tell the registry to drop the session; the original error is what matters.
            with contextlib.suppress(Exception):
                self._call("DELETE", location, what="cancel upload")
            raise
        got = r.headers.get("docker-content-digest")
        if got and got != desc.digest:
            raise RegistryError(f"{self.registry}: {what}: stored as {got}, sent {desc.digest}")

    # -- referrers --------------------------------------------------------------------------

    def referrers_api(self, digest: str) -> list[Descriptor] | None:
        """Referrers via ``GET /v2/<name>/referrers/<digest>``; None if the API is absent."""
        url: str | None = f"{self._path}/referrers/{digest}"
        found: list[Descriptor] = []
        pages = 0
        while url is not None:
            r = self._call(
                "GET",
                url,
                what=f"referrers of {digest}",
                limit=self.limits.max_manifest_bytes,
                headers={"Accept": OCI_INDEX},
            )
            if r.status_code == 404 and pages == 0:
                return None
            if r.status_code != 200:
                raise self._fail(r, f"referrers of {digest}")
            if not r.headers.get("content-type", "").startswith(OCI_INDEX):
                # A 200 that is not an index (an HTML page, a catch-all route) is not the API.
                return None if pages == 0 else found
            found.extend(Index.from_bytes(r.content, f"referrers of {digest}").manifests)
            if len(found) > self.limits.max_referrers:
                raise TooLargeError(
                    f"{self.registry}: {digest} has over {self.limits.max_referrers} referrers"
                )
            pages += 1
            nxt = _next_link(r.headers.get("link", ""))
            url = str(r.url.join(nxt)) if nxt and pages < self.limits.max_referrer_pages else None
        return found

    def referrers_tag(self, digest: str) -> tuple[Index, bool]:
        """The referrers tag schema's index for ``digest`` (empty if absent), and whether found."""
        tag = fallback_tag(digest)
        try:
            data, _ = self.get_manifest(tag, "referrers index")
        except ArtifactNotFoundError:
            return Index(()), False
        return Index.from_bytes(data, f"referrers index {tag}"), True

    def referrers(self, digest: str) -> list[Descriptor]:
        via_api = self.referrers_api(digest)
        if via_api is not None:
            return via_api
        index, _ = self.referrers_tag(digest)
        if len(index.manifests) > self.limits.max_referrers:
            raise TooLargeError(f"{self.registry}: {digest} has too many referrers")
        return list(index.manifests)

    def add_referrer_to_tag_schema(self, subject: str, entry: Descriptor) -> None:
        """Append ``entry`` to the ``sha256-<hex>`` index (the spec's client-side fallback).

        Read-modify-write: two clients adding at the same instant can lose one entry, as the
        spec acknowledges; the referrer manifest itself stays in the registry either way.
        """
        index, _ = self.referrers_tag(subject)
        if any(d.digest == entry.digest for d in index.manifests):
            return
        updated = Index((*index.manifests, entry), index.annotations)
        self.put_manifest(updated.to_bytes(), OCI_INDEX, fallback_tag(subject))


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return "sha256-" + digest_hex(digest)


def _read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"{what}: {declared} bytes is over the {limit}-byte limit")
    buf = bytearray()
    for chunk in response.iter_bytes(_DOWNLOAD_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise TooLargeError(f"{what}: over the {limit}-byte limit")
    return bytes(buf)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup ``chunks`` into pieces of exactly ``size`` bytes (the last may be shorter).

    Pieces are collected in a list and joined once: one copy per upload chunk, where
    appending to and trimming a bytearray costs two.
    """
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held < size:
            continue
        data = memoryview(b"".join(pending))
        cut = len(data) - len(data) % size
        if len(data) == size:
            yield data.obj  # type: ignore[misc]  # exactly one piece: no copy at all
        else:
            for off in range(0, cut, size):
                yield bytes(data[off : off + size])
        pending = [bytes(data[cut:])] if cut < len(data) else []
        held = len(data) - cut
    if held:
        yield b"".join(pending)


def _next_link(header: str) -> str | None:
    """The ``rel="next"`` target of a Link header (referrers pagination), if any."""
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            return target.strip()[1:-1]
    return None


def _error_detail(response: _Answer) -> str:
    """The first OCI error code and message from a registry's JSON error body, if any."""
    try:
        errors = json.loads(response.content).get("errors") or []
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
