"""The record store's Prometheus metrics (``logfabric_broker_store_*``)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from broker._store_feed import LATENCY_BUCKETS, StoreStatus

__all__ = ["store_metrics"]


def store_metrics(s: StoreStatus) -> list[Metric]:
    """The store's metric families, from one status snapshot."""
    up = GaugeMetricFamily("logfabric_broker_store_up", "1 while the record store writes, 0 while it is degraded.")
    up.add_metric([], 0 if s.problem else 1)
    records = GaugeMetricFamily("logfabric_broker_store_records", "Records held in the store.")
    records.add_metric([], s.records)
    size = GaugeMetricFamily("logfabric_broker_store_bytes", "Bytes of the store's segment files.")
    size.add_metric([], s.bytes)
    oldest = GaugeMetricFamily(
        "logfabric_broker_store_oldest_record_timestamp_seconds",
        "When the oldest record held was stored (seconds since the epoch; 0 when empty).",
    )
    oldest.add_metric([], s.oldest or 0.0)
    appends = CounterMetricFamily("logfabric_broker_store_appends", "Records appended to the store.")
    appends.add_metric([], s.appended)
    buckets, total = [], 0
    for bound, count in zip((*(str(b) for b in LATENCY_BUCKETS), "+Inf"), s.latency, strict=True):
        total += count
        buckets.append((bound, total))
    latency = HistogramMetricFamily(
        "logfabric_broker_store_append_seconds", "Time one append (one write of a batch of records) took."
    )
    latency.add_metric([], buckets, s.latency_sum)
    deleted = CounterMetricFamily(
        "logfabric_broker_store_deleted_records",
        "Records retention deleted, by reason (bytes: over retention_bytes; age: older than retention_age).",
        labels=["reason"],
    )
    for reason, count in s.deleted.items():
        deleted.add_metric([reason], count)
    errors = CounterMetricFamily(
        "logfabric_broker_store_errors",
        "Store failures by kind: open, write, sync, retention; torn (a cut record at the end of a segment) and "
        "corrupt (a segment or an index that did not check) found when the store opened; damaged_read (a record "
        "that failed its checksum when read); internal (an unexpected exception in the store: logged, the store "
        "is opened again after a backoff).",
        labels=["kind"],
    )
    for kind, count in s.errors.items():
        errors.add_metric([kind], count)
    missed = CounterMetricFamily(
        "logfabric_broker_store_missed_records",
        "Records forwarded but not stored, by reason (behind: the store's queue was full; unwritable: the store "
        "could not write).",
        labels=["reason"],
    )
    for reason, count in s.missed.items():
        missed.add_metric([reason], count)
    skipped = CounterMetricFamily(
        "logfabric_broker_store_skipped_messages",
        "Frames not stored because they are not records (no topic NUL payload within the topic bound) or are "
        "larger than the store takes (256 MiB).",
    )
    skipped.add_metric([], s.skipped)
    return [up, records, size, oldest, appends, latency, deleted, errors, missed, skipped]
