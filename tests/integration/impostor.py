"""A fake PostgreSQL server that phishes for passwords, to prove clients do not fall for it.

It speaks just enough of the protocol: answers an SSLRequest with 'S' and does TLS with its
OWN self-signed certificate (same names as the real server's, so only the CA differs), also
takes plaintext startups, reads the StartupMessage, asks for a cleartext password
(AuthenticationCleartextPassword) and records any PasswordMessage it gets, with the user
name, then answers with an ErrorResponse and closes. A client that authenticates the server
(``sslmode=verify-full`` with the right root, or ``channel_binding=require``) refuses before
sending anything; one with ``sslmode=require`` hands the password over.

What it saw is a list of events (one JSON object each, also appended to a JSON lines file
if given). A password is recorded as its SHA-256 only, so the record and assertion messages
never become a leak themselves.

In-process::

    with Impostor(["127.0.0.1"], 0, names=["127.0.0.1"], workdir=tmp) as imp:
        ...  # connect to imp.port
    imp.passwords()

Inside a network namespace (the test process stays outside), see :func:`in_netns`::

    with in_netns("zt-impostor", ["198.51.100.1"], 5433, names=[...]) as imp:
        subprocess.run(imp.exec_prefix + [client...])
        imp.settle(); imp.passwords()
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
PROTOCOL_3 = 196608
AUTH_CLEARTEXT = 3
# The machine's real networks (eth0, the gateway, the package registries): never ours to take.
FORBIDDEN_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "203.0.113.0/24"))


def password_digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def make_certificate(directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (CN = the first; IP or DNS SANs for all): (cert, key)."""
    if not names:
        raise ValueError("the impostor's certificate needs at least one name")
    sans = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in names)
    cert, key = directory / "impostor.crt", directory / "impostor.key"
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "1", "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={sans}",
         "-keyout", str(key), "-out", str(cert)],
        text=True, capture_output=True, umask=0o077)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl req failed: {proc.stderr.strip()}")
    return cert, key


