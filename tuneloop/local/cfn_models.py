"""CloudFormation resource types that moto's CloudFormation does not implement.

Gap: moto skips unknown types with a warning, so a template that refers to one
(``Fn::GetAtt`` of an alarm's ARN, for example) fails to deploy, and the resource never
exists. moto resolves every intrinsic before it hands a resource's properties to its model
class, so a model class per missing type is all it takes. Registering happens on import
(moto finds models through ``CloudFormationModel.__subclasses__``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel

# moto's own SageMaker models must be defined before SageMakerEndpoint below: the type map
# keeps the last class of a type (``parsing.get_model_map``).
from moto.sagemaker import models as _moto_sagemaker_models  # noqa: F401

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


# The bucket policy is kept beside moto's own attribute: moto's S3 evaluates
# ``FakeBucket.policy`` itself with a partial evaluator that treats a condition it cannot
# read as a match, so the SSL-only Deny would refuse every object request. The local
# platform's own enforcement (``tuneloop.local.iam``) reads it from here.
DEPLOYED_BUCKET_POLICY = "deployed_policy"


class _ResourcePolicy(_Simple):
    """A resource policy applied to the moto resources it names (Ref: its logical id)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def apply(
        cls, properties: dict[str, Any], document: str, account_id: str, region_name: str
    ) -> None:
        raise NotImplementedError

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _ResourcePolicy:
        properties = cloudformation_json["Properties"]
        document = properties["PolicyDocument"]
        text = document if isinstance(document, str) else json.dumps(document)
        cls.apply(properties, text, account_id, region_name)
        return cls(resource_name)


class S3BucketPolicy(_ResourcePolicy, CloudFormationModel):
    """AWS::S3::BucketPolicy, kept on the bucket for the local platform's enforcement."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def apply(
        cls, properties: dict[str, Any], document: str, account_id: str, region_name: str
    ) -> None:
        from moto.s3.models import s3_backends

        bucket = s3_backends[account_id]["aws"].get_bucket(properties["Bucket"])
        setattr(bucket, DEPLOYED_BUCKET_POLICY, document.encode())


class SnsTopicPolicy(_ResourcePolicy, CloudFormationModel):
    """AWS::SNS::TopicPolicy: replaces each topic's policy (SNS's default one included)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @classmethod
    def apply(
        cls, properties: dict[str, Any], document: str, account_id: str, region_name: str
    ) -> None:
        from moto.sns.models import sns_backends

        # moto sets the attribute by its Python name.
        for topic_arn in properties["Topics"]:
            sns_backends[account_id][region_name].set_topic_attribute(topic_arn, "policy", document)


class SqsQueuePolicy(_ResourcePolicy, CloudFormationModel):
    """AWS::SQS::QueuePolicy: sets each queue's ``Policy`` (Queues are queue URLs)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def apply(
        cls, properties: dict[str, Any], document: str, account_id: str, region_name: str
    ) -> None:
        from moto.sqs.models import sqs_backends

        for queue_url in properties["Queues"]:
            name = str(queue_url).rstrip("/").rsplit("/", 1)[-1]
            sqs_backends[account_id][region_name].set_queue_attributes(name, {"Policy": document})


RESOURCE_POLICIES = [S3BucketPolicy, SnsTopicPolicy, SqsQueuePolicy]


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


# --- The Console stack (moto's CloudFormation has no Cognito, API Gateway v2 or Secrets
# Manager types). Each is created through the emulator's own API, so its Ref and GetAtt
# values are what those APIs return. Locally the console runs as a process with local users
# (tuneloop/local/up.py); these resources exist so the stack deploys and its outputs resolve.


def _client(service: str, region_name: str) -> Any:
    return boto3.client(service, region_name=region_name)  # type: ignore[call-overload]


class CognitoUserPool(_Simple, CloudFormationModel):
    """AWS::Cognito::UserPool (Ref: the pool id; Arn, ProviderURL)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPool"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CognitoUserPool:
        pool = _client("cognito-idp", region_name).create_user_pool(PoolName=resource_name)
        pool_id, arn = pool["UserPool"]["Id"], pool["UserPool"]["Arn"]
        provider = f"cognito-idp.{region_name}.amazonaws.com/{pool_id}"
        return cls(pool_id, {"Arn": arn, "ProviderName": provider, "ProviderURL": provider})


class CognitoUserPoolClient(_Simple, CloudFormationModel):
    """AWS::Cognito::UserPoolClient (Ref: the client id)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolClient"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CognitoUserPoolClient:
        properties = cloudformation_json["Properties"]
        request = {
            "UserPoolId": properties["UserPoolId"],
            "ClientName": resource_name,
            "GenerateSecret": str(properties.get("GenerateSecret", "false")).lower() == "true",
        }
        for key in ("CallbackURLs", "LogoutURLs", "AllowedOAuthFlows", "AllowedOAuthScopes"):
            if key in properties:
                request[key] = properties[key]
        client = _client("cognito-idp", region_name).create_user_pool_client(**request)
        return cls(client["UserPoolClient"]["ClientId"])


class CognitoUserPoolGroup(_Simple, CloudFormationModel):
    """AWS::Cognito::UserPoolGroup (Ref: the group name)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CognitoUserPoolGroup:
        properties = cloudformation_json["Properties"]
        name = properties.get("GroupName", resource_name)
        _client("cognito-idp", region_name).create_group(
            UserPoolId=properties["UserPoolId"], GroupName=name
        )
        return cls(name)


