"""The S3 API on loopback for the tests: a moto server, with two fixes of the fake (not of
the driver) so it keeps the parts of S3's contract the tests rely on."""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _moto_initiated_times() -> None:
    """moto 5 answers ListMultipartUploads with one fixed ``Initiated`` (2010-11-10) for every
    upload, so a grace period on abandoned uploads cannot be tested against it: record when
    each upload starts and answer with that, as S3 does."""
    import datetime

    from moto.s3.models import FakeMultipart
    from moto.s3.responses import S3Response

    started: dict[str, datetime.datetime] = {}
    real_init = FakeMultipart.__init__
    real_list = S3Response.list_multipart_uploads

    def init(self: FakeMultipart, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)
        started[self.id] = datetime.datetime.now(datetime.UTC)

    def list_uploads(self: S3Response) -> object:
        real_serialized = self.serialized

        def serialized(action_result: Any) -> object:
            for upload in action_result.result.get("Uploads", ()):
                when = started.get(upload["UploadId"])
                if when is not None:
                    upload["Initiated"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            return real_serialized(action_result)

        self.serialized = serialized
        try:
            return real_list(self)
        finally:
            del self.serialized

    FakeMultipart.__init__ = init
    S3Response.list_multipart_uploads = list_uploads


def _moto_atomic_writes() -> None:
    """moto checks ``If-None-Match``/``If-Match`` and then writes, with nothing between two
    requests' check and write, where S3 makes each conditional write atomic: serialise
    moto's writes of objects (PUT, POST, DELETE of a key) so two racing conditional writes
    cannot both pass their check."""
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    real = S3Response._key_response

    def key_response(self: S3Response, request: Any, full_url: str) -> Any:
        if request.method in ("PUT", "POST", "DELETE"):
            with lock:
                return real(self, request, full_url)
        return real(self, request, full_url)

    S3Response._key_response = key_response


_PATCHED = False


def start_moto() -> tuple[str, Any]:
    """A moto server on a free loopback port: (its endpoint URL, the server to stop)."""
    global _PATCHED
    from moto.server import ThreadedMotoServer

    if not _PATCHED:
        _moto_initiated_times()
        _moto_atomic_writes()
        _PATCHED = True
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return f"http://127.0.0.1:{port}", server


#: Credentials moto accepts (it checks none); the tests give them by env or by the config.
ACCESS_KEY_ID = "lifeboat-test"
SECRET_ACCESS_KEY = "lifeboat-test-secret"


def new_bucket(endpoint: str) -> str:
    """A new, empty bucket (created with the test's own client, not Lifeboat's)."""
    import boto3

    name = f"lifeboat-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=ACCESS_KEY_ID,
                 aws_secret_access_key=SECRET_ACCESS_KEY).create_bucket(Bucket=name)
    return name


def s3_url(endpoint: str, bucket: str, prefix: str = "repo", **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in
                     {"endpoint": endpoint, "region": "us-east-1", "addressing": "path", **options}.items())
    return f"s3://{bucket}/{prefix}?{query}"
