"""Watching production: data capture, quality metrics, drift and continuous evaluation."""
