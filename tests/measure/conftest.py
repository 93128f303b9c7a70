"""Shared inputs: the fixtures in shared/testdata/measure, Debian's ovmf package and kernel."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, shared_testdata

DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")
DEBIAN_OVMF_SHA256 = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
DEBIAN_OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
DEBIAN_OVMF_CODE_4M = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VERSION = "ovmf 2022.11-6+deb12u2"
KERNEL_PACKAGE = "linux-image-6.1.0-57-cloud-amd64"
KERNEL_SHA256 = "1a7ac0c40b10b98353b6f85fa9a0d4f2703287979567e19629d35ad2d777d124"


def data(name: str) -> Path:
    return shared_testdata("measure", name)


@cache
def vectors() -> dict[str, Any]:
    return json.loads(data("vectors.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def debian_ovmf() -> Path:
    """Debian's OVMF.fd, skipping (naming the package) when it is not the recorded build."""
    if not DEBIAN_OVMF.exists():
        require(False, f"{DEBIAN_OVMF}: Debian's ovmf {OVMF_VERSION} (make test installs it)")
    if sha256(DEBIAN_OVMF) != DEBIAN_OVMF_SHA256:
        pytest.skip(f"{DEBIAN_OVMF} is not the build of {OVMF_VERSION} the vectors record")
    return DEBIAN_OVMF


def firmware_path(name: str) -> Path:
    """A vectors.json firmware name as a path (skips what is not obtainable here)."""
    if name.startswith("debian-ovmf:"):
        return debian_ovmf()
    if name.startswith("upstream-only:"):
        pytest.skip(f"{name} is not in shared/testdata (over its size limit)")
    return data(name)


@pytest.fixture(scope="session")
def debian_kernel(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The Debian kernel the RTMR1 vectors were computed from: fetched with apt-get download
    once into pytest's cache; skipped when Debian no longer serves it or it differs."""
    cache_dir = Path(request.config.cache.mkdir("measure-debian-kernel"))
    vmlinuz = cache_dir / "boot" / "vmlinuz-6.1.0-57-cloud-amd64"
    if not vmlinuz.exists():
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            pytest.skip("apt-get/dpkg-deb absent: cannot fetch the Debian kernel")
        work = tmp_path_factory.mktemp("kernel-deb")
        got = subprocess.run(
            ["apt-get", "download", KERNEL_PACKAGE],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        debs = list(work.glob("*.deb"))
        if got.returncode != 0 or not debs:
            pytest.skip(f"apt-get download {KERNEL_PACKAGE} failed: {got.stderr.strip()[-200:]}")
        # Only the kernel image: the package's modules are ten times its size.
        tar = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, check=True
        ).stdout
        subprocess.run(
            ["tar", "-x", "-C", str(cache_dir), f"./boot/{vmlinuz.name}"],
            input=tar,
            check=True,
            timeout=300,
        )
    if sha256(vmlinuz) != KERNEL_SHA256:
        pytest.skip(f"{vmlinuz} is not the kernel the vectors record (sha256 differs)")
    return vmlinuz
