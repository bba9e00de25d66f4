"""logfabric benchmarks: each compares an anchor and ours side by side in one run."""
