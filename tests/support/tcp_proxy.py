"""A small threaded TCP proxy on 127.0.0.1 for fault-injection tests.

    with TcpProxy("127.0.0.1", 5432) as proxy:     # listens on 127.0.0.1:<proxy.port>
        ...                                        # point the server at proxy.port
        proxy.cut()        # close every relayed connection and stop listening (connects are refused)
        proxy.restore()    # listen again on the same port; new connections are relayed
        proxy.swallow_reply_after(b"...")   # one shot: the next client message containing these
                                            # bytes is delivered, its reply is read and dropped,
                                            # and that connection is closed (a lost acknowledgement)
    # leaving the block closes everything

Only loopback: it listens on 127.0.0.1 and is meant to relay to a local service. Every thread is a
daemon and every blocking call is bounded, so a test that forgets to close it cannot hang.
"""

import socket
import threading
import time

CONNECT_TIMEOUT = 5.0
ACCEPT_POLL = 0.2
BUFFER = 65536


class TcpProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = None
        self._lock = threading.Lock()
        self._sockets = set()  # every relayed socket, both sides
        self._listener = None
        self._acceptor = None
        self._accepting = threading.Event()
        self.accepted = 0  # connections relayed so far (all runs)
        self.cut_count = 0
        self._trigger = None  # bytes armed by swallow_reply_after
        self.swallowed = threading.Event()  # set once an armed reply was dropped

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self):
        self._listen(0)
        return self

    def _listen(self, port):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, port))
        listener.listen(128)
        listener.settimeout(ACCEPT_POLL)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), daemon=True, name=f"tcp-proxy-accept-{self.port}"
        )
        self._acceptor.start()

    @property
    def listening(self):
        return self._accepting.is_set()

    def cut(self):
        """Stop accepting (the port refuses connections) and close every relayed connection."""
        self._stop_listening()
        self._close_all()
        self.cut_count += 1

    def restore(self):
        """Listen again on the same port."""
        if self.listening:
            return
        for attempt in range(50):  # the port was ours a moment ago; retry briefly if it lingers
            try:
                self._listen(self.port)
                return
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.1)

    def close(self):
        self._stop_listening()
        self._close_all()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    def _stop_listening(self):
        self._accepting.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.join(timeout=5)

    def _close_all(self):
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _hard_close(sock)

    def swallow_reply_after(self, marker, timeout=5.0):
        """Arm a one-shot fault: the next chunk from a client that contains `marker` is passed on
        upstream; the upstream's reply to it is read and thrown away, then both sides of that
        connection are closed. Wait for it with `self.swallowed.wait()`."""
        self.swallowed.clear()
        with self._lock:
            self._trigger = (marker, timeout)

    def _take_trigger(self, data):
        with self._lock:
            if self._trigger is not None and self._trigger[0] in data:
                trigger, self._trigger = self._trigger, None
                return trigger
        return None

    @property
    def open_connections(self):
        with self._lock:
            return len(self._sockets) // 2

    # -- relaying ----------------------------------------------------------------------------

    def _accept_loop(self, listener):
        while self._accepting.is_set():
            try:
                downstream, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            if not self._accepting.is_set():
                _hard_close(downstream)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
            except OSError:
                _hard_close(downstream)
                continue
            downstream.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if not self._accepting.is_set():
                    _hard_close(downstream)
                    _hard_close(upstream)
                    return
                self._sockets.update((downstream, upstream))
                self.accepted += 1
            doomed = threading.Event()  # this connection's next upstream reply is to be dropped
            threading.Thread(
                target=self._pump,
                args=(downstream, upstream, doomed, True),
                daemon=True,
                name=f"tcp-proxy-pump-{self.port}",
            ).start()
            threading.Thread(
                target=self._pump,
                args=(upstream, downstream, doomed, False),
                daemon=True,
                name=f"tcp-proxy-pump-{self.port}",
            ).start()

    def _pump(self, source, sink, doomed, from_client):
        try:
            while True:
                data = source.recv(BUFFER)
                if not data:
                    break
                if not from_client and doomed.is_set():
                    self.swallowed.set()  # the reply is read and dropped: the client never sees it
                    break
                if from_client:
                    trigger = self._take_trigger(data)
                    if trigger is not None:
                        # Doomed before the data leaves, so the reply cannot slip through; if no
                        # reply comes at all, the connection is closed after the timeout anyway.
                        doomed.set()
                        timer = threading.Timer(trigger[1], self._close_pair, args=(source, sink))
                        timer.daemon = True
                        timer.start()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close_pair(source, sink)

    def _close_pair(self, first, second):
        with self._lock:
            self._sockets.discard(first)
            self._sockets.discard(second)
        _hard_close(first)
        _hard_close(second)


def _hard_close(sock):
    """Close at once: both directions shut down, so a thread blocked in recv() wakes up."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
