"""The server's TLS certificate, issued by the site's own CA on the control machine.

The server's private key is made on the server and never leaves it; only its public
half travels to the control machine, and only the signed certificate comes back.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.api.command import FunctionCommand

from .. import privilege, tls
from ..facts import ServerKey
from ..layout import ClusterLayout
from . import private_file
from .report import progress

CERT_MODE = "644"  # public


def _install_certificate(cluster: ClusterLayout, pem: bytes) -> StringCommand:
    """The certificate goes in on stdin and is renamed into place, so the server never reads half a file."""
    user = privilege.SERVER_USER
    return private_file.put(cluster.ssl_cert_file, pem, user, user, CERT_MODE)


def _issue_for_new_key(state, host, cluster: ClusterLayout, ca: tls.SiteCA, names: tuple[str, ...]) -> bool:
    """Sign a certificate for the key made earlier in this run."""
    ok, output = privilege.run(
        host, StringCommand("openssl", "pkey", "-pubout", "-in", QuoteString(cluster.ssl_key_file)))
    if not ok:
        raise OperationError(f"could not read the public key of {cluster.ssl_key_file}: {output.stderr}")
    ok, output = privilege.run(host, _install_certificate(cluster, ca.issue((output.stdout + "\n").encode(), names)))
    return ok


@operation()
def server_certificate(cluster: ClusterLayout, ca: tls.SiteCA, names: tuple[str, ...]):
    """
    Give the server a key of its own (EC P-256, mode 0600, owned by postgres) and a
    certificate from the site CA for ``names``; issue it again when it is missing, not from
    this CA, for another key, for other names, or within ``tls.REISSUE_BEFORE_DAYS`` of expiry.

    **Example:**

    .. code:: python

        tls.server_certificate(name="Server certificate", cluster=layout, ca=site_ca,
                               names=("db.example", "127.0.0.1"))
    """
    have = host.get_fact(ServerKey, key_file=cluster.ssl_key_file, cert_file=cluster.ssl_cert_file)
    if have.public_key is None:
        key, new = QuoteString(cluster.ssl_key_file), QuoteString(f"{cluster.ssl_key_file}.new")
        # umask 077: the key is never readable by others, not even while being written.
        yield StringCommand(
            "umask 077 &&", "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", new, "2>/dev/null", "&&", "chown", f"{privilege.SERVER_USER}:{privilege.SERVER_USER}", new,
            "&&", "mv", "-f", new, key,
        )
        yield FunctionCommand(_issue_for_new_key, (cluster, ca, names), {})
        return
    reason = tls.reissue_reason(have.certificate, ca.cert_pem, have.public_key, names)
    if reason is None:
        host.noop(f"the server certificate is current ({', '.join(names)})")
        return
    progress(f"issue the server certificate: {reason}")
    yield _install_certificate(cluster, ca.issue(have.public_key, names))
