"""``--metrics-port`` of ``kafkalog ship`` and ``kafkalog sink``: the running command serves
its Prometheus series over HTTP (127.0.0.1 by default), and a port it cannot take is a usage
error that names it."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from pathlib import Path

from broker.kraft import free_port
from conftest import ExternalBroker
from prometheus_client.parser import text_string_to_metric_families
from ship_harness import append, lines, log_file, ship
from sink_harness import file_lines, log_records, sink, stop, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample served on ``port``, by name and labels; {} while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_ship_serves_its_files_and_its_deliveries(
    kafka_broker: ExternalBroker, topic: str, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    append(log, lines(0, 40))
    port = free_port()
    agent = ship("--path", str(log), "--topic", topic, "--state-dir", str(tmp_path / "state"),
                 "--bootstrap-servers", kafka_broker.bootstrap, "--metrics-port", str(port))
    try:
        delivered = ("kafkalog_delivered_total", (("topic", topic),))
        wait_for(lambda: scrape(port).get(delivered) == 40, process=agent,
                 what="40 records delivered, as the metrics say")
        got = scrape(port)
        assert got[("kafkalog_ship_lines_total", ())] == 40
        assert got[("kafkalog_ship_files", (("input", "cli"),))] == 1
        assert got[("kafkalog_ship_lag_bytes", (("file", str(log)), ("input", "cli")))] == 0
        assert got[("kafkalog_ship_inotify_active", ())] == 1
    finally:
        out = stop(agent)
    assert "40 event(s) from 40 line(s)" in out


def test_sink_serves_what_it_wrote(
    kafka_broker: ExternalBroker, topic: str, tmp_path: Path
) -> None:
    log_records(kafka_broker.bootstrap, topic, 50)
    out, port = tmp_path / "archive", free_port()
    process = sink("--topic", topic, "--group", f"g-{uuid.uuid4().hex[:8]}",
                   "--bootstrap-servers", kafka_broker.bootstrap, "--to", f"file:{out}",
                   "--metrics-port", str(port))
    try:
        written = ("kafkalog_sink_records_total", (("outcome", "written"),))
        wait_for(lambda: scrape(port).get(written) == 50, process=process,
                 what="50 records written, as the metrics say")
        assert len(file_lines(out)) == 50
        assert scrape(port)[("kafkalog_sink_records_total", (("outcome", "read"),))] == 50
    finally:
        stop(process)


def test_a_port_in_use_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        agent = ship("--path", str(tmp_path / "*.log"), "--topic", "t",
                     "--state-dir", str(tmp_path / "state"), "--metrics-port", str(port))
        out, _ = agent.communicate(timeout=60)
    finally:
        taken.close()
    assert agent.returncode == 2, out
    assert f"kafkalog ship: no metrics on port {port}" in out
    assert not (tmp_path / "state" / "registry.json").exists(), "it never started shipping"
