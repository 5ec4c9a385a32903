"""The retrain state machine matches the contract's table."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from stacks.config import load_stage_config
from tests.infra.conftest import Assembly

CONTRACT_STATES = {
    "PrepareDataset",
    "Train",
    "Evaluate",
    "Gate",
    "GateDecision",
    "Register",
    "Deploy",
    "WaitForEndpoint",
    "CheckEndpoint",
    "EndpointReady",
    "ConfirmDeployment",
    "Notify",
    "NotifyRejected",
    "Rejected",
    "RecordFailure",
    "NotifyFailure",
    "Failed",
}
RESULT_PATHS = {
    "PrepareDataset": "$.dataset",
    "Train": "$.train",
    "Evaluate": "$.evaluation",
    "Gate": "$.gate",
    "Register": "$.registration",
    "Deploy": "$.deployment",
    "CheckEndpoint": "$.endpoint",
    "ConfirmDeployment": "$.confirmation",
}


def _definition(assembly: Assembly) -> tuple[dict[str, Any], dict[str, Any]]:
    """(definition with CloudFormation expressions as ``"<cfn>"`` strings, state machine
    properties)."""
    machine = assembly.state_machine("Retrain")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "<cfn>" for part in parts)
    return json.loads(text), machine["Properties"]


@pytest.fixture(scope="module")
def states(dev: Assembly) -> dict[str, Any]:
    return dict(_definition(dev)[0]["States"])


def test_every_contract_state_exists(dev: Assembly, states: dict[str, Any]) -> None:
    assert _definition(dev)[0]["StartAt"] == "PrepareDataset"
    assert set(states) >= CONTRACT_STATES
    # The additions: $.error for an endpoint that ended Failed/OutOfService, and the end of
    # a run whose deployment a freeze held.
    assert set(states) - CONTRACT_STATES == {"EndpointFailed", "DeploymentHeld", "HeldByFreeze"}


def test_every_task_catches_everything_into_the_failure_path(states: dict[str, Any]) -> None:
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}
    assert len(tasks) == 12
    for name, state in tasks.items():
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        assert catch["ResultPath"] == "$.error", name
        expected = {"RecordFailure": "NotifyFailure", "NotifyFailure": "Failed"}.get(
            name, "RecordFailure"
        )
        assert catch["Next"] == expected, name
        assert state.get("Retry"), name
    assert states["RecordFailure"]["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_steps_write_results_under_their_own_keys(states: dict[str, Any]) -> None:
    for name, path in RESULT_PATHS.items():
        assert states[name]["ResultPath"] == path, name


def test_happy_rejected_and_polling_paths(states: dict[str, Any]) -> None:
    chain = ["PrepareDataset", "Train", "Evaluate", "Gate", "GateDecision"]
    for current, following in itertools.pairwise(chain):
        assert states[current]["Next"] == following
    (approved,) = states["GateDecision"]["Choices"]
    assert approved == {"Variable": "$.gate.approved", "BooleanEquals": True, "Next": "Register"}
    assert states["GateDecision"]["Default"] == "NotifyRejected"
    assert states["NotifyRejected"]["Next"] == "Rejected"
    assert states["Rejected"]["Type"] == "Succeed"
    assert states["Register"]["Next"] == "Deploy"
    assert states["Deploy"]["Next"] == "DeploymentHeld"
    held = states["DeploymentHeld"]
    (frozen,) = held["Choices"]
    assert frozen["Next"] == "HeldByFreeze"
    assert {"Variable": "$.deployment.held", "BooleanEquals": True} in frozen["And"]
    assert states["HeldByFreeze"]["Type"] == "Succeed"
    assert held["Default"] == "WaitForEndpoint"
    assert states["WaitForEndpoint"]["Next"] == "CheckEndpoint"
    assert states["CheckEndpoint"]["Next"] == "EndpointReady"
    ready = states["EndpointReady"]
    assert ready["Choices"][0] == {
        "Variable": "$.endpoint.status",
        "StringEquals": "InService",
        "Next": "ConfirmDeployment",
    }
    assert ready["Choices"][1]["Next"] == "EndpointFailed"
    assert ready["Default"] == "WaitForEndpoint"
    assert states["EndpointFailed"]["Next"] == "RecordFailure"
    assert states["ConfirmDeployment"]["Next"] == "Notify"
    assert states["Notify"]["End"] is True


def test_check_endpoint_is_an_sdk_call(states: dict[str, Any]) -> None:
    check = states["CheckEndpoint"]
    assert check["Resource"] == "arn:<cfn>:states:::aws-sdk:sagemaker:describeEndpoint"
    assert check["Parameters"] == {"EndpointName.$": "$.deployment.endpoint_name"}
    assert check["ResultSelector"] == {
        "status.$": "$.EndpointStatus",
        "endpoint_config_name.$": "$.EndpointConfigName",
    }


def test_train_and_evaluate_are_script_mode_training_jobs(states: dict[str, Any]) -> None:
    for name, suffix, program in (
        ("Train", "train", "train.py"),
        ("Evaluate", "eval", "evaluate.py"),
    ):
        state = states[name]
        assert state["Resource"] == "arn:<cfn>:states:::sagemaker:createTrainingJob.sync"
        params = state["Parameters"]
        assert params["TrainingJobName.$"] == f"States.Format('{{}}-{suffix}', $$.Execution.Name)"
        hyper = params["HyperParameters"]
        assert hyper["sagemaker_program"] == program
        assert hyper["sagemaker_submit_directory"] == "<cfn>"
        assert all(isinstance(v, str) for v in hyper.values())
        assert params["OutputDataConfig"]["S3OutputPath"] == "s3://<cfn>/jobs/"
        assert "huggingface-pytorch-training" in params["AlgorithmSpecification"]["TrainingImage"]
    train = states["Train"]
    assert train["ResultSelector"] == {
        "job_name.$": "$.TrainingJobName",
        "model_data.$": "$.ModelArtifacts.S3ModelArtifacts",
    }
    train_channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
        for c in train["Parameters"]["InputDataConfig"]
    }
    assert train_channels == {
        "train": "$.dataset.train_s3_uri",
        "replay": "$.dataset.replay_s3_uri",
    }
    assert set(train["Parameters"]["HyperParameters"]) >= {
        "base_model",
        "max_steps",
        "learning_rate",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "max_seq_length",
        "per_device_batch_size",
        "seed",
        "sharding",
    }
    # Every stage training setting reaches train.py as the string it parses.
    stage_settings = load_stage_config("dev", {}).training.as_hyperparameters()
    hyper = train["Parameters"]["HyperParameters"]
    assert {name: hyper[name] for name in stage_settings} == stage_settings
    assert hyper["sharding"] == "none"
    evaluate = states["Evaluate"]
    assert evaluate["ResultSelector"] == {
        "job_name.$": "$.TrainingJobName",
        "output_path.$": "$.OutputDataConfig.S3OutputPath",
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
        for c in evaluate["Parameters"]["InputDataConfig"]
    }
    assert channels == {
        "candidate": "$.train.model_data",
        "benchmarks": "$.dataset.benchmarks_s3_uri",
        "heldout": "$.dataset.heldout_s3_uri",
    }
    hyper = evaluate["Parameters"]["HyperParameters"]
    assert hyper["champion_model_data.$"] == "$.dataset.champion_model_data"
    assert hyper["compare_base"] == "true"  # a first model is compared with its base
    assert {"mmlu_subset_size", "seed"} <= set(hyper)


def test_local_stage_uses_tiny_numbers(local: Assembly) -> None:
    states = _definition(local)[0]["States"]
    assert states["WaitForEndpoint"]["Seconds"] == 2
    train = states["Train"]["Parameters"]["HyperParameters"]
    assert train["max_steps"] == "20"
    assert train["base_model"] == "smollm2-135m-instruct"
    assert states["Evaluate"]["Parameters"]["HyperParameters"]["mmlu_subset_size"] == "50"


def test_logging_and_tracing(dev: Assembly) -> None:
    props = _definition(dev)[1]
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_endpoint_ready_ends_the_wait_on_every_terminal_failure_status(
    states: dict[str, Any],
) -> None:
    # Given the statuses DescribeEndpoint reports that no longer change by waiting
    # (SageMaker API reference, DescribeEndpoint: EndpointStatus)
    terminal = {"Failed", "OutOfService", "UpdateRollbackFailed"}
    ready = states["EndpointReady"]
    # Then each of them leads to EndpointFailed, and only transitional ones wait
    failing = {
        condition["StringEquals"]
        for choice in ready["Choices"]
        if choice["Next"] == "EndpointFailed"
        for condition in choice.get("Or", [choice])
    }
    assert failing == terminal
    waiting = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
    assert not waiting & failing
    assert ready["Default"] == "WaitForEndpoint"


def test_endpoint_failed_names_the_endpoint_and_its_status(states: dict[str, Any]) -> None:
    failed = states["EndpointFailed"]
    assert failed["Parameters"]["Error"] == "EndpointNotInService"
    cause = failed["Parameters"]["Cause.$"]
    assert cause.startswith("States.Format('endpoint {} is {};")
    # one quoted template: an apostrophe inside would end the intrinsic's string early
    assert cause.count("'") == 2
    assert cause.endswith("$.deployment.endpoint_name, $.endpoint.status)")


def test_logs_hold_every_transition_but_no_execution_data(dev: Assembly) -> None:
    props = _definition(dev)[1]
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_every_log_group_is_encrypted_with_a_key_logs_may_use(
    stage: str, request: pytest.FixtureRequest
) -> None:
    # Given every log group of every stack
    assembly: Assembly = request.getfixturevalue(stage)
    for stack, template in assembly.templates.items():
        resources = template["Resources"]
        for name, group in resources.items():
            if group["Type"] != "AWS::Logs::LogGroup":
                continue
            # Then it names a key of its own stack ...
            key_ref = group["Properties"].get("KmsKeyId")
            assert key_ref, f"{stack}/{name} is not KMS-encrypted"
            key_id, attribute = key_ref["Fn::GetAtt"]
            assert (resources[key_id]["Type"], attribute) == ("AWS::KMS::Key", "Arn")
            # ... whose policy lets this region's CloudWatch Logs use it, for this
            # account's log groups only (kms:EncryptionContext:aws:logs:arn)
            (statement,) = [
                s
                for s in resources[key_id]["Properties"]["KeyPolicy"]["Statement"]
                if "logs." in json.dumps(s.get("Principal", {}))
            ]
            assert statement["Principal"]["Service"] == {
                "Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]
            }
            assert {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(
                statement["Action"]
            )
            context = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
            assert json.dumps(context).endswith(':log-group:*"]]}')


def test_the_benchmark_run_machine_prepares_evaluates_and_records(dev: Assembly) -> None:
    machine = dev.state_machine("BenchmarkRunMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(p if isinstance(p, str) else "<cfn>" for p in parts))
    states = definition["States"]
    assert definition["StartAt"] == "Prepare"
    assert [states[s].get("Next") for s in ("Prepare", "Evaluate", "Record")] == [
        "Evaluate",
        "Record",
        "Recorded",
    ]
    for name in ("Prepare", "Evaluate", "Record"):
        (catch,) = states[name]["Catch"]
        assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "Failed")
    assert states["Prepare"]["Parameters"]["step"] == "prepare"
    assert states["Record"]["Parameters"]["step"] == "record"
    evaluate = states["Evaluate"]["Parameters"]
    assert evaluate["TrainingJobName.$"] == "States.Format('{}-eval', $$.Execution.Name)"
    assert evaluate["HyperParameters"]["sagemaker_program"] == "evaluate.py"
    assert evaluate["HyperParameters"]["champion_model_data"] == ""  # no comparison
    assert "compare_base" not in evaluate["HyperParameters"]  # nor with the base model
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
        for c in evaluate["InputDataConfig"]
    }
    assert channels == {
        "candidate": "$.prepared.model_data",
        "benchmarks": "$.prepared.benchmarks_s3_uri",
    }
