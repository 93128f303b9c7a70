"""A workload prepared once and run as many fresh, isolated instances as needed.

:meth:`PreparedWorkload.prepare` reads the workload, tells a WASI preview1 command module
from a WASI 0.2 command component by its header, loads the compiled artifact from the
authenticated cache (or compiles and caches it), checks what the manifest grants, and links
it once (an ``InstancePre`` for modules). :meth:`PreparedWorkload.run` then costs a new
Store, a WASI context and an instantiation: tens of microseconds, not a compile.

``run`` is safe to call from several threads at once: each call gets its own Store, stdio,
environment and limits, and wasm runs without the GIL (feasibility §1.6).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte._digest import workload_digest
from motte.errors import ExitStatus, MotteError, NotFoundError, UsageError
from motte.keep import _capi, _declared, _limits, _outcome
from motte.keep._cache import CompiledCache, cache_key
from motte.keep._engine import DEFAULT_SETTINGS, EngineSettings, Runtime, runtime
from motte.keep._outcome import RunResult, Trap
from motte.keep._stdio import DEFAULT_MAX_OUTPUT, OutputSpec, StdinSpec, Streams, from_manifest

if TYPE_CHECKING:
    import wasmtime

    from motte.keep._secrets import GuestSecrets
    from motte.manifest import Manifest, Workload
    from motte.oci import VerifiedPackage

#: Bound on a workload's size (a module or component file).
MAX_WORKLOAD_BYTES = 256 * 1024 * 1024
WASM_MAGIC = b"\0asm"
MODULE = "module"
COMPONENT = "component"
WASIP2_RUN_PREFIX = "wasi:cli/run@0.2."


class KeepError(MotteError):
    """motte could not prepare or start the workload (``motte run`` exits 125)."""

    exit_status = ExitStatus.RUN_ERROR


class WorkloadError(KeepError):
    """The workload is not something a Keep can run: not wasm, not a command, bad imports."""


class MemoryLimitError(KeepError):
    """The workload needs more memory at start than limits.memory allows."""

    exit_status = ExitStatus.MEMORY_LIMIT


def blob_path(digest: str) -> Path:
    """Where a workload named by digest is looked up: the local OCI image-layout store."""
    from motte.home import motte_home

    algorithm, _, hexpart = digest.partition(":")
    return motte_home() / "oci" / "blobs" / algorithm / hexpart


def read_workload(workload: Workload) -> tuple[bytes, str]:
    """The workload's bytes and digest; a digest-named workload is verified against its name."""
    path = workload.path if workload.path is not None else blob_path(str(workload.digest))
    where = workload.where or str(path)
    from motte._regular_file import read_regular

    try:
        data = read_regular(path, MAX_WORKLOAD_BYTES)
    except FileNotFoundError:
        if workload.digest is not None:
            raise NotFoundError(
                f"{where}: workload {workload.digest} is not in the local store ({path})",
                hint="fetch it first with `motte pull REF@" + workload.digest + "`",
            ) from None
        raise NotFoundError(f"{where}: workload {path}: no such file") from None
    except OSError as e:
        raise KeepError(f"{where}: cannot read workload {path}: {e.strerror}") from None
    if len(data) > MAX_WORKLOAD_BYTES:
        raise WorkloadError(f"{where}: workload {path} is larger than 256 MiB")
    digest = workload_digest(data)
    if workload.digest is not None and digest != workload.digest:
        raise WorkloadError(
            f"{where}: the stored blob {path} has digest {digest}, not {workload.digest}",
            hint="the local store is corrupt; remove the blob and pull it again",
        )
    return data, digest


def detect_kind(data: bytes, where: str) -> str:
    """``module`` (core wasm, version 1) or ``component`` (layer 1), from the 8-byte header."""
    if data[:4] != WASM_MAGIC or len(data) < 8:
        raise WorkloadError(f"{where}: not a WebAssembly binary (no \\0asm header)")
    version = int.from_bytes(data[4:6], "little")
    layer = int.from_bytes(data[6:8], "little")
    if layer == 0 and version == 1:
        return MODULE
    if layer == 1:
        return COMPONENT
    raise WorkloadError(f"{where}: unsupported WebAssembly version {version} (layer {layer})")


