"""The retrieval stage: knowledge-base passages from Qdrant."""
