"""Tenants, API keys (stored hashed) and JWT bearer tokens."""
