"""Local servers that speak outside services' real wire contracts (Solr, and others).

They live under ``scripts/`` rather than ``tests/`` so benchmarks and manual trials can run
them too (``python -m scripts.fakes.solr --help``). They are for tests, benchmarks and
trials on loopback; nothing in production imports them.
"""
