"""Foundations under retrieval/, serving/ and bot/: typed settings and the conversation store."""
