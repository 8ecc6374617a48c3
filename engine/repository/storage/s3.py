"""The S3 storage driver: objects in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph RGW).

A repository on S3 is named by a URL, opened by :func:`engine.repository.storage.open_storage`::

    s3://BUCKET[/PREFIX][?endpoint=URL&region=R&addressing=path|virtual&profile=P
                         &part_size=BYTES&page_size=N&retries=N&conditional_writes=true|false
                         &checksums=when_supported|when_required]

- ``endpoint``: the store's URL (``http://127.0.0.1:9000`` for MinIO); AWS's when left out.
- ``region``: the bucket's region (the AWS chain's default when left out).
- ``addressing``: ``path`` (``endpoint/bucket/key``, what MinIO and Ceph usually want) or
  ``virtual`` (``bucket.endpoint/key``); botocore chooses when left out.
- ``profile``: a profile of the AWS config files. Credentials otherwise come from the usual
  AWS chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, the config files, an instance or
  container role. They are never part of the URL.
- ``part_size``: multipart part size (default 8 MiB, at least 5 MiB, S3's minimum). An object
  larger than a part is uploaded in parts; a writer holds at most one part in memory and never
  writes a temporary file.
- ``page_size``: keys per listing request (default 1000, S3's maximum).
- ``retries``: attempts per request, with botocore's ``standard`` retry mode (exponential
  backoff with jitter on throttling, 5xx and connection errors; default 5).
- ``conditional_writes``: whether the store honours ``If-None-Match: *`` on a PUT (AWS S3
  since 2024-08, MinIO, recent Ceph RGW; default true). ``put_if_absent`` relies on it to be
  atomic. A store that refuses the header (501) gives a StorageError saying to set
  ``conditional_writes=false``; with it false, ``put_if_absent`` checks then writes, which is
  not atomic (``capabilities.atomic_create`` is False and callers must serialise creators under
  the repository lock). A store that silently ignores the header cannot be told apart from one
  that honours it: do not point Lifeboat at one with ``conditional_writes=true``.
- ``checksums``: botocore's ``request_checksum_calculation`` (default ``when_supported``: a
  CRC32 of every PUT and part, checked by the store). Stores that refuse the newer checksum
  headers (older MinIO and Ceph RGW answer 400 or 501) need ``when_required``.

Durability: a put returns only once the PUT (or the CompleteMultipartUpload) has succeeded, that
is once the store has acknowledged the whole object. Objects are atomic on S3, so a reader sees
the whole object or nothing. Writes that never completed are incomplete multipart uploads,
invisible to readers; :meth:`S3Storage.remove_abandoned` aborts them (a bucket lifecycle rule
``AbortIncompleteMultipartUpload`` does the same as a backstop).

This module imports botocore (boto3's core, installed with it) at once: it is loaded only when
an ``s3://`` URL is opened. Opening one costs a process ~0.1 s (imports and the client) on top of
a posix repository's few milliseconds; ``wal-push`` pays it once per segment, the async archiver
once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, NoReturn
from urllib.parse import parse_qs, urlsplit

import botocore.exceptions as bex
import botocore.session
from botocore.config import Config

from engine.errors import NotFoundError, StorageError, UsageError
from engine.repository.storage.capabilities import Capabilities

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts of one upload
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_PAGE_SIZE = 1000
DEFAULT_RETRIES = 5

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's rule for bucket names
_MISSING_KEY = ("NoSuchKey", "404", "NotFound")
_CREDENTIALS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
                "ExpiredToken", "InvalidToken", "AllAccessDisabled")
_EXISTS = ("PreconditionFailed", "412")
_CONFLICT = ("ConditionalRequestConflict", "409")
_UNSUPPORTED = ("NotImplemented", "501")


def _flag(text: str, name: str, url: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"repository '{url}': {name} must be true or false, not '{text}'")


def _count(text: str, name: str, url: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"repository '{url}': {name} must be a whole number, not '{text}'") from None
    if not low <= value <= high:
        raise UsageError(f"repository '{url}': {name} must be between {low} and {high}, not {value}")
    return value


class S3Settings:
    """What an ``s3://`` URL says (see the module's docstring for the form)."""

    KNOWN = ("endpoint", "region", "addressing", "profile", "part_size", "page_size", "retries",
             "conditional_writes", "checksums")

    def __init__(self, url: str) -> None:
        if "@" in url.partition("://")[2].split("/", 1)[0]:  # s3://KEY:SECRET@bucket: never repeat it
            raise UsageError("an S3 repository URL holds no credentials (s3://KEY:SECRET@... is "
                             "refused, and not repeated here): give them in [repository.s3] of the "
                             "configuration, or by the AWS chain (environment, ~/.aws, a role)")
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise UsageError(f"repository '{url}': an S3 repository is s3://BUCKET[/PREFIX][?OPTIONS]")
        self.url = url
        self.bucket = parts.netloc
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise UsageError(f"repository '{url}': '{self.bucket}' is not a bucket name (3 to 63 "
                             f"lower-case letters, digits, '.' and '-', starting and ending with a "
                             f"letter or digit; a store's address goes in endpoint=)")
        self.prefix = parts.path.strip("/")
        if any(p in ("", ".", "..") for p in self.prefix.split("/")) and self.prefix:
            raise UsageError(f"repository '{url}': the prefix '{self.prefix}' has an empty, '.' or "
                             f"'..' part")
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - set(self.KNOWN))
        if unknown:
            raise UsageError(f"repository '{url}': unknown option(s) {', '.join(unknown)} (known: "
                             f"{', '.join(self.KNOWN)})")
        one = {name: values[-1] for name, values in query.items()}
        self.endpoint: str | None = one.get("endpoint") or None
        self.region: str | None = one.get("region") or None
        self.profile: str | None = one.get("profile") or None
        self.addressing = one.get("addressing", "auto") or "auto"
        if self.addressing not in ("path", "virtual", "auto"):
            raise UsageError(f"repository '{url}': addressing must be path or virtual, "
                             f"not '{self.addressing}'")
        self.part_size = _count(one.get("part_size", str(DEFAULT_PART_SIZE)), "part_size", url,
                                MIN_PART_SIZE, 5 * 1024 * MIB)
        self.page_size = _count(one.get("page_size", str(DEFAULT_PAGE_SIZE)), "page_size", url,
                                1, 1000)
        self.retries = _count(one.get("retries", str(DEFAULT_RETRIES)), "retries", url, 1, 20)
        self.checksums = one.get("checksums", "when_supported") or "when_supported"
        if self.checksums not in ("when_supported", "when_required"):
            raise UsageError(f"repository '{url}': checksums must be when_supported or when_required, "
                             f"not '{self.checksums}'")
        self.conditional_writes = _flag(one.get("conditional_writes", "true"), "conditional_writes",
                                        url)

    def where(self) -> str:
        """The bucket and prefix as a URL, without options."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


class S3Writer:
    """A pack being written as a multipart upload: invisible until :meth:`commit`.

    The upload is created when the writer opens (so a killed writer leaves an incomplete
    upload that :meth:`S3Storage.remove_abandoned` finds); whole parts go up as they fill,
    so at most one part is held in memory.
    """

    def __init__(self, storage: S3Storage, key: str, if_absent: bool = False) -> None:
        self._storage = storage
        self._key = key
        self._name = storage.name_of(key)
        self._if_absent = if_absent
        self._buffer = bytearray()
        self._size = 0
        self._parts: list[dict[str, Any]] = []
        self._done = False
        self._upload_id = storage._call(
            "start an upload of", key, storage._client.create_multipart_upload,
            Bucket=storage.settings.bucket, Key=self._name)["UploadId"]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        offset = self._size
        self._buffer += data
        self._size += len(data)
        part = self._storage.settings.part_size
        while len(self._buffer) >= part:
            self._upload(bytes(self._buffer[:part]))
            del self._buffer[:part]
        return offset

    def tell(self) -> int:
        return self._size

    def _upload(self, data: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            self.abort()
            raise StorageError(f"{self._storage.where(self._key)}: more than {MAX_PARTS} parts; "
                               f"raise part_size in the repository URL")
        s = self._storage
        try:
            reply = s._call("write", self._key, s._client.upload_part, Bucket=s.settings.bucket,
                            Key=self._name, UploadId=self._upload_id, PartNumber=number, Body=data)
        except StorageError:
            self.abort()
            raise
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})

    def commit(self) -> bool:
        """Complete the upload; True, or False when ``if_absent`` and the key already exists."""
        s = self._storage
        if not self._parts:  # it fits in one PUT: cheaper than an upload of one part
            try:
                created = s._put(self._key, bytes(self._buffer), self._if_absent)
            finally:
                self.abort()
            return created
        if self._buffer:
            self._upload(bytes(self._buffer))
            self._buffer = bytearray()
        extra = {"IfNoneMatch": "*"} if self._if_absent and s.settings.conditional_writes else {}
        if self._if_absent and not s.settings.conditional_writes and s.exists(self._key):
            self.abort()
            return False
        try:
            s._call("write", self._key, s._client.complete_multipart_upload,
                    Bucket=s.settings.bucket, Key=self._name, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts}, **extra)
        except _Exists:
            self.abort()
            return False
        except StorageError:
            self.abort()
            raise
        self._done = True
        return True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        s = self._storage
        with contextlib.suppress(StorageError):  # left behind: remove_abandoned aborts it later
            s._call("abort the upload of", self._key, s._client.abort_multipart_upload,
                    Bucket=s.settings.bucket, Key=self._name, UploadId=self._upload_id)


def _secret(credentials: Mapping[str, str], name: str, settings: S3Settings) -> str | None:
    """The secret ``name`` (``secret_access_key``, ``session_token``) of [repository.s3], from
    the file or the environment variable it names (None when neither is given)."""
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    where = f"{settings.where()}: the S3 {name.replace('_', ' ')}"
    path, env = credentials.get(f"{name}_file"), credentials.get(f"{name}_env")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise StorageError(f"{where} cannot be read from {path} ([repository.s3] {name}_file) "
                               f"as user {user}: {cause}; make it readable by {user} "
                               f"(chown/chmod 0640)") from None
        if not value:
            raise StorageError(f"{where}: {path} ([repository.s3] {name}_file) is empty")
        return value
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise StorageError(
                f"{where}: the environment variable {env} ([repository.s3] {name}_env) is not set "
                f"in this process; PostgreSQL runs archive_command and restore_command with the "
                f"server's environment, not your shell's: set it there, or use {name}_file")
        return value
    return None


class _Exists(StorageError):
    """A conditional write found the key already there (internal: put_if_absent returns False)."""


class _Stream(io.RawIOBase):
    """An object read sequentially, its failures StorageErrors like every other read."""

    def __init__(self, storage: S3Storage, key: str, body: Any) -> None:
        self._storage = storage
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (bex.BotoCoreError, OSError) as exc:
            self._storage._fail(exc, "read", self._key)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage:
    """Storage in an S3 bucket under a prefix. See the module's docstring for the URL."""

    def __init__(self, settings: S3Settings, credentials: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        creds = {k: v for k, v in (credentials or {}).items() if v}
        profile = creds.get("profile") or settings.profile
        keys: dict[str, str | None] = {}
        if "access_key_id" in creds:
            keys = {"aws_access_key_id": creds["access_key_id"],
                    "aws_secret_access_key": _secret(creds, "secret_access_key", settings),
                    "aws_session_token": _secret(creds, "session_token", settings)}
            self.credential_source = f"access_key_id {creds['access_key_id']} of [repository.s3]"
        elif profile:
            self.credential_source = (f"profile '{profile}' of "
                                      f"{creds.get('credentials_file') or 'the AWS config files'}")
        else:
            self.credential_source = ("the AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                      "AWS_PROFILE, ~/.aws of this user, an instance role; or "
                                      "[repository.s3] in the configuration")
        self.capabilities = Capabilities(local_path=None, atomic_create=settings.conditional_writes)
        config = Config(
            retries={"mode": "standard", "total_max_attempts": settings.retries},
            connect_timeout=10, read_timeout=60, max_pool_connections=16,
            s3={"addressing_style": settings.addressing},
            request_checksum_calculation=settings.checksums,
            response_checksum_validation=settings.checksums,
        )
        try:
            # botocore's session, not boto3's: boto3 adds ~70 ms of imports (s3transfer) to
            # every wal-push and nothing this driver uses
            session = botocore.session.Session(profile=profile)
            if creds.get("credentials_file"):
                session.set_config_variable("credentials_file", creds["credentials_file"])
            self._client = session.create_client("s3", endpoint_url=settings.endpoint,
                                                 region_name=settings.region, config=config, **keys)
        except (bex.BotoCoreError, ValueError) as exc:
            raise StorageError(f"{settings.where()}: cannot set up the S3 client: {exc}; check "
                               f"endpoint and region in the repository URL, and the credentials "
                               f"({self.credential_source})") from None
        self._bucket_checked = False

    @classmethod
    def from_url(cls, url: str, credentials: Mapping[str, str] | None = None) -> S3Storage:
        return cls(S3Settings(url), credentials)

    def describe(self) -> str:
        endpoint = self.settings.endpoint or "AWS"
        return f"{self.settings.where()} (endpoint {endpoint})"

    def where(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{self.name_of(key)}"

    def name_of(self, key: str) -> str:
        """The object name of a repository key: the URL's prefix, then the key."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StorageError(f"invalid repository key '{key}'")
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    def _dir_of(self, prefix: str) -> str:
        """The object-name prefix (ending in '/') of a repository prefix."""
        return self.name_of(prefix.rstrip("/")) + "/"

    def _key_of(self, name: str) -> str:
        return name[len(self.settings.prefix) + 1:] if self.settings.prefix else name

    # -- errors ---------------------------------------------------------------------------

    def _fail(self, exc: Exception, what: str, key: str | None) -> NoReturn:
        """Raise the typed error for a failed request: NotFoundError for a missing key, else a
        StorageError naming the object, bucket and endpoint, the cause and what to do."""
        s = self.settings
        target = self.where(key) if key is not None else s.where()
        endpoint = s.endpoint or "AWS S3"
        at = f"(bucket '{s.bucket}' at {endpoint})"
        if isinstance(exc, bex.ClientError):
            error = exc.response.get("Error", {})
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            code = str(error.get("Code") or status)  # no S3 error body: the HTTP status
            message = error.get("Message") or f"HTTP {status}"
            if code == "NoSuchBucket":
                raise StorageError(f"{target}: cannot {what} it: the bucket '{s.bucket}' does not "
                                   f"exist at {endpoint}; create it or correct the repository URL "
                                   f"(bucket, endpoint, region)") from None
            if code in _MISSING_KEY and key is not None:
                if code != "NoSuchKey":
                    self._check_bucket(what, key)
                raise NotFoundError(f"{target}: not in the repository {at}")
            if code in _EXISTS:
                raise _Exists(f"{target}: already exists")
            if code in _CREDENTIALS:
                raise StorageError(f"{target}: cannot {what} it {at}: access denied ({code}: "
                                   f"{message}); check the credentials ({self.credential_source}) "
                                   f"and the bucket's policy") from None
            if code in _UNSUPPORTED:
                raise StorageError(f"{target}: cannot {what} it {at}: the store does not support "
                                   f"this request ({code}: {message}); if it lacks conditional "
                                   f"writes, add conditional_writes=false to the repository URL")
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301",
                        "IllegalLocationConstraintException"):
                raise StorageError(f"{target}: cannot {what} it {at}: the bucket is in another "
                                   f"region ({code}); set region= in the repository URL") from None
            attempts = 1 + int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
            raise StorageError(f"{target}: cannot {what} it {at}: {code}: {message} (after "
                               f"{attempts} attempt{'s' if attempts > 1 else ''}); check the store "
                               f"and try again") from None
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            raise StorageError(f"{target}: cannot {what} it {at}: no S3 credentials found; set "
                               f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or "
                               f"profile= in the URL), or give the host a role; PostgreSQL runs "
                               f"archive_command with the server's environment, not a shell's: "
                               f"give them in [repository.s3] of the configuration") from None
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError |
                      bex.ReadTimeoutError | bex.ConnectionClosedError):
            raise StorageError(f"{target}: cannot {what} it {at}: the endpoint {endpoint} cannot "
                               f"be reached ({exc}), after {s.retries} attempts; check endpoint= "
                               f"in the repository URL and that the store is running") from None
        raise StorageError(f"{target}: cannot {what} it {at}: {exc}") from None

    def _call(self, what: str, key: str | None, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (bex.BotoCoreError, bex.ClientError) as exc:
            self._fail(exc, what, key)

    def _check_bucket(self, what: str, key: str) -> None:
        """After a bare 404 (HEAD has no error body; a server that is not S3 has no S3 error
        code), make sure it is the key that is missing, not the bucket: once per storage."""
        if self._bucket_checked:
            return
        try:
            self._client.head_bucket(Bucket=self.settings.bucket)
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in (*_MISSING_KEY, "NoSuchBucket"):
                s = self.settings
                raise StorageError(f"{self.where(key)}: cannot {what} it: the bucket '{s.bucket}' "
                                   f"does not exist at {s.endpoint or 'AWS S3'} (or that endpoint "
                                   f"is not an S3 API); create the bucket or correct the repository "
                                   f"URL (bucket, endpoint, region)") from None
            self._fail(exc, what, None)
        except bex.BotoCoreError as exc:
            self._fail(exc, what, key)
        self._bucket_checked = True

    def _head(self, what: str, key: str) -> dict[str, Any]:
        return self._call(what, key, self._client.head_object, Bucket=self.settings.bucket,
                          Key=self.name_of(key))

    # -- writing --------------------------------------------------------------------------

    def _put(self, key: str, data: bytes | bytearray | memoryview, if_absent: bool) -> bool:
        """One PUT; with ``if_absent``, conditional (False when the key exists)."""
        name = self.name_of(key)
        body = bytes(data)
        if not if_absent:
            self._call("write", key, self._client.put_object, Bucket=self.settings.bucket, Key=name,
                       Body=body)
            return True
        if not self.settings.conditional_writes:
            if self.exists(key):
                return False
            self._call("write", key, self._client.put_object, Bucket=self.settings.bucket, Key=name,
                       Body=body)
            return True
        for attempt in range(5):
            try:
                self._call("write", key, self._client.put_object, Bucket=self.settings.bucket,
                           Key=name, Body=body, IfNoneMatch="*")
                return True
            except _Exists:
                return False
            except StorageError as exc:
                # 409: another conditional write of the key is in flight; AWS says retry
                if "ConditionalRequestConflict" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.1 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _put_large(self, key: str, chunks: Iterable[bytes | bytearray | memoryview],
                   if_absent: bool) -> bool:
        writer = S3Writer(self, key, if_absent=if_absent)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def _pieces(self, data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
        view = memoryview(data)
        step = self.settings.part_size
        for start in range(0, len(view), step):
            yield view[start:start + step]

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if len(data) <= self.settings.part_size:
            self._put(key, data, if_absent=False)
        else:
            self._put_large(key, self._pieces(data), if_absent=False)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        if len(data) <= self.settings.part_size:
            return self._put(key, data, if_absent=True)
        return self._put_large(key, self._pieces(data), if_absent=True)

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        return self._put_large(key, chunks, if_absent=True)

    def open_writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    # -- reading --------------------------------------------------------------------------

    def _get(self, key: str, **extra: Any) -> Any:
        return self._call("read", key, self._client.get_object, Bucket=self.settings.bucket,
                          Key=self.name_of(key), **extra)

    def get(self, key: str) -> bytes:
        body = self._get(key)["Body"]
        try:
            with body:
                return body.read()
        except (bex.BotoCoreError, OSError) as exc:
            self._fail(exc, "read", key)

    def open_stream(self, key: str) -> BinaryIO:
        return _Stream(self, key, self._get(key)["Body"])  # type: ignore[return-value]

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            self._head("read", key)
            return b""
        try:
            reply = self._client.get_object(Bucket=self.settings.bucket, Key=self.name_of(key),
                                            Range=f"bytes={offset}-{offset + length - 1}")
            with reply["Body"] as body:
                data = body.read()
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                data = b""  # the offset is past the end
            else:
                self._fail(exc, "read", key)
        except bex.BotoCoreError as exc:
            self._fail(exc, "read", key)
        if len(data) != length:
            raise StorageError(f"{self.where(key)}: truncated (wanted {length} bytes at offset "
                               f"{offset}, got {len(data)})")
        return data

    def exists(self, key: str) -> bool:
        try:
            self._head("read", key)
        except NotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head("stat", key)["ContentLength"])

    def mtime(self, key: str) -> float:
        return self._head("stat", key)["LastModified"].timestamp()

    def _pages(self, operation: str, what: str, prefix: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator(operation)
        pages = paginator.paginate(Bucket=self.settings.bucket, Prefix=self._dir_of(prefix),
                                   PaginationConfig={"PageSize": self.settings.page_size}, **kwargs)
        try:
            yield from pages
        except (bex.BotoCoreError, bex.ClientError) as exc:
            self._fail(exc, what, None)

    def list(self, prefix: str, recursive: bool = True) -> list[str]:
        found: list[str] = []
        extra = {} if recursive else {"Delimiter": "/"}
        for page in self._pages("list_objects_v2", "list", prefix, **extra):
            found.extend(self._key_of(o["Key"]) for o in page.get("Contents", ()))
            found.extend(self._key_of(p["Prefix"]) for p in page.get("CommonPrefixes", ()))
        return sorted(found)

    def usage(self, prefix: str) -> int:
        return sum(o["Size"] for page in self._pages("list_objects_v2", "list", prefix)
                   for o in page.get("Contents", ()))

    # -- removing -------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Bucket=self.settings.bucket,
                   Key=self.name_of(key))

    def remove_abandoned(self, prefix: str, older_than: float) -> int:
        """Abort incomplete multipart uploads (writers killed before commit) under ``prefix``
        started more than ``older_than`` seconds ago."""
        cutoff = time.time() - older_than
        removed = 0
        for page in self._pages("list_multipart_uploads", "list uploads under", prefix):
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                try:
                    self._client.abort_multipart_upload(Bucket=self.settings.bucket,
                                                        Key=upload["Key"], UploadId=upload["UploadId"])
                except bex.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                        continue  # completed or aborted meanwhile
                    self._fail(exc, "abort the upload of", self._key_of(upload["Key"]))
                except bex.BotoCoreError as exc:
                    self._fail(exc, "abort the upload of", self._key_of(upload["Key"]))
                removed += 1
        return removed

    def close(self) -> None:
        self._client.close()
