"""Notification email over each of NBPLANE_SMTP_TLS's modes against a real SMTP server on
loopback (aiosmtpd) with a certificate of its own: STARTTLS with a login, TLS from the first
byte, and a server whose certificate nobody vouches for, which is refused, never sent in the
clear."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from nbplane.deployments.notifications import DeliveryError, send_email
from nbplane.settings import Settings
from tests.receivers import Login, receiving_mail

TLS = Literal["starttls", "ssl"]
LOGIN = Login("nbplane", "s3cret-of-the-mail-server")


def certificate(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (the file a client trusts) and a server context
    that presents it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    issued = datetime.now(UTC) - timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued)
        .not_valid_after(issued + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.pem", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return cert_file, server


def settings(tmp_path: Path, port: int, tls: str, **more: str) -> Settings:
    return Settings.model_validate(
        {
            "home": tmp_path / "home",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_tls": tls,
            "smtp_sender": "nbplane@example.com",
            **more,
        }
    )


IMPLICIT_TLS = pytest.param(
    "ssl",
    # aiosmtpd counts only STARTTLS as TLS when it offers AUTH, and warns; every byte is TLS here
    marks=pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
)


@pytest.mark.parametrize("tls", ["starttls", IMPLICIT_TLS])
def test_email_goes_over_tls_with_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TLS
) -> None:
    trusted, server = certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))  # what the default context trusts
    with receiving_mail(tls, server, LOGIN) as mailbox:
        configured = settings(
            tmp_path,
            mailbox.port,
            tls,
            smtp_username=LOGIN.user,
            smtp_password=LOGIN.password,
        )
        send_email(configured, ["oncall@example.com"], "[nbplane] sales/daily failed", "body")
    [message] = mailbox.messages
    assert message["Subject"] == "[nbplane] sales/daily failed"
    assert message["To"] == "oncall@example.com"


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_a_certificate_nobody_vouches_for_is_refused(tmp_path: Path, tls: TLS) -> None:
    _, server = certificate(tmp_path)  # not trusted: SSL_CERT_FILE is the system's
    with (
        receiving_mail(tls, server) as mailbox,
        pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        send_email(settings(tmp_path, mailbox.port, tls), ["a@example.com"], "s", "b")
    assert mailbox.messages == []
