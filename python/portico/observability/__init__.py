"""Observability: access logs and request ids."""
