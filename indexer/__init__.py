"""Batch indexer and Qdrant stores (built on the multimodal library)."""
