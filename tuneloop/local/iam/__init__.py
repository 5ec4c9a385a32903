"""IAM and resource-policy enforcement for the local platform (never imported on AWS)."""
