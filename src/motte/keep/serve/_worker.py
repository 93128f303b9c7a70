"""A worker process (``python -m motte.keep.serve._worker``), started by a serving parent
(:mod:`._workers`): it reads its config (:mod:`._handover`), prepares the workload itself (a
cache hit: the parent compiled it), refuses to serve if the digest differs, writes
```ready`` on standard output, serves the inherited sockets until its standard input ends
or SIGTERM, presenting each renewed identity the parent sends to new connections (and
saying so, one JSON line), and writes its counters as one JSON line before it exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

from motte.keep.serve._handover import decode_identity, decode_record, read_messages

_said = threading.Lock()


def _say(line: str) -> None:
    # The main thread says ready and the counters; the parent's reader, each renewal taken.
    with _said:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> int:
    """Entry point of a worker process (``python -m motte.keep.serve._worker``)."""
    from motte.errors import MotteError
    from motte.keep._secrets import prepare_in_worker
    from motte.keep.serve._options import ServeOptions
    from motte.keep.serve._renew import Identities
    from motte.keep.serve._run import configure_logging
    from motte.keep.serve._server import serve_sockets

    # The terminal's Ctrl-C reaches the whole process group; the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.buffer.readline())
    # The real stdout carries the protocol; anything else written to it goes to stderr.
    sys.stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    configure_logging()
    try:
        manifest = decode_record(config["manifest"])
        identity = decode_identity(config["identity"])
        client = None
        if identity is not None and identity.attested:
            # Outbound connections present the Keep's attested certificate (mutual TLS).
            client = (identity.certificate_chain_pem, identity.private_key_pem)
        # Released secrets and an encrypted module's key come through the pipe, as the TLS
        # key does (motte.keep._secrets); without them, the plain preparation.
        prepared = prepare_in_worker(manifest, config.get("confidential"), client_identity=client)
        if prepared.digest != config["digest"]:
            raise MotteError(
                f"the workload changed on disk: {prepared.digest}, not {config['digest']}"
            )
        listeners = decode_record(config["listeners"])
        sockets = [[socket.socket(fileno=fd) for fd in fds] for fds in config["fds"]]
        options = ServeOptions(**config["options"])
    except MotteError as e:
        _say(json.dumps({"error": e.message}))
        return 1
    except Exception as e:  # a bug, or a broken hand-over: the parent logs it
        _say(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    stop = threading.Event()
    identities = Identities(identity) if identity is not None else None

    def parent_gone() -> None:
        # Renewed identities until end of file: the parent closed it, or died.
        read_messages(sys.stdin.buffer, identities.update if identities else lambda _i: None)
        stop.set()

    threading.Thread(target=parent_gone, name="motte-parent", daemon=True).start()
    stats = serve_sockets(
        prepared,
        listeners,
        identity,
        sockets,
        options=options,
        ready=lambda _bound: _say("ready"),
        stop=stop,
        signals=(signal.SIGTERM,),
        tag=f"w{config['index']}",
        identities=identities,
        # The parent logs it: one place says which processes serve the renewed certificate.
        on_renewed=lambda new: _say(json.dumps({"renewed": new.leaf_sha256})),
    )
    _say(json.dumps({"stats": stats.as_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
