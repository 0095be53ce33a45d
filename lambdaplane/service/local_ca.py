"""lambdaplane's own certificate authority, kept in the data dir (`ca/`): it signs the
certificates that VPC interface endpoints present for the names of the services they stand
for (`lambda.<region>.amazonaws.com`), and VPC functions trust it (AWS_CA_BUNDLE names it in
their sandbox). Made once, on first use; the key never leaves the data dir."""
from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650


class LocalCa:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "ca"

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    def ca_pem(self) -> str:
        self._ensure_ca()
        return self.cert_path.read_text()

    def server_context(self, name: str, alt_names: list[str]) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for `name` (and `alt_names`)."""
        cert, key = self._leaf(name, alt_names)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    # making them ---------------------------------------------------------------------------
    def _ensure_ca(self) -> None:
        if self.cert_path.exists() and (self.dir / "ca.key").exists():
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambdaplane local CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        _write(self.dir / "ca.key", _key_pem(key), 0o600)
        _write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _leaf(self, name: str, alt_names: list[str]) -> tuple[Path, Path]:
        self._ensure_ca()
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        names = [name, *alt_names]
        if cert_path.exists() and key_path.exists():
            existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            if sorted(san.value.get_values_for_type(x509.DNSName)) == sorted(names):
                return cert_path, key_path
        ca_key = serialization.load_pem_private_key((self.dir / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS - 1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cert_path, key_path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
