"""Runs moto server on loopback for Quarry's local stack and tests.

Usage: python moto_server.py [PORT]   (0 or nothing: a free port)

Prints `moto listening on http://127.0.0.1:PORT` once it accepts connections. It stops when
its standard input closes, so a parent that dies (or a test that ends) never leaves it behind;
pass --no-stdin-watch to keep it running without a parent holding stdin.
"""

import copy
import logging
import os
import signal
import sys
import threading
from collections import defaultdict

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table


# moto's TransactWriteItems deep-copies every table a transaction names, once per item of the
# transaction, to roll back on failure: O(table size) per write, and every copy is kept
# forever by moto's instance tracking, so a usage ledger that grows with every request slows
# the local stack down quadratically and exhausts memory (23 GB after 10,000 requests). The
# rollback only needs the items the transaction names: the snapshot copies the table's item
# index (references) and deep-copies only those items, as objects moto does not track.
_transaction = threading.local()
_transact_write_items = DynamoDBBackend.transact_write_items


def _touched_keys(backend, transact_items):
    touched = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName"))
        attrs = op.get("Key") or op.get("Item") or {}
        if table is None or table.hash_key_attr not in attrs:
            continue
        hash_key = DynamoType(attrs[table.hash_key_attr])
        range_attr = table.range_key_attr
        range_key = DynamoType(attrs[range_attr]) if range_attr and range_attr in attrs else None
        touched.setdefault(table.name, []).append((hash_key, range_key))
    return touched


def _transact_write_items_snapshotting_items(self, transact_items):
    _transaction.touched = _touched_keys(self, transact_items)
    try:
        return _transact_write_items(self, transact_items)
    finally:
        _transaction.touched = None


def _untracked(obj, attributes):
    """A copy of a moto model that moto does not track: every model moto constructs is kept in
    a class-level list until reset, so snapshots made through copy/deepcopy would never be
    freed (one table's worth of memory per transaction item)."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(attributes)
    return clone


def _table_snapshot(self, memo):
    touched = getattr(_transaction, "touched", None)
    if touched is None:
        return _untracked(self, copy.deepcopy(self.__dict__, memo))
    items = defaultdict(dict)
    for hash_key, value in self.items.items():
        items[hash_key] = dict(value) if isinstance(value, dict) else value
    for hash_key, range_key in touched.get(self.name, []):
        if range_key is not None and hash_key in items and range_key in items[hash_key]:
            item = items[hash_key][range_key]
            items[hash_key][range_key] = _untracked(item, copy.deepcopy(item.__dict__))
        elif range_key is None and hash_key in items:
            item = items[hash_key]
            items[hash_key] = _untracked(item, copy.deepcopy(item.__dict__))
    return _untracked(self, {**self.__dict__, "items": items})


DynamoDBBackend.transact_write_items = _transact_write_items_snapshotting_items
Table.__deepcopy__ = _table_snapshot


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