def _first_line(error: BaseException) -> str:
    return _outcome.innermost_cause(str(error))


def _artifact_class(kind: str) -> Any:
    """wasmtime.Module, or wasmtime.component.Component (imported only for components: the
    component bindings take ~10 ms to import)."""
    import wasmtime

    if kind == MODULE:
        return wasmtime.Module
    from wasmtime import component

    return component.Component


def _compile(engine: wasmtime.Engine, data: bytes | bytearray, kind: str, where: str) -> Any:
    import wasmtime

    if not isinstance(data, bytes):  # a decrypted module (bytearray): wasmtime takes bytes
        data = bytes(data)
    try:
        return _artifact_class(kind)(engine, data)
    except wasmtime.WasmtimeError as e:
        raise WorkloadError(f"{where}: invalid {kind}: {_first_line(e)}") from None


def load_compiled(
    rt: Runtime,
    data: bytes,
    digest: str,
    kind: str,
    where: str,
    *,
    use_cache: bool = True,
    sealed_key: bytes | None = None,
    variant: str = "",
) -> tuple[Any, str]:
    """The compiled module or component, and how it was obtained: ``hit``, ``compiled``
    (nothing cached) or ``recompiled (<why the entry was refused>)``. With ``sealed_key``
    (an encrypted module) the entry is read and written only sealed under that key.
    ``variant`` names a rewriting of the workload's bytes (``data`` is then the rewritten
    module; ``digest`` stays the original's) so that its artifact is cached apart."""
    import wasmtime

    if not use_cache:
        return _compile(rt.engine, data, kind, where), "compiled"
    cache = CompiledCache()
    name = cache_key(digest, kind + variant, rt.fingerprint, sealed=sealed_key is not None)
    artifact = cache.load_sealed(name, sealed_key) if sealed_key is not None else cache.load(name)
    status = "compiled" if cache.last_miss == "missing" else f"recompiled ({cache.last_miss})"
    if artifact is not None:
        try:
            return _artifact_class(kind).deserialize(rt.engine, artifact), "hit"
        except wasmtime.WasmtimeError as e:
            # Authentic but made by another wasmtime build or configuration.
            status = f"recompiled (incompatible: {_first_line(e)})"
    if os.isatty(2) and len(data) > 1024 * 1024:
        print(f"motte: compiling {where} (cached for later runs)...", file=sys.stderr)
    compiled = _compile(rt.engine, data, kind, where)
    serialized = bytes(compiled.serialize())
    stored = (
        cache.store_sealed(name, serialized, sealed_key)
        if sealed_key is not None
        else cache.store(name, serialized)
    )
    if not stored:
        status += ", cache not writable"
    return compiled, status


