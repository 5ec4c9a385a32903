"""``sourcedir.tar.gz``: the training, evaluation and serving code of the SageMaker jobs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.assets import build_sourcedir


class TrainingCode(Construct):
    """Builds the deterministic archive under ``build/`` and ships it as one S3 file asset
    (a single-file asset is uploaded as-is, not re-zipped). ``s3_url`` is the
    ``sagemaker_submit_directory`` hyperparameter."""

    def __init__(self, scope: Construct, construct_id: str, *, out_dir: Path | None = None) -> None:
        super().__init__(scope, construct_id)
        self.archive = build_sourcedir(out_dir=out_dir)
        self.asset = s3_assets.Asset(self, "SourceDir", path=str(self.archive))
        self.s3_url = self.asset.s3_object_url
