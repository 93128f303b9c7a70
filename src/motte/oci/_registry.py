"""A client for the OCI distribution API (spec v1.1), over httpx.

Only what motte needs: resolve a tag, fetch manifests and blobs (streamed, bounded, verified by
the caller), upload blobs in chunks (POST, PATCH..., PUT ?digest=), push manifests, and list
referrers with the referrers API or, where a registry lacks it (404), the referrers tag schema
(an index tagged ``sha256-<hex>``). Every URL requested, redirects and token realms included,
must be HTTPS or loopback unless the caller named the danger.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Generator, Iterable, Iterator

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


class RegistryAuth(httpx.Auth):
    """Answer Basic and Bearer challenges (see :mod:`motte.oci._auth`), retrying once."""

    requires_request_body = True
    requires_response_body = True

    def __init__(
        self, registry: str, credentials: Credentials | None, *, check_url: Callable[[str], None]
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self._check_url = check_url
        self._token: str | None = None
        self._basic = False

    def _basic_header(self) -> str:
        import base64

        assert self.credentials and self.credentials.username is not None
        raw = f"{self.credentials.username}:{self.credentials.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        creds = self.credentials
        if creds and creds.token:
            request.headers["Authorization"] = "Bearer " + creds.token
        elif self._token:
            request.headers["Authorization"] = "Bearer " + self._token
        elif self._basic and creds:
            request.headers["Authorization"] = self._basic_header()
        response = yield request
        if response.status_code != 401:
            return
        what = f"{request.method} {request.url.path}"
        if creds and creds.token:
            raise AuthError(
                f"{self.registry}: refused the bearer token from {creds.source} ({what})",
                hint="check the token has not expired and grants this repository",
            )
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if not creds or creds.username is None:
                raise no_credentials_error(self.registry, what)
            self._basic = True
            request.headers["Authorization"] = self._basic_header()
        elif scheme == "bearer" and "realm" in params:
            realm = params["realm"]
            self._check_url(realm)
            query = [("service", params["service"])] if "service" in params else []
            query += [("scope", s) for s in params.get("scope", "").split(" ") if s]
            token_request = httpx.Request("GET", realm, params=query)
            if creds and creds.username is not None:
                token_request.headers["Authorization"] = self._basic_header()
            token_response = yield token_request
            if token_response.status_code in (401, 403):
                if creds is None:
                    raise no_credentials_error(self.registry, what)
                raise refused_error(self.registry, creds, what)
            if token_response.status_code != 200:
                raise RegistryError(
                    f"{self.registry}: token service {realm} answered {token_response.status_code}"
                )
            self._token = token_from_answer(token_response.content, realm)
            request.headers["Authorization"] = "Bearer " + self._token
        else:
            raise RegistryError(f"{self.registry}: 401 with an unusable challenge ({what})")
        response = yield request
        if response.status_code == 401:
            if creds is None:
                raise no_credentials_error(self.registry, what)
            raise refused_error(self.registry, creds, what)


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
        self._http = httpx.Client(
            base_url=ref.base_url,
            auth=RegistryAuth(self.registry, creds, check_url=self._check_url),
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

    def _request(self, method: str, url: str, **kw: object) -> httpx.Response:
        try:
            return self._http.request(method, url, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as e:
            raise RegistryError(f"{self.registry}: {method} {url}: {e or type(e).__name__}") from e

    def _fail(self, response: httpx.Response, what: str) -> OciError:
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
        limit = self.limits.max_manifest_bytes
        url = f"{self._path}/manifests/{reference}"
        try:
            with self._http.stream("GET", url, headers={"Accept": _ACCEPT_MANIFEST}) as r:
                if r.status_code != 200:
                    r.read()
                    raise self._fail(r, f"{what} ({reference})")
                body = _read_bounded(r, limit, f"{what} ({reference})")
                return body, r.headers.get("content-type", "").split(";")[0].strip()
        except httpx.TransportError as e:
            raise RegistryError(f"{self.registry}: GET {url}: {e or type(e).__name__}") from e

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> httpx.Response:
        url = f"{self._path}/manifests/{reference}"
        r = self._request("PUT", url, content=data, headers={"Content-Type": media_type})
        if r.status_code not in (200, 201):
            raise self._fail(r, f"push manifest {reference}")
        return r

    # -- blobs ------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        r = self._request("HEAD", f"{self._path}/blobs/{digest}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, f"blob {digest}")

    def iter_blob(self, desc: Descriptor, what: str) -> Iterator[bytes]:
        """The blob's bytes as they arrive (the caller verifies them)."""
        url = f"{self._path}/blobs/{desc.digest}"
        try:
            with self._http.stream("GET", url) as r:
                if r.status_code != 200:
                    r.read()
                    raise self._fail(r, what)
                yield from r.iter_bytes(_DOWNLOAD_CHUNK)
        except httpx.TransportError as e:
            raise RegistryError(f"{self.registry}: {what}: download failed: {e}") from e

    def upload_blob(
        self,
        desc: Descriptor,
        chunks: Iterable[bytes],
        what: str,
        *,
        advance: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Upload in chunks: POST a session, PATCH each chunk, PUT ?digest= to finish."""
        r = self._request("POST", f"{self._path}/blobs/uploads/")
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
                r = self._request("PATCH", location, content=chunk, headers=headers)
                if r.status_code != 202:
                    raise self._fail(r, f"upload {what} at byte {offset}")
                location = str(r.url.join(r.headers.get("location", location)))
                offset += len(chunk)
                advance(len(chunk))
            url = httpx.URL(location).copy_merge_params({"digest": desc.digest})
            r = self._request("PUT", str(url), headers={"Content-Length": "0"})
            if r.status_code != 201:
                raise self._fail(r, f"finish upload of {what}")
        except BaseException:
            # Tell the registry to drop the session; the original error is what matters.
            with contextlib.suppress(Exception):
                self._http.delete(location)
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
            r = self._request("GET", url, headers={"Accept": OCI_INDEX})
            if r.status_code == 404 and pages == 0:
                return None
            if r.status_code != 200:
                raise self._fail(r, f"referrers of {digest}")
            if not r.headers.get("content-type", "").startswith(OCI_INDEX):
                # A 200 that is not an index (an HTML page, a catch-all route) is not the API.
                return None if pages == 0 else found
            if len(r.content) > self.limits.max_manifest_bytes:
                raise TooLargeError(f"{self.registry}: referrers of {digest}: answer too large")
            found.extend(Index.from_bytes(r.content, f"referrers of {digest}").manifests)
            if len(found) > self.limits.max_referrers:
                raise TooLargeError(
                    f"{self.registry}: {digest} has over {self.limits.max_referrers} referrers"
                )
            pages += 1
            nxt = r.links.get("next", {}).get("url")
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
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _error_detail(response: httpx.Response) -> str:
    """The first OCI error code and message from a registry's JSON error body, if any."""
    try:
        errors = json.loads(response.content).get("errors") or []
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
