"""A throwaway certificate authority for tests, made with the openssl CLI.

Independent of the bundle's own TLS code on purpose: a test that checks the bundle's
certificate handling must not trust certificates made by that same code.

    ca = TestCA(workdir / "ca")
    cert, key = ca.issue("cloud-tenant", ["198.51.100.21", "cloud-tenant"])
    psycopg.connect(..., sslmode="verify-full", sslrootcert=str(ca.cert_path))

Keys are written 0600 from the start (openssl runs under umask 077) and stay owned by
root: a server running as another OS user gets its own copy (see standins.StandIn).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DAYS = "90"  # beyond the audit's 30-day expiry warning; the key never leaves the test's temp dir
KEY_OPTS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], text=True, capture_output=True, umask=0o077)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


class TestCA:
    __test__ = False  # not a pytest test class despite its name

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # certificates readable by all; keys are 0600 inside
        self.cert_path = self.directory / "ca.crt"
        self.key_path = self.directory / "ca.key"
        _openssl("req", "-x509", *KEY_OPTS, "-keyout", str(self.key_path), "-out", str(self.cert_path),
                 "-days", DAYS, "-subj", f"/CN=zt test CA {os.getpid()}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.cert_path.chmod(0o644)

    def issue(self, name: str, sans: list[str]) -> tuple[Path, Path]:
        """A server certificate for `sans` (IP SANs for addresses, DNS SANs otherwise): (cert, key)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"bad certificate name {name!r}")
        if not sans:
            raise ValueError("a server certificate needs at least one subjectAltName")
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        csr, ext = self.directory / f"{name}.csr", self.directory / f"{name}.ext"
        ext.write_text(
            f"subjectAltName = {', '.join(_san(s) for s in sans)}\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n")
        try:
            _openssl("req", "-new", *KEY_OPTS, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={sans[0]}")
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert_path), "-CAkey", str(self.key_path),
                     "-CAcreateserial", "-days", DAYS, "-extfile", str(ext), "-out", str(cert))
        finally:
            csr.unlink(missing_ok=True)
            ext.unlink(missing_ok=True)
        cert.chmod(0o644)
        return cert, key


def _san(value: str) -> str:
    try:
        return f"IP:{ipaddress.ip_address(value)}"
    except ValueError:
        return f"DNS:{value}"
