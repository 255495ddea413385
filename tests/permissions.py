"""Which IAM actions each AWS call of the functions needs, and what the template's roles grant.

Shared by the template test (every granted action is used somewhere in the shipped code) and the
artifact test (every call the built functions actually made is granted to their role). The role for
S3 Batch Operations is used by no function: what it grants is what the service does with it, and the
calls `rewrap batch-job` makes run on the operator's own credentials (the README lists them)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CODE = [ROOT / "layers" / "rewrap" / "rewrap", ROOT / "functions"]
BATCH_JOB_CLI = [ROOT / "cli" / "rewrap_cli" / "batch_job.py"]

# A HEAD or GET shows Object Lock settings only with their Get permissions; a rewrite restates tags,
# the ACL (Grant* parameters) and Object Lock, which need the Put ones.
_READ = {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"}
_WRITE = {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectAcl", "s3:PutObjectRetention", "s3:PutObjectLegalHold"}
# (service, operation in boto3's snake_case) → the IAM actions it needs. Versioned reads and writes that
# carry tags need the Version / Tagging variants too.
CALL_ACTIONS: dict[tuple[str, str], set[str]] = {
    ("s3", "head_object"): _READ,
    ("s3", "get_object"): _READ,
    ("s3", "get_object_tagging"): {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
    ("s3", "get_object_acl"): {"s3:GetObjectAcl", "s3:GetObjectVersionAcl"},
    ("s3", "get_bucket_acl"): {"s3:GetBucketAcl"},
    ("s3", "get_bucket_ownership_controls"): {"s3:GetBucketOwnershipControls"},
    ("s3", "get_bucket_versioning"): {"s3:GetBucketVersioning"},
    ("s3", "put_object"): _WRITE,
    ("s3", "copy_object"): _READ | _WRITE | {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
    ("s3", "create_multipart_upload"): _WRITE,
    ("s3", "upload_part"): {"s3:PutObject"},
    ("s3", "upload_part_copy"): _READ | {"s3:PutObject"},
    ("s3", "complete_multipart_upload"): {"s3:PutObject"},
    ("s3", "abort_multipart_upload"): {"s3:AbortMultipartUpload"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "list_object_versions"): {"s3:ListBucketVersions"},
    ("sqs", "send_message"): {"sqs:SendMessage"},
    ("sqs", "send_message_batch"): {"sqs:SendMessage"},
    ("secretsmanager", "get_secret_value"): {"secretsmanager:GetSecretValue"},
    ("lambda", "invoke"): {"lambda:InvokeFunction"},
    ("sns", "publish"): {"sns:Publish"},
}
# S3 Batch Operations with BatchOperationsRole: it reads the job's manifest (an inventory's manifest.json
# and its data files, or a CSV, by version when the manifest names one), invokes the rotate function and
# writes the completion report (GetBucketLocation: in AWS's documented policy for reports).
BATCH_OPERATIONS_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:GetBucketLocation",
    "lambda:InvokeFunction",
}
# What `rewrap batch-job` calls, on the operator's credentials: the stack's outputs, the manifest's HEAD and
# first line, who the caller is (no permission needed), and the job (passing the role needs iam:PassRole).
OPERATOR_CALL_ACTIONS: dict[tuple[str, str], set[str]] = {
    ("cloudformation", "describe_stacks"): {"cloudformation:DescribeStacks"},
    ("s3", "head_object"): {"s3:GetObject"},
    ("s3", "get_object"): {"s3:GetObject"},
    ("sts", "get_caller_identity"): set(),
    ("s3control", "create_job"): {"s3control:CreateJob", "iam:PassRole"},
}
# Calls made for the code by a library: a Powertools SecretsProvider reads the secret.
LIBRARY_CALLS = {"SecretsProvider": ("secretsmanager", "get_secret_value")}
# Granted for Lambda itself, not for a call in the code: its logs, X-Ray, the SQS event source mapping,
# and AWS KMS used by S3 and Secrets Manager on the function's behalf.
PLATFORM_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "kms:Decrypt",
    "kms:GenerateDataKey",
}


def calls_in_shipped_code(
    roots: list[Path] = SHIPPED_CODE, table: dict[tuple[str, str], set[str]] = CALL_ACTIONS
) -> dict[tuple[str, str], list[str]]:
    """Every AWS call the shipped code (or other ``roots``) makes (by method name), with where it is made."""
    by_name = {operation: (service, operation) for service, operation in table}
    by_name.update(LIBRARY_CALLS)
    found: dict[tuple[str, str], list[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                # a method called or passed on (``self.call("GET ACL", self.client.get_object_acl, …)``)
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
                if name in by_name:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.setdefault(by_name[name], []).append(where)
    return found


def actions_for(
    calls: Iterator[tuple[str, str]] | list[tuple[str, str]], table: dict[tuple[str, str], set[str]] = CALL_ACTIONS
) -> set[str]:
    needed: set[str] = set()
    for call in calls:
        needed |= table[call]
    return needed


def role_actions(template: dict[str, Any], role: str) -> set[str]:
    """Every action a role's inline policies can grant, whichever way their conditions go."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Action":
                    found.update([value] if isinstance(value, str) else value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(template["Resources"][role]["Properties"]["Policies"])
    return found
