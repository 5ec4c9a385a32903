"""Every Lambda follows the contract: handler string, runtime, layer, environment."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Assembly
from tuneloop.envmodel import env_var_names

CONTRACT_FUNCTIONS = {
    "ingest",
    "retrain_trigger",
    "prepare_dataset",
    "gate",
    "register",
    "deploy",
    "confirm_deployment",
    "record_failure",
    "rollback",
}
RUNTIME_ONLY_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "LOG_LEVEL"}


def _functions(assembly: Assembly) -> dict[str, dict[str, Any]]:
    """Lambda properties by handler name (``lambdas.<name>.handler.handler``)."""
    functions = {}
    for resource in assembly.resources("AWS::Lambda::Function").values():
        props = resource["Properties"]
        name = props["Handler"].split(".")[1]
        assert name not in functions, f"two functions run {name}"
        functions[name] = props
    return functions


def test_one_function_per_contract_handler(dev: Assembly) -> None:
    functions = _functions(dev)
    assert set(functions) == CONTRACT_FUNCTIONS
    for name, props in functions.items():
        assert props["Handler"] == f"lambdas.{name}.handler.handler"
        assert props["Runtime"] == "python3.12"
        assert props["TracingConfig"] == {"Mode": "Active"}
        # Every function has the Powertools layer; only Ingest adds AWS SDK for pandas
        # (pyarrow, for Parquet drops).
        (layer,) = [x for x in props["Layers"] if "017000801446" in str(x)]
        extra = [x for x in props["Layers"] if x is not layer]
        assert len(extra) == (1 if name == "ingest" else 0), name
        assert all("AWSSDKPandas-Python312" in str(other) for other in extra), extra
        rendered = str(layer)
        assert "AWSLambdaPowertoolsPythonV3-python312-x86_64" in rendered
        assert {"Ref": "AWS::Region"} in layer["Fn::Join"][1]


def test_all_functions_share_one_code_asset(dev: Assembly) -> None:
    keys = {str(props["Code"]["S3Key"]) for props in _functions(dev).values()}
    assert len(keys) == 1


@pytest.mark.parametrize("name", sorted(CONTRACT_FUNCTIONS))
def test_environment_matches_the_handler_env_model(dev: Assembly, name: str) -> None:
    # Given the handler module named by the function's handler string (must exist)
    props = _functions(dev)[name]
    module = importlib.import_module(props["Handler"].rsplit(".", 1)[0])
    # Then the function sets exactly the variables its Env model reads
    variables = set(props["Environment"]["Variables"]) - RUNTIME_ONLY_VARIABLES
    assert variables == env_var_names(module.Env)


def test_environment_values_follow_the_stage_config(dev: Assembly, local: Assembly) -> None:
    for assembly, threshold, instance in (
        (dev, "1000", "ml.g5.xlarge"),
        (local, "5", "ml.m5.large"),
    ):
        functions = _functions(assembly)
        assert functions["ingest"]["Environment"]["Variables"]["RETRAIN_THRESHOLD"] == threshold
        deploy = functions["deploy"]["Environment"]["Variables"]
        assert deploy["SERVING_INSTANCE_TYPE"] == instance
        assert (
            deploy["ENDPOINT_NAME"]
            == functions["rollback"]["Environment"]["Variables"]["ENDPOINT_NAME"]
        )
        assert "Fn::ImportValue" in str(deploy["ROLLBACK_ALARM_NAMES"])


def test_code_asset_holds_only_lambdas_and_tuneloop(dev: Assembly) -> None:
    (props, *_) = _functions(dev).values()
    asset_hash = props["Code"]["S3Key"].removesuffix(".zip")
    root = dev.outdir / f"asset.{asset_hash}"
    top_level = {path.name for path in root.iterdir()}
    assert top_level == {"lambdas", "tuneloop"}
    files = [path.relative_to(root).as_posix() for path in root.rglob("*")]
    assert "lambdas/__init__.py" in files
    assert "tuneloop/envmodel.py" in files
    assert not [f for f in files if f.startswith("tuneloop/local")]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert Path(root, "tuneloop").is_dir()
