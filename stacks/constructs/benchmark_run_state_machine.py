"""The benchmark run state machine: one suite scored on one model version, by a person.

Input: ``{"model_version", "suite", "version"}`` (``tuneloop.operations.actions``), and from
continuous evaluation also ``"trigger": "scheduled"`` and the suite's ``"baseline"``
(``tuneloop.watch.evaluation``): Prepare gets the whole input, so optional keys need no path.

Prepare → Evaluate (the retrain run's evaluate.py job, no champion) → Record → Recorded
every task: Catch States.ALL into $.error ─▶ Failed

Prepare and Record are the BenchmarkRun function (tuneloop/benchmarks/runs.py); the job is
named ``<execution name>-eval`` and its report is read the way the gate reads it. The score
lands on the version item's ``benchmark_runs``; a failure ends the execution as failed with
the step's error and cause (the console's benchmark page lists the runs and their status).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.endpoint_deployment import lambda_task
from stacks.constructs.retrain_state_machine import acknowledge_job_machine_role, training_job
from stacks.constructs.state_machine import logged_state_machine

_P = sfn.JsonPath


class BenchmarkRunStateMachine(Construct):
    """The state machine, its log group and its role's permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        function: lambda_.IFunction,
        sagemaker_role: iam.IRole,
        training_image_uri: str,
        submit_directory: str,
        artifacts: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        run_id = _P.string_at("$$.Execution.Name")
        prepare = lambda_task(
            self,
            "Prepare",
            function,
            {
                "step": "prepare",
                "run_id": run_id,
                "request": _P.entire_payload,
            },
            result_path="$.prepared",
        )
        evaluate = training_job(
            self,
            "Evaluate",
            config=config,
            role=sagemaker_role,
            image_uri=training_image_uri,
            submit_directory=submit_directory,
            artifacts=artifacts,
            program="evaluate.py",
            name_suffix="eval",
            channels={
                "candidate": "$.prepared.model_data",
                "benchmarks": "$.prepared.benchmarks_s3_uri",
            },
            hyperparameters={
                "champion_model_data": "",
                "mmlu_subset_size": _P.string_at("$.prepared.mmlu_subset_size"),
                "seed": str(config.evaluation.seed),
            },
            result_selector={
                "job_name": _P.string_at("$.TrainingJobName"),
                "output_path": _P.string_at("$.OutputDataConfig.S3OutputPath"),
            },
            result_path="$.evaluation",
        )
        record = lambda_task(
            self,
            "Record",
            function,
            {
                "step": "record",
                "run_id": run_id,
                "prepared": _P.object_at("$.prepared"),
                "evaluation": _P.object_at("$.evaluation"),
            },
            result_path="$.score",
        )
        failed = sfn.Fail(self, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        for task in (prepare, evaluate, record):
            task.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.error")
        definition = prepare.next(evaluate).next(record).next(sfn.Succeed(self, "Recorded"))
        self.state_machine, self.log_group = logged_state_machine(
            self,
            definition=definition,
            comment="TuneLoop benchmark run: one suite on one model version",
            timeout=Duration.hours(config.execution_timeout_hours),
            config=config,
        )
        acknowledge_job_machine_role(
            self.state_machine,
            [function],
            job_names="Evaluation job names are '<execution name>-eval'",
        )
