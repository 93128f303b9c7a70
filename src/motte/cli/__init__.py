"""The ``motte`` command line: one Typer app, a sub-app or command per area.

Commands are registered lazily (as pip does): ``motte attest ...`` imports only the attest
commands. Most command lines never import Typer at all (docs/performance.md, "CLI
start-up"): ``--help`` prints the screens Typer rendered (:mod:`motte.cli._help`), and a
plain command line is parsed from the parameter spec Typer's objects gave and the command
function called directly (:mod:`motte.cli._direct`); the command modules declare through
:mod:`motte.cli._typer`, whose records Typer replays for everything else.

Every command is thin: it parses, calls the library, renders, and returns an exit status.
:func:`main` is the one place that maps exceptions to exit statuses.
"""

from __future__ import annotations

import importlib
import os
import sys

from motte.cli._output import report_error
from motte.errors import ExitStatus, MotteError

# Not typing.TYPE_CHECKING: importing typing costs `motte --help` a tenth of its time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import typer

__all__ = ["COMMANDS", "build_app", "invoked_as_process", "main", "report_error"]

#: name -> (module, attribute, summary). The attribute is a ``typer.Typer`` (a group of
#: subcommands) or a function (a single command, documented by its docstring).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("motte.cli.run", "run", "Run a WebAssembly workload in a Keep."),
    "cache": ("motte.cli.run", "cache_app", "Manage the compiled-artifact cache."),
    "platform": ("motte.cli.platform", "app", "What Keep backends this machine supports."),
    "attest": (
        "motte.cli.attest",
        "app",
        "TEE evidence: parse and verify a Keep's attestation report (SNP, TDX, SGX).",
    ),
    "measure": ("motte.cli.measure", "app", "Compute the launch measurement a policy pins."),
    "steward": ("motte.cli.steward", "app", "The attestation service and CA."),
    "secret": (
        "motte.cli.secret",
        "app",
        "Secrets in the Steward, released only to attested Keeps.",
    ),
    "volume": (
        "motte.cli.volume",
        "app",
        "Sealed volumes: their snapshots (ciphertext) and the Steward's counters.",
    ),
    "connect": ("motte.cli.connect", "connect", "Connect to a Keep and verify what it is."),
    "package": ("motte.cli.oci", "package", "Build an OCI artifact from a workload directory."),
    "push": ("motte.cli.oci", "push", "Push an artifact to an OCI registry."),
    "pull": ("motte.cli.oci", "pull", "Pull an artifact from an OCI registry."),
    "key": ("motte.cli.sign", "key_app", "Create and inspect signing keys."),
    "sign": ("motte.cli.sign", "sign", "Sign an artifact and log the signature."),
    "release": ("motte.cli.sign", "release", "Bind a tag to its digest: version, expiry."),
    "attest-build": (
        "motte.cli.sign",
        "attest_build",
        "Sign an in-toto statement: SLSA build provenance (not TEE evidence).",
    ),
    "attest-review": (
        "motte.cli.sign",
        "attest_review",
        "Sign an in-toto statement: a review or audit of a package (not TEE evidence).",
    ),
    "verify": ("motte.cli.sign", "verify", "Verify an artifact's signatures and log inclusion."),
    "log": ("motte.cli.log", "app", "The transparency log (motte.tlog): serve, append, prove."),
    "trust": ("motte.cli.trust", "trust", "Do I trust this package? The five-area judgement."),
    "rebuild": ("motte.cli.trust", "rebuild", "Rebuild a package from its recorded source."),
    "advise": ("motte.cli.trust", "advise", "Publish a signed advisory about package versions."),
    "power": ("motte.cli.power", "app", "Ride out power cuts and shut down in order."),
    "console": ("motte.cli.console", "console", "Read-only web pages: Keeps, log, trust, power."),
}


def _register(app: typer.Typer, name: str) -> bool:
    import typer

    module_name, attr, summary = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return False  # an area not built into this installation
    from motte.cli._typer import to_typer

    obj = to_typer(getattr(module, attr))
    if isinstance(obj, typer.Typer):
        app.add_typer(obj, name=name, help=summary)
    else:
        app.command(name)(obj)
    return True


def build_app(only: str | None = None) -> typer.Typer:
    """The root app with every command, or with ``only`` that one (the lazy path)."""
    import typer

    from motte import __version__

    app = typer.Typer(
        name="motte",
        help="Run WebAssembly workloads in attested Keeps.",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"motte {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """Run WebAssembly workloads in attested Keeps.

        Integrity: know what you run (signed packages, a transparency log, attested Keeps).
        Confidentiality: secrets reach only a Keep whose evidence verified.
        Availability: ride out power cuts and shut down in order.
        """

    for name in [only] if only else COMMANDS:
        _register(app, name)
    return app


#: Whether the command line being run is this process's own (the console script, ``python -m
#: motte``), not that of a caller embedding :func:`main` such as a test.
_own_process = False


def invoked_as_process() -> bool:
    """Whether the running command is this process's own command line: only such a command
    may end the whole process from inside (``motte run``'s supervisor does)."""
    return _own_process


def main(argv: list[str] | None = None) -> int:
    global _own_process
    args = sys.argv[1:] if argv is None else list(argv)
    _own_process = args == sys.argv[1:]
    try:
        if args == ["--version"]:  # as the root callback prints it, without Typer
            from motte import __version__

            print(f"motte {__version__}")
            return int(ExitStatus.OK)
        if _may_ask_for_help(args):
            from motte.cli._help import answer_help

            status = answer_help(args)
            if status is not None:
                return status
        from motte.cli._direct import run_direct

        status = run_direct(args)
        if status is not None:
            return status
        return _main_typer(args)
    except MotteError as e:
        report_error(e)
        return int(e.exit_status)
    except KeyboardInterrupt:
        print("motte: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (``motte ... | head``): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitStatus.OK)
    except Exception as e:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("MOTTE_DEBUG"):
            raise
        print(
            f"motte: internal error: {type(e).__name__}: {e}\n"
            "  hint: this is a bug in motte; run again with MOTTE_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return int(ExitStatus.INTERNAL)


def _may_ask_for_help(args: list[str]) -> bool:
    """Whether ``args`` may be a plain help request, which :mod:`motte.cli._help` answers
    without Typer: ``--help``/``-h`` last, nothing at all, or a group's name alone."""
    if not args or args[-1] in ("-h", "--help"):
        return True
    return len(args) <= 2 and args[0] != "run" and not any(a.startswith("-") for a in args)


def _main_typer(args: list[str]) -> int:
    only = args[0] if args and args[0] in COMMANDS else None
    return _main_typer_command(build_app(only), args)


def _main_typer_command(command: Any, args: list[str]) -> int:
    """Run a Typer app (or the click command built from one) on ``args``: its exit status."""
    import typer

    try:
        rv = command(args=args, prog_name="motte", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        print("motte: aborted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except typer.TyperException as e:  # Typer's (vendored click's) usage errors
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            print(f"motte: error: {e}", file=sys.stderr)
        code = getattr(e, "exit_code", ExitStatus.USAGE)
        return int(code)
    return int(rv) if isinstance(rv, int) else int(ExitStatus.OK)
