"""The console Lambda's layer holds everything the console imports, native parts included.

The layer is built for this interpreter's version (the deployed one is built for Lambda's
3.12 the same way, from the wheels PyPI publishes for it), unpacked, and imported by a
Python that sees only the standard library, the layer, the project's code and what Lambda
itself provides (boto3 in the runtime, Powertools in its managed layer). In there, a request
goes through Mangum, FastAPI and a template, and a Cognito ID token is checked with RS256.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from stacks.assets import PROJECT_ROOT
from stacks.lambda_wheels import find_wheel, lambda_tags
from stacks.python_layer import LAYERS, layer_zip_bytes

THIS_PYTHON = (sys.version_info.major, sys.version_info.minor)
# What Lambda's Python runtime and the managed Powertools layer provide, not our layer.
RUNTIME_PACKAGES = (
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3",
    "aws_lambda_powertools", "aws_xray_sdk", "wrapt",
)  # fmt: skip

IN_LAMBDA = r"""
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from mangum import Mangum
from tuneloop.console.app import create_app
from tuneloop.console.auth_cognito import CognitoAuth
from tuneloop.operations.names import PlatformNames

pool, region, client = "eu-west-1_P", "eu-west-1", "c1"
issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
claims = {"iss": issuer, "aud": client, "token_use": "id", "sub": "u1", "cognito:username": "alice",
          "cognito:groups": ["operator"], "exp": int(time.time()) + 600,
          "iat": int(time.time()) - 5}
token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
auth = CognitoAuth("https://d.auth.example", client, "s", pool, region,
                   post=lambda url, headers, body: {"id_token": token},
                   get=lambda url: KeySet([key]).as_dict(private=False))
user = auth.exchange_code("code", "https://c/auth/callback")
names = PlatformNames(stage="dev", raw_bucket="r", curated_bucket="c", artifacts_bucket="a",
                      records_table="t", drops_table="d", model_versions_table="m",
                      control_table="k", benchmarks_table="b")
handler = Mangum(create_app(names, auth, secret_key="k" * 32), lifespan="off")

def get(path):
    event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
             "headers": {"host": "c.example"}, "isBase64Encoded": False,
             "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "1.2.3.4",
                                         "protocol": "HTTP/1.1", "userAgent": "t"},
                                "domainName": "c.example", "stage": "$default"}}
    return handler(event, type("Context", (), {})())

from jinja2 import Environment
from markupsafe import _speedups
from pydantic_core import _pydantic_core
login = get("/login")
print(json.dumps({
    "user": [user.name, user.role],
    "healthz": get("/healthz")["statusCode"],
    "login": [login["statusCode"], login["headers"]["location"].split("?")[0]],
    "dashboard": get("/")["statusCode"],
    "escaped": Environment(autoescape=True).from_string("{{ x }}").render(x="<b>"),
    "files": sorted({m.__file__ for m in list(sys.modules.values())
                     if getattr(m, "__file__", None)}),
}))
"""


def _runtime_dir(target: Path) -> Path:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for name in RUNTIME_PACKAGES:
        (target / name).symlink_to(site_packages / name)
    return target


def test_the_console_imports_and_serves_from_its_layer_alone(tmp_path: Path) -> None:
    content = layer_zip_bytes(LAYERS["console"], python=THIS_PYTHON)
    zipfile.ZipFile(io.BytesIO(content)).extractall(tmp_path / "layer")
    layer = tmp_path / "layer" / "python"
    runtime = _runtime_dir(tmp_path / "runtime")
    paths = [str(layer), str(runtime), str(PROJECT_ROOT)]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", IN_LAMBDA, json.dumps(paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["user"] == ["alice", "operator"]
    assert (report["healthz"], report["dashboard"]) == (200, 303)  # signed out: to /login
    assert report["login"] == [303, "https://d.auth.example/oauth2/authorize"]
    assert report["escaped"] == "&lt;b&gt;"
    stdlib = sysconfig.get_paths()["stdlib"]
    allowed = (*paths, stdlib)
    outside = [f for f in report["files"] if not f.startswith(allowed)]
    assert outside == []
    native = [f for f in report["files"] if f.endswith(".so") and f.startswith(str(layer))]
    assert any("_pydantic_core" in f for f in native)
    assert any("cryptography" in f for f in native)


def test_only_wheels_lambda_can_load_are_taken(tmp_path: Path) -> None:
    names = [
        "pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl",
        "pkg-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
        "pkg-1.0-cp312-cp312-manylinux_2_17_aarch64.whl",
        "pkg-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
        "pkg-1.0-cp312-cp312-manylinux_2_39_x86_64.whl",  # newer glibc than Lambda's
        "pkg-2.0-cp312-cp312-manylinux_2_17_x86_64.whl",  # not the installed version
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert find_wheel("pkg", "1.0", tmp_path) is None
    (tmp_path / "pkg-1.0-cp311-abi3-manylinux_2_34_x86_64.whl").write_bytes(b"")
    found = find_wheel("pkg", "1.0", tmp_path)
    assert found is not None and found.name == "pkg-1.0-cp311-abi3-manylinux_2_34_x86_64.whl"
    assert not any(tag.platform.startswith("macosx") for tag in lambda_tags())


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_is_deterministic(layer: str) -> None:
    assert layer_zip_bytes(LAYERS[layer]) == layer_zip_bytes(LAYERS[layer])
