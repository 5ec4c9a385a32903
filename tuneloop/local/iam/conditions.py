"""IAM policy condition operators, as the IAM User Guide defines them.

A request context maps each condition key (lower case: keys are case-insensitive) to its
values (a list: single-valued keys hold one). Sources, IAM User Guide: "IAM JSON policy
elements: Condition operators" and "Single-valued vs. multivalued context keys".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

Context = Mapping[str, Sequence[str]]

# Negated operators: a missing key makes them true (the value cannot equal what is absent).
_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "NumericNotEquals",
    "DateNotEquals",
    "ArnNotEquals",
    "ArnNotLike",
    "NotIpAddress",
}


class UnknownOperatorError(ValueError):
    """A condition operator IAM does not define: AWS rejects such a policy."""


@cache
def glob_pattern(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters (also none), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return glob_pattern(pattern, ignore_case=ignore_case).match(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    # Each of the six colon-separated ARN parts is matched on its own.
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != len(value_parts):
        return pattern == "*"
    return all(glob_match(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    number = _number(text)
    if number is not None:
        return datetime.fromtimestamp(number, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(convert: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Matcher:
    def match(expected: str, actual: str) -> bool:
        a, e = convert(actual), convert(expected)
        return a is not None and e is not None and bool(test(a, e))

    return match


def _ip(expected: str, actual: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
    except ValueError:
        return False


Matcher = Callable[[str, str], bool]  # (value in the policy, value in the request)

# The positive form of every operator; a negated operator is "no policy value matches".
_MATCHERS: dict[str, Matcher] = {
    "StringEquals": lambda e, a: e == a,
    "StringEqualsIgnoreCase": lambda e, a: e.lower() == a.lower(),
    "StringLike": lambda e, a: glob_match(e, a),
    "NumericEquals": _compare(_number, lambda a, e: a == e),
    "NumericLessThan": _compare(_number, lambda a, e: a < e),
    "NumericLessThanEquals": _compare(_number, lambda a, e: a <= e),
    "NumericGreaterThan": _compare(_number, lambda a, e: a > e),
    "NumericGreaterThanEquals": _compare(_number, lambda a, e: a >= e),
    "DateEquals": _compare(_date, lambda a, e: a == e),
    "DateLessThan": _compare(_date, lambda a, e: a < e),
    "DateLessThanEquals": _compare(_date, lambda a, e: a <= e),
    "DateGreaterThan": _compare(_date, lambda a, e: a > e),
    "DateGreaterThanEquals": _compare(_date, lambda a, e: a >= e),
    "Bool": lambda e, a: e.lower() == a.lower(),
    "BinaryEquals": lambda e, a: e == a,
    "IpAddress": _ip,
    "ArnEquals": lambda e, a: e == a,
    "ArnLike": _arn_like,
}
_POSITIVE_OF = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NotIpAddress": "IpAddress",
}


def _as_strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]


def _operator_parts(operator: str) -> tuple[str | None, str, bool]:
    """``ForAllValues:StringLikeIfExists`` → ("ForAllValues", "StringLike", True)."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base.removesuffix("IfExists")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnknownOperatorError(operator)
    if base != "Null" and base not in _MATCHERS and base not in _POSITIVE_OF:
        raise UnknownOperatorError(operator)
    return qualifier or None, base, if_exists


def _key_matches(operator: str, expected: list[str], actual: Sequence[str] | None) -> bool:
    qualifier, base, if_exists = _operator_parts(operator)
    if base == "Null":
        # "true": the key must be absent; "false": present.
        absent = not actual
        return any((e.lower() == "true") == absent for e in expected)
    negated = base in _NEGATED
    matcher = _MATCHERS[_POSITIVE_OF.get(base, base)]

    def value_matches(value: str) -> bool:
        hit = any(matcher(e, value) for e in expected)
        return not hit if negated else hit

    if not actual:
        if qualifier == "ForAllValues":
            return True  # vacuously true over an empty set
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated
    if qualifier == "ForAllValues":
        return all(value_matches(v) for v in actual)
    if qualifier == "ForAnyValue":
        return any(value_matches(v) for v in actual)
    # A single-valued operator on a (possibly multivalued) key: a negated operator must hold
    # for every value, a positive one for any.
    return (
        all(value_matches(v) for v in actual) if negated else any(value_matches(v) for v in actual)
    )


def conditions_match(condition: Mapping[str, Any] | None, context: Context) -> bool:
    """Every operator's every key must match (AND); any of a key's values may (OR)."""
    if not condition:
        return True
    for operator, keys in condition.items():
        for key, expected in keys.items():
            if not _key_matches(operator, _as_strings(expected), context.get(key.lower())):
                return False
    return True
