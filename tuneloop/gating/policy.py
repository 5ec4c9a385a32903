"""The gate policy (``GATE_POLICY``), parsed with errors that name the offending field.

```json
{"suites": {"mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
            "company_faq": {"role": "must_pass", "metric": "acc", "floor": 0.5}},
 "bootstrap_samples": 2000, "confidence": 0.95, "seed": 0}
```

Roles: ``must_pass`` needs ``floor``; ``general`` needs ``delta``; ``target`` takes
``min_gain`` (default 0). ``metric`` is ``acc`` (default) or ``acc_norm``.

General suites on these metrics also take ``max_false_block`` (default 0.05) and
``max_delta`` (default 0.10, never below ``delta``): when the paired items are too few or
too discordant for ``delta`` to keep the chance of blocking a candidate *equal* to the
champion below ``max_false_block``, the margin widens to the smallest one that does, up
to ``max_delta``; the decision reports the margin used and the items ``delta`` would need.
``max_delta`` equal to ``delta`` keeps the margin fixed.

``metric: "perplexity"`` (lower is better, the held-out suite) takes ``ceiling`` for
``must_pass`` (perplexity <= ceiling) and ``max_increase`` for ``general`` (a relative
tolerance: the upper CI bound of candidate / champion perplexity must stay below
``1 + max_increase``); it has no ``target`` role. ``version``
(optional, default ``"latest"``) pins a custom suite to one benchmark version (its sha256
or a unique prefix of 8+ hex characters); PrepareDataset freezes it per run. Unknown keys
are errors, so a typo cannot silently switch a check off.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from tuneloop.settings_keys import did_you_mean

ROLES = ("must_pass", "general", "target")
HIGHER_IS_BETTER = ("acc", "acc_norm")
LOWER_IS_BETTER = ("perplexity",)
METRICS = HIGHER_IS_BETTER + LOWER_IS_BETTER
_ROLE_FIELDS = {"must_pass": "floor", "general": "delta", "target": "min_gain"}
_LOWER_ROLE_FIELDS = {"must_pass": "ceiling", "general": "max_increase"}
_RELIABILITY_FIELDS = ("max_false_block", "max_delta")
_THRESHOLD_FIELDS = ("floor", "delta", "min_gain", "ceiling", "max_increase")
DEFAULT_MAX_FALSE_BLOCK = 0.05
DEFAULT_MAX_DELTA = 0.10
_TOP_FIELDS = frozenset({"suites", "bootstrap_samples", "confidence", "seed"})
LATEST_VERSION = "latest"
_VERSION = re.compile(r"^[0-9a-f]{8,64}$")


class PolicyError(ValueError):
    """The gate policy is malformed; the message names the field."""

    def __init__(self, message: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.field = field  # dotted path, e.g. "suites.mmlu.metric" ("" for the whole policy)
        self.reason = reason or message


@dataclass(frozen=True)
class SuitePolicy:
    name: str
    role: str
    metric: str = "acc"
    floor: float | None = None  # must_pass
    delta: float | None = None  # general: tolerated drop
    min_gain: float | None = None  # target
    version: str = LATEST_VERSION  # benchmark version the run freezes
    ceiling: float | None = None  # must_pass on a lower-is-better metric
    max_increase: float | None = None  # general on a lower-is-better metric (relative)
    max_false_block: float = DEFAULT_MAX_FALSE_BLOCK  # general, higher-is-better
    max_delta: float | None = None  # general, higher-is-better: cap of the widened margin

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def to_dict(self) -> dict[str, Any]:
        """The policy's JSON form. Every field set is written, also one the role does not
        take, so that :func:`parse_policy` rejects a suite built in code as it would the
        same JSON (the stage config checks its policies this way at synth)."""
        out: dict[str, Any] = {"role": self.role, "metric": self.metric}
        for name in _THRESHOLD_FIELDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        general = self.role == "general" and not self.lower_is_better
        if general or self.max_false_block != DEFAULT_MAX_FALSE_BLOCK:
            out["max_false_block"] = self.max_false_block
        if self.max_delta is not None:  # None: parse_policy's default
            out["max_delta"] = self.max_delta
        out["version"] = self.version
        return out


def role_field(role: str, metric: str) -> str:
    """The threshold field of ``role`` for ``metric``."""
    return (_LOWER_ROLE_FIELDS if metric in LOWER_IS_BETTER else _ROLE_FIELDS)[role]


@dataclass(frozen=True)
class GatePolicy:
    suites: tuple[SuitePolicy, ...]
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "suites": {suite.name: suite.to_dict() for suite in self.suites},
            "bootstrap_samples": self.bootstrap_samples,
            "confidence": self.confidence,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        """The ``GATE_POLICY`` value; :func:`parse_policy` reads it back unchanged."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def parse_policy(raw: str | Mapping[str, Any], source: str = "GATE_POLICY") -> GatePolicy:
    """A ``GatePolicy`` from JSON text or a mapping; ``PolicyError`` naming the bad field."""

    def error(path: str, problem: str) -> PolicyError:
        message = f"{source}: {path}: {problem}" if path else f"{source}: {problem}"
        return PolicyError(message, field=path, reason=problem)

    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise error("", f"not valid JSON ({exc})") from exc
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise error("", "must be a JSON object")
    _no_unknown(data, _TOP_FIELDS, "", error)
    suites_raw = data.get("suites")
    if not isinstance(suites_raw, Mapping) or not suites_raw:
        raise error("suites", "required, an object with at least one suite")
    suites = tuple(_suite(str(name), spec, error) for name, spec in suites_raw.items())
    samples = data.get("bootstrap_samples", 2000)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 100 <= samples <= 100_000:
        raise error("bootstrap_samples", "an integer in 100..100000")
    confidence = _number(data.get("confidence", 0.95), "confidence", error)
    if not 0.5 <= confidence < 1:
        raise error("confidence", "a number in [0.5, 1)")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise error("seed", "an integer")
    return GatePolicy(suites, samples, confidence, seed)


