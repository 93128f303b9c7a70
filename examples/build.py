#!/usr/bin/env python3
"""Rebuild the example workloads from source; the built .wasm files are committed so users
need no toolchain.

    python examples/build.py            # zig (pip install ziglang) + jco (fetched by npm)
    python examples/build.py --toolchain clang   # Debian clang + wasi-libc (no component)
    python examples/build.py --check    # rebuild into a temp dir, compare with the repo

Toolchains:
- zig cc from PyPI's ``ziglang`` (0.17.x) bundles a current wasi-libc: the default, and the
  one the committed files come from. Its first build compiles libc (~30 s), later ones are
  instant. Output is byte-for-byte reproducible.
- Debian's clang 14 + wasi-libc + libclang-rt-14-dev-wasm32 also builds the preview1 modules
  (``--toolchain clang``), with an older libc (a slower SHA-256, feasibility §2.2).
- The WASI 0.2 component wraps the hello module with jco's preview1 adapter
  (``jco new --wasi-command``); jco is installed by npm into a temporary directory, pinned
  to JCO_VERSION, and never lands in the repository.
- runaway/*.wasm are WebAssembly text compiled with wasmtime.wat2wasm.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
JCO_VERSION = "1.35.0"
#: A 1 MiB guest stack (zig's default is 16 MiB of linear memory for every instance).
CFLAGS = ["-O2", "-Wl,-z,stack-size=1048576"]
#: (source, output) for each C example, relative to examples/.
C_EXAMPLES = [
    ("hello/hello.c", "hello/hello.wasm"),
    ("files/files.c", "files/files.wasm"),
    ("sha256/sha256.c", "sha256/sha256.wasm"),
    ("http-hello/http-hello.c", "http-hello/http-hello.wasm"),
    ("secret-db/secret-db.c", "secret-db/secret-db.wasm"),
    ("counter/counter.c", "counter/counter.wasm"),
    ("outbound/outbound.c", "outbound/outbound.wasm"),
]
WAT_EXAMPLES = [
    ("runaway/spin.wat", "runaway/spin.wasm"),
    ("runaway/bomb.wat", "runaway/bomb.wasm"),
    ("runaway/recurse.wat", "runaway/recurse.wasm"),
]
COMPONENT = ("hello/hello.wasm", "hello-component/hello-component.wasm")


def run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def compiler(toolchain: str) -> list[str]:
    if toolchain == "zig":
        try:
            import ziglang  # noqa: F401
        except ImportError:
            sys.exit("build.py: zig not found: pip install ziglang (or --toolchain clang)")
        return [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-wasi", "-s"]
    if shutil.which("clang") is None:
        sys.exit(
            "build.py: clang not found: apt-get install clang lld wasi-libc "
            "libclang-rt-14-dev-wasm32"
        )
    return ["clang", "--target=wasm32-wasi", "-Wl,--strip-all"]


def build_c(out_root: Path, toolchain: str) -> None:
    cc = compiler(toolchain)
    for src, out in C_EXAMPLES:
        target = out_root / out
        target.parent.mkdir(parents=True, exist_ok=True)
        run([*cc, *CFLAGS, "-o", str(target), str(HERE / src)])
        target.chmod(0o644)  # data, not a host executable


def build_wat(out_root: Path) -> None:
    import wasmtime

    for src, out in WAT_EXAMPLES:
        target = out_root / out
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"+ wat2wasm {src} -> {out}", flush=True)
        target.write_bytes(wasmtime.wat2wasm((HERE / src).read_text()))


def build_component(out_root: Path) -> None:
    if shutil.which("npm") is None:
        sys.exit("build.py: npm not found (needed for jco): apt-get install npm")
    core = out_root / COMPONENT[0]
    target = out_root / COMPONENT[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="motte-jco-") as tmp:
        run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                tmp,
                f"@bytecodealliance/jco@{JCO_VERSION}",
            ]
        )
        jco = Path(tmp) / "node_modules" / ".bin" / "jco"
        # jco wants its input under the current directory.
        shutil.copy(core, Path(tmp) / "core.wasm")
        run([str(jco), "new", "core.wasm", "--wasi-command", "-o", "component.wasm"], cwd=tmp)
        shutil.copy(Path(tmp) / "component.wasm", target)


def outputs(component: bool) -> list[str]:
    out = [o for _, o in C_EXAMPLES] + [o for _, o in WAT_EXAMPLES]
    return [*out, COMPONENT[1]] if component else out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toolchain", choices=["zig", "clang"], default="zig")
    parser.add_argument("--no-component", action="store_true", help="skip the jco step")
    parser.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary directory and compare with the repo",
    )
    ns = parser.parse_args()
    component = not ns.no_component and ns.toolchain == "zig"
    with tempfile.TemporaryDirectory(prefix="motte-examples-") as tmp:
        out_root = Path(tmp) if ns.check else HERE
        build_c(out_root, ns.toolchain)
        build_wat(out_root)
        if component:
            build_component(out_root)
        if ns.check:
            differ = [
                o
                for o in outputs(component)
                if not filecmp.cmp(out_root / o, HERE / o, shallow=False)
            ]
            for o in differ:
                print(f"build.py: {o} differs from the committed file", file=sys.stderr)
            print("build.py: reproducible" if not differ else "build.py: NOT reproducible")
            return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
