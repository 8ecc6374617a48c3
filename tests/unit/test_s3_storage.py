"""What is particular to the S3 driver (the contract itself is tests/unit/test_storage_contract.py),
against a moto server on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.errors import NotFoundError, StorageError, UsageError
from engine.repository.storage import open_storage
from engine.repository.storage.s3 import MIN_PART_SIZE, S3Storage
from tests.unit.conftest import allow_loopback, free_port, s3_url

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the unit tests' ban on connections: loopback only, for the moto server."""
    allow_loopback(monkeypatch)


def _open(endpoint: str, bucket: str, **options: object) -> S3Storage:
    store = open_storage(s3_url(endpoint, bucket, **options))
    assert isinstance(store, S3Storage)
    return store


def _count_calls(store: S3Storage) -> Counter[str]:
    """Requests the driver makes, by operation (e.g. 'UploadPart'), as botocore sends them."""
    calls: Counter[str] = Counter()

    def seen(model: Any, **_: object) -> None:
        calls[model.name] += 1

    store._client.meta.events.register("before-call.s3", seen)
    return calls


def test_a_large_object_goes_up_in_parts_of_bounded_size(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, part_size=MIN_PART_SIZE)
    calls = _count_calls(store)
    data = bytes(range(256)) * (11 * 1024 * 1024 // 256)  # 11 MiB: parts of 5, 5 and 1 MiB
    store.put("packs/aa/big", data)
    assert calls["UploadPart"] == 3 and calls["CompleteMultipartUpload"] == 1
    assert calls["PutObject"] == 0
    head = store._client.head_object(Bucket=s3_bucket, Key="repo/packs/aa/big")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of an object of three parts
    assert store.get("packs/aa/big") == data
    assert store.size("packs/aa/big") == len(data)


def test_a_writer_holds_at_most_one_part(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, part_size=MIN_PART_SIZE)
    calls = _count_calls(store)
    writer = store.open_writer("packs/bb/pack")
    chunk = b"z" * (700 * 1024)
    for i in range(16):  # 11.2 MiB in frames
        assert writer.write(chunk) == i * len(chunk)
        assert len(writer._buffer) < MIN_PART_SIZE
    assert not store.exists("packs/bb/pack")  # parts are not an object
    writer.commit()
    assert calls["UploadPart"] == 3
    assert store.get("packs/bb/pack") == chunk * 16
    assert store._client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_a_small_pack_is_one_put_and_leaves_no_upload(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket)
    calls = _count_calls(store)
    writer = store.open_writer("packs/cc/small")
    writer.write(b"abc")
    writer.commit()
    assert calls["PutObject"] == 1 and calls["UploadPart"] == 0
    assert store.get("packs/cc/small") == b"abc"
    assert store.remove_abandoned("packs", older_than=0) == 0


def test_read_range_asks_for_the_range_only(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket)
    store.put("r", bytes(range(256)) * 4)
    ranges: list[str] = []
    store._client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: ranges.append(request.headers.get("Range")))
    assert store.read_range("r", 300, 4) == bytes([44, 45, 46, 47])
    assert ranges == [b"bytes=300-303"]
    with pytest.raises(StorageError, match=r"truncated .*got 0"):
        store.read_range("r", 5000, 1)
    assert store.read_range("r", 0, 0) == b""
    with pytest.raises(NotFoundError):
        store.read_range("gone", 0, 0)


def test_list_follows_pages(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, page_size=2)
    keys = [f"wal/0001/{i:04d}" for i in range(7)] + ["wal/0002/a", "wal/0003/b"]
    for key in keys:
        store.put(key, b"x")
    calls = _count_calls(store)
    assert store.list("wal") == sorted(keys)
    assert calls["ListObjectsV2"] == 5  # 9 keys, 2 a page
    assert store.list("wal", recursive=False) == ["wal/0001/", "wal/0002/", "wal/0003/"]
    assert store.list("wal/0001") == keys[:7]
    assert store.usage("wal") == 9


def test_checksums_only_when_required_for_older_stores(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, checksums="when_required", part_size=MIN_PART_SIZE)
    sent: list[str] = []
    store._client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.extend(h for h in request.headers
                                                           if h.lower().startswith("x-amz-checksum")))
    store.put("big", b"q" * (MIN_PART_SIZE + 1))
    store.put("small", b"q")
    assert sent == []
    assert store.get("big") == b"q" * (MIN_PART_SIZE + 1)


def test_the_prefix_keeps_repositories_apart(moto_endpoint: str, s3_bucket: str) -> None:
    one = open_storage(s3_url(moto_endpoint, s3_bucket, prefix="one"))
    two = open_storage(s3_url(moto_endpoint, s3_bucket, prefix="deep/two"))
    one.put("k/a", b"1")
    two.put("k/a", b"2")
    assert one.get("k/a") == b"1" and two.get("k/a") == b"2"
    assert one.list("k") == ["k/a"] and two.list("k") == ["k/a"]
    assert "s3://" + s3_bucket + "/deep/two" in two.describe()


