"""Retrieval stages: sparse (BM25) and dense candidates in SQL, fusion in Python."""
