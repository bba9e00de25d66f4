"""Small programs the end-to-end tests run as subprocesses (see ``producer.py``)."""
