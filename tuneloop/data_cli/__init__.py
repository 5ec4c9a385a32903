"""``tuneloop data push|drops|show``: send data drops to the raw bucket and inspect their
manifests (see docs/ingestion.md, "CLI")."""
