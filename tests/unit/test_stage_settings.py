"""One validation for every setting: the stage config checks the gate policy and the LMI
options with the code that reads them at run time, and every key it does not know (in the
context, an override or a nested settings object) fails naming the closest valid one."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from test_connectors_settings import sql_connector

from stacks.config import (
    CONTEXT_KEYS,
    OVERRIDABLE_FIELDS,
    SERVING_BACKENDS,
    ConfigError,
    config_from_context,
    load_stage_config,
)
from tuneloop.datasets import SplitSettings
from tuneloop.gating.policy import GatePolicy, SuitePolicy, parse_policy
from tuneloop.release.lmi import LmiOptionsError, LmiSettings
from tuneloop.release.serving_container import BACKENDS
from tuneloop.settings_keys import closest_key, did_you_mean


def with_suite(suite: SuitePolicy) -> GatePolicy:
    return GatePolicy(suites=(suite,))


# --- the gate policy: what the Gate would reject fails the stage config ----------------


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (
            SuitePolicy(name="mmlu", role="general", metric="accuracy", delta=0.05),
            "gate_policy.suites.mmlu.metric: one of acc, acc_norm, perplexity",
        ),
        (
            SuitePolicy(name="heldout", role="target", metric="perplexity", min_gain=0.1),
            "gate_policy.suites.heldout.role: 'target' is not available for perplexity",
        ),
        (
            SuitePolicy(name="mmlu", role="general", delta=0.05, floor=0.5),
            "gate_policy.suites.mmlu.floor: unknown field for role 'general'",
        ),
        (
            SuitePolicy(name="faq", role="must_pass"),
            "gate_policy.suites.faq.floor: required for role 'must_pass'",
        ),
    ],
)
def test_a_policy_the_gate_rejects_fails_the_stage_config(suite: SuitePolicy, message: str) -> None:
    # Given a stage whose policy the Gate would refuse at run time
    dev = load_stage_config("dev")
    # When the config is built, Then it fails naming the field, as the Gate would
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(dev, gate_policy=with_suite(suite))
    assert str(raised.value).startswith("stage 'dev': ")
    assert message in str(raised.value)


def test_the_stage_policy_is_what_the_gate_reads() -> None:
    for stage in ("dev", "prod", "local"):
        policy = load_stage_config(stage).gate_policy
        assert parse_policy(policy.to_json()).to_dict() == policy.to_dict()


def test_a_gate_policy_from_context_is_parsed_by_the_gate_parser() -> None:
    # Given a company's own policy passed as context (JSON text, as -c gives it)
    raw = {"suites": {"faq": {"role": "must_pass", "metric": "acc_norm", "floor": 0.7}}}
    config = load_stage_config("dev", {"gate_policy": json.dumps(raw)})
    assert [(s.name, s.floor) for s in config.gate_policy.suites] == [("faq", 0.7)]
    # When a field is misspelled, Then it fails naming it and the closest valid field
    raw["suites"]["faq"]["flor"] = raw["suites"]["faq"].pop("floor")
    with pytest.raises(ConfigError, match=r"suites.faq.flor: unknown field .*did you mean 'floor'"):
        load_stage_config("dev", {"gate_policy": raw})


# --- the LMI options: the Deploy Lambda's own check -------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dtype": "fp8"}, "lmi.dtype must be bf16/fp16/auto, got 'fp8'"),
        ({"max_loras": 0}, "lmi.max_loras must be an integer > 0, got 0"),
        ({"adapter_name": "a b"}, "lmi.adapter_name must be 1-64 letters"),
        ({"max_lora_rank": 17}, "lmi.max_lora_rank must be one of"),
    ],
)
def test_bad_lmi_options_fail_the_stage_config_and_the_deploy_lambda(
    change: dict[str, Any], message: str
) -> None:
    dev = load_stage_config("dev")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        dataclasses.replace(dev, lmi=dataclasses.replace(dev.lmi, **change))
    # The same values in LMI_OPTIONS fail the Deploy Lambda with the same words
    body = {**json.loads(dev.lmi.to_json()), **change}
    with pytest.raises(LmiOptionsError, match=message.removeprefix("lmi.").replace("(", r"\(")):
        LmiSettings.from_json(json.dumps(body))


def test_a_misspelled_lmi_option_names_the_closest_one() -> None:
    with pytest.raises(LmiOptionsError, match=r"max_lora_rnk is not an option \(did you mean"):
        LmiSettings.from_json('{"max_lora_rnk": 32}')


def test_the_stage_lmi_options_are_lmi_settings() -> None:
    options = load_stage_config("dev").lmi
    assert isinstance(options, LmiSettings)
    assert LmiSettings.from_json(options.to_json()).to_json() == options.to_json()


# --- unknown keys: context, overrides, nested settings ----------------------------------


def test_a_misspelled_context_key_fails_naming_the_closest_one() -> None:
    # Given a typo in a context key (-c retrain_thresold=3)
    context = {"stage": "dev", "retrain_thresold": "3", "@aws-cdk/core:checkSecretUsage": True}
    # When the config is built from the whole context, Then it fails naming both keys
    with pytest.raises(ConfigError) as raised:
        config_from_context(context)
    assert str(raised.value).startswith(
        "context key 'retrain_thresold' is not a setting (did you mean 'retrain_threshold'?)"
    )


def test_the_cdk_s_own_context_keys_are_left_to_the_cdk() -> None:
    context = {
        "stage": "local",
        "retrain_threshold": "3",
        "@aws-cdk/aws-iam:minimizePolicies": True,
        "aws:cdk:enable-path-metadata": True,
        "availability-zones:account=123456789012:region=us-east-1": ["us-east-1a"],
        "acknowledged-issue-numbers": [32775],
    }
    assert config_from_context(context).retrain_threshold == 3
    assert set(CONTEXT_KEYS) == {"stage", *OVERRIDABLE_FIELDS}


def test_a_key_that_cannot_be_overridden_names_the_closest_that_can() -> None:
    with pytest.raises(ConfigError, match=r"'serving_backends' cannot be overridden \(did you"):
        load_stage_config("dev", {"serving_backends": "lmi"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"ingest": {"quality": {"min_char": 5}}},
            "quality.min_char is not a setting (did you mean 'min_chars'?)",
        ),
        ({"ingest": {"redactor": ["email"]}}, "redactor is not a setting (did you mean"),
        (
            {"connectors": [{**sql_connector(), "schedul": "rate(1 hour)"}]},
            "unknown field(s) schedul (did you mean 'schedule'?)",
        ),
        (
            {"connectors": [sql_connector(**{"sql.watermark_colum": "x"})]},
            "(did you mean 'watermark_column'?)",
        ),
    ],
)
def test_nested_settings_name_the_closest_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stage_config("dev", overrides)
    assert message in str(raised.value)


def test_a_misspelled_serving_backend_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"got 'lmii' \(did you mean 'lmi'\?\)"):
        config_from_context({"stage": "dev", "serving_backend": "lmii"})


def test_a_misspelled_stage_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'prd' \(did you mean 'prod'\?\)"):
        config_from_context({"stage": "prd"})


def test_no_hint_when_nothing_is_close() -> None:
    assert did_you_mean("zzz", ["stage", "ingest"]) == ""
    assert closest_key("ingset", ["stage", "ingest"]) == "ingest"


# --- one definition each ----------------------------------------------------------------


def test_the_serving_backends_are_the_serving_container_s() -> None:
    assert SERVING_BACKENDS is BACKENDS


def test_the_held_out_and_replay_settings_are_prepare_dataset_s_defaults() -> None:
    from lambdas.prepare_dataset.handler import Env

    split = load_stage_config("dev").dataset
    assert split == SplitSettings()
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(Env)
        if f.name in ("heldout_fraction", "heldout_max_records", "replay_ratio")
    }
    assert defaults == dataclasses.asdict(split)
