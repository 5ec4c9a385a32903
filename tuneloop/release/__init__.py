"""Versions and releases: the ModelVersions repository, the registry, deployment, the
serving containers, rollback and failure recording. One package, so that what decides what
serves, and why, has one home."""
