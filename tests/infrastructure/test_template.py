"""The SAM template: cfn-lint clean, transformable offline, least-privilege, wired as designed.

The template is read with cfn-lint's CloudFormation-aware YAML loader and transformed with
aws-sam-translator (no AWS calls). IAM resources built with intrinsic functions are checked twice:
structurally on the transformed template, and by evaluating the intrinsics for sample parameter
values, so the Fn::Join/Fn::Split ARN lists are proven to name each bucket.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

from rewrap.core.config import Settings
from tests.permissions import (
    BATCH_JOB_CLI,
    BATCH_OPERATIONS_ACTIONS,
    OPERATOR_CALL_ACTIONS,
    PLATFORM_ACTIONS,
    actions_for,
    calls_in_shipped_code,
    role_actions,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SAMPLE_PARAMETERS = {
    "BucketNames": ["rewrap-demo-bucket", "rewrap-second.bucket"],
    "KeyTag": "demo-key",
    "NcpSecretArn": "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:rewrap/ncp-AbC123",
    "NcpKmsEndpoint": "https://kms.apigw.ntruss.com",
    "SignatureVersion": "v2",
    "SweepTargets": "",
    "SweepSchedule": "rate(1 day)",
    "RotateMaxConcurrency": "5",
    "KmsRateLimit": "",
    "NcpRateBudget": "200",
    "DryRun": "false",
    "LogRetentionDays": "30",
    "LogLevel": "INFO",
    "ReportPrefix": "",
    "KmsKeyArns": [""],
    "AlarmTopicArn": "",
    "BatchOperationsBuckets": [""],
    "Tracing": "PassThrough",
    "RotateReservedConcurrency": "6",
}


class _NoManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call IAM."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    fragment = copy.deepcopy(sam)
    for resource in fragment["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://rewrap-artifacts/{properties[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")
        return transform(fragment, {}, _NoManagedPolicies())


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = of_type(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity-policy statement, including the ones SAM generates; If-branches flattened."""
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [props["PolicyDocument"]]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                if "Fn::If" in statement:
                    yield from ((name, s) for s in statement["Fn::If"][1:] if isinstance(s, dict) and "Ref" not in s)
                else:
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refs(node: Any) -> set[str]:
    """Names referenced by Ref, GetAtt or ${...} anywhere inside node."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= refs(item)
    return found


def role_of(cfn: dict[str, Any], function: str) -> str:
    return cfn["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]


# --------------------------------------------------------------------- intrinsic evaluation
NO_VALUE = object()


class Evaluator:
    """Evaluates the intrinsic functions used in the template for concrete parameter values."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any]) -> None:
        self.template = template
        self.values = {
            **parameters,
            "AWS::Partition": "aws",
            "AWS::Region": "ap-northeast-2",
            "AWS::AccountId": "123456789012",
            "AWS::StackName": "rewrap",
        }
        self.conditions = {name: self.condition(body) for name, body in template.get("Conditions", {}).items()}

    def condition(self, node: Any) -> bool:
        ((fn, args),) = node.items()
        if fn == "Fn::Equals":
            return self(args[0]) == self(args[1])
        if fn == "Fn::Not":
            return not self.condition(args[0])
        if fn == "Fn::And":
            return all(self.condition(a) for a in args)
        if fn == "Fn::Or":
            return any(self.condition(a) for a in args)
        if fn == "Condition":
            return self.conditions[args]
        raise AssertionError(f"unsupported condition {fn}")

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Ref":
                if args == "AWS::NoValue":
                    return NO_VALUE
                return self.values.get(args, f"<{args}>")
            if fn == "Fn::GetAtt":
                return f"<{'.'.join(args)}>"
            if fn == "Fn::If":
                return self(args[1] if self.conditions[args[0]] else args[2])
            if fn == "Fn::Join":
                return args[0].join(self(args[1]))
            if fn == "Fn::Split":
                return self(args[1]).split(args[0])
            if fn == "Fn::Select":
                return self(args[1])[int(args[0])]
            if fn == "Fn::Sub":
                text, extra = (args, {}) if isinstance(args, str) else (args[0], self(args[1]))
                names = {**self.values, **extra}
                return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(names.get(m.group(1), f"<{m.group(1)}>")), text)
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not NO_VALUE}


def evaluated_statements(cfn: dict[str, Any], role: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    evaluate = Evaluator(cfn, {**SAMPLE_PARAMETERS, **overrides})
    policies = evaluate(cfn["Resources"][role]["Properties"]["Policies"])
    return {s["Sid"]: s for p in policies for s in p["PolicyDocument"]["Statement"]}


# --------------------------------------------------------------------- lint and transform
def test_cfn_lint_reports_nothing_even_informational() -> None:
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["ap-northeast-2", "us-east-1"], include_checks=["I"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_transform_produces_the_whole_stack(cfn: dict[str, Any]) -> None:
    counts: dict[str, int] = {}
    for res in cfn["Resources"].values():
        counts[res["Type"]] = counts.get(res["Type"], 0) + 1
    assert counts["AWS::Lambda::LayerVersion"] == 1
    assert counts["AWS::Lambda::Function"] == 2
    assert counts["AWS::Lambda::EventSourceMapping"] == 1
    assert counts["AWS::SQS::Queue"] == 3  # rotate queue, its DLQ, failed asynchronous sweep invocations
    assert counts["AWS::SQS::QueuePolicy"] == 2
    assert counts["AWS::Events::Rule"] == 2  # Object Created -> queue, schedule -> sweep
    assert counts["AWS::Logs::LogGroup"] == 2
    assert counts["AWS::IAM::Role"] == 3  # rotate, sweep, and S3 Batch Operations (with BatchOperationsBuckets)
    assert counts["AWS::CloudWatch::Alarm"] >= 2
    assert not any(t.startswith("AWS::Serverless::") for t in counts)


def test_transformed_template_is_cfn_lint_clean(cfn: dict[str, Any]) -> None:
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["ap-northeast-2"]))
    assert [f"{m.rule.id}: {m.message}" for m in matches] == []


