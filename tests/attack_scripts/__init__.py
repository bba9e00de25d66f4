"""Subprocess scripts for the attack tests (tests/test_sender_attacks.py, tests/broker/test_store_attacks.py)."""
