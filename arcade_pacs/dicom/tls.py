"""TLS contexts for DICOM associations (PS3.15 B.9 "BCP 195 TLS Profile": TLS 1.2 or newer).

One context is built at start-up from the configuration and reused for every association;
bad certificate or key files stop the start with a clear error instead of failing later.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the setting."""


def _load_chain(context: ssl.SSLContext, certificate: Path | None, private_key: Path | None, what: str) -> None:
    if not certificate:
        return
    try:
        context.load_cert_chain(str(certificate), str(private_key) if private_key else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"{what}: cannot load certificate {certificate} / key {private_key}: {exc}") from exc


def _load_cas(context: ssl.SSLContext, ca_certificates: Path, what: str) -> None:
    try:
        context.load_verify_locations(cafile=str(ca_certificates))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"{what}: cannot load CA certificates {ca_certificates}: {exc}") from exc


def server_context(certificate: Path, private_key: Path | None, ca_certificates: Path | None) -> ssl.SSLContext:
    """The SCP's context: our certificate; with ``ca_certificates``, clients must present a
    certificate signed by one of them (``CERT_REQUIRED``), otherwise none is asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, certificate, private_key, "scp.tls")
    if ca_certificates:
        _load_cas(context, ca_certificates, "scp.tls.ca_certificates")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca_certificates: Path | None,
    certificate: Path | None = None,
    private_key: Path | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A sender's context: the peer's certificate is always verified (against ``ca_certificates``,
    else the system's trust store); ``certificate`` is presented when the peer asks for one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_certificates:
        _load_cas(context, ca_certificates, "destination tls.ca_certificates")
    context.check_hostname = check_hostname
    _load_chain(context, certificate, private_key, "destination tls")
    return context
