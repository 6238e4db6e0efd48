"""Integrations: what a matched route calls (Lambda proxy, HTTP proxy, mock)."""