def certificate_names(pem_path: str | os.PathLike) -> list[str]:
    """The names a server certificate answers to, for the impostor to copy: its CN, then its SANs."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificates(Path(pem_path).read_bytes())[0]  # the leaf comes first
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    return list(dict.fromkeys(names))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Impostor:
    """Listens on every ``(address, port)``; a thread per connection. ``port=0`` picks one."""

    def __init__(self, addresses: Sequence[str], port: int, names: Sequence[str], workdir: str | os.PathLike,
                 record: str | os.PathLike | None = None):
        cert, key = make_certificate(Path(workdir), names)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._record = open(record, "a", encoding="utf-8", opener=_private) if record else None
        self._count = 0
        self._listeners = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            self._listeners.append(socket.create_server((address, port), family=family))
            port = port or self._listeners[0].getsockname()[1]  # one port for all addresses
        self.port = port

    def __enter__(self) -> "Impostor":
        for listener in self._listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._record:
            self._record.close()
            self._record = None

    def passwords(self) -> list[dict]:
        return [e for e in self.events if e["event"] == "password"]

    # -- protocol ----------------------------------------------------------------------------

    def _emit(self, **event) -> None:
        with self._lock:
            self.events.append(event)
            if self._record:  # one write per event: a reader never sees half a line
                self._record.write(json.dumps(event) + "\n")
                self._record.flush()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, peer = listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._count += 1
                conn = self._count
            threading.Thread(target=self._serve, args=(sock, peer, conn), daemon=True).start()

    def _serve(self, sock: socket.socket, peer, conn: int) -> None:
        local = "%s:%d" % sock.getsockname()[:2]
        self._emit(event="accepted", conn=conn, peer=peer[0], local=local)
        stage, tls = "startup", None
        try:
            sock.settimeout(10)
            code, body = _read_startup(sock)
            for _ in range(2):  # libpq may ask for GSS encryption first, then TLS
                if code == GSSENC_REQUEST:
                    sock.sendall(b"N")
                elif code == SSL_REQUEST and tls is None:
                    sock.sendall(b"S")
                    stage = "tls"
                    try:
                        sock = self.tls.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError) as e:
                        # The client checked the certificate and said no (e.g. TLSV1_ALERT_UNKNOWN_CA).
                        self._emit(event="tls", conn=conn, ok=False, error=getattr(e, "reason", None) or str(e))
                        return
                    tls = sock.version()
                    self._emit(event="tls", conn=conn, ok=True, version=tls)
                else:
                    break
                stage = "startup"
                code, body = _read_startup(sock)
            if code != PROTOCOL_3:  # a CancelRequest, or something else
                self._emit(event="unexpected", conn=conn, code=code)
                return
            params = _parse_params(body[4:])
            user = params.get("user")
            self._emit(event="startup", conn=conn, user=user, database=params.get("database"), tls=tls)
            stage = "password"
            sock.sendall(b"R" + struct.pack("!ii", 8, AUTH_CLEARTEXT))
            kind, payload = _read_message(sock)
            if kind == b"p":
                password = payload.rstrip(b"\0").decode("utf-8", "replace")
                self._emit(event="password", conn=conn, user=user, tls=tls, sha256=password_digest(password))
            else:
                self._emit(event="unexpected", conn=conn, message=kind.decode("latin-1"))
            sock.sendall(_error_response("28P01", f'password authentication failed for user "{user}"'))
        except (OSError, EOFError) as e:  # the client hung up: that is how a careful client says no
            self._emit(event="hangup", conn=conn, stage=stage, error=str(e) or type(e).__name__)
        finally:
            self._emit(event="closed", conn=conn)
            try:
                sock.close()
            except OSError:
                pass


def _private(path, flags):
    return os.open(path, flags, 0o600)


def _recv_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("client closed the connection")
        data += chunk
    return data


def _read_startup(sock) -> tuple[int, bytes]:
    """An untyped startup-phase packet: (request code or protocol version, whole body)."""
    (length,) = struct.unpack("!i", _recv_exact(sock, 4))
    if not 8 <= length <= 10000:
        raise EOFError(f"bad startup packet length {length}")
    body = _recv_exact(sock, length - 4)
    return struct.unpack("!i", body[:4])[0], body


def _read_message(sock) -> tuple[bytes, bytes]:
    kind = _recv_exact(sock, 1)
    (length,) = struct.unpack("!i", _recv_exact(sock, 4))
    if not 4 <= length <= 10000:
        raise EOFError(f"bad message length {length}")
    return kind, _recv_exact(sock, length - 4)


def _parse_params(data: bytes) -> dict[str, str]:
    parts = data.split(b"\0")
    return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(t + v.encode() + b"\0" for t, v in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate),
                                                         (b"M", message))) + b"\0"
    return b"E" + struct.pack("!i", 4 + len(fields)) + fields


# -- in a network namespace -------------------------------------------------------------------


class Remote:
    """An impostor running in a namespace, seen from outside through its JSON lines record."""

    def __init__(self, netns: str, record: Path):
        self.netns, self.record = netns, record
        self.exec_prefix = ["ip", "netns", "exec", netns]

    def events(self) -> list[dict]:
        text = self.record.read_text(encoding="utf-8") if self.record.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    def mark(self) -> int:
        return len(self.events())

    def settle(self, quiet: float = 0.3, timeout: float = 10) -> list[dict]:
        """Events once every accepted connection is closed and nothing new came for ``quiet`` s.

        A client exits as soon as it gives up; the impostor may still be noting how it
        ended, so reading the record at once could miss that.
        """
        deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) != last:
                last, since = len(events), time.monotonic()
            opened = sum(e["event"] == "accepted" for e in events)
            closed = sum(e["event"] == "closed" for e in events)
            if opened == closed and time.monotonic() - since >= quiet:
                return events
            time.sleep(0.05)
        raise AssertionError(f"impostor did not settle within {timeout}s: {self.events()[-5:]}")


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


def _kill_netns_pids(netns: str) -> None:
    proc = subprocess.run(["ip", "netns", "pids", netns], text=True, capture_output=True)
    for pid in proc.stdout.split() if proc.returncode == 0 else ():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def in_netns(netns: str, addresses: Sequence[str], port: int, names: Sequence[str],
             ready_timeout: float = 15) -> Iterator[Remote]:
    """A fresh namespace holding only ``lo`` with ``addresses`` on it, and the impostor there.

    With no other link, whatever a client in the namespace sends to those addresses reaches
    the impostor and nothing else. Namespace, process and files are removed on leaving,
    also on failure. Name it with the lab's prefix, so a crashed run's leftover goes with
    the lab's stale namespaces.
    """
    for address in addresses:
        if any(ipaddress.ip_address(address) in net for net in FORBIDDEN_NETS):
            raise ValueError(f"{address} belongs to this machine's real networks")
    tmp = Path(tempfile.mkdtemp(prefix="zt-impostor-"))
    record = tmp / "events.jsonl"
    proc = None
    try:
        _ip("netns", "add", netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        for address in addresses:
            if not ipaddress.ip_address(address).is_loopback:
                _ip("-n", netns, "addr", "add", f"{address}/{128 if ':' in address else 32}", "dev", "lo")
        argv = [sys.executable, __file__, "--port", str(port), "--record", str(record), "--workdir", str(tmp)]
        argv += [a for address in addresses for a in ("--listen", address)]
        argv += [a for name in names for a in ("--name", name)]
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], ready_timeout)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"impostor did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield Remote(netns, record)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            proc.stdout.close()
            proc.stderr.close()
        _kill_netns_pids(netns)  # anything a test started in there and left behind
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, help="address (repeat for more)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", action="append", required=True, help="certificate name (repeat)")
    parser.add_argument("--record", required=True, help="JSON lines file of events")
    parser.add_argument("--workdir", required=True, help="where the certificate and key go")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Impostor(args.listen, args.port, args.name, args.workdir, record=args.record):
        print("ready", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
