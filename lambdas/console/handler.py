"""Console: the FastAPI web console behind the HTTP API (Mangum adapts its events).

Names of the tables, buckets and state machines come from ``PLATFORM_NAMES`` (set by the
Console stack from the other stacks' resources, so no ``DescribeStacks``); sign-in is the
pool's hosted UI (:class:`tuneloop.console.auth_cognito.CognitoAuth`), whose client secret
is read once per cold start from the pool, and the session key from Secrets Manager.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    platform_names: str
    user_pool_id: str
    user_pool_client_id: str
    cognito_domain_url: str
    session_secret_arn: str


@cache
def _adapter() -> Any:
    """The app, built on the first request of this execution environment."""
    from mangum import Mangum

    from tuneloop import aws
    from tuneloop.console.app import create_app
    from tuneloop.console.auth_cognito import CognitoAuth
    from tuneloop.operations.names import PlatformNames

    env = load_env(Env)
    client = aws.client("cognito-idp").describe_user_pool_client(
        UserPoolId=env.user_pool_id, ClientId=env.user_pool_client_id
    )["UserPoolClient"]
    region = env.user_pool_id.split("_", 1)[0]
    auth = CognitoAuth(
        domain_url=env.cognito_domain_url,
        client_id=env.user_pool_client_id,
        client_secret=str(client["ClientSecret"]),
        user_pool_id=env.user_pool_id,
        region=region,
    )
    secret = aws.client("secretsmanager").get_secret_value(SecretId=env.session_secret_arn)
    app = create_app(
        PlatformNames(**json.loads(env.platform_names)),
        auth,
        secret_key=str(secret["SecretString"]),
        secure_cookies=True,
    )
    return Mangum(app, lifespan="off")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(_adapter()(event, context))
