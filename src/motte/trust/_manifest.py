"""The ``[trust]`` table of a Motte.toml: which trust policy a run of this workload enforces.

    workload = "sha256:e4c4..."        # a package from the local store or a registry
    [trust]
    policy = "policies/production.toml"  # relative to this Motte.toml

The table belongs to the *operator's* manifest (the one that names a package to run). A
package's own Motte.toml must not choose the policy it is judged by: the consumer decides,
never the publisher (``trust_from_manifest`` is meant for the operator's file only).

To hook it in, :data:`motte.manifest._schema.TOP_LEVEL` gains
``"trust": ("trust", trust_from_manifest)`` and :class:`motte.manifest.Manifest` a field
``trust: TrustSettings | None = None``. The validator has the manifest's validator
signature and raises the manifest's ``Invalid`` (so errors name the file, line and key:
``Motte.toml:4: trust.policy: expected a path to a trust policy file, got an integer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS = ("policy",)


@dataclass(frozen=True, slots=True)
class TrustSettings:
    """``[trust]``: the policy file (absolute, resolved against the manifest's directory)."""

    policy: Path
    where: str = ""


def trust_from_manifest(value: Any, path: tuple[str | int, ...], ctx: Any) -> TrustSettings:
    """Validate the ``[trust]`` table (a manifest validator: value, key path, context)."""
    from motte.manifest._schema import Invalid, _check_keys, _expect_str, _expect_table

    table = _expect_table(value, path)
    _check_keys(table, set(KEYS), path)
    if "policy" not in table:
        raise Invalid(path, "missing required key 'policy'", hint='policy = "path/to/policy.toml"')
    text = _expect_str(table["policy"], (*path, "policy"), "a path to a trust policy file")
    if not text.strip():
        raise Invalid((*path, "policy"), "is empty")
    return TrustSettings(ctx.host_path(text), where=ctx.where((*path, "policy")))
