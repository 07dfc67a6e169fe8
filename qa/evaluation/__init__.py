"""Accuracy evaluations on real recordings and reference labels.

Kept apart from the production modules: nothing in the pipeline imports this package.
"""