_Error = Callable[[str, str], PolicyError]


def _suite(name: str, spec: Any, error: _Error) -> SuitePolicy:
    where = f"suites.{name}"
    if not isinstance(spec, Mapping):
        raise error(where, "must be an object")
    role = spec.get("role")
    if role not in ROLES:
        raise error(f"{where}.role", f"required, one of {', '.join(ROLES)}")
    metric = spec.get("metric", "acc")
    if metric not in METRICS:
        raise error(f"{where}.metric", f"one of {', '.join(METRICS)}")
    lower = metric in LOWER_IS_BETTER
    if lower and role not in _LOWER_ROLE_FIELDS:
        raise error(f"{where}.role", f"{role!r} is not available for {metric} (lower is better)")
    field = role_field(role, metric)
    allowed = {"role", "metric", "version", field}
    if role == "general" and not lower:
        allowed |= set(_RELIABILITY_FIELDS)
    _no_unknown(spec, allowed, where, error, role)
    if field not in spec and role != "target":
        raise error(f"{where}.{field}", f"required for role {role!r}")
    value = _number(spec.get(field, 0.0), f"{where}.{field}", error)
    if field == "ceiling":
        if value < 1:
            raise error(f"{where}.{field}", "a perplexity, a number >= 1")
    elif not 0 <= value <= 1:
        raise error(f"{where}.{field}", "a number in [0, 1]")
    extra: dict[str, Any] = {}
    if role == "general" and not lower:
        false_block = _number(
            spec.get("max_false_block", DEFAULT_MAX_FALSE_BLOCK), f"{where}.max_false_block", error
        )
        if not 0 < false_block <= 0.5:
            raise error(f"{where}.max_false_block", "a number in (0, 0.5]")
        cap = _number(
            spec.get("max_delta", max(DEFAULT_MAX_DELTA, value)), f"{where}.max_delta", error
        )
        if not value <= cap <= 1:
            raise error(f"{where}.max_delta", f"a number in [delta, 1] (delta is {value})")
        extra = {"max_false_block": false_block, "max_delta": cap}
    version = spec.get("version", LATEST_VERSION)
    if not isinstance(version, str) or not (version == LATEST_VERSION or _VERSION.match(version)):
        raise error(
            f"{where}.version", "'latest' or 8..64 lowercase hex characters of a benchmark version"
        )
    return SuitePolicy(
        name=name, role=role, metric=metric, version=version, **{field: value}, **extra
    )


def _number(value: Any, path: str, error: _Error) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise error(path, "must be a number")
    return float(value)


def _no_unknown(
    data: Mapping[str, Any], allowed: Set[str], where: str, error: _Error, role: str = ""
) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        path = f"{where}.{unknown[0]}" if where else unknown[0]
        hint = f" for role {role!r}" if role else ""
        raise error(
            path,
            f"unknown field{hint}{did_you_mean(unknown[0], allowed)} "
            f"(allowed: {', '.join(sorted(allowed))})",
        )
