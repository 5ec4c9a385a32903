"""The web console: server-rendered pages over tuneloop.operations."""
