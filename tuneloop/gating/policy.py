"""The gate policy (``GATE_POLICY``), parsed with errors that name the offending field.

```json
{"suites": {"mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
            "company_faq": {"role": "must_pass", "metric": "acc", "floor": 0.5}},
 "bootstrap_samples": 2000, "confidence": 0.95, "seed": 0}
```

Roles: ``must_pass`` needs ``floor``; ``general`` needs ``delta``; ``target`` takes
``min_gain`` (default 0). ``metric`` is ``acc`` (default) or ``acc_norm``. ``version``
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

ROLES = ("must_pass", "general", "target")
METRICS = ("acc", "acc_norm")
_ROLE_FIELDS = {"must_pass": "floor", "general": "delta", "target": "min_gain"}
_TOP_FIELDS = frozenset({"suites", "bootstrap_samples", "confidence", "seed"})
LATEST_VERSION = "latest"
_VERSION = re.compile(r"^[0-9a-f]{8,64}$")


class PolicyError(ValueError):
    """The gate policy is malformed; the message names the field."""


@dataclass(frozen=True)
class SuitePolicy:
    name: str
    role: str
    metric: str = "acc"
    floor: float | None = None  # must_pass
    delta: float | None = None  # general: tolerated drop
    min_gain: float | None = None  # target
    version: str = LATEST_VERSION  # benchmark version the run freezes

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "metric": self.metric}
        field = _ROLE_FIELDS[self.role]
        out[field] = getattr(self, field)
        out["version"] = self.version
        return out


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


def parse_policy(raw: str | Mapping[str, Any], source: str = "GATE_POLICY") -> GatePolicy:
    """A ``GatePolicy`` from JSON text or a mapping; ``PolicyError`` naming the bad field."""

    def error(path: str, problem: str) -> PolicyError:
        return PolicyError(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")

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
    field = _ROLE_FIELDS[role]
    _no_unknown(spec, {"role", "metric", "version", field}, where, error, role)
    metric = spec.get("metric", "acc")
    if metric not in METRICS:
        raise error(f"{where}.metric", f"one of {', '.join(METRICS)}")
    if field not in spec and role != "target":
        raise error(f"{where}.{field}", f"required for role {role!r}")
    value = _number(spec.get(field, 0.0), f"{where}.{field}", error)
    if not 0 <= value <= 1:
        raise error(f"{where}.{field}", "a number in [0, 1]")
    version = spec.get("version", LATEST_VERSION)
    if not isinstance(version, str) or not (version == LATEST_VERSION or _VERSION.match(version)):
        raise error(
            f"{where}.version", "'latest' or 8..64 lowercase hex characters of a benchmark version"
        )
    return SuitePolicy(name=name, role=role, metric=metric, version=version, **{field: value})


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
        raise error(path, f"unknown field{hint} (allowed: {', '.join(sorted(allowed))})")