class CognitoUserPoolDomain(_Simple, CloudFormationModel):
    """AWS::Cognito::UserPoolDomain (Ref: the prefix)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Cognito::UserPoolDomain"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CognitoUserPoolDomain:
        properties = cloudformation_json["Properties"]
        _client("cognito-idp", region_name).create_user_pool_domain(
            Domain=properties["Domain"], UserPoolId=properties["UserPoolId"]
        )
        return cls(properties["Domain"])


class SecretsManagerSecret(_Simple, CloudFormationModel):
    """AWS::SecretsManager::Secret with a generated value (Ref: the ARN)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SecretsManagerSecret:
        import secrets

        properties = cloudformation_json.get("Properties", {})
        length = int(properties.get("GenerateSecretString", {}).get("PasswordLength", 32))
        value = properties.get("SecretString") or secrets.token_urlsafe(length)[:length]
        arn = _client("secretsmanager", region_name).create_secret(
            Name=properties.get("Name", resource_name), SecretString=value
        )["ARN"]
        return cls(arn, {"Id": arn})


class ApiGatewayV2Api(_Simple, CloudFormationModel):
    """AWS::ApiGatewayV2::Api (Ref: the API id; ApiEndpoint)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGatewayV2::Api"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ApiGatewayV2Api:
        properties = cloudformation_json.get("Properties", {})
        api = _client("apigatewayv2", region_name).create_api(
            Name=properties.get("Name", resource_name),
            ProtocolType=properties.get("ProtocolType", "HTTP"),
        )
        return cls(api["ApiId"], {"ApiEndpoint": api["ApiEndpoint"], "ApiId": api["ApiId"]})


class _ApiGatewayV2Part(_Simple):
    """A stage, integration or route of an HTTP API: recorded, not served (locally the
    console is its own process, so nothing routes through API Gateway)."""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _ApiGatewayV2Part:
        properties = cloudformation_json.get("Properties", {})
        return cls(str(properties.get("StageName") or resource_name))


class ApiGatewayV2Stage(_ApiGatewayV2Part, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGatewayV2::Stage"


class ApiGatewayV2Integration(_ApiGatewayV2Part, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGatewayV2::Integration"


class ApiGatewayV2Route(_ApiGatewayV2Part, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGatewayV2::Route"


# --- The endpoint of model lines (stacks/constructs/component_endpoint.py). moto's
# AWS::SageMaker::Model and ::EndpointConfig serve as they are.


class SageMakerEndpoint(_Simple, CloudFormationModel):
    """AWS::SageMaker::Endpoint through the emulator's API. Gap: moto's own model ignores
    ``EndpointName`` (it names the endpoint after the logical id), but the stage's one
    endpoint name is what the Lambdas and alarms use. Ref: the ARN; GetAtt EndpointName."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::Endpoint"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SageMakerEndpoint:
        properties = cloudformation_json["Properties"]
        name = str(properties.get("EndpointName") or resource_name)
        arn = _client("sagemaker", region_name).create_endpoint(
            EndpointName=name, EndpointConfigName=properties["EndpointConfigName"]
        )["EndpointArn"]
        return cls(arn, {"EndpointName": name})


class SageMakerInferenceComponent(_Simple, CloudFormationModel):
    """AWS::SageMaker::InferenceComponent (gap: moto has no inference components), created
    through the emulator's component API (tuneloop/local/component_api.py), which brings the
    base's serving process up in the background as SageMaker does. Ref: the ARN; GetAtt
    InferenceComponentName, InferenceComponentArn."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::InferenceComponent"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SageMakerInferenceComponent:
        properties = cloudformation_json["Properties"]
        name = str(properties.get("InferenceComponentName") or resource_name)
        request: dict[str, Any] = {
            "InferenceComponentName": name,
            "EndpointName": properties["EndpointName"],
            "VariantName": properties.get("VariantName", "AllTraffic"),
            "Specification": properties["Specification"],
        }
        if properties.get("RuntimeConfig"):
            request["RuntimeConfig"] = {
                "CopyCount": int(properties["RuntimeConfig"].get("CopyCount", 1))
            }
        sagemaker = _client("sagemaker", region_name)
        arn = sagemaker.create_inference_component(**request)["InferenceComponentArn"]
        _wait_in_service(sagemaker, name)
        return cls(arn, {"InferenceComponentName": name, "InferenceComponentArn": arn})


COMPONENT_CREATE_TIMEOUT_SECONDS = 600.0


def _wait_in_service(sagemaker: Any, name: str) -> None:
    """Return once the component is InService, as CloudFormation's create does; a component
    that fails fails the resource (CREATE_FAILED, with SageMaker's reason)."""
    deadline = time.monotonic() + COMPONENT_CREATE_TIMEOUT_SECONDS
    while True:
        described = sagemaker.describe_inference_component(InferenceComponentName=name)
        status = described["InferenceComponentStatus"]
        if status == "InService":
            return
        if status == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(
                f"inference component {name} is {status}: "
                f"{described.get('FailureReason') or 'not InService in time'}"
            )
        time.sleep(0.5)
