"""A real SMTP server for the tests (aiosmtpd): STARTTLS required, with a certificate for
localhost from a private CA written into the mail folder (smtp-ca.pem) for cslake's ca_file.
Every accepted message is saved as <mail-dir>/<n>.eml. A recipient whose local part starts with
"flaky" is refused with 451 (a transient error) the first two times it is seen, to test retries.

Usage: python smtp_sink.py MAIL_DIR   (prints the port on stdout once it listens)
"""
import datetime
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(folder):
    """A private CA (written as smtp-ca.pem, what cslake's ca_file trusts) and a server
    certificate for localhost signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cslake test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = build(name, ca_name, key.public_key(), ca_key, False)
    paths = [os.path.join(folder, f) for f in ("smtp-ca.pem", "smtp-cert.pem", "smtp-key.pem")]
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths[1], paths[2]


class Save:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.flaky = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("flaky"):
            seen = self.flaky.get(address, 0)
            self.flaky[address] = seen + 1
            if seen < 2:
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        path = os.path.join(self.folder, f"{n:05d}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(f"X-Envelope-From: {envelope.mail_from}\r\n".encode())
            f.write(f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\r\n".encode())
            f.write(f"X-Tls: {session.ssl is not None}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.replace(path + ".tmp", path)
        return "250 Message accepted"


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    cert, key = certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(
        Save(folder),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
    )
    controller.start()
    print(port, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
