"""Runs moto server on loopback for Quarry's local stack and tests.

Usage: python moto_server.py [PORT]   (0 or nothing: a free port)

Prints `moto listening on http://127.0.0.1:PORT` once it accepts connections. It stops when
its standard input closes, so a parent that dies (or a test that ends) never leaves it behind;
pass --no-stdin-watch to keep it running without a parent holding stdin.
"""

import logging
import os
import signal
import sys
import threading

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


class SerializedDynamoDB:
    """Runs DynamoDB requests one at a time.

    moto's TransactWriteItems deep-copies the tables for its rollback while other request
    threads write to them ("dictionary changed size during iteration", an HTML 500). Real
    DynamoDB has no such race; serializing DynamoDB calls here keeps concurrent transactions
    (the usage ledger, batch claims) correct. Other services (e.g. SQS long polls) stay
    concurrent.
    """

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.lock:
                # The response body is built before the lock is released.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class Server(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = SerializedDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else 0
    # One access-log line per AWS call would bury the logs that matter.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Server(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    print(f"moto listening on http://{host}:{bound}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if "--no-stdin-watch" not in sys.argv:
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            finally:
                done.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    # Exit at once: werkzeug's shutdown waits on open keep-alive connections.
    os._exit(0)


if __name__ == "__main__":
    main()
