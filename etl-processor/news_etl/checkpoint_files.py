"""The job's own files in its checkpoint (running totals, shard ends), on a local disk or on S3.

One layer for both stores, through pyarrow's filesystems, so a checkpoint given as
``s3://bucket/prefix`` needs no disk that the driver and the executors share:

- ``create``: only if absent, so that of two writers racing the first one wins and the other
  learns of it (an exclusive link locally; a PutObject with ``If-None-Match: *`` on S3);
- ``replace``: readers see the old or the new file, never half of one (a rename locally; a
  PutObject on S3, which is atomic per object);
- ``read``: the bytes, or None when there is no such file;
- ``names``: the files of a folder, and ``delete``: a file gone (``news_etl.lease`` keeps its
  folder bounded with them).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import pyarrow.fs as pafs
from botocore.exceptions import ClientError

from news_etl.aws import s3_client, s3_filesystem

S3 = "s3://"
CONFLICT_ATTEMPTS = 5  # conditional puts answered 409 (a concurrent upload undecided), then the error


def is_s3(path: str) -> bool:
    return path.startswith(S3)


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``path`` (a local path, ``file://`` or ``s3://``) and the path within it."""
    if is_s3(path):
        return s3_filesystem(), path.removeprefix(S3).rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(path.removeprefix("file://")).rstrip("/")


def read(path: str) -> bytes | None:
    store, inner = filesystem(path)
    try:
        with store.open_input_stream(inner) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def _bucket_and_key(path: str) -> tuple[str, str]:
    bucket, key = path.removeprefix(S3).split("/", 1)
    return bucket, key


def _temporary_copy(target: str, document: bytes) -> str:
    """``document`` in a new hidden file beside ``target``; returns its path."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    temporary = f"{directory}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as stream:
        stream.write(document)
    return temporary


def replace(path: str, document: bytes) -> None:
    """Write ``path`` whole: readers see the old or the new document."""
    if is_s3(path):
        bucket, key = _bucket_and_key(path)
        s3_client().put_object(Bucket=bucket, Key=key, Body=document)
        return
    _, target = filesystem(path)
    os.replace(_temporary_copy(target, document), target)


def _create_on_s3(path: str, document: bytes) -> bool:
    """PutObject with ``If-None-Match: *``. 412 means another writer's object is there; 409 means
    S3 is still deciding between two uploads, so AWS says to try again (a few times, briefly)."""
    bucket, key = _bucket_and_key(path)
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=document, IfNoneMatch="*")
            return True
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "PreconditionFailed":
                return False
            if code != "ConditionalRequestConflict" or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def create(path: str, document: bytes) -> bool:
    """Write ``path`` unless it exists; returns whether this call created it."""
    if is_s3(path):
        return _create_on_s3(path, document)
    _, target = filesystem(path)
    temporary = _temporary_copy(target, document)
    try:
        os.link(temporary, target)  # refused if target exists: the exclusive create
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)


def names(folder: str) -> list[str]:
    """The names of the files directly in ``folder`` (none when it does not exist)."""
    store, inner = filesystem(folder)
    found = store.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(info.base_name for info in found if info.type == pafs.FileType.File)


def delete(path: str) -> None:
    """Remove ``path``; one that is gone already is no error."""
    if is_s3(path):  # boto3, not pyarrow: pyarrow leaves an empty "folder" object where the last file went
        bucket, key = _bucket_and_key(path)
        s3_client().delete_object(Bucket=bucket, Key=key)
        return
    _, target = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(target)
