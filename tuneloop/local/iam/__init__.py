"""IAM and resource-policy enforcement for the local platform (never imported on AWS).

``authorize(caller, call, store)`` gives every authorization AWS makes for a request;
``authorize_assume_role`` decides a service's ``sts:AssumeRole``. ``MotoPolicyStore`` reads
the policies from moto's backends; ``Recorder`` reports the grants a run exercised.
"""

from tuneloop.local.iam.evaluate import (
    allowed,
    authorize,
    authorize_assume_role,
    first_denial,
)
from tuneloop.local.iam.model import ApiCall, Caller, Decision, Grant, PolicyStore

__all__ = [
    "ApiCall",
    "Caller",
    "Decision",
    "Grant",
    "PolicyStore",
    "allowed",
    "authorize",
    "authorize_assume_role",
    "first_denial",
]
