"""Benchmark management: immutable, content-addressed versions in S3 + DynamoDB.

``store`` creates, lists and resolves versions; ``freeze`` pins the versions one retrain
run is evaluated on, copying them into the run's own S3 prefix.
"""
