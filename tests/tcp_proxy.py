"""A TCP proxy on 127.0.0.1 that a test can cut or stall, to put faults between a run and a server.

with TcpProxy(("127.0.0.1", 5432)) as proxy:     # or TcpProxy("/run/postgresql/.s.PGSQL.5432")
    url = f"postgresql://user@127.0.0.1:{proxy.port}/db"
    proxy.cut()      # drops every connection; new ones are closed at once (an error, fast)
    proxy.stall()    # connections stay open but nothing is forwarded (no error, no answer)
    proxy.restore()  # forwards again (connections dropped by cut() stay dropped)
"""

from __future__ import annotations

import enum
import select
import socket
import threading
from typing import Self


class Mode(enum.Enum):
    FORWARD = "forward"
    CUT = "cut"
    STALL = "stall"


_POLL_SECONDS = 0.05


class TcpProxy:
    def __init__(self, upstream: tuple[str, int] | str):
        """``upstream``: a (host, port) pair, or the path of a Unix socket."""
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._mode = Mode.FORWARD
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    @property
    def mode(self) -> Mode:
        return self._mode

    def cut(self) -> None:
        self._mode = Mode.CUT
        self._close_all()

    def stall(self) -> None:
        self._mode = Mode.STALL

    def restore(self) -> None:
        self._mode = Mode.FORWARD

    def __enter__(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._close_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="tcp-proxy")
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._mode is Mode.CUT:
                _close(client)
                continue
            self._track(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        # A connection that arrives during a stall is held open, unanswered, until the stall ends.
        while self._mode is Mode.STALL and not self._closed.is_set():
            self._closed.wait(_POLL_SECONDS)
        if self._mode is Mode.CUT or self._closed.is_set():
            _close(client)
            return
        try:
            upstream = _connect(self._upstream)
        except OSError:
            _close(client)
            return
        self._track(upstream)
        self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if self._mode is Mode.STALL:
                    self._closed.wait(_POLL_SECONDS)
                    continue
                readable, _, _ = select.select(list(peers), [], [], _POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # closed by cut() or by the other side
            return
        finally:
            _close(client)
            _close(upstream)


def _connect(address: tuple[str, int] | str) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        return sock
    sock = socket.create_connection(address, timeout=5)
    sock.settimeout(None)
    return sock


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
