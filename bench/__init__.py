"""Benchmarks for ingress-audit: realistic load against the real server, and the floor to compare with.

``python -m bench`` runs the default benchmark; ``bench/README.md`` says what each figure means.
"""
