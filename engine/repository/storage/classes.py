"""S3 storage classes: which a tier may name, which are archives (an object must be restored
before it can be read), and how long a retrieval usually takes. Plain data: the
configuration validates tier URLs with it without importing botocore."""

from __future__ import annotations

#: Storage classes an ``s3://...?storage_class=`` URL may name (AWS's; other stores accept a subset).
STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
                   "GLACIER", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY")
#: Classes whose objects cannot be read until a restore request has made a temporary copy.
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
#: Retrieval options of a restore request (S3's ``GlacierJobParameters.Tier``).
RETRIEVALS = ("Expedited", "Standard", "Bulk")
#: The upper end of AWS's documented retrieval times, seconds, per (class, retrieval); a
#: missing pair is not offered by S3 (DEEP_ARCHIVE has no Expedited retrieval).
RETRIEVAL_SECONDS: dict[tuple[str, str], float] = {
    ("GLACIER", "Expedited"): 5 * 60.0,
    ("GLACIER", "Standard"): 5 * 3600.0,
    ("GLACIER", "Bulk"): 12 * 3600.0,
    ("DEEP_ARCHIVE", "Standard"): 12 * 3600.0,
    ("DEEP_ARCHIVE", "Bulk"): 48 * 3600.0,
}


def url_storage_class(url: str) -> str | None:
    """The ``storage_class`` option of an ``s3://`` URL (upper-cased), or None."""
    from urllib.parse import parse_qs, urlsplit

    if not url.startswith("s3://"):
        return None
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get("storage_class")
    return values[-1].upper() if values and values[-1] else None


def without_storage_class(url: str) -> str:
    """The same ``s3://`` URL without its ``storage_class`` option (objects written through it
    get the bucket's default class)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "storage_class"]
    return urlunsplit(parts._replace(query=urlencode(query, safe=":/")))
