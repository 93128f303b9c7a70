"""motte: run WebAssembly workloads in attested Keeps.

The public API lives in the area packages (``motte.keep``, ``motte.attest``,
``motte.steward``, ``motte.oci``, ``motte.sign``, ``motte.tlog``, ``motte.trust``,
``motte.power``); this module only carries the version so that importing it stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
