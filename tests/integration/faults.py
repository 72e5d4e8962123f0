"""Real network faults on loopback for the fault tests: a TCP proxy whose flows can be
reset or blackholed, a server that accepts and never answers, and PgBouncer with
extra settings.

The proxy listens on 127.0.0.1 and forwards each accepted connection to the test
server (its Unix socket or TCP port). It reads the startup packet going by, so a
test can pick a flow by the application_name the client sent (the runner's lock
connection is "sqlrunner lock (...)").
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def _upstream(dsn: str) -> socket.socket:
    params = conninfo_to_dict(dsn)
    host, port = str(params.get("host") or "localhost"), int(params.get("port") or 5432)
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(f"{host}/.s.PGSQL.{port}")
        return sock
    return socket.create_connection((host, port))


def _reset(sock: socket.socket) -> None:
    """Close abortively: a TCP peer gets a RST, as from a NAT or firewall that dropped it."""
    with contextlib.suppress(OSError):
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@dataclass
class Flow:
    """One client connection through the proxy and its upstream connection."""

    client: socket.socket
    server: socket.socket
    application_name: str = ""
    blackholed: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.closed.set()
        _reset(self.client)
        _reset(self.server)


class Proxy:
    """A TCP proxy on loopback in front of the test server (threads and sockets)."""

    def __init__(self, dsn: str) -> None:
        self.target_dsn = dsn
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.flows: list[Flow] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def dsn(self) -> str:
        """``target_dsn`` through the proxy (TCP on 127.0.0.1)."""
        return make_conninfo(self.target_dsn, host="127.0.0.1", port=str(self.port))

    def named(self, prefix: str) -> list[Flow]:
        return [f for f in self.flows if f.application_name.startswith(prefix)]

    def blackhole(self) -> None:
        """Every flow, now and later, silently loses all its bytes both ways."""
        for flow in self.flows:
            flow.blackholed.set()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        for flow in self.flows:
            flow.reset()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            flow = Flow(client, _upstream(self.target_dsn))
            self.flows.append(flow)
            for src, dst, sniff in ((client, flow.server, True), (flow.server, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(flow, src, dst, sniff), daemon=True
                )
                thread.start()

    def _pump(self, flow: Flow, src: socket.socket, dst: socket.socket, sniff: bool) -> None:
        seen = b""
        while not flow.closed.is_set() and not self._stop.is_set():
            try:
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(65536)
            except (OSError, ValueError):
                break
            if not data:
                break
            if sniff and not flow.application_name and len(seen) < 8192:
                seen += data
                marker = seen.find(b"application_name\x00")
                if marker >= 0:
                    value = seen[marker + len(b"application_name\x00") :]
                    if b"\x00" in value:
                        flow.application_name = value.split(b"\x00", 1)[0].decode()
            if flow.blackholed.is_set():
                continue  # swallowed: neither side ever hears of it
            try:
                dst.sendall(data)
            except OSError:
                break
        if not flow.blackholed.is_set():
            flow.reset()


@contextlib.contextmanager
def proxy_to(dsn: str) -> Iterator[Proxy]:
    proxy = Proxy(dsn)
    try:
        yield proxy
    finally:
        proxy.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([listener], [], [], 0.1)
            if ready:
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as(host: str) -> str | None:
    """PgBouncer refuses to run as root: run it as the user who can reach the server."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "postgres" if user_exists("postgres") else "nobody"


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def pgbouncer(dsn: str, settings: str) -> Iterator[str]:
    """``dsn``'s database through a fresh PgBouncer in transaction mode with ``settings``
    (extra lines for its [pgbouncer] section); yields the DSN through it."""
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    params = conninfo_to_dict(dsn)
    host, port = str(params.get("host", "localhost")), str(params.get("port", 5432))
    user = str(params.get("user", "postgres"))
    work = Path(tempfile.mkdtemp(prefix="sqlrunner-pgbouncer-"))
    listen = free_port()
    (work / "users.txt").write_text(f'"{user}" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={host} port={port}\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work}/users.txt\npool_mode = transaction\n"
        "default_pool_size = 6\nmax_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {work}/pgbouncer.log\n{settings}\n"
    )
    owner = run_as(host)
    if owner:
        shutil.chown(work, owner)
        for path in work.iterdir():
            shutil.chown(path, owner)
    argv = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if owner:
        argv = ["runuser", "-u", owner, "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    through = make_conninfo(host="127.0.0.1", port=listen, user=user, dbname=params["dbname"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(through, prepare_threshold=None).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = work / "pgbouncer.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    pytest.fail(f"pgbouncer did not start: {tail}")
                time.sleep(0.1)
        yield through
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


ROUND_ROBIN = "server_round_robin = 1"  # each transaction on the next server connection


@contextlib.contextmanager
def round_robin_pgbouncer(dsn: str, clients: int = 2) -> Iterator[str]:
    """``pgbouncer`` handing each transaction the next server connection, with ``clients``
    other clients running SELECTs so the pool holds several: a statement psycopg
    prepared on one server connection is sent by name to another, where it does not
    exist (PgBouncer 1.18 does not track prepared statements)."""
    with pgbouncer(dsn, ROUND_ROBIN) as through:
        stop = threading.Event()

        def churn() -> None:
            with psycopg.connect(through, autocommit=True, prepare_threshold=None) as conn:
                while not stop.is_set():
                    conn.execute("SELECT 1")

        others = [threading.Thread(target=churn) for _ in range(clients)]
        for other in others:
            other.start()
        try:
            yield through
        finally:
            stop.set()
            for other in others:
                other.join(timeout=10)


def _run_in_network_namespace(target_dsn: str, argv: list[str]) -> int:
    """Inside a fresh network namespace (``unshare -n``): bring up its own loopback, put
    the proxy on it, run ``sqlrunner ARGV`` through the proxy, and on SIGUSR1 take that
    loopback down. Packets then really vanish (nothing acknowledges them, unlike a proxy
    that merely stops forwarding), as on a partitioned network; the server's side of
    the proxy is its Unix socket, outside this namespace, and stays up."""
    import sys

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with proxy_to(target_dsn) as proxy:
        signal.signal(
            signal.SIGUSR1,
            lambda *_: subprocess.run(["ip", "link", "set", "lo", "down"], check=True),
        )
        runner = subprocess.Popen(
            [sys.executable, "-m", "sqlrunner", "--dsn", proxy.dsn(), *argv],
            stdin=subprocess.DEVNULL,
        )
        while True:
            try:
                return runner.wait()
            except InterruptedError:
                continue


if __name__ == "__main__":
    import sys

    sys.exit(_run_in_network_namespace(sys.argv[1], sys.argv[2:]))
