"""Local servers that speak outside services' real wire contracts (APNs, FCM).

They live under ``scripts/`` rather than ``tests/`` because the push benchmark runs them too,
in a process of their own (``python -m scripts.fakes.apns --help``). They are for tests,
benchmarks and manual trials on loopback; nothing in production imports them.
"""
