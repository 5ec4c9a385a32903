"""CognitoAuth: the hosted UI's URLs, the code exchange and the ID token checks, against a
locally generated RSA key and JWKS (no network)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tuneloop.console.auth import AuthError
from tuneloop.console.auth_cognito import CognitoAuth

POOL, REGION, CLIENT, SECRET = "eu-west-1_Pool123", "eu-west-1", "client-1", "s3cret"
DOMAIN = "https://tuneloop-dev-console.auth.eu-west-1.amazoncognito.com"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"
NOW = 1_800_000_000
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


def id_token(overrides: dict[str, Any] | None = None, key: RSAKey = KEY) -> str:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "token_use": "id",
        "sub": "abc",
        "cognito:username": "alice",
        "cognito:groups": ["viewer", "operator"],
        "exp": NOW + 3600,
        "iat": NOW,
    }
    claims.update(overrides or {})
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


class FakeCognito:
    def __init__(self, token: str) -> None:
        self.token = token
        self.posts: list[tuple[str, dict[str, str], dict[str, list[str]]]] = []

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
        self.posts.append((url, dict(headers), urllib.parse.parse_qs(body.decode())))
        return {"id_token": self.token, "access_token": "x", "token_type": "Bearer"}

    def get(self, url: str) -> Mapping[str, Any]:
        assert url == f"{ISSUER}/.well-known/jwks.json"
        return KeySet([KEY]).as_dict(private=False)


def auth_for(fake: FakeCognito) -> CognitoAuth:
    return CognitoAuth(
        DOMAIN, CLIENT, SECRET, POOL, REGION, post=fake.post, get=fake.get, now=lambda: NOW
    )


def test_login_url_is_the_hosted_ui_code_flow() -> None:
    url = auth_for(FakeCognito("")).login_url("st4te", "https://console.example/auth/callback")
    parsed = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parsed.query)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == f"{DOMAIN}/oauth2/authorize"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT]
    assert query["state"] == ["st4te"]
    assert query["redirect_uri"] == ["https://console.example/auth/callback"]


def test_code_exchange_posts_the_code_with_the_client_secret_and_takes_the_highest_group() -> None:
    fake = FakeCognito(id_token())
    user = auth_for(fake).exchange_code("the-code", "https://c/auth/callback")
    assert (user.name, user.role) == ("alice", "operator")
    ((url, headers, form),) = fake.posts
    assert url == f"{DOMAIN}/oauth2/token"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"client-1:s3cret").decode()
    assert form["grant_type"] == ["authorization_code"]
    assert form["code"] == ["the-code"]
    assert form["redirect_uri"] == ["https://c/auth/callback"]


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (id_token(key=OTHER_KEY), "not valid"),
        (id_token({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/other"}), "iss"),
        (id_token({"aud": "another-client"}), "aud"),
        (id_token({"token_use": "access"}), "token_use"),
        (id_token({"exp": NOW - 10}), "expired"),
        (id_token({"cognito:groups": ["staff"]}), "no console group"),
        (id_token({"cognito:groups": None}), "no console group"),
    ],
)
def test_a_token_that_is_not_for_this_console_is_refused(token: str, problem: str) -> None:
    with pytest.raises(AuthError, match=problem):
        auth_for(FakeCognito(token)).exchange_code("code", "https://c/auth/callback")


def test_admin_group_wins_and_no_passwords_are_checked_here() -> None:
    fake = FakeCognito(id_token({"cognito:groups": ["admin", "viewer"]}))
    auth = auth_for(fake)
    assert auth.exchange_code("c", "https://c/cb").role == "admin"
    assert auth.check_password("alice", "anything") is None
    assert auth.mode == "redirect"


def test_the_app_signs_in_through_the_hosted_ui_and_checks_the_state() -> None:
    from fastapi.testclient import TestClient

    from tuneloop.console.app import create_app
    from tuneloop.operations.names import PlatformNames

    names = PlatformNames(
        stage="test", raw_bucket="r", curated_bucket="c", artifacts_bucket="a",
        records_table="t", drops_table="d", model_versions_table="m", control_table="k",
        benchmarks_table="b",
    )  # fmt: skip
    fake = FakeCognito(id_token())
    app = create_app(names, auth_for(fake), secret_key="s" * 32, secure_cookies=False)
    with TestClient(app, base_url="https://console.example") as client:
        start = client.get("/login", follow_redirects=False)
        assert start.status_code == 303
        query = urllib.parse.parse_qs(urllib.parse.urlparse(start.headers["location"]).query)
        assert query["redirect_uri"] == ["https://console.example/auth/callback"]
        # A callback whose state is not the one this browser was given is refused
        forged = client.get("/auth/callback?code=c&state=forged", follow_redirects=False)
        assert forged.status_code == 403 and fake.posts == []

        again = client.get("/login", follow_redirects=False)  # a new attempt, a new state
        (sent,) = urllib.parse.parse_qs(urllib.parse.urlparse(again.headers["location"]).query)[
            "state"
        ]
        done = client.get(f"/auth/callback?code=the-code&state={sent}", follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, "/")
        ((_, _, form),) = fake.posts
        assert form["code"] == ["the-code"]
        assert 'data-testid="whoami"' in client.get("/runs").text
        replay = client.get(f"/auth/callback?code=the-code&state={sent}", follow_redirects=False)
        assert replay.status_code == 403  # the state was used up
