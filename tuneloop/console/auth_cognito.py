"""Sign-in through a Cognito user pool's hosted UI (authorization-code flow).

``exchange_code`` posts the code to ``<domain>/oauth2/token`` with the app client's secret
(HTTP Basic, as the token endpoint documents), then verifies the returned ID token against
the pool's JWKS (``https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json``):
signature (RS256), ``iss`` = the pool, ``aud`` = this client, ``token_use`` = ``id``, ``exp``.
The role is the highest of the token's ``cognito:groups``; a user in no console group is
refused. Fetching is injectable, so tests run without a network.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tuneloop.console.auth import AuthError, SignedInUser, highest_role

HttpPost = Callable[[str, Mapping[str, str], bytes], Mapping[str, Any]]
HttpGet = Callable[[str], Mapping[str, Any]]
_TIMEOUT = 10.0


def _post_json(url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise AuthError(f"the token endpoint refused the code ({exc.code})") from exc


def _get_json(url: str) -> Mapping[str, Any]:
    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
        return dict(json.loads(response.read()))


class CognitoAuth:
    mode = "redirect"

    def __init__(
        self,
        domain_url: str,
        client_id: str,
        client_secret: str,
        user_pool_id: str,
        region: str,
        *,
        post: HttpPost = _post_json,
        get: HttpGet = _get_json,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.domain_url = domain_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self._post, self._get, self._now = post, get, now
        self._keys: KeySet | None = None

    # -- the Authenticator protocol ---------------------------------------------------------
    def check_password(self, username: str, password: str) -> SignedInUser | None:
        return None  # passwords are entered on the hosted UI, never here

    def login_url(self, state: str, redirect_uri: str) -> str:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid profile",
                "state": state,
            }
        )
        return f"{self.domain_url}/oauth2/authorize?{query}"

    def logout_url(self, redirect_uri: str) -> str | None:
        query = urllib.parse.urlencode({"client_id": self.client_id, "logout_uri": redirect_uri})
        return f"{self.domain_url}/logout?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> SignedInUser:
        if not code:
            raise AuthError("no authorization code")
        basic = base64.b64encode(f"{self.client_id}:{self._client_secret}".encode()).decode()
        body = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "client_id": self.client_id,
                "code": code,
                "redirect_uri": redirect_uri,
            }
        ).encode()
        tokens = self._post(
            f"{self.domain_url}/oauth2/token",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": f"Basic {basic}",
            },
            body,
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise AuthError("the token endpoint returned no ID token")
        return self.user_from_id_token(id_token)

    # -- verification ---------------------------------------------------------------------
    def user_from_id_token(self, id_token: str) -> SignedInUser:
        claims = self._verified_claims(id_token)
        groups = claims.get("cognito:groups") or []
        role = highest_role([str(group) for group in groups])
        if role is None:
            raise AuthError("this user is in no console group (viewer, operator, admin)")
        name = str(claims.get("cognito:username") or claims.get("email") or claims["sub"])
        return SignedInUser(name=name, role=role)

    def _verified_claims(self, id_token: str) -> dict[str, Any]:
        try:
            token = jwt.decode(id_token, self._key_set(), algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise AuthError(f"the ID token is not valid: {exc}") from exc
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=int(self._now()),
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            token_use={"essential": True, "value": "id"},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise AuthError(f"the ID token is not for this console: {exc}") from exc
        return claims

    def _key_set(self) -> KeySet:
        if self._keys is None:
            self._keys = KeySet.import_key_set(
                dict(self._get(f"{self.issuer}/.well-known/jwks.json"))  # type: ignore[arg-type]
            )
        return self._keys
