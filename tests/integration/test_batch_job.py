"""``rewrap batch-job``: the S3 Batch Operations job it creates, request field by field.

moto (5.2) does not implement S3 Control's CreateJob, so that one call is checked with botocore's
Stubber, which validates the request against the service model and compares every parameter; the
manifest's HEAD and first line, the caller's account and the stack's outputs come from moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import rewrap_cli.main as cli
from rewrap.errors import ConfigError
from rewrap_cli import batch_job, parser
from rewrap_local.stack import LocalStack, environment

REGION = "ap-northeast-2"
ACCOUNT = "123456789012"  # moto's
ROLE = f"arn:aws:iam::{ACCOUNT}:role/rewrap-BatchOperationsRole-X1"
VERSION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rewrap-rotate:7"
JOB_ID = "a9d6c0f2-7b3e-4d18-9c55-3e2f1b0d4a87"


def deploy(stack: LocalStack, outputs: dict[str, str], parameters: dict[str, str]) -> str:
    """A CloudFormation stack on moto with the outputs and parameters `rewrap batch-job --stack` reads.
    Its parameters are Strings: moto reports a CommaDelimitedList's value as a Python list's repr."""
    name = f"rewrap-{uuid.uuid4().hex[:8]}"
    template = {
        "Parameters": {key: {"Type": "String", "Default": ""} for key in parameters},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    stack.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    return name


def bucket(stack: LocalStack, *, versioned: bool = False) -> str:
    name = f"manifests-{uuid.uuid4().hex[:10]}"
    s3 = stack.client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


class Jobs:
    """The clients `submit` uses: moto for S3, STS and CloudFormation; a Stubber on S3 Control."""

    def __init__(self, stack: LocalStack) -> None:
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self.control = session.client("s3control", region_name=REGION)
        self.stub = Stubber(self.control)
        self.regions: list[str] = []

        def s3control(region: str) -> Any:
            self.regions.append(region)
            return self.control

        self.clients = batch_job.Clients(
            s3=stack.client("s3"),
            cloudformation=stack.client("cloudformation"),
            sts=stack.client("sts"),
            s3control=s3control,
        )

    def submit(self, *args: str) -> int:
        return batch_job.submit(parser.build().parse_args(["batch-job", *args]), self.clients)


@pytest.fixture
def jobs(stack: LocalStack) -> Iterator[Jobs]:
    made = Jobs(stack)
    with made.stub:
        yield made
    made.stub.assert_no_pending_responses()


def test_census_job_from_an_inventory_manifest_with_the_stacks_role_and_version(
    stack: LocalStack, jobs: Jobs, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests, reports = bucket(stack, versioned=True), bucket(stack)
    key = "my-bucket/rewrap-inventory/2026-12-01T01-00Z/manifest.json"
    inventory = {"sourceBucket": "my-bucket", "fileFormat": "CSV", "files": [{"key": "data/a.csv.gz"}]}
    written = stack.client("s3").put_object(Bucket=manifests, Key=key, Body=json.dumps(inventory).encode())
    name = deploy(
        stack,
        {"BatchOperationsRoleArn": ROLE, "RotateFunctionVersionArn": VERSION},
        {"ReportPrefix": "s3://audit/rewrap/", "BatchOperationsBuckets": f"{manifests},{reports}"},
    )
    jobs.stub.add_response(
        "create_job",
        {"JobId": JOB_ID},
        {
            "AccountId": ACCOUNT,
            "ConfirmationRequired": True,
            "Operation": {
                "LambdaInvoke": {
                    "FunctionArn": VERSION,
                    "InvocationSchemaVersion": "2.0",
                    "UserArguments": {"mode": "census"},
                }
            },
            "Report": {
                "Bucket": f"arn:aws:s3:::{reports}",
                "Prefix": "rewrap-jobs",
                "Format": "Report_CSV_20180820",
                "Enabled": True,
                "ReportScope": "AllTasks",
            },
            "Manifest": {
                "Spec": {"Format": "S3InventoryReport_CSV_20161130"},
                "Location": {
                    "ObjectArn": f"arn:aws:s3:::{manifests}/{key}",
                    "ETag": written["ETag"].strip('"'),
                    "ObjectVersionId": written["VersionId"],
                },
            },
            "Priority": 10,
            "RoleArn": ROLE,
            "Description": f"rewrap census of s3://{manifests}/{key}",
        },
    )
    code = jobs.submit(
        "census", "--stack", name, "--manifest", f"s3://{manifests}/{key}", "--report", f"s3://{reports}/rewrap-jobs/"
    )

    assert code == 0
    assert jobs.regions == [REGION]  # the job is created where the function is
    out = capsys.readouterr().out
    where = f"--account-id {ACCOUNT} --region {REGION} --job-id {JOB_ID}"
    assert f"S3 Batch Operations census job {JOB_ID} created on {VERSION}" in out
    assert f"aws s3control update-job-status {where} --requested-job-status Ready" in out
    assert f"aws s3control describe-job {where}" in out
    assert f"s3://{reports}/rewrap-jobs/job-{JOB_ID}/" in out
    assert f"rewrap census --from-reports s3://audit/rewrap/census/{JOB_ID}/ --min-version N" in out


@pytest.mark.parametrize(
    ("lines", "fields"),
    [
        ("my-bucket,docs/a.env\nmy-bucket,docs/b%2Cc.env\n", ["Bucket", "Key"]),
        ('my-bucket,docs/a.env,"3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"\n', ["Bucket", "Key", "VersionId"]),
    ],
)
def test_rotate_job_from_a_csv_manifest_with_explicit_arns_runs_at_once(
    stack: LocalStack, jobs: Jobs, capsys: pytest.CaptureFixture[str], lines: str, fields: list[str]
) -> None:
    manifests = bucket(stack)
    written = stack.client("s3").put_object(Bucket=manifests, Key="retry.csv", Body=lines.encode())
    alias = f"arn:aws:lambda:{REGION}:210987654321:function:rewrap-rotate:live"
    jobs.stub.add_response(
        "create_job",
        {"JobId": JOB_ID},
        {
            "AccountId": "210987654321",
            "ConfirmationRequired": False,
            "Operation": {
                "LambdaInvoke": {
                    "FunctionArn": alias,
                    "InvocationSchemaVersion": "2.0",
                    "UserArguments": {"dryRun": "true"},
                }
            },
            "Report": {
                "Bucket": f"arn:aws:s3:::{manifests}",
                "Format": "Report_CSV_20180820",
                "Enabled": True,
                "ReportScope": "AllTasks",
            },
            "Manifest": {
                "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": fields},
                "Location": {"ObjectArn": f"arn:aws:s3:::{manifests}/retry.csv", "ETag": written["ETag"].strip('"')},
            },
            "Priority": 42,
            "RoleArn": ROLE,
            "Description": "retry of job 1",
        },
    )
    code = jobs.submit(
        "rotate",
        *("--manifest", f"s3://{manifests}/retry.csv", "--report", f"s3://{manifests}"),
        *("--role-arn", ROLE, "--function-arn", alias, "--account-id", "210987654321"),
        *("--priority", "42", "--yes", "--dry-run", "--description", "retry of job 1"),
    )

    assert code == 0
    out = capsys.readouterr().out
    assert f"rotate job {JOB_ID}" in out
    assert "update-job-status" not in out  # --yes: no confirmation to give
    assert "--from-reports" not in out


def test_a_refused_job_is_one_line_naming_the_permissions(stack: LocalStack, jobs: Jobs) -> None:
    manifests = bucket(stack)
    stack.client("s3").put_object(Bucket=manifests, Key="m.csv", Body=b"b,k\n")
    jobs.stub.add_client_error("create_job", "AccessDenied", "not authorized to perform iam:PassRole")
    with pytest.raises(ConfigError, match=r"did not create the job .*s3control:CreateJob and iam:PassRole on arn:"):
        jobs.submit(
            "rotate", "--manifest", f"s3://{manifests}/m.csv", "--report", f"s3://{manifests}/r",
            "--role-arn", ROLE, "--function-arn", VERSION,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "--manifest", "s3://b-1/m.csv"], "unknown mode 'audit': rewrap batch-job census|rotate"),
        (["census", "--manifest", "b-1/m.csv"], "--manifest 'b-1/m.csv' is not s3://bucket/key"),
        (["census", "--manifest", "s3://b-1/inventory/"], "is not s3://bucket/key of a manifest.json or a CSV"),
        (["census", "--manifest", "s3://b-1/m.csv", "--report", "reports"], "--report 'reports' is not s3://bucket"),
        (["census", "--manifest", "s3://b-1/m.csv"], "pass --stack NAME (the deployed rewrap stack), or both"),
        (["census", "--manifest", "s3://b-1/m.csv", "--dry-run"], "--dry-run is for rotate jobs"),
        (
            ["rotate", "--manifest", "s3://b-1/m.csv", "--role-arn", ROLE, "--function-arn", VERSION.rsplit(":", 1)[0]],
            "names no version or alias",
        ),
        (
            ["rotate", "--manifest", "s3://b-1/m.csv", "--role-arn", "rewrap-role", "--function-arn", VERSION],
            "not an IAM",
        ),
    ],
)
def test_bad_arguments_exit_2_before_any_aws_call(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    report = [] if "--report" in args else ["--report", "s3://reports-1/jobs"]
    # no endpoint is reachable: anything past the checks would fail differently
    with environment({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}):
        assert cli.main(["batch-job", *args, *report]) == 2
    assert message in capsys.readouterr().err


def test_stack_without_the_batch_operations_role_says_which_output_and_parameter(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # through the whole command line, against moto (AWS_ENDPOINT_URL): the stack is read, no job is made
    name = deploy(stack, {"RotateFunctionVersionArn": VERSION}, {"BatchOperationsBuckets": ""})
    args = ["batch-job", "census", "--stack", name, "--manifest", "s3://inv-1/m.json", "--report", "s3://inv-1/r"]
    with environment({"AWS_ENDPOINT_URL": stack.moto_url}):
        assert cli.main(args) == 2
        assert "has no output BatchOperationsRoleArn (deploy with the BatchOperationsBuckets" in capsys.readouterr().err
        assert cli.main([*args[:3], "no-such-stack", *args[4:]]) == 2
        assert "cannot read stack 'no-such-stack'" in capsys.readouterr().err


def test_manifest_and_report_buckets_must_be_the_roles(stack: LocalStack, jobs: Jobs) -> None:
    outputs = {"BatchOperationsRoleArn": ROLE, "RotateFunctionVersionArn": VERSION}
    name = deploy(stack, outputs, {"BatchOperationsBuckets": "inventory-1"})
    with pytest.raises(ConfigError, match=r"may not use bucket 'elsewhere-1' \(the report\).*\(inventory-1\)"):
        jobs.submit("census", "--stack", name, "--manifest", "s3://inventory-1/m.csv", "--report", "s3://elsewhere-1")
    with pytest.raises(ConfigError, match=r"may not use bucket 'other-1' \(the manifest\)"):
        jobs.submit("census", "--stack", name, "--manifest", "s3://other-1/m.csv", "--report", "s3://inventory-1/r")


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("inv/manifest.json", b'{"fileFormat": "Parquet", "files": []}', "reads CSV inventories only"),
        ("inv/manifest.json", b"<html>", "is not JSON"),
        ("inv/manifest.json", b"[]", "reads CSV inventories only"),
        ("list.csv", b"my-bucket,a,v1,extra\n", "its first line has 4 fields"),
        ("list.csv", b"", "is empty"),
        ("list.csv", b"\n", "its first line has 0 fields"),
        ("absent.csv", None, "cannot read the manifest s3://"),
    ],
)
def test_manifests_batch_operations_cannot_read_are_refused_before_the_job(
    stack: LocalStack, jobs: Jobs, key: str, body: bytes | None, message: str
) -> None:
    manifests = bucket(stack)
    if body is not None:
        stack.client("s3").put_object(Bucket=manifests, Key=key, Body=body)
    with pytest.raises(ConfigError, match=message):
        jobs.submit(
            "census", "--manifest", f"s3://{manifests}/{key}", "--report", f"s3://{manifests}/r",
            "--role-arn", ROLE, "--function-arn", VERSION,
        )  # fmt: skip


def test_without_a_region_it_says_so_before_reading_the_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    args = ["batch-job", "census", "--stack", "rewrap", "--manifest", "s3://inv-1/m.json", "--report", "s3://inv-1/r"]
    assert cli.main(args) == 2
    assert "no AWS region: set AWS_REGION" in capsys.readouterr().err
