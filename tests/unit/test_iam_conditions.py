"""IAM condition operators, as the IAM User Guide's "Condition operators" page defines them."""

from __future__ import annotations

from typing import Any

import pytest

from tuneloop.local.iam.conditions import UnknownOperatorError, conditions_match, glob_match

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Retrain"


def matches(operator: str, key: str, expected: Any, **context: list[str]) -> bool:
    return conditions_match({operator: {key: expected}}, context)


@pytest.mark.parametrize(
    ("operator", "expected", "actual", "result"),
    [
        ("StringEquals", "abc", "abc", True),
        ("StringEquals", "abc", "ABC", False),
        ("StringEquals", ["x", "abc"], "abc", True),
        ("StringNotEquals", "abc", "abd", True),
        ("StringNotEquals", ["x", "abc"], "abc", False),
        ("StringEqualsIgnoreCase", "abc", "ABC", True),
        ("StringNotEqualsIgnoreCase", "abc", "ABC", False),
        ("StringLike", "/aws/sagemaker/*", "/aws/sagemaker/Endpoints", True),
        ("StringLike", "/aws/sagemaker/*", "TuneLoop", False),
        ("StringLike", "a?c", "abc", True),
        ("StringLike", "a?c", "abbc", False),
        ("StringNotLike", "drops/*", "curated/x", True),
        ("StringNotLike", "drops/*", "drops/x", False),
        ("NumericEquals", "10", "10.0", True),
        ("NumericNotEquals", "10", "11", True),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericGreaterThan", "10", "11", True),
        ("NumericGreaterThanEquals", "10", "9", False),
        ("NumericEquals", "10", "ten", False),
        ("DateLessThan", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", True),
        ("DateGreaterThan", "2026-01-01T00:00:00Z", "1767225601", True),
        ("DateEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", True),
        ("DateNotEquals", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", True),
        ("Bool", "false", "false", True),
        ("Bool", False, "false", True),
        ("Bool", "true", "false", False),
        ("BinaryEquals", "QmluYXJ5", "QmluYXJ5", True),
        ("IpAddress", "10.0.0.0/8", "10.1.2.3", True),
        ("NotIpAddress", "10.0.0.0/8", "10.1.2.3", False),
        ("ArnEquals", ARN, ARN, True),
        ("ArnNotEquals", ARN, ARN + "2", True),
        ("ArnLike", "arn:aws:states:*:123456789012:stateMachine:*", ARN, True),
        ("ArnLike", "arn:aws:states:*:210987654321:stateMachine:*", ARN, False),
        ("ArnNotLike", "arn:aws:states:*:123456789012:stateMachine:*", ARN, False),
    ],
)
def test_each_operator_compares_a_request_value(
    operator: str, expected: Any, actual: str, result: bool
) -> None:
    # Given a condition with one key, When the request holds a value for it,
    # Then the operator decides as IAM documents
    assert matches(operator, "k", expected, k=[actual]) is result


def test_arn_like_matches_each_arn_part_on_its_own() -> None:
    # Given a pattern whose wildcard sits in the region part
    pattern = "arn:aws:sns:*:123456789012:topic"

    # When an ARN differs only in its region, or puts extra colons in the resource
    # Then the first matches; a wildcard does not swallow the account part
    assert matches(
        "ArnLike",
        "aws:SourceArn",
        pattern,
        **{"aws:sourcearn": ["arn:aws:sns:eu-west-1:123456789012:topic"]},
    )
    assert not matches(
        "ArnLike",
        "aws:SourceArn",
        "arn:aws:sns:*:topic",
        **{"aws:sourcearn": ["arn:aws:sns:eu-west-1:123456789012:topic"]},
    )


@pytest.mark.parametrize(
    ("operator", "result"),
    [
        ("StringEquals", False),
        ("StringLike", False),
        ("ArnLike", False),
        ("Bool", False),
        ("NumericLessThan", False),
        ("StringNotEquals", True),  # a negated operator holds when the key is absent
        ("StringNotLike", True),
        ("ArnNotLike", True),
        ("StringEqualsIfExists", True),  # ...IfExists: an absent key does not constrain
        ("ArnLikeIfExists", True),
        ("ForAnyValue:StringEquals", False),
        ("ForAllValues:StringEquals", True),  # vacuously true on an empty set
    ],
)
def test_a_missing_key(operator: str, result: bool) -> None:
    # Given a condition on a key the request does not carry
    # When it is evaluated, Then it follows IAM's rule for absent keys
    assert matches(operator, "aws:SourceArn", "x", other=["y"]) is result


def test_if_exists_still_constrains_a_present_key() -> None:
    # Given StringEqualsIfExists on a key the request carries with another value
    # Then the condition fails
    assert not matches("StringEqualsIfExists", "k", "a", k=["b"])
    assert matches("StringEqualsIfExists", "k", "a", k=["a"])


def test_null_checks_presence() -> None:
    # Given Null conditions, When the key is absent or present, Then true/false as asked
    assert matches("Null", "k", "true")
    assert not matches("Null", "k", "true", k=["v"])
    assert matches("Null", "k", "false", k=["v"])
    assert not matches("Null", "k", "false")


def test_set_operators_on_multivalued_keys() -> None:
    # Given a multivalued key (like aws:TagKeys) with two values
    tags = {"aws:tagkeys": ["team", "cost"]}

    # Then ForAnyValue needs one value in the set, ForAllValues every value
    assert conditions_match({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}, tags)
    assert not conditions_match({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}, tags)
    assert conditions_match(
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "cost", "x"]}}, tags
    )
    assert conditions_match({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["owner"]}}, tags)
    assert not conditions_match({"ForAnyValue:StringNotLike": {"aws:TagKeys": ["*"]}}, tags)


def test_keys_are_case_insensitive_and_blocks_are_anded() -> None:
    # Given two operators over two keys, written in mixed case
    condition = {
        "StringEquals": {"AWS:SourceAccount": "123456789012"},
        "ArnLike": {"aws:sourceArn": "arn:aws:states:*:123456789012:stateMachine:*"},
    }
    context = {"aws:sourceaccount": ["123456789012"], "aws:sourcearn": [ARN]}

    # Then both must hold
    assert conditions_match(condition, context)
    assert not conditions_match(condition, {**context, "aws:sourceaccount": ["999999999999"]})


def test_an_unknown_operator_is_an_error() -> None:
    # Given an operator IAM does not define, Then evaluating it raises (AWS rejects it)
    with pytest.raises(UnknownOperatorError):
        matches("StringSortOf", "k", "v", k=["v"])
    with pytest.raises(UnknownOperatorError):
        matches("ForSomeValues:StringEquals", "k", "v", k=["v"])


def test_glob_wildcards() -> None:
    # Then * spans any characters (none too), ? exactly one, and other characters are literal
    assert glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b.txt")
    assert glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/")
    assert not glob_match("arn:aws:s3:::b.*", "arn:aws:s3:::bx")
    assert glob_match("kms:GenerateDataKey*", "kms:GenerateDataKey")
    assert not glob_match("kms:GenerateDataKey?", "kms:GenerateDataKey")
