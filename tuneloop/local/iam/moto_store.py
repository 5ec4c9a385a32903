"""Where the deployed policies live on the local platform: moto's in-process backends.

Roles (inline and attached managed policies, trust policy) in the IAM backend; bucket
policies and default encryption in S3; topic policies and ``KmsMasterKeyId`` in SNS; queue
``Policy`` and ``KmsMasterKeyId`` in SQS; key policies in KMS; function policies (from
``AWS::Lambda::Permission``) in Lambda; ``SSESpecification`` in DynamoDB. moto's
CloudFormation skips bucket, topic and queue policies; ``cfn_models.py`` applies them to
these resources, so they are read here like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from moto.core import DEFAULT_ACCOUNT_ID

Document = Mapping[str, Any]


def _document(text: Any) -> Document | None:
    if text is None or text == "":
        return None
    if isinstance(text, bytes):
        text = text.decode()
    if isinstance(text, Mapping):
        return text
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = json.loads(unquote(text))  # IAM keeps some documents URL-encoded
    return parsed if isinstance(parsed, Mapping) else None


def _parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    _, _, service, region, account, resource = arn.split(":", 5)
    return service, region, account, resource


class MotoPolicyStore:
    """``PolicyStore`` over moto's backends (the emulator runs them in this process)."""

    def __init__(self, account: str = DEFAULT_ACCOUNT_ID) -> None:
        self.account = account  # S3 ARNs carry no account: buckets are looked up here

    # --- IAM ----------------------------------------------------------------------------

    def _role(self, role_arn: str) -> Any | None:
        from moto.iam.models import iam_backends

        _, _, account, resource = _parts(role_arn)
        name = resource.rsplit("/", 1)[-1]
        backend = iam_backends[account]["aws"]
        return next((r for r in backend.roles.values() if r.name == name), None)

    def role_arns(self) -> list[str]:
        """Every role of the account (for the usage report)."""
        from moto.iam.models import iam_backends

        return sorted(str(r.arn) for r in iam_backends[self.account]["aws"].roles.values())

    def identity_policies(self, role_arn: str) -> Sequence[tuple[str, Document]]:
        role = self._role(role_arn)
        if role is None:
            return []
        found: list[tuple[str, Document]] = []
        for name, text in role.policies.items():
            document = _document(text)
            if document is not None:
                found.append((f"role/{role.name}/policy/{name}", document))
        for arn, managed in role.managed_policies.items():
            version = next(
                (v for v in managed.versions if v.version_id == managed.default_version_id),
                None,
            )
            document = _document(version.document) if version is not None else None
            if document is not None:
                found.append((f"role/{role.name}/managed/{arn}", document))
        return found

    def trust_policy(self, role_arn: str) -> Document | None:
        role = self._role(role_arn)
        return _document(role.assume_role_policy_document) if role is not None else None

    # --- resource policies --------------------------------------------------------------

    def resource_policy(self, resource_arn: str) -> tuple[str, Document] | None:
        service, region, account, resource = _parts(resource_arn)
        document: Document | None = None
        kind = service
        if service == "s3":
            bucket = self._bucket(resource.split("/", 1)[0])
            document = _document(self._bucket_policy(bucket)) if bucket is not None else None
            resource_arn = f"arn:aws:s3:::{resource.split('/', 1)[0]}"
            kind = "bucket"
        elif service == "sns":
            topic = self._topic(resource_arn)
            document = _document(topic.policy) if topic is not None else None
            kind = "topic"
        elif service == "sqs":
            queue = self._queue(resource_arn)
            document = _document(queue.policy) if queue is not None else None
            kind = "queue"
        elif service == "kms":
            key = self._key(resource_arn)
            document = _document(key.policy) if key is not None else None
            kind = "key"
        elif service == "lambda":
            document = self._function_policy(region, account, resource)
            kind = "function"
        if document is None:
            return None
        return f"{kind}-policy/{resource_arn}", document

    def _bucket(self, name: str) -> Any | None:
        from moto.s3.models import s3_backends

        return s3_backends[self.account]["aws"].buckets.get(name)

    @staticmethod
    def _bucket_policy(bucket: Any) -> bytes | None:
        from tuneloop.local.cfn_models import DEPLOYED_BUCKET_POLICY

        return getattr(bucket, DEPLOYED_BUCKET_POLICY, None) or bucket.policy

    def _topic(self, topic_arn: str) -> Any | None:
        from moto.sns.models import sns_backends

        _, region, account, _ = _parts(topic_arn)
        return sns_backends[account][region].topics.get(topic_arn)

    def _queue(self, queue_arn: str) -> Any | None:
        from moto.sqs.models import sqs_backends

        _, region, account, name = _parts(queue_arn)
        return sqs_backends[account][region].queues.get(name)

    def _key(self, key_arn: str) -> Any | None:
        from moto.kms.models import kms_backends

        _, region, account, _ = _parts(key_arn)
        backend = kms_backends[account][region]
        try:
            key_id = backend.any_id_to_key_id(key_arn)
        except Exception:  # an unknown alias
            return None
        return backend.keys.get(key_id)

    def _function_policy(self, region: str, account: str, resource: str) -> Document | None:
        from moto.awslambda.models import lambda_backends

        name = resource.split(":")[1]
        try:
            wire = lambda_backends[account][region].get_policy(name)
        except Exception:  # no function, or a function without a policy
            return None
        return _document(json.loads(wire)["Policy"])

    # --- encryption ---------------------------------------------------------------------

    def encryption_key(self, resource_arn: str) -> str | None:
        service, region, account, resource = _parts(resource_arn)
        key_id: str | None = None
        if service == "s3":
            bucket = self._bucket(resource.split("/", 1)[0])
            key_id = self._bucket_key(bucket)
            region = str(getattr(bucket, "region_name", "")) or "us-east-1"
        elif service == "sns":
            topic = self._topic(resource_arn)
            key_id = topic.kms_master_key_id if topic is not None else None
        elif service == "sqs":
            queue = self._queue(resource_arn)
            key_id = getattr(queue, "kms_master_key_id", None) if queue is not None else None
        elif service == "dynamodb":
            key_id = self._table_key(region, account, resource.split("/")[1])
        if not key_id:
            return None
        if not key_id.startswith("arn:"):
            path = key_id if key_id.startswith("alias/") else f"key/{key_id}"
            key_id = f"arn:aws:kms:{region}:{account or self.account}:{path}"
        key = self._key(key_id)
        # AWS managed keys (aws/s3, aws/sns, ...) allow every principal of the account that
        # the service authorized: no key policy of the deployment to check.
        if key is None or key.key_manager == "AWS":
            return None
        return str(key.arn)

    @staticmethod
    def _bucket_key(bucket: Any | None) -> str | None:
        encryption = getattr(bucket, "encryption", None) if bucket is not None else None
        if not encryption:
            return None
        rules = encryption.get("Rule") or encryption.get("Rules") or []
        for rule in rules if isinstance(rules, list) else [rules]:
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                return str(default.get("KMSMasterKeyID") or "alias/aws/s3")
        return None

    def _table_key(self, region: str, account: str, name: str) -> str | None:
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[account][region].tables.get(name)
        sse = getattr(table, "sse_specification", None) if table is not None else None
        # The API says "Enabled", CloudFormation "SSEEnabled"; moto keeps what it was given.
        if not sse or not (sse.get("Enabled") or sse.get("SSEEnabled")):
            return None
        return str(sse.get("KMSMasterKeyId") or "") or None

    # --- names the rules cannot resolve alone ------------------------------------------

    def key_arn(self, key: str) -> str | None:
        """A key ARN from a key ARN, alias ARN or key id ARN."""
        found = self._key(key)
        return str(found.arn) if found is not None else None

    def secret_arn(self, secret: str) -> str | None:
        """The full ARN (with its random suffix) of a secret named in an ARN."""
        from moto.secretsmanager.models import secretsmanager_backends

        _, region, account, resource = _parts(secret)
        found = secretsmanager_backends[account][region].secrets.get(resource.split(":", 1)[1])
        return str(found.arn) if found is not None else None
