"""Generated names for resources that are created at run time or that CloudFormation cannot
name itself (the SageMaker endpoint, the model package group)."""

from __future__ import annotations

import re

from aws_cdk import Names
from constructs import Construct


def generated_name(scope: Construct, max_length: int = 63) -> str:
    """A stable, unique, lower-case ``[a-z0-9-]`` name derived from ``scope``'s path.

    Lower case because SageMaker lower-cases names inside ARNs and IAM matches ARNs
    case-sensitively; ``[a-z0-9-]`` satisfies SageMaker's name pattern.
    """
    name = Names.unique_resource_name(scope, max_length=max_length, separator="-").lower()
    name = re.sub(r"[^a-z0-9-]", "-", name)
    return re.sub(r"-{2,}", "-", name).strip("-")
