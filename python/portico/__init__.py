"""Portico: a self-hosted API gateway with Amazon API Gateway's wire formats."""

from portico._core import Gateway, Router, TokenBuckets, Verdict

__all__ = ["Gateway", "Router", "TokenBuckets", "Verdict", "__version__"]
__version__ = "0.1.0"
