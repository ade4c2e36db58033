"""A loopback TCP fault proxy: clients connect to it instead of the service,
and the scenario cuts, stalls or refuses their connections.

It binds and connects to 127.0.0.1 only. Each connection is pumped by one
thread (blocking sockets, ``select`` with a short timeout), so it works
whatever event loop the clients use.

* ``cut()``: reset every open connection (``SO_LINGER`` 0: both sides see
  ``ECONNRESET``); new connections are accepted as before.
* ``stall()`` / ``resume()``: stop forwarding bytes in both directions while
  keeping the connections open (a black hole: heartbeats and requests stay
  unanswered), then let them flow again.
* ``refuse()`` / ``accept()``: close the listening socket (a connect gets
  ``ECONNREFUSED``) and cut what is open; listen again on the same port.
"""

from __future__ import annotations

import select
import socket
import struct
import threading

LOOPBACK = "127.0.0.1"


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Pipe:
    """One proxied connection: client socket, upstream socket, a pump thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = False
        self.thread = threading.Thread(target=self._pump, name="fault-proxy-pipe", daemon=True)

    def _pump(self) -> None:
        peers = {self.client: self.upstream, self.upstream: self.client}
        try:
            while not self.closed:
                if self.proxy.stalled.is_set():
                    self.proxy.flowing.wait(0.05)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        self.proxy.forget(self)


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``, with faults.

    Args:
        upstream_port: the service's port on 127.0.0.1.
        port: the port to listen on (0: a free one; read ``.port``).
    """

    def __init__(self, upstream_port: int, *, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.stalled = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()
        self.accepted = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = self._listen(port)
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        return int(listener.getsockname()[1])

    def _accept(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(0.05)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                self._stopped.wait(0.05)
                continue
            try:
                upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe = _Pipe(self, client, upstream)
            with self._lock:
                self._pipes.add(pipe)
                self.accepted += 1
            pipe.thread.start()

    def forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pipes)

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close(reset=True)
        self.cuts += len(pipes)
        return len(pipes)

    def stall(self) -> None:
        """Stop forwarding (connections stay open)."""
        self.flowing.clear()
        self.stalled.set()

    def resume(self) -> None:
        """Forward again."""
        self.stalled.clear()
        self.flowing.set()

    def refuse(self) -> None:
        """Stop listening (connects are refused) and cut open connections."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.cut()

    def accept(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self._stopped.set()
        self.resume()
        self.refuse()
        self._thread.join(5)