def test_put_if_absent_is_a_conditional_write(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket)
    assert store.capabilities.atomic_create is True
    headers: list[str | None] = []
    store._client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: headers.append(request.headers.get("If-None-Match")))
    assert store.put_if_absent("wal/seg", b"first") is True
    assert store.put_if_absent("wal/seg", b"second") is False
    assert headers == [b"*", b"*"]
    assert store.get("wal/seg") == b"first"


def test_put_if_absent_of_a_large_object_is_refused_at_completion(
        moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, part_size=MIN_PART_SIZE)
    big = b"m" * (MIN_PART_SIZE + 1024)
    assert store.put_stream_if_absent("m/x.manifest", iter([big])) is True
    assert store.put_stream_if_absent("m/x.manifest", iter([b"n" * len(big)])) is False
    assert store.get("m/x.manifest") == big
    assert store._client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_concurrent_creators_one_wins(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket)
    results: list[bool] = []

    def create(i: int) -> None:
        results.append(store.put_if_absent("locks/once", f"writer {i}".encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_without_conditional_writes_creation_is_not_atomic_and_says_so(
        moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket, conditional_writes="false")
    assert store.capabilities.atomic_create is False
    assert store.put_if_absent("w", b"1") is True
    assert store.put_if_absent("w", b"2") is False
    assert store.get("w") == b"1"


def test_a_missing_key_is_named_with_its_bucket(moto_endpoint: str, s3_bucket: str) -> None:
    store = _open(moto_endpoint, s3_bucket)
    for call in (lambda: store.get("wal/none"), lambda: store.size("wal/none"),
                 lambda: store.open_stream("wal/none")):
        with pytest.raises(NotFoundError, match=f"s3://{s3_bucket}/repo/wal/none: not in the repository"):
            call()


def test_a_missing_bucket_is_a_clear_error(moto_endpoint: str, aws_env: None) -> None:
    store = _open(moto_endpoint, "no-such-bucket-here")
    for call in (lambda: store.put("k", b"1"), lambda: store.get("k"), lambda: store.exists("k"),
                 lambda: store.list("k")):
        with pytest.raises(StorageError) as caught:
            call()
        assert not isinstance(caught.value, NotFoundError)
        message = str(caught.value)
        assert "bucket 'no-such-bucket-here' does not exist" in message
        assert moto_endpoint in message and "create " in message


def test_a_refused_connection_names_the_endpoint_and_bucket(aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = _open(endpoint, "some-bucket", retries=2)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.get("wal/seg")
    message = str(caught.value)
    assert "s3://some-bucket/repo/wal/seg" in message and endpoint in message
    assert "cannot be reached" in message and "after 2 attempts" in message
    assert "Traceback" not in message
    assert time.monotonic() - started < 20


def test_an_endpoint_that_is_not_s3_is_not_a_missing_key(aws_env: None) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotS3(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html>no such page</html>" if self.command != "HEAD" else b""
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        store = _open(endpoint, "some-bucket", retries=1)
        for call in (lambda: store.get("wal/seg"), lambda: store.exists("wal/seg")):
            with pytest.raises(StorageError) as caught:
                call()
            assert not isinstance(caught.value, NotFoundError)
            assert "bucket 'some-bucket' does not exist at " + endpoint in str(caught.value)
            assert "not an S3 API" in str(caught.value)
            store._bucket_checked = False
    finally:
        server.shutdown()
        server.server_close()


def test_no_credentials_is_a_clear_error(moto_endpoint: str, aws_env: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = _open(moto_endpoint, "any-bucket", retries=1)
    with pytest.raises(StorageError, match="no S3 credentials found; set AWS_ACCESS_KEY_ID"):
        store.put("k", b"1")


def test_throttling_and_5xx_are_retried(moto_endpoint: str, s3_bucket: str) -> None:
    from botocore.awsrequest import AWSResponse

    class Raw:
        def stream(self, **_: object) -> Any:
            yield b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    store = _open(moto_endpoint, s3_bucket, retries=3)
    failures = iter([503, 500])

    def flaky(request: Any, **_: object) -> AWSResponse | None:
        status = next(failures, None)
        return None if status is None else AWSResponse(request.url, status, {}, Raw())

    store._client.meta.events.register("before-send.s3.PutObject", flaky)
    store.put("k", b"after two failures")
    assert store.get("k") == b"after two failures"
    failures = iter([503] * 3)
    with pytest.raises(StorageError, match=r"cannot write it .*SlowDown.*after 3 attempts"):
        store.put("k", b"never")


@pytest.mark.parametrize("url, wanted", [
    ("s3://bkt/p?colour=blue", "unknown option"),
    ("s3://bkt/p?addressing=sideways", "addressing must be path or virtual"),
    ("s3://bkt/p?part_size=1024", "part_size must be between"),
    ("s3://bkt/p?checksums=never", "checksums must be"),
    ("s3://bkt/a//c", "empty, '.' or '..' part"),
    ("s3:///p", "s3://BUCKET"),
    ("s3://b/p", "'b' is not a bucket name"),
    ("s3://My_Bucket/p", "'My_Bucket' is not a bucket name"),
    ("s3://127.0.0.1:9000/bkt", "is not a bucket name .*endpoint="),
    ("s3://AKIAXX:hunter2@bkt/p", r"holds no credentials \(s3://KEY:SECRET@\.\.\. is refused, and not "
                                  r"repeated here\): give them in \[repository.s3\]"),
])
def test_bad_urls_are_refused(url: str, wanted: str) -> None:
    with pytest.raises(UsageError, match=wanted) as caught:
        open_storage(url)
    assert "hunter2" not in str(caught.value)


def test_posix_repositories_do_not_import_boto3(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from engine.repository.storage import open_storage\n"
        f"store = open_storage({str(tmp_path / 'repo')!r})\n"
        "store.put('a', b'1')\n"
        "assert store.get('a') == b'1'\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer'))\n"
        "assert not heavy, heavy\n"
        "store = open_storage('s3://bucket/prefix?region=us-east-1')\n"
        "assert 'botocore' in sys.modules and 'boto3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60,
                   env={"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true"})


def _signed_with(store: S3Storage) -> list[str]:
    """The access key id of each request the driver signs (from its Authorization header)."""
    keys: list[str] = []

    def seen(request: Any, **_: object) -> None:
        auth = request.headers.get("Authorization", b"").decode()
        keys.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

    store._client.meta.events.register("before-send.s3", seen)
    return keys


@pytest.fixture
def no_aws_env(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket, and a process with no AWS credentials of its own (as PostgreSQL's
    archive_command has none of the shell's)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    return s3_bucket


def test_credentials_from_the_configuration_sign_the_requests(
        moto_endpoint: str, no_aws_env: str, tmp_path: Path) -> None:
    secret = tmp_path / "s3-secret"
    secret.write_text("config-secret\n")
    store = open_storage(s3_url(moto_endpoint, no_aws_env),
                         {"access_key_id": "from-config", "secret_access_key_file": str(secret)})
    assert isinstance(store, S3Storage)
    keys = _signed_with(store)
    store.put("wal/seg", b"1")
    assert store.get("wal/seg") == b"1"
    assert keys == ["from-config", "from-config"]


def test_a_secret_from_a_named_environment_variable(
        moto_endpoint: str, no_aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = {"access_key_id": "from-env", "secret_access_key_env": "LIFEBOAT_S3_SECRET"}
    with pytest.raises(StorageError, match=r"the environment variable LIFEBOAT_S3_SECRET \(\[repository.s3\] "
                                           r"secret_access_key_env\) is not set in this process; PostgreSQL "
                                           r"runs archive_command .* use secret_access_key_file"):
        open_storage(s3_url(moto_endpoint, no_aws_env), credentials)
    monkeypatch.setenv("LIFEBOAT_S3_SECRET", "env-secret")
    store = open_storage(s3_url(moto_endpoint, no_aws_env), credentials)
    assert isinstance(store, S3Storage)
    keys = _signed_with(store)
    store.put("k", b"1")
    assert keys == ["from-env"]


def test_a_profile_of_a_named_credentials_file(moto_endpoint: str, no_aws_env: str,
                                              tmp_path: Path) -> None:
    shared = tmp_path / "aws-credentials"
    shared.write_text("[backup]\naws_access_key_id = from-profile\naws_secret_access_key = s\n")
    store = open_storage(s3_url(moto_endpoint, no_aws_env),
                         {"profile": "backup", "credentials_file": str(shared)})
    assert isinstance(store, S3Storage)
    keys = _signed_with(store)
    store.put("k", b"1")
    assert keys == ["from-profile"]


def test_an_unreadable_secret_file_is_named(moto_endpoint: str, no_aws_env: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"the S3 secret access key cannot be read from "
                                           r"/nonexistent/secret \(\[repository.s3\] "
                                           r"secret_access_key_file\) as user \w+: No such file"):
        open_storage(s3_url(moto_endpoint, no_aws_env),
                     {"access_key_id": "k", "secret_access_key_file": "/nonexistent/secret"})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StorageError, match="is empty"):
        open_storage(s3_url(moto_endpoint, no_aws_env),
                     {"access_key_id": "k", "secret_access_key_file": str(tmp_path / "empty")})


def test_without_credentials_the_error_points_at_the_configuration(
        moto_endpoint: str, no_aws_env: str) -> None:
    store = _open(moto_endpoint, no_aws_env, retries=1)
    with pytest.raises(StorageError, match=r"no S3 credentials found; .*archive_command with the "
                                           r"server's environment.*\[repository.s3\]"):
        store.put("k", b"1")
