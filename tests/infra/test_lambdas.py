"""Every Lambda follows the contract: handler string, runtime, layer, environment, and
Powertools wired as its docs show (a Tracer where tracing is active)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import PROJECT_ROOT, Assembly
from tuneloop.envmodel import env_var_names
from tuneloop.powertools_env import PowertoolsEnv

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
    "console",
    "benchmark_run",
    "continuous_evaluation",
    "drift_check",
    "incidents",
}
# Read by Powertools itself, not by the handler's Env model.
POWERTOOLS_VARIABLES = env_var_names(PowertoolsEnv)
HANDLER_MODULES = sorted(p.parent.name for p in (PROJECT_ROOT / "lambdas").glob("*/handler.py"))


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
        # Every function has the Powertools layer; Ingest adds AWS SDK for pandas (pyarrow,
        # for Parquet drops), the console its own layer (FastAPI and the rest, built here).
        (layer,) = [x for x in props["Layers"] if "017000801446" in str(x)]
        extra = [x for x in props["Layers"] if x is not layer]
        if name == "ingest":
            assert ["AWSSDKPandas-Python312" in str(other) for other in extra] == [True]
        elif name == "console":
            assert [str(other.get("Ref", "")).startswith("ConsoleLayer") for other in extra] == [
                True
            ]
        else:
            assert extra == [], name
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
    # Then the function sets exactly the variables its Env model reads, plus Powertools'
    variables = props["Environment"]["Variables"]
    assert set(variables) == env_var_names(module.Env) | POWERTOOLS_VARIABLES
    # with this function's service name and the stage's metrics namespace
    expected = PowertoolsEnv.for_function(name, stage="dev").variables()
    assert {key: variables[key] for key in POWERTOOLS_VARIABLES} == expected
    assert expected["POWERTOOLS_METRICS_NAMESPACE"] == "TuneLoop/dev"


def _powertools_wiring(name: str) -> tuple[dict[str, str], set[str]]:
    return _wiring((PROJECT_ROOT / "lambdas" / name / "handler.py").read_text())


def _wiring(source: str) -> tuple[dict[str, str], set[str]]:
    """Of a handler module: its module-level Powertools objects (variable → class:
    ``Logger``, ``Tracer``, ``Metrics``) and the decorators of ``handler``."""
    tree = ast.parse(source)
    objects = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in {"Logger", "Tracer", "Metrics"}
        ):
            for target in node.targets:
                assert isinstance(target, ast.Name)
                objects[target.id] = node.value.func.id
    (handler,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "handler"]
    return objects, {ast.unparse(d) for d in handler.decorator_list}


def _decorates(objects: dict[str, str], decorators: set[str], kind: str, method: str) -> bool:
    return any(f"{var}.{method}" in decorators for var, cls in objects.items() if cls == kind)


def test_every_function_with_active_tracing_has_a_tracer_in_its_handler(dev: Assembly) -> None:
    # Given the synthesized functions with X-Ray active tracing
    traced = [n for n, p in _functions(dev).items() if p["TracingConfig"] == {"Mode": "Active"}]
    assert traced
    for name in traced:
        # Then the handler module creates a Tracer and it captures the handler
        objects, decorators = _powertools_wiring(name)
        assert _decorates(objects, decorators, "Tracer", "capture_lambda_handler"), name


@pytest.mark.parametrize("name", HANDLER_MODULES)
def test_every_handler_module_wires_logger_tracer_and_metrics(name: str) -> None:
    # Given any handler (PythonFunction gives every function active tracing, the
    # connector functions too, which only stages with connectors synthesize)
    objects, decorators = _powertools_wiring(name)
    # Then its logger gets the Lambda context and its tracer captures the invocation
    assert _decorates(objects, decorators, "Logger", "inject_lambda_context"), decorators
    assert _decorates(objects, decorators, "Tracer", "capture_lambda_handler"), decorators
    # and metrics, where it has them, are flushed (as EMF) at the end of each invocation
    if "Metrics" in objects.values():
        assert _decorates(objects, decorators, "Metrics", "log_metrics"), decorators


def test_the_wiring_check_sees_a_handler_without_a_tracer() -> None:
    # Given a handler whose tracer is created but does not capture the handler
    source = (
        "logger = Logger()\ntracer = Tracer()\n"
        "@logger.inject_lambda_context\ndef handler(event, context):\n    return {}\n"
    )
    # When its wiring is read
    objects, decorators = _wiring(source)
    # Then the check finds the missing capture, and the logger's decorator
    assert objects == {"logger": "Logger", "tracer": "Tracer"}
    assert not _decorates(objects, decorators, "Tracer", "capture_lambda_handler")
    assert _decorates(objects, decorators, "Logger", "inject_lambda_context")


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