# --------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("NcpKmsEndpoint", "https://kms.apigw.ntruss.com", True),
        ("NcpKmsEndpoint", "https://ocapi.ncloud.com/kms/v1", True),
        ("NcpKmsEndpoint", "http://kms.apigw.ntruss.com", False),
        ("NcpKmsEndpoint", "kms.apigw.ntruss.com", False),
        ("BucketNames", "rewrap-demo-bucket", True),
        ("BucketNames", "Bad_Bucket", False),
        ("NcpSecretArn", SAMPLE_PARAMETERS["NcpSecretArn"], True),
        ("NcpSecretArn", "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:rewrap/ncp", False),
        ("SweepTargets", "", True),
        ("SweepTargets", "rewrap-demo-bucket,other-bucket/docs/", True),
        ("SweepTargets", "rewrap-demo-bucket, other-bucket", False),
        ("SweepSchedule", "rate(1 day)", True),
        ("SweepSchedule", "cron(0 3 * * ? *)", True),
        ("SweepSchedule", "every day", False),
        ("ReportPrefix", "", True),
        ("ReportPrefix", "s3://audit-bucket/rewrap/", True),
        ("ReportPrefix", "s3://audit-bucket", False),
        ("KmsKeyArns", "", True),
        ("KmsKeyArns", "arn:aws:kms:ap-northeast-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("AlarmTopicArn", "", True),
        ("AlarmTopicArn", "arn:aws:sns:ap-northeast-2:123456789012:ops-alerts", True),
        ("AlarmTopicArn", "ops-alerts", False),
        ("BatchOperationsBuckets", "", True),
        ("BatchOperationsBuckets", "inventory-bucket", True),
        ("BatchOperationsBuckets", "s3://inventory-bucket", False),
    ],
)
def test_parameter_patterns(sam: dict[str, Any], parameter: str, value: str, accepted: bool) -> None:
    pattern = sam["Parameters"][parameter]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_parameter_choices_and_defaults(sam: dict[str, Any]) -> None:
    params = sam["Parameters"]
    assert params["BucketNames"]["Type"] == "CommaDelimitedList"
    assert params["NcpKmsEndpoint"]["Default"] == "https://kms.apigw.ntruss.com"
    assert params["SignatureVersion"]["AllowedValues"] == ["v2", "v1"]
    assert params["DryRun"]["AllowedValues"] == ["true", "false"]
    assert params["DryRun"]["Default"] == "false"
    assert params["SweepTargets"]["Default"] == ""
    assert params["SweepSchedule"]["Default"] == "rate(1 day)"
    concurrency = params["RotateMaxConcurrency"]
    assert (concurrency["MinValue"], concurrency["MaxValue"], concurrency["Default"]) == (2, 1000, 5)
    assert "NcpRateBudget" in concurrency["Description"]
    assert params["KmsRateLimit"]["Default"] == ""  # derived from the budget and the concurrency
    assert params["NcpRateBudget"]["Default"] == 200  # NCP KMS 1.0: about 200 requests/s per account
    for optional in ("ReportPrefix", "AlarmTopicArn", "SweepTargets"):
        assert params[optional]["Default"] == ""


