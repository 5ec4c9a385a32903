"""``CfnOutput``s for the names others look up (ids in :mod:`tuneloop.stack_outputs`)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnOutput, Stack


def add_outputs(stack: Stack, values: Mapping[str, tuple[str, str]]) -> None:
    """One output per ``id → (value, description)``. No export name: readers use
    ``DescribeStacks``, so no other stack is pinned to these values."""
    for output_id, (value, description) in values.items():
        CfnOutput(stack, output_id, value=value, description=description)
