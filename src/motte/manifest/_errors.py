"""The manifest's error (kept apart so reading a bare module needs no validation code)."""

from motte.errors import ConfigError


class ManifestError(ConfigError):
    """Motte.toml is malformed or grants something that cannot be granted."""
