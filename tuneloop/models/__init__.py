"""Model references, the model cache and model-folder loading."""

from tuneloop.models.catalog import DEMO_MODEL, cache_dir, is_offline, resolve_model

__all__ = ["DEMO_MODEL", "cache_dir", "is_offline", "resolve_model"]
