"""Local servers that speak outside services' real wire contracts (Solr, APNs, FCM).

They live under ``scripts/`` rather than ``tests/`` so benchmarks and manual trials can run
them too, in processes of their own (``python -m scripts.fakes.solr --help``,
``python -m scripts.fakes.apns --help``). They are for tests, benchmarks and trials on
loopback; nothing in production imports them.
"""