# --------------------------------------------------------------------- queues
def test_queue_dead_letter_queue_and_encryption(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["RotateQueue"]["Properties"]
    dlq = cfn["Resources"]["RotateDeadLetterQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RotateDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True


def test_visibility_timeout_covers_six_function_timeouts(cfn: dict[str, Any]) -> None:
    timeout = cfn["Resources"]["RotateFunction"]["Properties"]["Timeout"]
    window = one(cfn, "AWS::Lambda::EventSourceMapping")["MaximumBatchingWindowInSeconds"]
    assert cfn["Resources"]["RotateQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout + window


def test_queue_name_matches_the_sample_events(sam: dict[str, Any]) -> None:
    stack = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["global"]["parameters"]["stack_name"]
    name = sam["Resources"]["RotateQueue"]["Properties"]["QueueName"]["Fn::Sub"].replace("${AWS::StackName}", stack)
    for path in EVENTS.glob("*.json"):
        for record in json.loads(path.read_text()).get("Records", []):
            if record.get("eventSource") == "aws:sqs":
                assert record["eventSourceARN"].endswith(f":{name}"), path.name


def test_queue_policy_admits_only_our_producers(cfn: dict[str, Any]) -> None:
    policy = cfn["Resources"]["RotateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = {s["Principal"]["Service"]: s for s in policy if s["Effect"] == "Allow"}
    assert set(allows) == {"s3.amazonaws.com", "events.amazonaws.com", "sns.amazonaws.com"}
    for statement in allows.values():
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == {"Fn::GetAtt": ["RotateQueue", "Arn"]}
        assert statement.get("Condition"), statement
    s3 = allows["s3.amazonaws.com"]["Condition"]
    assert "BucketNames" in refs(s3["ArnLike"]["aws:SourceArn"])
    assert s3["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert allows["events.amazonaws.com"]["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["ObjectCreatedRule", "Arn"]
    }
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s["Condition"]) for s in policy)


def test_s3_source_condition_resolves_to_the_bucket_arns(cfn: dict[str, Any]) -> None:
    evaluate = Evaluator(cfn, SAMPLE_PARAMETERS)
    statement = evaluate(cfn["Resources"]["RotateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0])
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == [
        "arn:*:s3:::rewrap-demo-bucket",
        "arn:*:s3:::rewrap-second.bucket",
    ]


# --------------------------------------------------------------------- triggers
def test_sqs_event_source_mapping(cfn: dict[str, Any]) -> None:
    mapping = one(cfn, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["RotateQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "RotateMaxConcurrency"}}
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    # the mapping invokes the published alias, the same code an S3 Batch Operations job pins
    assert mapping["FunctionName"] == {"Ref": "RotateFunctionAliaslive"}


def test_object_created_rule_feeds_the_queue(cfn: dict[str, Any]) -> None:
    rule = cfn["Resources"]["ObjectCreatedRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": {"Ref": "BucketNames"}}},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["RotateQueue", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["RotateDeadLetterQueue", "Arn"]}
    dlq_policy = cfn["Resources"]["RotateDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Principal"] == {"Service": "events.amazonaws.com"} for s in dlq_policy if s["Effect"] == "Allow")


def test_sweep_schedule_rule_is_enabled_only_with_targets(cfn: dict[str, Any]) -> None:
    schedules = {
        n: r["Properties"]
        for n, r in of_type(cfn, "AWS::Events::Rule").items()
        if "ScheduleExpression" in r["Properties"]
    }
    (rule,) = schedules.values()
    assert rule["ScheduleExpression"] == {"Ref": "SweepSchedule"}
    assert rule["State"] == {"Fn::If": ["HasSweepTargets", "ENABLED", "DISABLED"]}
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["SweepFunction", "Arn"]}]
    assert cfn["Conditions"]["HasSweepTargets"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SweepTargets"}, ""]}]}
    permission = cfn["Resources"]["SweepFunctionSweepPermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "SweepFunction"}


def test_direct_sns_subscription_only_when_a_topic_is_given(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    subscription, permission = resources["S3EventTopicSubscription"], resources["S3EventTopicPermission"]
    assert subscription["Condition"] == permission["Condition"] == "HasS3EventTopic"
    assert cfn["Conditions"]["HasS3EventTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "S3EventTopicArn"}, ""]}]}
    alias = {"Ref": "RotateFunctionAliaslive"}
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "S3EventTopicArn"},
        "Protocol": "lambda",
        "Endpoint": alias,
    }
    assert permission["Properties"]["Principal"] == "sns.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == alias
    assert permission["Properties"]["SourceArn"] == {"Ref": "S3EventTopicArn"}


# --------------------------------------------------------------------- functions and layer
def test_layer_and_function_runtime(sam: dict[str, Any], cfn: dict[str, Any]) -> None:
    layer_name, layer = next(iter(of_type(cfn, "AWS::Lambda::LayerVersion").items()))
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    source = sam["Resources"]["RewrapLayer"]
    assert source["Properties"]["ContentUri"] == "layers/rewrap/"
    assert source["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    for name, code in (("RotateFunction", "functions/rotate/"), ("SweepFunction", "functions/sweep/")):
        assert sam["Resources"][name]["Properties"]["CodeUri"] == code
        props = cfn["Resources"][name]["Properties"]
        assert props["Handler"] == "app.lambda_handler"
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}
        assert props["Layers"] == [{"Ref": layer_name}]


def test_sweep_is_named_and_allowed_to_continue_itself(cfn: dict[str, Any]) -> None:
    sweep = cfn["Resources"]["SweepFunction"]["Properties"]
    assert sweep["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-sweep"}
    assert sweep["RecursiveLoop"] == "Allow"  # the self-continuation chain may exceed 16 hops
    assert cfn["Resources"]["RotateFunction"]["Properties"]["RecursiveLoop"] == "Terminate"
    invoke = evaluated_statements(cfn, role_of(cfn, "SweepFunction"))["ContinueInANewInvocation"]
    arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:" + Evaluator(cfn, SAMPLE_PARAMETERS)(
        sweep["FunctionName"]
    )
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == [arn, f"{arn}:*"]  # unqualified or qualified invoked_function_arn
    invokers = [(r, s["Sid"]) for r, s in statements(cfn) if "lambda:InvokeFunction" in as_list(s["Action"])]
    assert sorted(invokers) == [
        ("BatchOperationsRole", "InvokePublishedRotateVersions"),  # S3 Batch Operations invokes the rotate function
        (role_of(cfn, "SweepFunction"), "ContinueInANewInvocation"),
    ]


SHARED_VARIABLES = {
    "NCP_KMS_ENDPOINT": {"Ref": "NcpKmsEndpoint"},
    "NCP_KMS_KEY_TAG": {"Ref": "KeyTag"},
    "NCP_KMS_SECRET_ID": {"Ref": "NcpSecretArn"},
    "NCP_KMS_SIGNATURE_VERSION": {"Ref": "SignatureVersion"},
    "NCP_KMS_RATE_LIMIT": {"Ref": "KmsRateLimit"},
    "REWRAP_BUCKETS": {"Fn::Join": [",", {"Ref": "BucketNames"}]},
    "REWRAP_DRY_RUN": {"Ref": "DryRun"},
    "REWRAP_REPORT_PREFIX": {"Ref": "ReportPrefix"},
    "POWERTOOLS_SERVICE_NAME": "rewrap",
    "POWERTOOLS_METRICS_NAMESPACE": "Rewrap",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
}


DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_environment_follows_the_configuration_contract(cfn: dict[str, Any]) -> None:
    rotate = cfn["Resources"]["RotateFunction"]["Properties"]["Environment"]["Variables"]
    sweep = cfn["Resources"]["SweepFunction"]["Properties"]["Environment"]["Variables"]
    for variables in (rotate, sweep):
        assert SHARED_VARIABLES.items() <= variables.items()
        assert int(variables["REWRAP_STREAM_THRESHOLD_BYTES"]) > 0
        assert int(variables["REWRAP_CONCURRENCY"]) > 0
        assert variables["REWRAP_VERIFY"] == {"Ref": "Verify"}
        # every rewrap variable the template sets is one the configuration reference documents
        documented = set(
            re.findall(r"^\| `((?:NCP_KMS|REWRAP)_[A-Z_]+)`", (DOCS / "configuration.md").read_text(), re.MULTILINE)
        )
        assert {name for name in variables if name.startswith(("NCP_KMS_", "REWRAP_"))} <= documented
    assert rotate["REWRAP_DEAD_LETTER_QUEUE_URL"] == {"Ref": "RotateDeadLetterQueue"}
    assert sweep["REWRAP_QUEUE_URL"] == {"Ref": "RotateQueue"}
    assert sweep["REWRAP_SWEEP_TARGETS"] == {"Ref": "SweepTargets"}
    # keys per sweep message x SQS batch size bounds the objects one rotate invocation must finish
    batch = one(cfn, "AWS::Lambda::EventSourceMapping")["BatchSize"]
    assert int(sweep["REWRAP_SWEEP_KEYS_PER_MESSAGE"]) * batch <= 1000


def test_each_function_logs_to_its_own_group_with_retention(cfn: dict[str, Any]) -> None:
    for name in ("RotateFunction", "SweepFunction"):
        group_name = cfn["Resources"][name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        group = cfn["Resources"][group_name]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        logs = [
            s for r, s in statements(cfn) if r == role_of(cfn, name) and "logs:PutLogEvents" in as_list(s["Action"])
        ]
        assert [s["Resource"] for s in logs] == [{"Fn::GetAtt": [group_name, "Arn"]}]


# --------------------------------------------------------------------- least privilege
def test_no_managed_policies_and_no_star_resources_but_xray(cfn: dict[str, Any]) -> None:
    for role in of_type(cfn, "AWS::IAM::Role").values():
        assert not role["Properties"].get("ManagedPolicyArns")
    checked = 0
    for role, statement in statements(cfn):
        checked += 1
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= XRAY_ACTIONS, (role, statement)
        assert not any(a.endswith(":*") or a == "*" for a in as_list(statement["Action"])), (role, statement)
    assert checked >= 10


def test_every_granted_action_is_used_by_the_shipped_code_or_by_lambda_itself(sam: dict[str, Any]) -> None:
    calls = calls_in_shipped_code()
    assert ("s3", "copy_object") in calls and ("lambda", "invoke") in calls  # the scan finds calls at all
    used = actions_for(list(calls))
    rotate, sweep = role_actions(sam, "RotateFunctionRole"), role_actions(sam, "SweepFunctionRole")
    assert rotate - used - PLATFORM_ACTIONS == set()
    assert sweep - used - PLATFORM_ACTIONS == set()
    # and every call is granted, but the census's version listing, which runs in `rewrap census` on the
    # operator's own credentials, never in a function (a fleet census run only reads bucket versioning)
    assert used - (rotate | sweep) == {"s3:ListBucketVersions"}, calls
    # the Batch Operations role: what the service itself does with it, no more and no less (KMS only
    # for SSE-KMS manifest and report buckets, through S3)
    batch = role_actions(sam, "BatchOperationsRole")
    assert batch - {"kms:Decrypt", "kms:GenerateDataKey"} == BATCH_OPERATIONS_ACTIONS


def test_batch_job_cli_calls_are_the_documented_operator_permissions() -> None:
    # `rewrap batch-job` runs on the operator's credentials; no role of the stack grants these
    calls = calls_in_shipped_code(BATCH_JOB_CLI, OPERATOR_CALL_ACTIONS)
    assert set(calls) == set(OPERATOR_CALL_ACTIONS), calls
    documented = (DOCS / "cli.md").read_text().split("**batch-job census|rotate**", 1)[1].split("\n- ", 1)[0]
    actions = actions_for(list(calls), OPERATOR_CALL_ACTIONS)
    assert {"s3control:CreateJob", "iam:PassRole", "cloudformation:DescribeStacks"} <= actions
    for action in actions:
        assert f"`{action}`" in documented, action


def test_batch_operations_role_only_with_its_buckets(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["BatchOperationsRole"]
    assert role["Condition"] == cfn["Outputs"]["BatchOperationsRoleArn"]["Condition"] == "HasBatchOperationsBuckets"
    condition = Evaluator(cfn, SAMPLE_PARAMETERS).conditions
    assert condition["HasBatchOperationsBuckets"] is False  # the default: no role
    with_buckets = {**SAMPLE_PARAMETERS, "BatchOperationsBuckets": ["inventory-bucket"]}
    assert Evaluator(cfn, with_buckets).conditions["HasBatchOperationsBuckets"] is True
    assert cfn["Outputs"]["BatchOperationsRoleArn"]["Value"] == {"Fn::GetAtt": ["BatchOperationsRole", "Arn"]}
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "batchoperations.s3.amazonaws.com"}, "sts:AssumeRole")


def test_batch_operations_role_reads_manifests_writes_reports_and_invokes_rotate_versions(
    cfn: dict[str, Any],
) -> None:
    buckets = ["inventory-bucket", "reports.bucket"]
    granted = evaluated_statements(cfn, "BatchOperationsRole", BatchOperationsBuckets=buckets)
    arns = [f"arn:*:s3:::{b}" for b in buckets]
    invoke = granted["InvokePublishedRotateVersions"]
    # any published version or alias (a job pins one; a deploy mid-job publishes the next), never $LATEST
    assert (invoke["Action"], invoke["Resource"]) == ("lambda:InvokeFunction", "<RotateFunction.Arn>:*")
    assert (set(granted["ReadManifests"]["Action"]), granted["ReadManifests"]["Resource"]) == (
        {"s3:GetObject", "s3:GetObjectVersion"},
        [f"{arn}/*" for arn in arns],
    )
    assert (granted["WriteCompletionReports"]["Action"], granted["WriteCompletionReports"]["Resource"]) == (
        "s3:PutObject",
        [f"{arn}/*" for arn in arns],
    )
    assert granted["LocateReportBuckets"]["Resource"] == arns
    assert "UseKeysOfManifestAndReportBuckets" not in granted
    key = "arn:aws:kms:ap-northeast-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    keyed = evaluated_statements(cfn, "BatchOperationsRole", BatchOperationsBuckets=buckets, KmsKeyArns=[key])
    statement = keyed["UseKeysOfManifestAndReportBuckets"]
    assert statement["Resource"] == [key]
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == "s3.ap-northeast-2.amazonaws.com"


def test_secret_statements_name_the_secret_parameter_only(cfn: dict[str, Any]) -> None:
    secret = [(role, s) for role, s in statements(cfn) if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    # rotate calls re-encrypt; sweep probes each key's newest version with one encrypt call
    assert sorted(role for role, _ in secret) == sorted(role_of(cfn, f) for f in ("RotateFunction", "SweepFunction"))
    for _, statement in secret:
        assert statement["Action"] == "secretsmanager:GetSecretValue"
        assert statement["Resource"] == {"Ref": "NcpSecretArn"}


def test_s3_statements_reference_the_bucket_parameter(cfn: dict[str, Any]) -> None:
    s3 = [(r, s) for r, s in statements(cfn) if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    assert len(s3) >= 3
    for role, statement in s3:
        own = ("WriteAuditReports", "ReadOwnRecords", "ListOwnRecords")
        expected = "ReportPrefix" if statement["Sid"] in own else "BucketNames"
        expected = "BatchOperationsBuckets" if role == "BatchOperationsRole" else expected
        assert expected in refs(statement["Resource"]), (role, statement)


def test_queue_permissions_are_per_queue(cfn: dict[str, Any]) -> None:
    rotate = evaluated_statements(cfn, role_of(cfn, "RotateFunction"))
    sweep = evaluated_statements(cfn, role_of(cfn, "SweepFunction"))
    assert as_list(rotate["ForwardPermanentFailuresToDlq"]["Action"]) == ["sqs:SendMessage"]
    assert rotate["ForwardPermanentFailuresToDlq"]["Resource"] == "<RotateDeadLetterQueue.Arn>"
    assert rotate["ConsumeRotateQueue"]["Resource"] == "<RotateQueue.Arn>"
    assert sweep["EnqueueRotateRequests"]["Resource"] == "<RotateQueue.Arn>"
    assert as_list(sweep["EnqueueRotateRequests"]["Action"]) == ["sqs:SendMessage"]
    consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}  # what the mapping needs
    assert set(rotate["ConsumeRotateQueue"]["Action"]) == consume
    assert sweep["ReportFailedAsyncInvocations"]["Resource"] == "<SweepFailureQueue.Arn>"
    sends = [s for _, s in statements(cfn) if "sqs:SendMessage" in as_list(s["Action"])]
    assert len(sends) == 3


def test_no_arn_names_a_partition_literally() -> None:
    # an ARN takes the stack's partition (AWS::Partition) or matches any ("*": an account lives in one), so the
    # template deploys unchanged in aws, aws-cn and aws-us-gov
    text = TEMPLATE.read_text()
    assert re.findall(r"arn:aws[a-z-]*:", text) == []
    assert "arn:${AWS::Partition}:" in text and "arn:*:s3:::" in text


def test_s3_arns_name_each_bucket(cfn: dict[str, Any]) -> None:
    rotate = evaluated_statements(cfn, role_of(cfn, "RotateFunction"))
    sweep = evaluated_statements(cfn, role_of(cfn, "SweepFunction"))
    buckets = ["arn:*:s3:::rewrap-demo-bucket", "arn:*:s3:::rewrap-second.bucket"]
    assert rotate["ListBuckets"]["Resource"] == buckets
    assert sweep["ListBuckets"]["Resource"] == buckets
    assert rotate["ReadAndRewriteObjects"]["Resource"] == [f"{arn}/*" for arn in buckets]
    assert as_list(rotate["ListBuckets"]["Action"]) == ["s3:ListBucket"]
    assert set(rotate["ReadAndRewriteObjects"]["Action"]) == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
    }
    # ACLs and Object Lock settings are read and restated on every rewrite
    assert set(rotate["ReadBucketOwnership"]["Action"]) == {"s3:GetBucketOwnershipControls", "s3:GetBucketAcl"}
    assert rotate["ReadBucketOwnership"]["Resource"] == buckets
    assert set(rotate["KeepAclAndObjectLock"]["Action"]) == {
        "s3:GetObjectAcl",
        "s3:GetObjectVersionAcl",
        "s3:PutObjectAcl",
        "s3:GetObjectRetention",
        "s3:PutObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:PutObjectLegalHold",
    }
    assert rotate["KeepAclAndObjectLock"]["Resource"] == [f"{arn}/*" for arn in buckets]
    sweep_s3 = {a for s in sweep.values() for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert sweep_s3 == {"s3:ListBucket", "s3:GetBucketVersioning"}  # versioning: for a census run's verdict


def test_single_bucket_resolves_too(cfn: dict[str, Any]) -> None:
    rotate = evaluated_statements(cfn, role_of(cfn, "RotateFunction"), BucketNames=["only-bucket"])
    assert rotate["ListBuckets"]["Resource"] == ["arn:*:s3:::only-bucket"]
    assert rotate["ReadAndRewriteObjects"]["Resource"] == ["arn:*:s3:::only-bucket/*"]


@pytest.mark.parametrize(
    ("prefix", "resource"),
    [
        ("", None),
        ("s3://audit-bucket/", "arn:aws:s3:::audit-bucket/*"),
        ("s3://audit-bucket/rewrap/reports/", "arn:aws:s3:::audit-bucket/rewrap/reports/*"),
    ],
)
def test_report_writes_only_under_the_prefix(cfn: dict[str, Any], prefix: str, resource: str | None) -> None:
    rotate = evaluated_statements(cfn, role_of(cfn, "RotateFunction"), ReportPrefix=prefix)
    if resource is None:
        assert "WriteAuditReports" not in rotate
    else:
        assert rotate["WriteAuditReports"]["Action"] == "s3:PutObject"
        assert rotate["WriteAuditReports"]["Resource"] == resource


def test_kms_keys_only_when_given_and_only_through_s3_and_secrets_manager(cfn: dict[str, Any]) -> None:
    rotate, sweep = role_of(cfn, "RotateFunction"), role_of(cfn, "SweepFunction")
    assert not any(
        s["Sid"].startswith(("UseDataKeys", "DecryptSecret")) for s in evaluated_statements(cfn, rotate).values()
    )
    assert not any(s["Sid"].startswith(("UseDataKeys", "UseKeys")) for s in evaluated_statements(cfn, sweep).values())
    key = "arn:aws:kms:ap-northeast-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    statement = evaluated_statements(cfn, rotate, KmsKeyArns=[key])["UseDataKeysThroughS3AndSecretsManager"]
    assert statement["Resource"] == [key]
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
        "s3.ap-northeast-2.amazonaws.com",
        "secretsmanager.ap-northeast-2.amazonaws.com",
    ]
    # the sweep reads the secret and writes its report (a report bucket under SSE-KMS needs GenerateDataKey)
    statement = evaluated_statements(cfn, sweep, KmsKeyArns=[key])["UseKeysOfTheSecretAndTheReportBucket"]
    assert (set(statement["Action"]), statement["Resource"]) == ({"kms:Decrypt", "kms:GenerateDataKey"}, [key])
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
        "s3.ap-northeast-2.amazonaws.com",
        "secretsmanager.ap-northeast-2.amazonaws.com",
    ]


def test_xray_permissions_and_sdk_only_with_tracing_on(cfn: dict[str, Any]) -> None:
    for role in (role_of(cfn, "RotateFunction"), role_of(cfn, "SweepFunction")):
        assert "XRayWrite" not in evaluated_statements(cfn, role)
        assert set(evaluated_statements(cfn, role, Tracing="Active")["XRayWrite"]["Action"]) == XRAY_ACTIONS
    for name in ("RotateFunction", "SweepFunction"):
        variables = Evaluator(cfn, SAMPLE_PARAMETERS)(cfn["Resources"][name]["Properties"]["Environment"])
        assert variables["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
        on = Evaluator(cfn, {**SAMPLE_PARAMETERS, "Tracing": "Active"})
        assert (
            on(cfn["Resources"][name]["Properties"]["Environment"])["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "false"
        )


@pytest.mark.parametrize(("reserved", "rotate", "sweep"), [("6", "6", 1), ("0", None, None)])
def test_reserved_concurrency_caps_every_path_and_keeps_one_sweep(
    cfn: dict[str, Any], reserved: str, rotate: str | None, sweep: int | None
) -> None:
    evaluate = Evaluator(cfn, {**SAMPLE_PARAMETERS, "RotateReservedConcurrency": reserved})
    assert evaluate(cfn["Resources"]["RotateFunction"]["Properties"]).get("ReservedConcurrentExecutions") == rotate
    assert evaluate(cfn["Resources"]["SweepFunction"]["Properties"]).get("ReservedConcurrentExecutions") == sweep


def test_reserved_concurrency_defaults_cover_the_queue_and_stay_under_ncp_rate(sam: dict[str, Any]) -> None:
    parameters = sam["Parameters"]
    reserved = parameters["RotateReservedConcurrency"]["Default"]
    assert reserved >= parameters["RotateMaxConcurrency"]["Default"]  # or the SQS mapping is throttled


@pytest.mark.parametrize(("reserved", "containers"), [("6", 6), ("0", 5)])
def test_default_kms_rate_ceiling_shares_ncps_budget_among_the_containers(
    cfn: dict[str, Any], reserved: str, containers: int
) -> None:
    # The template passes the budget and the containers that may run at once; the function divides.
    evaluate = Evaluator(cfn, {**SAMPLE_PARAMETERS, "RotateReservedConcurrency": reserved})
    environment = evaluate(cfn["Resources"]["RotateFunction"]["Properties"]["Environment"]["Variables"])
    rate = ("NCP_KMS_RATE_LIMIT", "NCP_KMS_RATE_BUDGET", "REWRAP_MAX_CONTAINERS")
    settings = Settings.from_env({name: str(environment[name]) for name in rate})
    assert settings.max_containers == containers
    assert settings.kms_rate_ceiling == pytest.approx(200 / containers)
    assert settings.kms_rate_ceiling * containers <= 200  # the fleet starts within NCP's documented limit


def invoke_configs(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each function's EventInvokeConfig, by the function's logical id."""
    configs = [r["Properties"] for r in of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()]
    return {c["FunctionName"]["Ref"]: c for c in configs}


def test_failed_async_sweep_invocations_land_in_a_queue_with_an_alarm(cfn: dict[str, Any]) -> None:
    config = invoke_configs(cfn)["SweepFunction"]
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["SweepFailureQueue", "Arn"]}
    sweep = evaluated_statements(cfn, role_of(cfn, "SweepFunction"))
    assert sweep["ReportFailedAsyncInvocations"]["Resource"] == "<SweepFailureQueue.Arn>"
    alarms = [a["Properties"] for a in of_type(cfn, "AWS::CloudWatch::Alarm").values()]
    watched = [a["Dimensions"][0]["Value"] for a in alarms]
    assert {"Fn::GetAtt": ["SweepFailureQueue", "QueueName"]} in watched


def test_every_queue_states_its_maximum_message_size(cfn: dict[str, Any]) -> None:
    """What parking and the sweep keep their bodies under (rewrap.core.ports.MESSAGE_LIMIT_BYTES) is below it."""
    from rewrap.core.ports import MESSAGE_LIMIT_BYTES

    queues = of_type(cfn, "AWS::SQS::Queue")
    assert queues and {name: q["Properties"].get("MaximumMessageSize") for name, q in queues.items()} == dict.fromkeys(
        queues, 262144
    )
    assert MESSAGE_LIMIT_BYTES < 262144 - 4096  # room for the attributes, which count towards the limit


def test_failed_async_rotate_invocations_are_kept_in_the_dead_letter_queue(cfn: dict[str, Any]) -> None:
    """A direct S3, SNS or EventBridge event the rotate function refuses is kept, not forgotten."""
    config = invoke_configs(cfn)["RotateFunction"]
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["RotateDeadLetterQueue", "Arn"]}
    rotate = evaluated_statements(cfn, role_of(cfn, "RotateFunction"))
    assert rotate["ForwardPermanentFailuresToDlq"]["Resource"] == "<RotateDeadLetterQueue.Arn>"


# --------------------------------------------------------------------- alarms and outputs
def test_alarms_watch_the_dlq_and_function_errors(cfn: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in of_type(cfn, "AWS::CloudWatch::Alarm").values()]
    by_metric = {(a["MetricName"], json.dumps(a["Dimensions"][0]["Value"])): a for a in alarms}
    dlq = by_metric[
        "ApproximateNumberOfMessagesVisible", json.dumps({"Fn::GetAtt": ["RotateDeadLetterQueue", "QueueName"]})
    ]
    assert (dlq["Namespace"], dlq["ComparisonOperator"], dlq["Threshold"]) == ("AWS/SQS", "GreaterThanThreshold", 0)
    errors = by_metric["Errors", json.dumps({"Ref": "RotateFunction"})]
    assert (errors["Namespace"], errors["ComparisonOperator"], errors["Threshold"]) == (
        "AWS/Lambda",
        "GreaterThanThreshold",
        0,
    )
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for alarm in alarms:
        assert alarm["AlarmActions"] == notify
    assert cfn["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}


def test_an_alarm_watches_tokens_on_a_disabled_version(cfn: dict[str, Any]) -> None:
    alarm = cfn["Resources"]["DisabledVersionNeededAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Rewrap", "ObjectsOnDisabledVersion")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "rewrap"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]) == ("GreaterThanThreshold", 0, "Sum")
    # that the rotate function emits the metric is shown end to end in tests/integration/test_retire_e2e.py


def test_dashboard_shows_objects_kms_queues_and_sweep(cfn: dict[str, Any]) -> None:
    dashboard = one(cfn, "AWS::CloudWatch::Dashboard")
    text = dashboard["DashboardBody"]["Fn::Sub"]
    for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
        assert name.startswith("AWS::") or name.split(".")[0] in cfn["Resources"] or name == "KeyTag", name
    body = json.loads(re.sub(r"\$\{[^}]*\}", "x", text))
    metrics = {tuple(m[:4]) for w in body["widgets"] for m in w["properties"].get("metrics", [])}
    for name in (
        "ObjectsRotated",
        "ObjectsCurrent",
        "ObjectsFailedRetryable",
        "ObjectsFailedPermanent",
        "ObjectsOpaque",
    ):
        assert ("Rewrap", name, "service", "rewrap") in metrics
    for name in ("KmsRequests", "ObjectsListed", "KeysEnqueued", "ObjectsUnreadable", "ObjectsUnchangedSkipped"):
        assert ("Rewrap", name, "service", "rewrap") in metrics
    # each full rotation run's verdict, per key (the default key's widget)
    per_key = {tuple(m[:6]) for w in body["widgets"] for m in w["properties"].get("metrics", []) if len(m) > 6}
    for name in ("OldestKeyVersionInUse", "ObjectsBelowNewestVersion", "KeyVersionsRetirable", "KeyVerdictSafe"):
        assert ("Rewrap", name, "service", "rewrap", "KeyTag", "x") in per_key
    sqs = set(re.findall(r'"AWS/SQS", "(\w+)", "QueueName", "\$\{(\w+)\.QueueName\}"', text))
    assert ("ApproximateNumberOfMessagesVisible", "RotateDeadLetterQueue") in sqs  # DLQ depth
    assert ("ApproximateAgeOfOldestMessage", "RotateQueue") in sqs  # queue age
    assert cfn["Outputs"]["DashboardName"]["Value"] == {"Ref": "Dashboard"}


def test_sweep_writes_its_report_only_under_the_prefix(cfn: dict[str, Any]) -> None:
    sweep = role_of(cfn, "SweepFunction")
    assert "WriteAuditReports" not in evaluated_statements(cfn, sweep)
    assert "ReadOwnRecords" not in evaluated_statements(cfn, sweep)
    granted = evaluated_statements(cfn, sweep, ReportPrefix="s3://audit-bucket/rewrap/")
    written, read = granted["WriteAuditReports"], granted["ReadOwnRecords"]
    assert (written["Action"], written["Resource"]) == ("s3:PutObject", "arn:aws:s3:::audit-bucket/rewrap/*")
    # the checkpoints of incremental sweeps and the partials of a run to judge are read back from there, and
    # from nowhere else; the names in the report bucket are listed (is a run's every partial in?)
    assert (read["Action"], read["Resource"]) == ("s3:GetObject", "arn:aws:s3:::audit-bucket/rewrap/*")
    listed = granted["ListOwnRecords"]
    assert (listed["Action"], listed["Resource"]) == ("s3:ListBucket", "arn:aws:s3:::audit-bucket")


def test_the_sweep_announces_verdicts_to_the_alarm_topic_only(cfn: dict[str, Any]) -> None:
    sweep = role_of(cfn, "SweepFunction")
    assert "AnnounceRunVerdicts" not in evaluated_statements(cfn, sweep)
    topic = "arn:aws:sns:ap-northeast-2:123456789012:rewrap-alarms"
    announce = evaluated_statements(cfn, sweep, AlarmTopicArn=topic)["AnnounceRunVerdicts"]
    assert (announce["Action"], announce["Resource"]) == ("sns:Publish", topic)
    environment = cfn["Resources"]["SweepFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["REWRAP_ALARM_TOPIC_ARN"] == {"Ref": "AlarmTopicArn"}


def test_outputs(cfn: dict[str, Any]) -> None:
    assert {
        "RotateFunctionArn",
        "RotateFunctionVersionArn",
        "SweepFunctionArn",
        "RotateQueueUrl",
        "RotateQueueArn",
        "DeadLetterQueueUrl",
        "LayerArn",
        "BatchOperationsRoleArn",
    } <= set(cfn["Outputs"])


# --------------------------------------------------------------------- sample events
def test_every_sample_event_is_listed_and_sqs_records_are_complete() -> None:
    readme = (EVENTS / "README.md").read_text()
    files = sorted(EVENTS.glob("*.json"))
    assert len(files) >= 12
    for path in files:
        assert f"`{path.name}`" in readme
        for record in json.loads(path.read_text()).get("Records", []):
            if record.get("eventSource") != "aws:sqs":
                continue
            assert {"messageId", "receiptHandle", "body", "attributes", "md5OfBody", "awsRegion"} <= set(record)
            assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId"} <= set(record["attributes"])
