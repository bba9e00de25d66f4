"""The logfabric broker: forwards records from producers to subscribers."""
