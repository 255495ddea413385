"""Settings read from the environment: defaults, parsing, refusals, endpoint policy, sweep targets."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from rewrap.core.config import DEFAULT_ENDPOINT, SETTINGS, Settings, SweepTarget, check_endpoint
from rewrap.errors import ConfigError, PermanentError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.endpoint == DEFAULT_ENDPOINT == "https://kms.apigw.ntruss.com"
    assert settings.signature_version == "v2"
    assert settings.buckets == frozenset()
    assert settings.dry_run is False
    assert settings.sweep_targets == ()
    assert settings.sweep_modified_after is None
    assert settings.kms_max_attempts == 6
    assert settings.kms_timeout_seconds == 10.0
    assert settings.sweep_keys_per_message == 100


def test_blank_values_mean_defaults() -> None:
    settings = Settings.from_env({"NCP_KMS_ENDPOINT": "  ", "NCP_KMS_MAX_ATTEMPTS": "", "REWRAP_DRY_RUN": " "})

    assert settings.endpoint == DEFAULT_ENDPOINT
    assert settings.kms_max_attempts == 6
    assert settings.dry_run is False


def test_every_variable_is_parsed() -> None:
    env = {
        "NCP_KMS_ENDPOINT": "https://kms.apigw.gov-ntruss.com/",
        "NCP_KMS_KEY_TAG": " key-tag-1 ",
        "NCP_KMS_SECRET_ID": "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:rewrap/ncp-AbCdEf",
        "NCP_KMS_SIGNATURE_VERSION": "V1",
        "NCP_KMS_TIMEOUT_SECONDS": "2.5",
        "NCP_KMS_MAX_ATTEMPTS": "3",
        "NCP_KMS_RATE_LIMIT": "0",
        "REWRAP_BUCKETS": "alpha, beta,,gamma ",
        "REWRAP_DRY_RUN": "TRUE",
        "REWRAP_MAX_OBJECT_BYTES": "1048576",
        "REWRAP_CONCURRENCY": "4",
        "REWRAP_VERSION_CACHE_SECONDS": "30",
        "REWRAP_SECRET_CACHE_SECONDS": "0",
        "REWRAP_QUEUE_URL": "https://sqs.ap-northeast-2.amazonaws.com/123456789012/rotate",
        "REWRAP_DEAD_LETTER_QUEUE_URL": "https://sqs.ap-northeast-2.amazonaws.com/123456789012/rotate-dlq",
        "REWRAP_SWEEP_TARGETS": "alpha, s3://beta/docs/2024/",
        "REWRAP_SWEEP_KEYS_PER_MESSAGE": "50",
        "REWRAP_SWEEP_MODIFIED_AFTER": "2025-01-01T00:00:00Z",
        "REWRAP_SWEEP_MODIFIED_BEFORE": "2025-06-30T12:00:00+09:00",
        "REWRAP_SWEEP_MAX_OBJECT_BYTES": "65536",
        "REWRAP_REPORT_PREFIX": "reports/",
    }

    settings = Settings.from_env(env)

    assert settings.endpoint == "https://kms.apigw.gov-ntruss.com"  # trailing slash dropped
    assert settings.key_tag == "key-tag-1"
    assert settings.secret_id == env["NCP_KMS_SECRET_ID"]
    assert settings.signature_version == "v1"
    assert settings.kms_timeout_seconds == 2.5
    assert settings.kms_max_attempts == 3
    assert settings.kms_rate_limit == 0
    assert settings.buckets == frozenset({"alpha", "beta", "gamma"})
    assert settings.bucket_allowed("beta")
    assert not settings.bucket_allowed("delta")
    assert settings.dry_run is True
    assert settings.max_object_bytes == 1_048_576
    assert settings.concurrency == 4
    assert settings.version_cache_seconds == 30
    assert settings.secret_cache_seconds == 0
    assert settings.queue_url.endswith("/rotate")
    assert settings.dead_letter_queue_url.endswith("/rotate-dlq")
    assert settings.sweep_targets == (SweepTarget("alpha", ""), SweepTarget("beta", "docs/2024/"))
    assert settings.sweep_keys_per_message == 50
    assert settings.sweep_modified_after == datetime(2025, 1, 1, tzinfo=UTC)
    assert settings.sweep_modified_before == datetime(2025, 6, 30, 12, tzinfo=timezone(timedelta(hours=9)))
    assert settings.sweep_max_object_bytes == 65_536
    assert settings.report_prefix == "reports/"


def test_naive_timestamp_is_taken_as_utc() -> None:
    settings = Settings.from_env({"REWRAP_SWEEP_MODIFIED_AFTER": "2025-03-14T02:15:34"})

    assert settings.sweep_modified_after == datetime(2025, 3, 14, 2, 15, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("Yes", True), ("false", False), ("0", False), ("no", False)],
)
def test_dry_run_flag(value: str, expected: bool) -> None:
    assert Settings.from_env({"REWRAP_DRY_RUN": value}).dry_run is expected


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        ("NCP_KMS_SIGNATURE_VERSION", "v3", "NCP_KMS_SIGNATURE_VERSION"),
        ("NCP_KMS_TIMEOUT_SECONDS", "ten", "NCP_KMS_TIMEOUT_SECONDS"),
        ("NCP_KMS_TIMEOUT_SECONDS", "-1", "NCP_KMS_TIMEOUT_SECONDS"),
        ("NCP_KMS_MAX_ATTEMPTS", "0", "NCP_KMS_MAX_ATTEMPTS"),
        ("NCP_KMS_RATE_LIMIT", "fast", "NCP_KMS_RATE_LIMIT"),
        ("REWRAP_CONCURRENCY", "0", "REWRAP_CONCURRENCY"),
        ("REWRAP_CONCURRENCY", "-4", "REWRAP_CONCURRENCY"),
        ("REWRAP_MAX_OBJECT_BYTES", "1MB", "REWRAP_MAX_OBJECT_BYTES"),
        ("REWRAP_DRY_RUN", "maybe", "REWRAP_DRY_RUN"),
        ("REWRAP_SWEEP_MODIFIED_AFTER", "yesterday", "REWRAP_SWEEP_MODIFIED_AFTER"),
        ("REWRAP_SWEEP_MODIFIED_BEFORE", "2025-13-01", "REWRAP_SWEEP_MODIFIED_BEFORE"),
        ("REWRAP_SWEEP_TARGETS", "s3:///prefix-only", "sweep target"),
        ("NCP_KMS_ENDPOINT", "kms.apigw.ntruss.com", "NCP_KMS_ENDPOINT"),
    ],
)
def test_bad_values_are_config_errors(name: str, value: str, mentions: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})

    assert mentions in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "config"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError):
        Settings(signature_version="v9")
    with pytest.raises(ConfigError):
        Settings(endpoint="http://kms.apigw.ntruss.com")


# --- endpoint policy -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://kms.apigw.ntruss.com",
        "https://ocapi.ncloud.com/",
        "https://kms.example.internal:8443",
        "http://127.0.0.1:8787",
        "http://127.5.6.7:80",
        "http://[::1]:8787",
        "http://localhost:8787",
        "http://LOCALHOST:8787",
    ],
)
def test_accepted_endpoints(endpoint: str) -> None:
    check_endpoint(endpoint)
    assert Settings.from_env({"NCP_KMS_ENDPOINT": endpoint}).endpoint == endpoint.rstrip("/")


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://kms.apigw.ntruss.com",
        "http://10.0.0.5:8787",
        "http://192.168.1.1",
        "http://0.0.0.0:8787",
        "http://[::]:8787",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "ftp://127.0.0.1",
        "https://",
        "http://",
        "kms.apigw.ntruss.com",
        "",
    ],
)
def test_refused_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="https"):
        check_endpoint(endpoint)


# --- sweep targets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bucket", SweepTarget("bucket", "")),
        ("bucket/", SweepTarget("bucket", "")),
        ("bucket/a/b/", SweepTarget("bucket", "a/b/")),
        ("s3://bucket", SweepTarget("bucket", "")),
        ("s3://bucket/logs/2025", SweepTarget("bucket", "logs/2025")),
        ("  s3://bucket/x  ", SweepTarget("bucket", "x")),
    ],
)
def test_sweep_target_parse(text: str, expected: SweepTarget) -> None:
    assert SweepTarget.parse(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "s3://", "/prefix", "s3:///prefix"])
def test_sweep_target_without_bucket(text: str) -> None:
    with pytest.raises(ConfigError, match="no bucket"):
        SweepTarget.parse(text)


def test_no_sweep_targets_when_list_is_blank() -> None:
    assert Settings.from_env({"REWRAP_SWEEP_TARGETS": " , ,"}).sweep_targets == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NCP_KMS_MAX_ATTEMPTS", "inf"),
        ("NCP_KMS_MAX_ATTEMPTS", "nan"),
        ("REWRAP_CONCURRENCY", "1e400"),
        ("NCP_KMS_TIMEOUT_SECONDS", "nan"),
        ("NCP_KMS_TIMEOUT_SECONDS", "0"),  # every KMS request would end in OutOfTimeError
        ("NCP_KMS_RATE_LIMIT", "nan"),
        ("REWRAP_SWEEP_KEYS_PER_MESSAGE", "1001"),  # the rotate function refuses requests over 1000 keys
    ],
)
def test_values_that_would_break_the_service_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


# --- the one table of settings ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("REWRAP_CONCURRENCY", "1.9", "a whole number from 1 to 256"),
        ("NCP_KMS_MAX_ATTEMPTS", "2.99", "a whole number from 1 to 20"),
        ("REWRAP_SWEEP_PAGE_SIZE", "0", "from 1 to 1000"),
        ("REWRAP_SEGMENT_BYTES", "1048576", "from 6 MiB to 5 GiB"),
        ("NCP_KMS_API", "4.0", "one of 1.0, 2.0, v3"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value) == f"{name}={value!r} is not allowed: it must be {allowed}"


def test_direct_construction_checks_types_and_bounds_from_the_same_table() -> None:
    with pytest.raises(ConfigError, match="REWRAP_CONCURRENCY"):
        Settings(concurrency=1.5)  # type: ignore[arg-type]  # a float where an integer belongs
    with pytest.raises(ConfigError, match="REWRAP_SWEEP_PAGE_SIZE"):
        Settings(sweep_page_size=0)


def test_every_settings_field_has_exactly_one_row_in_the_table() -> None:
    assert [f.name for f in fields(Settings)] == [s.name for s in SETTINGS]
    assert len({s.variable for s in SETTINGS}) == len(SETTINGS)
    assert Settings() == Settings(**{s.name: s.default for s in SETTINGS})


def test_template_environment_uses_known_variables_with_valid_values() -> None:
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    environments = [template["Globals"]["Function"]["Environment"]["Variables"]] + [
        r["Properties"].get("Environment", {}).get("Variables", {})
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    ]
    by_variable = {s.variable: s for s in SETTINGS}
    checked = 0
    for variables in environments:
        for name, value in variables.items():
            if not name.startswith(("NCP_", "REWRAP_")):
                continue
            assert name in by_variable, name
            if isinstance(value, str):  # a literal, not a parameter reference
                by_variable[name].check(by_variable[name].read({name: value}))
                checked += 1
    assert checked >= 3


def test_every_setting_is_reachable_from_the_template_with_the_same_default_and_bounds() -> None:
    """A setting the template cannot set is a setting no deployment can use: each variable is in a function's
    environment, and a parameter behind it offers the setting's default within the setting's bounds."""
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    environment: dict[str, object] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            environment.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
    assert {s.variable for s in SETTINGS} - set(environment) == set()
    for setting in SETTINGS:
        value = environment[setting.variable]
        if not (isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]):
            continue
        parameter = template["Parameters"][value["Ref"]]
        default = str(parameter.get("Default", ""))
        if setting.default in ("", None, (), frozenset()):  # derived at run time (the endpoint from the API)
            continue
        assert setting.read({setting.variable: default}) == setting.default, setting.variable
        if setting.low is not None and "MinValue" in parameter:
            assert parameter["MinValue"] >= setting.low and parameter.get("MaxValue", setting.high) <= setting.high


def test_the_configuration_reference_is_what_the_settings_and_the_template_render() -> None:
    from tools.configuration_doc import PAGE, render

    assert PAGE.read_text() == render(), "docs/configuration.md is stale: run `make docs`"