class PreparedWorkload:
    """A manifest's workload, compiled and linked, ready to run fresh instances.

    >>> w = PreparedWorkload.prepare(load_manifest("examples/hello/Motte.toml"))
    >>> r = w.run(stdout="capture", env={"GREETING": "Hi"})
    >>> r.exit_code, r.stdout
    (0, b'Hi, world!\\n...')
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        rt: Runtime,
        kind: str,
        digest: str,
        compiled: Any,
        cache_status: str,
        budget: _declared.Budget,
        measure: Measure | None = None,
        outbound: Any = None,
    ) -> None:
        self.manifest = manifest
        self._budget = budget
        self._measure = measure or Measure()
        self.kind = kind
        self.digest = digest
        self.cache_status = cache_status
        self._rt = rt
        self._compiled = compiled
        self._argv0 = manifest.workload.name
        self._argv = _capi.CStrings([self._argv0, *manifest.args])
        self._env = _capi.env_strings(manifest.env)
        self._dirs = tuple((str(d.host), d.guest, d.writable, d.where) for d in manifest.dir)
        self._defaults = (
            from_manifest(manifest.stdin),
            from_manifest(manifest.stdout),
            from_manifest(manifest.stderr),
        )
        self._where = manifest.workload.where or manifest.workload.name
        #: Released secrets delivered to every instance (:meth:`deliver`), and what a worker
        #: process needs to obtain the same (motte.keep._secrets.Confidential); never shown.
        self.secrets: GuestSecrets | None = None
        self.confidential: Any = None
        #: Open sealed volumes (motte.keep._volumes.Volumes), preopened writable.
        self.volumes: Any = None
        self._secret_env: dict[str, str] = {}
        self._engine = _capi.address(rt.engine.ptr())
        #: Whether instantiating runs guest code (a start function): assume so until
        #: prepare() has read the module.
        self._start_function = True
        #: The granted destinations (motte.keep._outbound.Outbound), None without any; and
        #: the session of each running instance, by its store's context address.
        self.outbound = outbound
        self._sessions: dict[int, Any] = {}
        if kind == MODULE:
            self._pre = self._link_module(compiled)
            self._pre_address = _capi.address(self._pre.ptr())
        else:
            self._linker, self._run_index = self._link_component(compiled)

    # -- preparation -------------------------------------------------------------------------

    @classmethod
    def prepare(
        cls,
        manifest: Manifest,
        *,
        settings: EngineSettings = DEFAULT_SETTINGS,
        use_cache: bool = True,
        module: bytes | None = None,
        package: VerifiedPackage | None = None,
        sealed_key: bytes | None = None,
        verified_digest: str | None = None,
        client_identity: tuple[bytes, bytes] | None = None,
    ) -> PreparedWorkload:
        """Read, verify, compile (or load from the cache) and link the workload once.

        ``verified_digest``: the digest of ``module`` as its caller just computed it (a
        module decrypted and checked against its signed digest), not computed again.

        ``sealed_key``: the module was decrypted in memory (an encrypted package); its
        compiled code is cached only sealed under this key (motte.keep._secrets).

        ``module`` gives the workload's bytes when the caller already holds them (a file read
        once to attest its digest); they must match ``manifest.workload.digest`` when the
        manifest names one. ``package`` is a package opened and verified once
        (:func:`motte.oci.open_package`): its module runs, named by the digest its layer was
        verified against, and is not read or hashed again. ``client_identity`` (certificate
        chain and key, PEM) is the Keep's attested identity: its outbound TLS connections
        present it (mutual TLS).
        """
        _check_grants(manifest)
        outbound = _outbound_for(manifest, client_identity)
        where = manifest.workload.where or manifest.workload.name
        if package is not None:
            data, digest = package.module, package.module_digest
            if manifest.workload.digest not in (None, digest):
                raise WorkloadError(
                    f"{where}: the package's module is {digest}, not {manifest.workload.digest}"
                )
        elif module is None:
            data, digest = read_workload(manifest.workload)
        else:
            if len(module) > MAX_WORKLOAD_BYTES:
                raise WorkloadError(f"{where}: workload is larger than 256 MiB")
            data, digest = module, verified_digest or workload_digest(module)
            if manifest.workload.digest is not None and digest != manifest.workload.digest:
                raise WorkloadError(
                    f"{where}: the workload's bytes have digest {digest}, "
                    f"not {manifest.workload.digest}"
                )
        kind = detect_kind(data, where)
        if kind == COMPONENT and manifest.connect:
            raise WorkloadError(
                f"{manifest.connect[0].where}: [[connect]]: outbound connections reach WASI "
                "preview1 modules (the motte_connect imports); a component cannot import them "
                "yet",
                hint="build the workload as a preview1 module (docs/running.md, Outbound "
                "connections)",
            )
        shape = _declared.declared(data, kind)
        try:
            budget = _declared.store_budget(shape, manifest.limits, kind)
        except _declared.BudgetError as e:
            raise MemoryLimitError(f"{where}: {e.message}", hint=e.hint) from None
        measure, variant = None, ""
        runs = data
        if kind == MODULE and shape is not None:
            measure = Measure.of(shape)
            if any(_declared.hidden(shape)):
                runs, variant = _declared.export_everything(data, shape), "+exported-v1"
        rt = runtime(settings)
        compiled, status = load_compiled(
            rt,
            runs,
            digest,
            kind,
            where,
            use_cache=use_cache,
            sealed_key=sealed_key,
            variant=variant,
        )
        prepared = cls(
            manifest,
            rt=rt,
            kind=kind,
            digest=digest,
            compiled=compiled,
            cache_status=status,
            budget=budget,
            measure=measure,
            outbound=outbound,
        )
        prepared._start_function = kind == MODULE and _capi.has_start(data)
        return prepared

    def for_many_instances(self) -> PreparedWorkload:
        """This workload on a pooling runtime (``motte.keep._engine``), for a process that
        starts many short instances: a Keep serving requests. The compiled code moves to
        the pooling engine as it is (the same artifact, not compiled again). Itself when it
        is pooled already, or when this process cannot reserve a pool."""
        if self._rt.pooling:
            return self
        rt = runtime(self._rt.settings, pooling=True)
        if not rt.pooling:
            return self
        # Our own engine's artifact, handed from one engine to the other in this process.
        compiled = _artifact_class(self.kind).deserialize(rt.engine, self._compiled.serialize())
        moved = type(self)(
            self.manifest,
            rt=rt,
            kind=self.kind,
            digest=self.digest,
            compiled=compiled,
            cache_status=self.cache_status,
            budget=self._budget,
            measure=self._measure,
            outbound=self.outbound,
        )
        moved._start_function = self._start_function
        if self.secrets is not None:
            moved.deliver(self.secrets)
        moved.confidential = self.confidential
        if self.volumes is not None:
            moved.attach_volumes(self.volumes)
        return moved

    def attach_volumes(self, volumes: Any) -> None:
        """Give every later instance the open sealed volumes (motte.keep._volumes), each a
        memory-backed directory preopened writable at its guest path."""
        self.volumes = volumes
        self._dirs = self._dirs + tuple(
            (host, guest, True, f"sealed volume at {guest}") for host, guest in volumes.dirs
        )

    def deliver(self, secrets: GuestSecrets) -> None:
        """Give every later instance the released secrets: ``env`` ones in its environment
        (after the manifest's, so nothing overrides them), ``file`` ones as read-only
        preopened directories on a memory-backed file system (motte.keep._secrets)."""
        self.secrets = secrets
        self._secret_env = dict(secrets.env)
        self._env = _capi.env_strings({**self.manifest.env, **self._secret_env})
        self._dirs = self._dirs + tuple(
            (host, guest, False, f"secret files at {guest}") for host, guest in secrets.dirs
        )

    def _link_module(self, module: wasmtime.Module) -> wasmtime.InstancePre:
        import wasmtime

        exports = {e.name: e.type for e in module.exports}
        if not isinstance(exports.get("_start"), wasmtime.FuncType):
            raise WorkloadError(
                f"{self._where}: not a WASI command: it exports no _start function",
                hint="build it as a command (a main function), not a library or reactor",
            )
        linker = wasmtime.Linker(self._rt.engine)
        linker.define_wasi()
        from motte.keep import _outbound

        if _outbound.imports_outbound(module):
            if self.outbound is None:
                raise WorkloadError(
                    f"{self._where}: imports {_outbound.IMPORT_MODULE} (outbound connections), "
                    "and no destination is granted",
                    hint="declare each destination as a [[connect]] entry of its Motte.toml; "
                    "the host grants it (docs/running.md, Outbound connections)",
                )
            self._host_functions = _outbound.define_imports(linker, self._sessions)
        try:
            return linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise WorkloadError(
                f"{self._where}: cannot link: {_first_line(e)}",
                hint="a Keep provides WASI preview1 (wasi_snapshot_preview1) and nothing else",
            ) from None

    def _link_component(self, comp: Any) -> tuple[Any, Any]:
        from wasmtime import component

        names = [n for n in comp.type.exports(self._rt.engine) if n.startswith(WASIP2_RUN_PREFIX)]
        iface = comp.get_export_index(names[0]) if names else None
        run_index = comp.get_export_index("run", iface) if iface is not None else None
        if run_index is None:
            raise WorkloadError(
                f"{self._where}: not a WASI 0.2 command: it exports no wasi:cli/run@0.2.x",
                hint="build a command component (e.g. jco new core.wasm --wasi-command)",
            )
        linker = component.Linker(self._rt.engine)
        linker.add_wasip2()
        return linker, run_index

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        *,
        args: tuple[str, ...] | list[str] | None = None,
        env: dict[str, str] | None = None,
        stdin: StdinSpec | None = None,
        stdout: OutputSpec | None = None,
        stderr: OutputSpec | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run one fresh instance to completion.

        ``args`` replace the manifest's arguments; ``env`` is merged over its environment;
        each stream left at None follows the manifest (see ``motte.keep._stdio`` for the
        values). Captured output is bounded by ``max_output`` bytes per stream: a guest that
        writes more is stopped (``output_limit``). Setting ``cancel`` stops the guest at
        the next tick (``interrupted``). The manifest's limits apply.
        """
        argv, env_strings = self._argv, self._env
        if args is not None:
            if any("\0" in a for a in args):
                raise UsageError("arguments must not contain NUL")
            argv = _capi.CStrings([self._argv0, *args])
        if env:
            names = "".join(env)
            if "" in env or "=" in names or "\0" in names or "\0" in "".join(env.values()):
                raise UsageError("environment names must be non-empty, without '=' or NUL")
            env_strings = _capi.env_strings({**self.manifest.env, **env, **self._secret_env})
        streams = Streams(
            self._defaults[0] if stdin is None else stdin,
            self._defaults[1] if stdout is None else stdout,
            self._defaults[2] if stderr is None else stderr,
        )
        try:
            wasi = self._wasi(argv, env_strings, streams)
            if self.kind == MODULE:
                return self._run_module(wasi, streams, max_output, cancel)
            return self._run_component(wasi, streams, max_output, cancel)
        finally:
            streams.close()

    def _wasi(self, argv: _capi.CStrings, env: _capi.CStrings, streams: Streams) -> int:
        """A new WASI configuration (a raw pointer for a store to take over)."""
        wasi = _capi.wasi_new()
        try:
            _capi.set_argv(wasi, argv)
            _capi.set_env(wasi, env)
            try:
                streams.configure(wasi)
            except OSError as e:
                raise KeepError(f"{self._where}: {e.strerror}") from None
            for host, guest, writable, where in self._dirs:
                if not _capi.preopen_dir(wasi, host, guest, writable):
                    raise KeepError(f"{where}: cannot open directory {host}")
        except BaseException:
            _capi.wasi_delete(wasi)
            raise
        return wasi

    def _watch(
        self, streams: Streams, max_output: int, cancel: threading.Event | None
    ) -> _limits.Watch:
        limits = self.manifest.limits
        bounded = [
            (name, fd, max_output, False) for name, fd in streams.capture_fds.items() if max_output
        ]
        bounded += [(name, fd, limits.output_bytes, True) for name, fd in streams.file_fds.items()]
        return _limits.Watch(
            cpu_time=limits.cpu_time,
            wall_time=limits.wall_time,
            output_fds=tuple(bounded),
            cancel=cancel,
        )

    def _result(
        self,
        outcome: tuple[int | None, Trap | None, int | None],
        watch: _limits.Watch,
        streams: Streams,
        max_output: int,
    ) -> RunResult:
        exit_code, trap, memory = outcome
        wall, cpu = watch.elapsed()
        return RunResult(
            exit_code=exit_code,
            trap=trap,
            stdout=streams.captured("stdout", max_output),
            stderr=streams.captured("stderr", max_output),
            wall_time=wall,
            cpu_time=cpu,
            memory=memory,
            memory_limit=self.manifest.limits.memory_bytes,
        )

    def _run_module(
        self, wasi: int, streams: Streams, max_output: int, cancel: threading.Event | None
    ) -> RunResult:
        """A module's instance, its store handled through the C API alone (the hot path of
        a Keep serving requests)."""
        budget = self._budget
        store, context = _capi.store_new(self._engine)
        try:
            _capi.set_wasi(context, wasi)
            _capi.store_limits(
                store,
                memory_size=budget.memory_size,
                table_elements=budget.table_elements,
                instances=budget.instances,
                tables=budget.tables,
                memories=budget.memories,
            )
            watch = self._watch(streams, max_output, cancel)
            session = None
            if self.outbound is not None:
                wall = self.manifest.limits.wall_time
                session = self._sessions[context] = self.outbound.session(
                    wall_time=wall, cancel=cancel
                )
            with self._rt.ticker:
                watch.arm(_StoreHandle(store, context))  # type: ignore[arg-type]
                try:
                    outcome = self._enter_module(context, watch)
                finally:
                    watch.disarm()
                    if session is not None:
                        del self._sessions[context]
                        session.close_all()
            return self._result(outcome, watch, streams, max_output)
        finally:
            _capi.store_delete(store)

    def _enter_module(
        self, context: int, watch: _limits.Watch
    ) -> tuple[int | None, Trap | None, int | None]:
        """Instantiate and call ``_start``; (exit code, trap, memory bytes)."""
        import wasmtime

        limits = self.manifest.limits
        try:
            instance = _capi.instantiate(
                self._pre_address, context, runs_guest=self._start_function
            )
        except wasmtime.ExitTrap as e:  # a start function may call proc_exit
            return e.code, None, None
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            return self._instantiation_failed(e, watch)
        try:
            _capi.call_export(context, instance, b"_start")
            exit_code = 0
        except wasmtime.ExitTrap as e:
            exit_code = e.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            trap = _outcome.classify(e, watch, limits)
            return None, trap, self._measure.held(context, instance)
        return exit_code, None, self._measure.held(context, instance)

    def _instantiation_failed(
        self, e: Exception, watch: _limits.Watch
    ) -> tuple[int | None, Trap | None, int | None]:
        import wasmtime

        limits = self.manifest.limits
        if watch.stopped is None and not isinstance(e, wasmtime.Trap):
            trap = _outcome.instantiation_trap(e, limits)  # type: ignore[arg-type]
            if trap is None:
                raise KeepError(f"{self._where}: cannot instantiate: {_first_line(e)}") from None
            return None, trap, None
        return None, _outcome.classify(e, watch, limits), None

    def _run_component(
        self, wasi: int, streams: Streams, max_output: int, cancel: threading.Event | None
    ) -> RunResult:
        import wasmtime

        budget = self._budget
        store = wasmtime.Store(self._rt.engine)
        try:
            _capi.set_wasi(_capi.address(store._context()), wasi)
            store.set_limits(
                memory_size=budget.memory_size,
                table_elements=budget.table_elements,
                instances=budget.instances,
                tables=budget.tables,
                memories=budget.memories,
            )
            watch = self._watch(streams, max_output, cancel)
            with self._rt.ticker:
                watch.arm(store)
                try:
                    outcome = self._enter_component(store, watch)
                finally:
                    watch.disarm()
            return self._result(outcome, watch, streams, max_output)
        finally:
            store.close()

    def _enter_component(
        self, store: wasmtime.Store, watch: _limits.Watch
    ) -> tuple[int | None, Trap | None, int | None]:
        """Instantiate and call ``wasi:cli/run``; (exit code, trap, None: a component's
        memory is its own)."""
        import wasmtime

        try:
            instance = self._linker.instantiate(store, self._compiled)
        except wasmtime.ExitTrap as e:
            return e.code, None, None
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            return self._instantiation_failed(e, watch)
        try:
            result = instance.get_func(store, self._run_index)(store)
            # wasi:cli/run returns result<_, _>: err means failure (exit status 1).
            exit_code = 0 if getattr(result, "tag", "ok") == "ok" else 1
        except wasmtime.ExitTrap as e:
            exit_code = e.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            return None, _outcome.classify(e, watch, self.manifest.limits), None
        return exit_code, None, None


class Measure:
    """How to read what a module's instance holds after a run: its memories and growable
    tables by export name (``motte.keep._declared`` exports those it keeps to itself), plus
    its fixed-size tables, counted from their declaration."""

    __slots__ = ("fixed_bytes", "memories", "tables")

    def __init__(
        self,
        memories: tuple[bytes, ...] = (b"memory",),
        tables: tuple[bytes, ...] = (),
        fixed_bytes: int = 0,
    ) -> None:
        self.memories = memories
        self.tables = tables
        self.fixed_bytes = fixed_bytes

    @classmethod
    def of(cls, shape: _declared.Declared) -> Measure:
        memories = tuple(
            shape.exported_memories.get(i, f"{_declared.HIDDEN_MEMORY}{i}").encode()
            for i in range(len(shape.memories))
        )
        tables, fixed = [], 0
        for i, (low, high) in enumerate(shape.tables):
            if high == low:
                fixed += low * _declared.TABLE_ELEMENT_BYTES
            else:
                tables.append(shape.exported_tables.get(i, f"{_declared.HIDDEN_TABLE}{i}").encode())
        return cls(memories, tuple(tables), fixed)

    def held(self, context: int, instance: Any) -> int | None:
        """Bytes of every memory and table of ``instance``, or None when none is found."""
        total, found = self.fixed_bytes, bool(self.fixed_bytes)
        for name in self.memories:
            size = _capi.memory_size(context, instance, name)
            if size is not None:
                total, found = total + size, True
        for name in self.tables:
            size = _capi.table_size(context, instance, name)
            if size is not None:
                total, found = total + size * _declared.TABLE_ELEMENT_BYTES, True
        return total if found else None


class _StoreHandle:
    """What ``motte.keep._limits.Watch`` asks of a store, for one made through ``_capi``."""

    __slots__ = ("_context", "_store")

    def __init__(self, store: Any, context: int) -> None:
        self._store = store
        self._context = context

    def ptr(self) -> Any:
        return self._store

    def set_epoch_deadline(self, ticks: int) -> None:
        _capi.set_epoch_deadline(self._context, ticks)


def _outbound_for(manifest: Manifest, client_identity: tuple[bytes, bytes] | None) -> Any:
    """The granted destinations, ready to dial (TLS contexts built, CA bundles read), or
    None when the manifest has none."""
    if not manifest.connect:
        return None
    from motte.keep._outbound import Outbound

    return Outbound(manifest.connect, manifest.limits, client_identity=client_identity)


def _check_grants(manifest: Manifest) -> None:
    """Everything the manifest grants must exist before anything is compiled, and its
    workload must be inside its directory, symbolic links followed."""
    workload = manifest.workload
    if manifest.source is not None and workload.path is not None:
        real = os.path.realpath(workload.path)
        base = os.path.realpath(manifest.source.parent)
        if os.path.commonpath([real, base]) != base:
            raise KeepError(
                f"{workload.where}: workload: {workload.path} resolves to {real}, outside the "
                "manifest's directory",
                hint="copy the module into the directory instead of linking to it",
            )
    for d in manifest.dir:
        if not d.host.is_dir():
            what = "no such directory" if not d.host.exists() else "not a directory"
            raise KeepError(f"{d.where}: dir.host {d.host}: {what}")
    for name in ("stdin", "stdout", "stderr"):
        stdio = getattr(manifest, name)
        if stdio.kind != "file":
            continue
        assert stdio.path is not None
        if name == "stdin" and not stdio.path.is_file():
            raise KeepError(f"{stdio.where}: stdin.file {stdio.path}: no such file")
        if name != "stdin" and not stdio.path.parent.is_dir():
            raise KeepError(f"{stdio.where}: {name}.file {stdio.path}: no such directory")
