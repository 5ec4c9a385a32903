"""Connectors declared in the stage config become functions, schedules and narrow grants."""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from cfnlint.api import lint_file

from stacks.config import ConfigError, load_stage_config
from tests.infra.conftest import Assembly, synthesize
from tuneloop.connectors import connector_from_dict
from tuneloop.envmodel import env_var_names
from tuneloop.powertools_env import PowertoolsEnv

ACCOUNT = "123456789012"
PG_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:tuneloop/tickets-AbC123"
API_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:tuneloop/crm-XyZ789"
CONNECTORS: list[dict[str, Any]] = [
    {
        "name": "tickets-db",
        "kind": "sql",
        "schedule": "rate(1 hour)",
        "dataset": "support",
        "tags": ["helpdesk"],
        "secret_arn": PG_SECRET,
        "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
        "security_group_ids": ["sg-0123456789abcdef0"],
        "sql": {
            "engine": "postgresql",
            "host": "helpdesk.cluster-abc.eu-west-1.rds.amazonaws.com",
            "database": "helpdesk",
            "table": "tickets",
            "fields": {"text": "body"},
            "watermark_column": "updated_at",
            "key_column": "id",
        },
    },
    {
        "name": "crm-notes",
        "kind": "http",
        "schedule": "cron(0 3 * * ? *)",
        "dataset": "crm",
        "secret_arn": API_SECRET,
        "http": {
            "url": "https://crm.example.com/api/notes",
            "pagination": "cursor",
            "records_path": "data",
            "watermark_field": "updated_at",
            "since_param": "since",
            "auth_prefix": "Bearer ",
        },
    },
]


@pytest.fixture(scope="session")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assembly]:
    # Synthesis fails on any unacknowledged cdk-nag finding, so this is the nag check too.
    # The same synth opts into the Comprehend redactor (one synth for both: jsii is slow).
    yield synthesize(
        "dev",
        tmp_path_factory.mktemp("cdk-connectors"),
        connectors=CONNECTORS,
        ingest={"redactors": ["email", "comprehend"]},
    )


def _connector_functions(assembly: Assembly) -> dict[str, tuple[str, dict[str, Any]]]:
    """(logical id, properties) of the connector functions, by connector name."""
    found = {}
    template = assembly.template("Ingestion")
    for logical_id, resource in template["Resources"].items():
        props = resource["Properties"]
        if resource["Type"] == "AWS::Lambda::Function" and props["Handler"].startswith(
            "lambdas.connector."
        ):
            name = json.loads(props["Environment"]["Variables"]["CONNECTOR"])["name"]
            found[name] = (logical_id, props)
    return found


def _role_statements(assembly: Assembly, function_props: dict[str, Any]) -> list[dict[str, Any]]:
    template = assembly.template("Ingestion")
    role_id = function_props["Role"]["Fn::GetAtt"][0]
    statements = []
    for resource in template["Resources"].values():
        if (
            resource["Type"] == "AWS::IAM::Policy"
            and {"Ref": role_id} in resource["Properties"]["Roles"]
        ):
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_one_function_per_connector_with_its_settings_and_env_contract(
    assembly: Assembly,
) -> None:
    functions = _connector_functions(assembly)
    assert sorted(functions) == ["crm-notes", "tickets-db"]
    module = importlib.import_module("lambdas.connector.handler")
    for name, (_, props) in functions.items():
        variables = props["Environment"]["Variables"]
        assert set(variables) - env_var_names(PowertoolsEnv) == env_var_names(module.Env)
        declared = next(c for c in CONNECTORS if c["name"] == name)
        assert connector_from_dict(json.loads(variables["CONNECTOR"])) == connector_from_dict(
            declared
        )
        assert props["Timeout"] == 900


