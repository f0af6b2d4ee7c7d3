"""Tests of tpembed.evaluation and tpembed.embedding_cache.

A package, so its conftest does not shadow tests/conftest.py (imported as `conftest`).
"""
