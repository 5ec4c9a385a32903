"""Operating the platform: names, read models, actions and the audit trail (CLI and console)."""
