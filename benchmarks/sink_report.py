"""The ``## kafkalog sink`` section of ``docs/performance.md``, from the sink section's JSON."""

from __future__ import annotations

from typing import Any

from benchmarks import sink

HEADING = "## kafkalog sink"


def summary_line(result: dict[str, Any]) -> str:
    """The headline ratio, as CI prints it."""
    return (f"sink ratio kafkalog sink / parallel_bulk, docs/s: {result['ratio']:.2f}x"
            f" (target >= {result['target']}x)")


def markdown(out: dict[str, Any]) -> list[str]:
    """The section: how it was measured, the table, the ratio against the target."""
    r, env = out["sink"], out["environment"]
    if "skipped" in r:
        return [HEADING, "", f"Skipped in this run: {r['skipped']}", ""]
    s = r["sink"]
    before, after = r["parallel_bulk"]
    ceiling = (before["docs_per_s"] + after["docs_per_s"]) / 2
    met = "met" if r["ratio"] >= r["target"] else "not met"
    load = r["load_average"]
    return [
        HEADING,
        "",
        f"`kafkalog sink` indexing {r['records']:,} records of the handler's default schema"
        f" (about {r['avg_value_bytes']} bytes of JSON) from a {r['partitions']}-partition topic"
        " into a local single-node OpenSearch 2.19.6 (one shard, no replica, refresh off during"
        " the run), beside the ceiling: the same documents bulk-indexed straight from memory"
        f" with opensearch-py's `parallel_bulk` at the same bulk size ({r['chunk']:,}) and"
        f" concurrency ({r['workers']} threads; the sink: {r['workers']} bulk workers), once"
        " before and once after the sink, so that the machine's drift falls on both sides"
        f" (after a discarded warm-up run of {sink.WARM_UP:,} documents, for the JVM's"
        " compiler)."
        " `tox -e bench -- --sections sink` runs this section alone (it is not part of"
        f" `--quick`); `{sink.ENV_RECORDS}` changes the size.",
        "",
        "The sink runs as `kafkalog sink --config` in a child process, timed from its start"
        " (start-up and group join included) until the group has committed every offset, so"
        " every record acknowledged by the store (commits every second: the end is seen up to"
        " a second late). Its CPU is the child's user+sys, every thread; its peak RSS its"
        " `VmHWM`; the bulk latency comes from its Prometheus histogram, interpolated within"
        " the bucket as `histogram_quantile` does. The store's CPU is the OpenSearch JVM's over"
        f" the same interval. Measured {env['date']}; load average (1, 5, 15 min)"
        f" {', '.join(map(str, load['before']))} before the section and"
        f" {', '.join(map(str, load['after']))} after.",
        "",
        "| indexer | docs/s | store CPU µs per doc |",
        "|---|---:|---:|",
        f"| `parallel_bulk` from memory, before the sink | {before['docs_per_s']:,.0f} |"
        f" {before['store_cpu_us_per_doc']:.0f} |",
        f"| `kafkalog sink`, from Kafka | {s['docs_per_s']:,.0f} |"
        f" {s['store_cpu_us_per_doc']:.0f} |",
        f"| `parallel_bulk` from memory, after the sink | {after['docs_per_s']:,.0f} |"
        f" {after['store_cpu_us_per_doc']:.0f} |",
        "",
        "| the sink | |",
        "|---|---:|",
        f"| documents indexed | {r['indexed']:,} of {r['records']:,} |",
        f"| wall time | {s['seconds']:.1f} s |",
        f"| CPU (user+sys) | {s['cpu_s']:.1f} s, {s['cpu_us_per_doc']:.1f} µs per record |",
        f"| peak RSS | {s['peak_rss_mib']:.0f} MiB |",
        f"| bulks of up to {r['chunk']:,} | {s['bulks']:,.0f}, mean {s['bulk_mean_s']:.2f} s |",
        f"| bulk latency p50 / p99 | {s['bulk_p50_s']:.2f} s / {s['bulk_p99_s']:.2f} s |",
        "",
        "| ratio | goal | this run | |",
        "|---|---:|---:|---|",
        f"| sink / `parallel_bulk` (mean {ceiling:,.0f} docs/s), docs/s | >= {r['target']}x |"
        f" {r['ratio']:.2f}x | {met} |",
        f"| sink / `parallel_bulk` before, after | | {s['docs_per_s'] / before['docs_per_s']:.2f}x,"
        f" {s['docs_per_s'] / after['docs_per_s']:.2f}x | |",
        "",
    ]
