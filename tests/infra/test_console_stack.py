"""The Console stack: who may sign in and how, and what the console's role may do.

Uses the session's synthesized ``dev`` assembly (tests/infra/conftest.py)."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Assembly
from tuneloop import stack_outputs as out

Statement = dict[str, Any]
AUDIT_WRITES = {
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteTable",
    "dynamodb:PutItem",
}


def _only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == resource_type]
    return dict(resource["Properties"])


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _console_statements(assembly: Assembly) -> list[Statement]:
    template = assembly.template("Console")
    (role_id,) = [
        k
        for k, r in template["Resources"].items()
        if k.startswith("ConsoleRole") and r["Type"] == "AWS::IAM::Role"
    ]
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def _audit_logical_id(assembly: Assembly) -> str:
    """The Audit table's pinned logical id (also in the export names of other stacks)."""
    assert "AuditTable" in assembly.template("Storage")["Resources"]
    return "AuditTable"


def test_pool_has_the_three_groups_and_no_self_sign_up(dev: Assembly) -> None:
    template = dev.template("Console")
    groups = {
        r["Properties"]["GroupName"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Cognito::UserPoolGroup"
    }
    assert groups == {"viewer", "operator", "admin"}
    pool = _only(template, "AWS::Cognito::UserPool")
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 14
    assert all(
        policy[k]
        for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    )
    assert pool["MfaConfiguration"] == "ON"
    assert pool["UserPoolTier"] == "PLUS"


def test_client_has_a_secret_and_only_the_code_flow_to_the_api_callback(dev: Assembly) -> None:
    template = dev.template("Console")
    client = _only(template, "AWS::Cognito::UserPoolClient")
    assert client["GenerateSecret"] is True
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    (callback,) = client["CallbackURLs"]
    api_id = next(
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::ApiGatewayV2::Api"
    )
    assert callback == {
        "Fn::Join": ["", [{"Fn::GetAtt": [api_id, "ApiEndpoint"]}, "/auth/callback"]]
    }
    # No password flows outside the hosted UI.
    assert set(client.get("ExplicitAuthFlows", [])) <= {"ALLOW_REFRESH_TOKEN_AUTH"}
    domain = _only(template, "AWS::Cognito::UserPoolDomain")
    assert domain["Domain"] == "tuneloop-dev-console"


def test_the_function_gets_names_but_no_client_secret_and_no_session_key(dev: Assembly) -> None:
    template = dev.template("Console")
    (function,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"]["Handler"] == "lambdas.console.handler.handler"
    ]
    env = function["Environment"]["Variables"]
    assert {
        "PLATFORM_NAMES",
        "USER_POOL_ID",
        "USER_POOL_CLIENT_ID",
        "COGNITO_DOMAIN_URL",
        "SESSION_SECRET_ARN",
    } <= set(env)
    rendered = json.dumps(env)
    assert "ClientSecret" not in rendered and "SecretString" not in rendered
    assert function["Handler"] == "lambdas.console.handler.handler"
    outputs = template["Outputs"]
    assert {out.CONSOLE_URL, out.USER_POOL_ID, out.CONSOLE_ROLE} <= set(outputs)


def test_console_role_has_no_wildcard_actions_and_only_appends_to_the_audit_table(
    dev: Assembly,
) -> None:
    statements = _console_statements(dev)
    actions = {a for s in statements for a in _list(s["Action"])}
    # CDK's grant groups (s3:GetObject*, kms:GenerateDataKey*) are acknowledged in nag;
    # no action is a whole service.
    assert not [a for a in actions if a.endswith(":*") or a == "*"], actions
    audit_id = _audit_logical_id(dev)
    on_audit = {
        a for s in statements if audit_id in json.dumps(s["Resource"]) for a in _list(s["Action"])
    }
    assert on_audit & AUDIT_WRITES == {"dynamodb:PutItem"}
    assert {
        "states:StartExecution",
        "states:StopExecution",
        "states:ListExecutions",
        "lambda:InvokeFunction",
        "cloudwatch:DescribeAlarms",
        "sagemaker:DescribeEndpoint",
        "cognito-idp:DescribeUserPoolClient",
        "secretsmanager:GetSecretValue",
    } <= actions
    assert "dynamodb:DeleteItem" not in actions and "dynamodb:BatchWriteItem" not in actions


def test_console_role_reads_incidents_and_only_updates_them(dev: Assembly) -> None:
    assert "IncidentsTable" in dev.template("Storage")["Resources"]  # pinned logical id
    on_incidents: set[str] = set()
    index_read = False
    for statement in _console_statements(dev):
        resources = json.dumps(statement["Resource"])
        if "IncidentsTable" in resources:
            on_incidents |= set(_list(statement["Action"]))
            index_read |= "/index/*" in resources and "dynamodb:Query" in statement["Action"]
    # The list page Queries by_month; acknowledge and resolve are UpdateItems.
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"} <= on_incidents
    assert index_read
    assert not on_incidents & {
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }, on_incidents


def test_no_role_in_any_stack_can_change_or_delete_audit_records(dev: Assembly) -> None:
    audit_id = _audit_logical_id(dev)
    forbidden = AUDIT_WRITES - {"dynamodb:PutItem"}
    found = []
    for key, policy in {
        **dev.resources("AWS::IAM::Policy"),
        **dev.resources("AWS::IAM::ManagedPolicy"),
    }.items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Effect", "Allow") != "Allow":
                continue
            resources = json.dumps(statement.get("Resource"))
            if audit_id not in resources and statement.get("Resource") != "*":
                continue
            for action in _list(statement["Action"]):
                if (
                    action in forbidden
                    or action in ("dynamodb:*", "*")
                    or (action.endswith("*") and any(f.startswith(action[:-1]) for f in forbidden))
                ):
                    found.append((key, action))
    assert found == []
