"""A per-site certificate authority on the control machine, and the server certificates it signs.

The CA lives beside the secrets store (``<site>-ca.key``, 0600, and ``<site>-ca.crt``) and
never goes to a host. The server makes its own key and the deploy brings back only the
public half (``openssl pkey -pubout``), so no private key ever crosses the wire. Clients
trust ``<site>-ca.crt`` and connect with ``sslmode=verify-full``.

EC P-256 throughout: small, fast, and supported by every OpenSSL that libpq builds with.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import tempfile
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REISSUE_BEFORE_DAYS = 30  # re-sign this long before expiry, so a monthly deploy never lets it lapse
CA_DAYS = 3650
BACKDATE = timedelta(minutes=5)  # tolerate a server clock a little behind the control machine's
PEM = serialization.Encoding.PEM
_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


class TLSError(Exception):
    pass


def _name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text.lower())


def _load_public(public_key_pem: bytes):
    try:
        return serialization.load_pem_public_key(public_key_pem)
    except ValueError:
        raise TLSError("the server's public key is not PEM (expected `openssl pkey -pubout` output)") from None


def _sign(signer, common_name: str, issuer: x509.Name | None, public_key, *, ca: bool, usage: set[str], days: int,
          now: datetime | None = None, extra: Sequence[x509.ExtensionType] = ()) -> bytes:
    """A certificate signed by ``signer`` (self-signed when ``issuer`` is None)."""
    now = now or datetime.now(timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
        # pathlen 0: the site CA signs servers, never another CA
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.KeyUsage(**{u: u in usage for u in _USAGES}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(PEM)


def _write_new(path: Path, data: bytes, *, replace: bool) -> None:
    # mkstemp opens with O_CREAT|O_EXCL and mode 0600, so the bytes are never readable by
    # others; fsync before the link/rename so a crash leaves the old file or the whole new one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        (os.replace if replace else os.link)(tmp, path)  # link fails rather than overwrite a key
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def ca_cert_path(directory: Path, site: str) -> Path:
    """The site CA's certificate, beside the secrets store in ``directory``."""
    return Path(directory) / f"{site}-ca.crt"


class SiteCA:
    """The site's CA: its key stays in memory and in the 0600 file, and only signs."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, cert_path: Path):
        self._key, self._cert, self.cert_path = key, cert, cert_path

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(PEM)

    @classmethod
    def load_or_create(cls, directory: Path, site: str) -> SiteCA:
        """The site's CA, created on first use; concurrent first calls end with one CA."""
        directory = Path(directory)
        with suppress(FileExistsError):  # an existing directory keeps its mode: it may not be ours
            directory.mkdir(mode=0o700, parents=True)  # a umask can only narrow 0700
        key_path, cert_path = directory / f"{site}-ca.key", ca_cert_path(directory, site)
        with open(directory / f".{site}-ca.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, even if this process dies
            if not key_path.exists():
                key = ec.generate_private_key(ec.SECP256R1())
                cert_pem = _sign(key, f"ZeroUI {site} DB CA", None, key.public_key(), ca=True,
                                 usage={"key_cert_sign", "crl_sign"}, days=CA_DAYS)
                # The certificate first, the key last: an existing key means a complete CA, and
                # a crash in between leaves only a stray certificate that the next call replaces.
                _write_new(cert_path, cert_pem, replace=True)
                _write_new(key_path, key.private_bytes(
                    PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), replace=False)
            return cls(*_load_ca(key_path, cert_path), cert_path)

    def issue(self, public_key_pem: bytes, names: Sequence[str], *, days: int = 397,
              now: datetime | None = None) -> bytes:
        """A server certificate (PEM) for the public key, valid for ``names`` (DNS names or IPs).

        397 days stays under the 398-day cap that some TLS clients put on server certificates.
        """
        if not names:
            raise TLSError("a server certificate needs at least one name")
        public_key = _load_public(public_key_pem)
        # keyEncipherment only means something for RSA keys; RFC 5480 forbids it on EC keys.
        usage = {"digital_signature"} | ({"key_encipherment"} if isinstance(public_key, rsa.RSAPublicKey) else set())
        san = x509.SubjectAlternativeName([_name(n) for n in dict.fromkeys(names)])
        server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        return _sign(self._key, names[0], self._cert.subject, public_key, ca=False, usage=usage, days=days,
                     now=now, extra=[san, server_auth])


def _load_ca(key_path: Path, cert_path: Path):
    fix = (f"restore it from a backup, or delete {key_path.name} and {cert_path.name} to start a new CA "
           "(every client then needs the new .crt)")
    mode = os.stat(key_path).st_mode & 0o777
    if mode & 0o077:
        raise TLSError(f"{key_path}: readable by others (mode {mode:04o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise TLSError(f"{key_path}: not a readable private key; {fix}") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        raise TLSError(f"{cert_path}: missing beside {key_path.name}; {fix}") from None
    except ValueError:
        raise TLSError(f"{cert_path}: not a readable certificate; {fix}") from None
    if cert.public_key() != key.public_key():
        raise TLSError(f"{cert_path}: does not belong to {key_path.name}; {fix}")
    return key, cert


def names_of(cert_pem: bytes) -> list[str]:
    """The certificate's subjectAltName entries (DNS names and IPs), in order."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(entry.value) for entry in san if isinstance(entry, (x509.DNSName, x509.IPAddress))]


def not_after(cert_pem: bytes) -> datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def reissue_reason(cert_pem: bytes | None, ca_cert_pem: bytes, public_key_pem: bytes, names: Sequence[str], *,
                   now: datetime | None = None, threshold_days: int = REISSUE_BEFORE_DAYS) -> str | None:
    """Why the server's current certificate must be replaced, or None if it is fine."""
    if cert_pem is None:
        return "no certificate"
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        have = sorted({str(_name(n).value) for n in names_of(cert_pem)})
    except ValueError:
        return "unreadable certificate"
    try:
        cert.verify_directly_issued_by(ca)  # checks the issuer name and the signature
    except (InvalidSignature, ValueError, TypeError):
        return "not issued by the site CA"
    if cert.public_key() != _load_public(public_key_pem):
        return "issued for another key"
    want = sorted({str(_name(n).value) for n in names})
    if have != want:
        return f"names differ (have {have}, want {want})"
    end, now = cert.not_valid_after_utc, now or datetime.now(timezone.utc)
    if end <= now:
        return f"expired on {end:%Y-%m-%d}"
    if end - now <= timedelta(days=threshold_days):
        return f"expires on {end:%Y-%m-%d} (within {threshold_days} days)"
    return None
