"""The ``kafkalog`` command imports a Kafka client only when the command it runs needs one:
``kafkalog ship`` on the confluent transport never loads kafka-python (it costs about a third
of the start-up), and on kafka-python it does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Runs the command in-process, then says which client libraries it had imported.
_RUN = """
import atexit, sys
atexit.register(lambda: print("imported:", "kafka" in sys.modules,
                              "confluent_kafka" in sys.modules, file=sys.stderr, flush=True))
from kafkalog.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_building_the_command_and_its_parsers_imports_no_kafka_client() -> None:
    code = ("import sys\n"
            "from kafkalog.cli.main import build_parser\n"
            "import kafkalog.cli.ship, kafkalog.ship.agent, kafkalog.cli.sink\n"
            "build_parser().parse_args(['ship', '--path', 'x', '--topic', 't'])\n"
            "print(sorted(m for m in ('kafka', 'confluent_kafka') if m in sys.modules))")
    proc = _python(code)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "[]"


def _ship(tmp_path: Path, transport: str) -> str:
    """Run ``kafkalog ship`` on ``transport`` until it has read a line and queued its record
    (with no broker to take it), stop it with SIGTERM; what it had imported."""
    pytest.importorskip("confluent_kafka" if transport == "confluent" else "kafka")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"one line\n")
    config = tmp_path / "ship.toml"
    state = tmp_path / "state"
    config.write_text(f'state_dir = "{state}"\ntransport = "{transport}"\n'
                      'bootstrap_servers = "127.0.0.1:9"\nclose_timeout_ms = 200\n'
                      f'[[input]]\npaths = ["{logs}/*.log"]\ntopic = "t"\n')
    proc = _python(_RUN, "ship", "--config", str(config))
    try:
        deadline = time.monotonic() + 60
        while not (state / "registry.json").exists():  # written once the file is open
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.05)  # polled, bounded: the agent is another process
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return next(line for line in err.splitlines() if line.startswith("imported:"))


def test_ship_on_the_confluent_transport_never_imports_kafka_python(tmp_path: Path) -> None:
    assert _ship(tmp_path, "confluent") == "imported: False True"


def test_ship_on_kafka_python_imports_it(tmp_path: Path) -> None:
    assert _ship(tmp_path, "kafka-python") == "imported: True False"
