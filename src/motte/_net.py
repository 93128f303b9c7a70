"""Small facts about network addresses, shared by whoever checks where a URL or a listener
points (the manifest, the Steward client, registry references, the HTTP services)."""

from __future__ import annotations


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (brackets already removed from IPv6)."""
    import ipaddress  # not at import time: `motte run` loads this with the manifest

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
