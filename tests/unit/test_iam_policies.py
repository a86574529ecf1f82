"""The IAM policies in iam/ grant what the code calls and nothing more (least privilege).

The AWS operations each service calls are found in its source: boto3 client methods, matched
against botocore's own models of Kinesis and S3 (waiters included), plus the S3 requests that
pyarrow's filesystem makes where the ETL uses it. A new call without a policy line fails here,
and so does a policy line no code needs.
"""

from __future__ import annotations

import json
import re

import botocore.session
import pytest
from botocore import xform_name

from tests.support.compose import REPO

SERVICES = {"etl": "etl-processor", "populate": "populate-script"}
# IAM actions that are not named like the API operation.
IAM_ACTION = {"s3:HeadBucket": "s3:ListBucket", "s3:ListObjectsV2": "s3:ListBucket"}
# What pyarrow.fs.S3FileSystem sends for the calls news_etl.sink makes: open_output_stream (PutObject
# or a multipart upload, aborted on failure), copy_file (GetObject on the source, PutObject),
# delete_file, get_file_info (ListBucket).
PYARROW_S3 = {"s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}
# What delta-rs sends for news_etl.table: the log read (GetObject, ListBucket) and written with
# conditional puts, compaction's uploads (multipart for large files), and the expired-log cleanup
# after a checkpoint (DeleteObject).
DELTA_RS_S3 = {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"}


def operations(service: str) -> dict[str, str]:
    """botocore's snake_case method names -> IAM action, for one AWS service."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): f"{service}:{name}" for name in model.operation_names}


def waiter_actions(service: str, source: str) -> set[str]:
    """The operations behind ``client.get_waiter("...")`` calls of this service."""
    waiters = botocore.session.get_session().get_waiter_model(service)
    used = set(re.findall(r"get_waiter\(\"(\w+)\"", source))
    return {f"{service}:{waiters.get_waiter(w).operation}" for w in waiters.waiter_names if xform_name(w) in used}


def called_actions(folder: str) -> set[str]:
    source = "\n".join(path.read_text() for path in sorted((REPO / folder).rglob("*.py")))
    called = set(re.findall(r"\.(\w+)\(", source))
    actions = set()
    for service in ("kinesis", "s3"):
        actions |= {action for method, action in operations(service).items() if method in called}
        actions |= waiter_actions(service, source)
    if "pafs.S3FileSystem(" in source:
        actions |= PYARROW_S3
    if "from deltalake import" in source:
        actions |= DELTA_RS_S3
    return {IAM_ACTION.get(action, action) for action in actions}


def granted_actions(name: str) -> set[str]:
    policy = json.loads((REPO / "iam" / f"{name}-policy.json").read_text())
    return {action for statement in policy["Statement"] for action in statement["Action"]}


@pytest.mark.parametrize("name", SERVICES)
def test_policy_grants_exactly_what_the_code_calls(name):
    """Each action the service's code needs is granted, and each granted action is needed."""
    assert granted_actions(name) == called_actions(SERVICES[name])


def test_the_scan_finds_the_calls_it_must():
    """The scan is not empty-handed: it sees GetRecords in the ETL and PutRecords in populate."""
    assert {"kinesis:GetRecords", "s3:ListBucket"} <= called_actions("etl-processor")
    assert {"kinesis:PutRecords", "kinesis:DescribeStream"} <= called_actions("populate-script")


def test_no_credentials_in_the_code_or_the_images():
    """No AWS access key ids or secret keys anywhere in tracked source, Dockerfiles or compose."""
    code = [path for folder in (*SERVICES.values(), "tests", "bench") for path in (REPO / folder).rglob("*.py")]
    files = [*code, *REPO.glob("*/Dockerfile"), REPO / "docker-compose.yml", REPO / ".env.example"]
    key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    secret = re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?(?!test\b)[A-Za-z0-9/+]{20,}")
    for path in files:
        text = path.read_text()
        assert not key_id.search(text) and not secret.search(text), path
