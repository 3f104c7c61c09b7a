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

from moto.server import ThreadedMotoServer


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else 0
    # One access-log line per AWS call would bury the logs that matter.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
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
