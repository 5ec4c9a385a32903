"""CloudFormation resource types that moto's CloudFormation does not implement.

Gap: moto skips unknown types with a warning, so a template that refers to one
(``Fn::GetAtt`` of an alarm's ARN, for example) fails to deploy, and the resource never
exists. moto resolves every intrinsic before it hands a resource's properties to its model
class, so a model class per missing type is all it takes. Registering happens on import
(moto finds models through ``CloudFormationModel.__subclasses__``).
"""

from __future__ import annotations

from typing import Any

import boto3
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel

_INTEGER_FIELDS = ("Period", "EvaluationPeriods", "DatapointsToAlarm")
_PASSED_FIELDS = (
    "AlarmDescription",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
    "ActionsEnabled",
    "Metrics",
    "Unit",
)


class CloudWatchAlarm(CloudFormationModel):
    """AWS::CloudWatch::Alarm, created through the emulator's CloudWatch API."""

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudWatchAlarm:
        properties = cloudformation_json.get("Properties", {})
        request: dict[str, Any] = {"AlarmName": resource_name}
        request.update({k: properties[k] for k in _PASSED_FIELDS if k in properties})
        request.update({k: int(properties[k]) for k in _INTEGER_FIELDS if k in properties})
        if "Threshold" in properties:
            request["Threshold"] = float(properties["Threshold"])
        if "ActionsEnabled" in request:
            request["ActionsEnabled"] = str(request["ActionsEnabled"]).lower() == "true"
        client = boto3.client("cloudwatch", region_name=region_name)
        client.put_metric_alarm(**request)
        arn = client.describe_alarms(AlarmNames=[resource_name])["MetricAlarms"][0]["AlarmArn"]
        return cls(resource_name, arn)

    def is_created(self) -> bool:
        return True


class _Simple:
    """A resource whose CloudFormation identity is its physical id."""

    def __init__(self, physical_id: str, attributes: dict[str, str] | None = None) -> None:
        self.physical_id = physical_id
        self.attributes = attributes or {}

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.attributes[attribute_name]

    def is_created(self) -> bool:
        return True


# moto finds models through CloudFormationModel.__subclasses__(): each class below must
# subclass it directly.


def _recorded_policy(resource_type: str) -> type[CloudFormationModel]:
    """A resource policy: recorded, not enforced (the emulator does not authorize calls)."""

    class RecordedPolicy(_Simple, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return resource_type

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kwargs: Any
        ) -> RecordedPolicy:
            return cls(resource_name)

    RecordedPolicy.__name__ = resource_type.replace("AWS::", "").replace("::", "")
    return RecordedPolicy


RECORDED_POLICIES = [
    _recorded_policy(kind)
    for kind in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")
]


class SnsSubscription(_Simple, CloudFormationModel):
    """AWS::SNS::Subscription, through the emulator's SNS API (alarm topic → rollback)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsSubscription:
        properties = cloudformation_json["Properties"]
        arn = boto3.client("sns", region_name=region_name).subscribe(
            TopicArn=properties["TopicArn"],
            Protocol=properties["Protocol"],
            Endpoint=properties["Endpoint"],
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return cls(arn)


class SageMakerModelPackageGroup(_Simple, CloudFormationModel):
    """AWS::SageMaker::ModelPackageGroup, through the emulator's SageMaker API."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::ModelPackageGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SageMakerModelPackageGroup:
        properties = cloudformation_json["Properties"]
        name = properties.get("ModelPackageGroupName", resource_name)
        request = {"ModelPackageGroupName": name}
        if properties.get("ModelPackageGroupDescription"):
            request["ModelPackageGroupDescription"] = properties["ModelPackageGroupDescription"]
        arn = boto3.client("sagemaker", region_name=region_name).create_model_package_group(
            **request
        )["ModelPackageGroupArn"]
        # Ref of a model package group is its ARN, as on AWS.
        return cls(arn, {"ModelPackageGroupArn": arn, "ModelPackageGroupName": name})


def register() -> None:
    """Make moto's CloudFormation see the models above (its type map is cached)."""
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
