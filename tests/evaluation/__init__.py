"""Tests of tpembed.evaluation and tpembed.cache.

A package, so its conftest does not shadow tests/conftest.py (imported as `conftest`).
"""
