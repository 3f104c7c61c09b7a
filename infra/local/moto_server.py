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
# rollback only needs the items the transaction names: those are saved before it runs and put
# back if it fails, and the table snapshot moto asks for is the table itself.
_transaction = threading.local()
_transact_write_items = DynamoDBBackend.transact_write_items


def _untracked(obj, attributes):
    """A copy of a moto model that moto does not track (moto keeps every model it constructs
    in a class-level list until reset, so tracked copies would never be freed)."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(attributes)
    return clone


def _key(table, attrs):
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_attr = table.range_key_attr
    return hash_key, (DynamoType(attrs[range_attr]) if range_attr and range_attr in attrs else None)


def _current(table, hash_key, range_key):
    value = table.items.get(hash_key)
    if range_key is not None:
        value = value.get(range_key) if isinstance(value, dict) else None
    return None if value is None else _untracked(value, copy.deepcopy(value.__dict__))


def _restore(table, hash_key, range_key, item):
    if range_key is not None:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def _transact_write_items_saving_items(self, transact_items):
    saved = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        attrs = op.get("Key") or op.get("Item") or {}
        if table is not None and table.hash_key_attr in attrs:
            hash_key, range_key = _key(table, attrs)
            saved.append((table, hash_key, range_key, _current(table, hash_key, range_key)))
    _transaction.active = True
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        # moto "restored" the tables it snapshotted, which are the same objects (see
        # _table_snapshot): undo the transaction's writes item by item, last first.
        for table, hash_key, range_key, item in reversed(saved):
            _restore(table, hash_key, range_key, item)
        raise
    finally:
        _transaction.active = False


def _table_snapshot(self, memo):
    if getattr(_transaction, "active", False):
        return self
    return _untracked(self, copy.deepcopy(self.__dict__, memo))


DynamoDBBackend.transact_write_items = _transact_write_items_saving_items
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
