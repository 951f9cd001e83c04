"""Policy retrieval: load documents, chunk by section, embed, store versions in Qdrant, search.

Entry points: `ingest.ingest_files`, `search.PolicySearch`, `versions.read_versions` and
`versions.delete_versions`, `evaluate.evaluate_retrieval`; `client.open_qdrant` builds the
Qdrant client from settings. Nothing here knows about Slack or the CLI.
"""
