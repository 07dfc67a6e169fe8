"""Speed and memory benchmarks behind `qa bench ...`.

Kept apart from the production modules: nothing in the pipeline imports this package.
"""
