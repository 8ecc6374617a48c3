"""An S3 API on loopback for the S3 benchmark: moto's S3 behind TLS (pgBackRest speaks S3 only
over https), counting every request by method, so a run can say how many requests a backup or
a restore made. Both tools talk to the same endpoint; neither knows it is moto.

The server runs in a thread of the benchmark's process (werkzeug, as ``moto_server`` does),
with a self-signed certificate made for 127.0.0.1 (its path goes to Lifeboat as
``AWS_CA_BUNDLE`` and to pgBackRest as ``repo1-storage-ca-file``).
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
REGION = "us-east-1"


@dataclass
class RequestCounts:
    """Requests the store answered, by HTTP method, and the bytes of request and response bodies."""

    by_method: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_method.values())

    def since(self, earlier: RequestCounts) -> RequestCounts:
        return RequestCounts(self.by_method - earlier.by_method, self.bytes_in - earlier.bytes_in,
                             self.bytes_out - earlier.bytes_out)

    def copy(self) -> RequestCounts:
        return RequestCounts(Counter(self.by_method), self.bytes_in, self.bytes_out)


class CountingApp:
    """WSGI middleware: counts each request (and its bytes) before moto answers it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.counts = RequestCounts()
        self._lock = threading.Lock()

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return self.counts.copy()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or environ.get("CONTENT_LENGTH") or 0)
        with self._lock:
            self.counts.by_method[environ.get("REQUEST_METHOD", "?")] += 1
            self.counts.bytes_in += length
        for chunk in self.app(environ, start_response):
            with self._lock:
                self.counts.bytes_out += len(chunk)
            yield chunk


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (PEM files in ``directory``), readable by all: the
    certificate is what clients trust, the key is a throwaway's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "s3-cert.pem", directory / "s3-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    for path in (cert_path, key_path):
        path.chmod(0o644)
    return cert_path, key_path


def _close_notify(connection: Any) -> None:
    """End a TLS connection with close_notify before the socket closes. werkzeug closes every
    connection after its response; without the alert OpenSSL 3 clients (pgBackRest) take the
    close for a truncation ("unexpected eof while reading") and fail the request."""
    try:
        connection.settimeout(1.0)
        connection.unwrap()
    except (OSError, ValueError):
        pass


class S3Store:
    """moto's S3 on ``https://127.0.0.1:PORT`` in a thread; :meth:`stop` ends it."""

    def __init__(self, port: int, directory: Path) -> None:
        import logging
        import ssl

        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
        self.cert, key = self_signed(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.app = CountingApp(DomainDispatcherApplication(create_backend_app))
        self.port = port
        self._server = make_server("127.0.0.1", port, self.app, threaded=True, ssl_context=context)
        close = self._server.shutdown_request
        self._server.shutdown_request = lambda request: (_close_notify(request), close(request))
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-store", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            verify=str(self.cert))

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def bucket_bytes(self, name: str, prefix: str = "") -> int:
        """Bytes of every object under ``prefix`` in bucket ``name`` (listed, not counted as
        the tools' requests: the listing's own requests are subtracted by the caller's
        snapshots taken around the tools' commands only)."""
        total = 0
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name, Prefix=prefix):
            total += sum(item["Size"] for item in page.get("Contents", []))
        return total

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
