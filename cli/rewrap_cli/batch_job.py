"""``rewrap batch-job census|rotate --manifest s3://…``: create the S3 Batch Operations job that runs the
deployed rotate function on every object a manifest names.

The manifest is an S3 Inventory report (its ``manifest.json``; CSV inventories only, as Batch
Operations reads no other) or a CSV of ``Bucket,Key[,VersionId]`` lines (keys URL-encoded). Its ETag
comes from a HEAD, as the API requires, and its version id too on a versioned bucket, so the job reads
exactly the object that was checked. The job invokes a published version or alias of the rotate
function (schema 2.0; a census passes ``userArguments {"mode": "census"}``) with the role the stack
creates for Batch Operations, and writes a completion report of every task. All of this runs on the
operator's credentials: ``cloudformation:DescribeStacks`` (with ``--stack``), ``s3:GetObject`` on the
manifest, ``s3control:CreateJob`` and ``iam:PassRole`` on the role."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rewrap.errors import ConfigError
from rewrap_cli.common import aws_session

MODES = ("census", "rotate")
INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"
CSV_FORMAT = "S3BatchOperations_CSV_20180820"
REPORT_FORMAT = "Report_CSV_20180820"
# The stack's outputs the job needs, by what they are for.
ROLE_OUTPUT, FUNCTION_OUTPUT = "BatchOperationsRoleArn", "RotateFunctionVersionArn"
# partition, region, account, name, :version or :alias
_FUNCTION_ARN = re.compile(r"^arn:(aws[a-z-]*):lambda:([a-z0-9-]+):(\d{12}):function:([\w-]+)(:[\w$-]+)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# Enough of a CSV manifest to see how many fields its first line has.
_FIRST_LINE_BYTES = 65536


@dataclass(frozen=True)
class Clients:
    """The AWS clients a job needs; s3control is regional (the function's region)."""

    s3: Any
    cloudformation: Any
    sts: Any
    s3control: Callable[[str], Any]

    @classmethod
    def from_session(cls, session: Any) -> Clients:
        return cls(
            s3=session.client("s3"),
            cloudformation=session.client("cloudformation"),
            sts=session.client("sts"),
            s3control=lambda region: session.client("s3control", region_name=region),
        )


@dataclass(frozen=True)
class Manifest:
    bucket: str
    key: str
    format: str
    fields: tuple[str, ...]
    etag: str
    version_id: str | None

    def spec(self, partition: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"Format": self.format}
        if self.fields:
            spec["Fields"] = list(self.fields)
        location: dict[str, Any] = {"ObjectArn": f"arn:{partition}:s3:::{self.bucket}/{self.key}", "ETag": self.etag}
        if self.version_id:
            location["ObjectVersionId"] = self.version_id
        return {"Spec": spec, "Location": location}


@dataclass(frozen=True)
class Function:
    arn: str
    partition: str
    region: str
    account: str

    @classmethod
    def parse(cls, arn: str) -> Function:
        match = _FUNCTION_ARN.match(arn)
        if match is None:
            raise ConfigError(f"{arn!r} is not a Lambda function ARN")
        if match.group(5) is None:
            raise ConfigError(
                f"{arn!r} names no version or alias: pass the published version (the stack's {FUNCTION_OUTPUT}) "
                "or an alias, so a deploy in the middle of the job cannot change the code that runs it"
            )
        return cls(arn, match.group(1), match.group(2), match.group(3))


@dataclass(frozen=True)
class Stack:
    name: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    def output(self, key: str, flag: str) -> str:
        value = self.outputs.get(key)
        if not value:
            hint = " (deploy with the BatchOperationsBuckets parameter set)" if key == ROLE_OUTPUT else ""
            raise ConfigError(f"stack {self.name!r} has no output {key}{hint}: pass {flag}")
        return value

    def buckets(self) -> set[str] | None:
        """The buckets the stack's Batch Operations role may read manifests from and write reports to."""
        if "BatchOperationsBuckets" not in self.parameters:
            return None
        return {b.strip() for b in self.parameters["BatchOperationsBuckets"].split(",") if b.strip()}


def s3_location(text: str, what: str, *, object_key: bool) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); an object needs a key, a report location may omit the prefix."""
    bucket, _, key = text.removeprefix("s3://").partition("/")
    valid_bucket = re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) is not None
    if not text.startswith("s3://") or not valid_bucket or (object_key and (not key or key.endswith("/"))):
        shape = "s3://bucket/key of a manifest.json or a CSV" if object_key else "s3://bucket[/prefix]"
        raise ConfigError(f"{what} {text!r} is not {shape}")
    return bucket, key


def read_stack(cloudformation: Any, name: str) -> Stack:
    try:
        (found,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:
        raise ConfigError(f"cannot read stack {name!r}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters", [])}
    return Stack(name, outputs, parameters)


def read_manifest(s3: Any, url: str) -> Manifest:
    bucket, key = s3_location(url, "--manifest", object_key=True)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise ConfigError(f"cannot read the manifest {url}: {exc}") from exc
    if not head.get("ContentLength"):
        raise ConfigError(f"the manifest {url} is empty")
    etag, version = str(head["ETag"]).strip('"'), head.get("VersionId")
    version = version if version and version != "null" else None
    kept = {"VersionId": version} if version else {}
    if key.endswith("manifest.json"):
        try:
            body = json.loads(s3.get_object(Bucket=bucket, Key=key, **kept)["Body"].read())
        except ValueError as exc:
            raise ConfigError(f"the inventory manifest {url} is not JSON") from exc
        if not isinstance(body, dict) or str(body.get("fileFormat", "")).upper() != "CSV":
            raise ConfigError(
                f"the inventory {url} is not a CSV inventory: S3 Batch Operations reads CSV inventories only"
            )
        return Manifest(bucket, key, INVENTORY_FORMAT, (), etag, version)
    first = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{_FIRST_LINE_BYTES - 1}", **kept)["Body"].read()
    line = first.decode("utf-8", "replace").splitlines()[:1]
    fields = next(csv.reader(io.StringIO(line[0])), []) if line else []
    if len(fields) not in (2, 3):
        raise ConfigError(
            f"the manifest {url} is neither a manifest.json nor a CSV of Bucket,Key[,VersionId] lines "
            f"(its first line has {len(fields)} fields)"
        )
    return Manifest(bucket, key, CSV_FORMAT, ("Bucket", "Key", "VersionId")[: len(fields)], etag, version)


def job_request(
    options: argparse.Namespace, manifest: Manifest, function: Function, role_arn: str, account: str
) -> dict[str, Any]:
    """The CreateJob request (the client token is botocore's: every run is a new job)."""
    invoke: dict[str, Any] = {"FunctionArn": function.arn, "InvocationSchemaVersion": "2.0"}
    if options.mode == "census":
        invoke["UserArguments"] = {"mode": "census"}
    elif options.dry_run:
        invoke["UserArguments"] = {"dryRun": "true"}
    report_bucket, report_prefix = s3_location(options.report, "--report", object_key=False)
    report: dict[str, Any] = {
        "Bucket": f"arn:{function.partition}:s3:::{report_bucket}",
        "Format": REPORT_FORMAT,
        "Enabled": True,
        "ReportScope": "AllTasks",
    }
    if report_prefix.strip("/"):
        report["Prefix"] = report_prefix.strip("/")
    return {
        "AccountId": account,
        "ConfirmationRequired": options.confirm,
        "Operation": {"LambdaInvoke": invoke},
        "Report": report,
        "Manifest": manifest.spec(function.partition),
        "Priority": options.priority,
        "RoleArn": role_arn,
        "Description": (options.description or f"rewrap {options.mode} of s3://{manifest.bucket}/{manifest.key}")[:256],
    }


def check_arguments(options: argparse.Namespace) -> tuple[str, str]:
    """What can be refused before any AWS call; returns the manifest's and the report's bucket."""
    if options.mode not in MODES:
        raise ConfigError(f"unknown mode {options.mode!r}: rewrap batch-job census|rotate")
    if options.dry_run and options.mode == "census":
        raise ConfigError("--dry-run is for rotate jobs; a census job never writes an object")
    manifest_bucket, _ = s3_location(options.manifest, "--manifest", object_key=True)
    report_bucket, _ = s3_location(options.report, "--report", object_key=False)
    if not options.stack and not (options.role_arn and options.function_arn):
        raise ConfigError("pass --stack NAME (the deployed rewrap stack), or both --role-arn and --function-arn")
    return manifest_bucket, report_bucket


def submit(options: argparse.Namespace, clients: Clients) -> int:
    manifest_bucket, report_bucket = check_arguments(options)
    stack = read_stack(clients.cloudformation, options.stack) if options.stack else None
    role_arn, function = _role_and_function(options, stack)
    allowed = stack.buckets() if stack is not None and not options.role_arn else None
    for bucket, what in ((manifest_bucket, "the manifest"), (report_bucket, "the report")):
        if allowed is not None and bucket not in allowed:
            raise ConfigError(
                f"the stack's Batch Operations role may not use bucket {bucket!r} ({what}): add it to the "
                f"BatchOperationsBuckets parameter ({', '.join(sorted(allowed)) or 'empty'}) or pass --role-arn"
            )
    manifest = read_manifest(clients.s3, options.manifest)
    account = options.account_id or str(clients.sts.get_caller_identity()["Account"])
    request = job_request(options, manifest, function, role_arn, account)
    try:
        job_id = str(clients.s3control(function.region).create_job(**request)["JobId"])
    except Exception as exc:
        raise ConfigError(
            f"S3 Batch Operations did not create the job ({exc}): your identity needs s3control:CreateJob "
            f"and iam:PassRole on {role_arn}"
        ) from exc
    _print_job(options, job_id, request, function, stack)
    return 0


def _role_and_function(options: argparse.Namespace, stack: Stack | None) -> tuple[str, Function]:
    """Explicit --role-arn / --function-arn win; otherwise the stack's outputs."""
    if stack is None and not (options.role_arn and options.function_arn):
        raise ConfigError("pass --stack NAME (the deployed rewrap stack), or both --role-arn and --function-arn")
    role_arn = options.role_arn or (stack.output(ROLE_OUTPUT, "--role-arn") if stack else "")
    function_arn = options.function_arn or (stack.output(FUNCTION_OUTPUT, "--function-arn") if stack else "")
    if not _ROLE_ARN.match(role_arn):
        raise ConfigError(f"{role_arn!r} is not an IAM role ARN")
    return role_arn, Function.parse(function_arn)


def _print_job(
    options: argparse.Namespace, job_id: str, request: dict[str, Any], function: Function, stack: Stack | None
) -> None:
    where = f"--account-id {request['AccountId']} --region {function.region} --job-id {job_id}"
    report = request["Report"]
    folder = "/".join(p for p in (report["Bucket"].rpartition(":")[2], report.get("Prefix", "")) if p)
    print(f"S3 Batch Operations {options.mode} job {job_id} created on {function.arn}")
    print(f"  manifest:   {options.manifest} ({request['Manifest']['Spec']['Format']})")
    print(f"  report:     s3://{folder}/job-{job_id}/ (every task)")
    if request["ConfirmationRequired"]:
        print(f"  confirm it: aws s3control update-job-status {where} --requested-job-status Ready")
    print(f"  follow it:  aws s3control describe-job {where} --query 'Job.[Status,ProgressSummary]'")
    if options.mode != "census":
        return
    prefix = stack.parameters.get("ReportPrefix", "<ReportPrefix>") if stack else "<ReportPrefix>"
    if prefix:
        print(f"  verdict:    rewrap census --from-reports {prefix}census/{job_id}/ --min-version N")
    else:
        print("  verdict:    the stack has no ReportPrefix, so no partials: each task's result string is its census")


def run_batch_job(options: argparse.Namespace) -> int:
    check_arguments(options)
    return submit(options, Clients.from_session(aws_session()))
