"""Cross-cutting protection of the platform (rate limits), free of any web or RPC framework."""
