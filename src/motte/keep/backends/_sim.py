"""The software keep (``sim``): evidence for development, signed by this installation. INSECURE.

A sim Keep has no hardware root of trust: it runs as an ordinary process, and anyone who
can read ``MOTTE_HOME/keys/sim-keep.pem`` can forge its evidence. It exists so that the
whole path (Keep, Steward, certificate, client) runs on a laptop and in CI. Its evidence
says so in its first bytes (``MOTTE-SIM-INSECURE``), default policies refuse it, and a
Keep produces it only when given ``allow_insecure_sim=True`` (``--allow-insecure-sim``).

Its MEASUREMENT is :func:`sim_measurement`: SHA-384 over the files of the installed motte
package and the wasmtime shared library, so that a policy can pin "this motte, this
wasmtime" the way a TEE policy pins a launch measurement::

    SHA-384( "motte/sim-measurement/v1" 0x00
             || for each motte package file, sorted by its path below the package
                (``__pycache__`` and ``*.pyc`` excluded):
                   u32be(len(path)) || path (UTF-8, '/'-separated, e.g. "keep/_workload.py")
                   || u64be(len(content)) || content
             || for each wasmtime shared library (sorted by path):
                   u32be(len(name)) || "wasmtime/" + its path below the wasmtime package
                   || u64be(len(content)) || content )

It is computed once per process (about 0.1 s here: the wasmtime library is 29 MiB).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from motte.keep.backends._base import Availability, BackendError, check_report_data

if TYPE_CHECKING:
    from motte.attest import Evidence

MEASUREMENT_DOMAIN = b"motte/sim-measurement/v1\x00"
_LIBRARY_NAMES = ("_libwasmtime.so", "_libwasmtime.dylib", "_wasmtime.dll")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"sim backend: cannot find the {name} package to measure")
    return Path(next(iter(spec.submodule_search_locations)))


def measured_files() -> list[tuple[str, Path]]:
    """(name in the measurement, path) for every file :func:`sim_measurement` covers."""
    motte_dir = _package_dir("motte")
    files = [
        (p.relative_to(motte_dir).as_posix(), p)
        for p in motte_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    files.sort(key=lambda item: item[0].encode("utf-8"))
    wasmtime_dir = _package_dir("wasmtime")
    libraries = sorted(
        (f"wasmtime/{p.relative_to(wasmtime_dir).as_posix()}", p)
        for name in _LIBRARY_NAMES
        for p in wasmtime_dir.glob(f"*/{name}")
    )
    if not libraries:
        raise BackendError(f"sim backend: no wasmtime shared library under {wasmtime_dir}")
    return files + libraries


@functools.cache
def sim_measurement() -> bytes:
    """The 48-byte MEASUREMENT of this motte and wasmtime (see the module docstring)."""
    h = hashlib.sha384(MEASUREMENT_DOMAIN)
    for name, path in measured_files():
        encoded = name.encode("utf-8")
        h.update(len(encoded).to_bytes(4, "big"))
        h.update(encoded)
        with open(path, "rb") as f:
            content = f.read()
        h.update(len(content).to_bytes(8, "big"))
        h.update(content)
    return h.digest()


class SimBackend:
    """The insecure software keep. ``allow_insecure_sim`` is the Keep operator's consent."""

    name = "sim"
    description = (
        "INSECURE software keep for development: no hardware protection at all; the host "
        "sees and can change everything. Evidence is signed by this installation's key and "
        "refused by default policies."
    )

    def __init__(self, *, allow_insecure_sim: bool = False) -> None:
        self.allow_insecure_sim = allow_insecure_sim

    def available(self) -> Availability:
        return Availability(
            True,
            (
                "always available, and never chosen automatically: "
                "--backend sim --allow-insecure-sim",
            ),
            via="software",
        )

    def evidence(self, report_data: bytes) -> Evidence:
        from motte.attest import Evidence
        from motte.attest.sim import load_or_create_sim_key, sign_sim_evidence

        check_report_data(self.name, report_data)
        if not self.allow_insecure_sim:
            raise BackendError(
                "sim backend: refusing to produce INSECURE software-keep evidence without consent",
                hint="pass --allow-insecure-sim (development only: a sim Keep protects nothing)",
            )
        raw = sign_sim_evidence(report_data, sim_measurement(), load_or_create_sim_key())
        return Evidence("sim", raw)