def test_only_the_postgresql_connector_gets_the_pg8000_layer(assembly: Assembly) -> None:
    functions = _connector_functions(assembly)
    template = assembly.template("Ingestion")
    layers = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::LayerVersion"
    }
    assert len(layers) == 1
    (layer_id,) = layers
    assert {"Ref": layer_id} in functions["tickets-db"][1]["Layers"]
    assert {"Ref": layer_id} not in functions["crm-notes"][1]["Layers"]
    # The layer asset holds pg8000 and its pure-Python dependencies under python/
    asset_hash = layers[layer_id]["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    (archive,) = assembly.outdir.glob(f"asset.{asset_hash}*")
    names = (
        zipfile.ZipFile(archive).namelist()
        if archive.is_file()
        else [p.relative_to(archive).as_posix() for p in archive.rglob("*")]
    )
    for module in ("pg8000/__init__.py", "scramp/__init__.py", "asn1crypto/__init__.py"):
        assert f"python/{module}" in names
    assert not [n for n in names if n.endswith((".pyc", "RECORD"))]


def test_schedules_invoke_their_function_with_the_connector_name(assembly: Assembly) -> None:
    functions = _connector_functions(assembly)
    schedules = _connector_schedules(assembly)
    assert len(schedules) == 2
    by_name = {}
    for resource in schedules.values():
        target = resource["Properties"]["Target"]
        by_name[json.loads(target["Input"])["connector"]] = resource["Properties"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert by_name["tickets-db"]["ScheduleExpression"] == "rate(1 hour)"
    assert by_name["crm-notes"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    for name, (logical_id, _) in functions.items():
        assert by_name[name]["Target"]["Arn"] == {"Fn::GetAtt": [logical_id, "Arn"]}


def test_grants_are_limited_to_own_prefix_state_item_and_secret(assembly: Assembly) -> None:
    functions = _connector_functions(assembly)
    for name, (_, props) in functions.items():
        statements = _role_statements(assembly, props)
        rendered = json.dumps(statements)
        dataset = next(c for c in CONNECTORS if c["name"] == name)["dataset"]
        # S3: put only under its own prefix
        s3 = [s for s in statements if any("s3:" in a for a in _actions(s))]
        assert s3 and all(
            f"/drops/{dataset}/connectors/{name}/*" in json.dumps(s["Resource"]) for s in s3
        )
        assert not [a for s in s3 for a in _actions(s) if a.startswith("s3:Get")]
        # DynamoDB: only its own Control item
        (state,) = [s for s in statements if "dynamodb:UpdateItem" in _actions(s)]
        assert state["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [f"connector#{name}"]}
        }
        # Secrets Manager: its own secret only
        own, other = (PG_SECRET, API_SECRET) if name == "tickets-db" else (API_SECRET, PG_SECRET)
        assert own in rendered and other not in rendered


def test_a_failing_connector_alarms_to_the_notify_topic(assembly: Assembly) -> None:
    functions = _connector_functions(assembly)
    alarms = [
        r["Properties"]
        for r in assembly.resources("AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("MetricName") == "Errors"
        and r["Properties"]["Namespace"] == "AWS/Lambda"
    ]
    watched = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms}
    assert watched == {logical_id for logical_id, _ in functions.values()}
    assert all(len(a["AlarmActions"]) == 1 for a in alarms)


def test_vpc_only_when_subnets_are_given(assembly: Assembly) -> None:
    functions = _connector_functions(assembly)
    vpc = functions["tickets-db"][1]["VpcConfig"]
    assert vpc == {
        "SubnetIds": CONNECTORS[0]["subnet_ids"],
        "SecurityGroupIds": CONNECTORS[0]["security_group_ids"],
    }
    assert "VpcConfig" not in functions["crm-notes"][1]


def test_cfn_lint_reports_no_errors_with_connectors(assembly: Assembly) -> None:
    path = next(assembly.outdir.glob("*-Ingestion.template.json"))
    errors = [
        f"{m.rule.id} {m.message} ({m.path})"
        for m in lint_file(path)
        if m.rule.severity.lower() == "error"
    ]
    assert errors == []


def _connector_schedules(assembly: Assembly) -> dict[str, dict[str, Any]]:
    """The Ingestion stack's schedules (the watch checks have theirs elsewhere)."""
    schedules = assembly.resources("AWS::Scheduler::Schedule")
    return {k: r for k, r in schedules.items() if k.split("/")[0].endswith("-Ingestion")}


def test_default_stages_declare_no_connectors(dev: Assembly) -> None:
    assert _connector_schedules(dev) == {}
    assert not [
        r
        for r in dev.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"].startswith("lambdas.connector.")
    ]


def test_bad_connectors_context_fails_synth_naming_the_field() -> None:
    bad = [{**CONNECTORS[1], "schedule": "hourly"}]
    with pytest.raises(ConfigError, match=r"stage 'dev': connectors\[0\]\.schedule must be"):
        load_stage_config("dev", {"connectors": json.dumps(bad)})
    twice = [CONNECTORS[1], CONNECTORS[1]]
    with pytest.raises(ConfigError, match=r"connectors\[1\]\.name 'crm-notes' is used twice"):
        load_stage_config("dev", {"connectors": twice})


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _ingest_function(assembly: Assembly) -> dict[str, Any]:
    template = assembly.template("Ingestion")
    (props,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"]["Handler"].startswith("lambdas.ingest.")
    ]
    return dict(props)


def _comprehend_grants(assembly: Assembly) -> list[dict[str, Any]]:
    statements = _role_statements(assembly, _ingest_function(assembly))
    return [s for s in statements if "comprehend" in json.dumps(s.get("Action"))]


def test_the_comprehend_redactor_gets_its_grant_only_when_a_stage_opts_in(
    assembly: Assembly, dev: Assembly
) -> None:
    # Opted in (context "ingest"): the settings name it and the role may call Comprehend
    variables = _ingest_function(assembly)["Environment"]["Variables"]
    assert json.loads(variables["INGEST_SETTINGS"])["redactors"] == ["email", "comprehend"]
    (grant,) = _comprehend_grants(assembly)  # (CDK merges it with the X-Ray statement)
    actions = grant["Action"] if isinstance(grant["Action"], list) else [grant["Action"]]
    assert [a for a in actions if a.startswith("comprehend:")] == ["comprehend:DetectPiiEntities"]
    assert (grant["Effect"], grant["Resource"]) == ("Allow", "*")
    # The default stage: patterns only, no Comprehend permission
    default = json.loads(_ingest_function(dev)["Environment"]["Variables"]["INGEST_SETTINGS"])
    assert "comprehend" not in default["redactors"]
    assert _comprehend_grants(dev) == []
