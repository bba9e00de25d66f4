"""The tests' shared helpers, typed, imported by test modules and conftests alike.

- ``waiting``: bounded waits (``wait_until``, ``poll_until``, ``send_until``, ``stream_until``);
- ``capture``: ``Capture``, the handler that keeps what a listener delivers, and the
  probes and sentinels that synchronise a test with it;
- ``net``: loopback ports and endpoints, plain HTTP, child environments;
- ``broker``: broker processes (``BrokerProc``), embedded brokers, parsed /metrics;
- ``factories``: handlers, listeners and zmq contexts cleaned up on exit;
- ``processes``: the helper programs in subprocesses (``ProducerRunner``, ``start_attacker``);
- ``producer.py``, ``attacker.py``: those programs;
- ``keys``: CurveZMQ key files; ``wire``: hand-made messages; ``readme``: README.md's blocks.
"""
