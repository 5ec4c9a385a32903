"""The rule of a SageMaker inference component's name (CreateInferenceComponent), which a
model line and its LoRA adapter take. No dependencies: the release Lambdas and the serving
container both check it."""

from __future__ import annotations

import re
from typing import Any

_COMPONENT_NAME = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?")
COMPONENT_NAME_RULE = "1-63 letters, digits or hyphens, not starting or ending with a hyphen"


def is_component_name(name: Any) -> bool:
    return isinstance(name, str) and _COMPONENT_NAME.fullmatch(name) is not None
