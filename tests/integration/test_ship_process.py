"""``kafkalog ship`` as a process: a crash loop, a torn last line, signals, and a TOML config
reloaded with SIGHUP."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

from broker.kraft import KafkaBroker
from ship_harness import append, check, lines, log_file, number_of, numbered, ship, wait_for

from kafkalog.ship.registry import Registry

KILLS = int(os.environ.get("KAFKALOG_SHIP_KILLS", "30"))


def new_topic() -> str:
    return f"shipp-{uuid.uuid4().hex[:12]}"


def holds_lock(state: Path) -> bool:
    """Whether a running agent holds the state directory's lock (it is past its start-up)."""
    try:
        fd = os.open(state / "registry.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def ship_running(state: Path, *args: str) -> subprocess.Popen[str]:
    """Start an agent and wait (bounded) until it runs: its signal handlers are in place."""
    agent = ship(*args)
    wait_for(lambda: holds_lock(state) or agent.poll() is not None, what="the agent running")
    assert agent.poll() is None, agent.communicate()[0]
    return agent


def committed(state: Path) -> dict[str, int]:
    return {s.path: s.offset for s in Registry(state).load()}


def stop(agent: subprocess.Popen[str]) -> str:
    agent.send_signal(signal.SIGTERM)
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, out
    return out


def test_a_crash_loop_loses_no_line(fresh_broker: KafkaBroker, tmp_path: Path) -> None:
    log = log_file(tmp_path)
    state = tmp_path / "state"
    topic = new_topic()
    args = ["--path", str(log), "--topic", topic, "--state-dir", str(state),
            "--bootstrap-servers", fresh_broker.bootstrap]
    rng = random.Random(17)
    written = 0
    for kill in range(KILLS):
        if kill == KILLS // 3:
            fresh_broker.stop()  # the broker is down for the middle third of the kills
        if kill == 2 * KILLS // 3:
            fresh_broker.start()
        agent = ship(*args)
        for _ in range(rng.randint(1, 6)):
            append(log, lines(written, written + 100))
            written += 100
            time.sleep(rng.uniform(0.0, 0.15))
        time.sleep(rng.uniform(0.0, 0.6))
        agent.kill()  # SIGKILL at a random point
        agent.wait(30)
    agent = ship_running(state, *args)
    wait_for(lambda: committed(state).get(str(log)) == log.stat().st_size, timeout_s=120,
             what="the last agent caught up")
    # What the killed agents spilled is adopted and replayed by the last one.
    wait_for(lambda: not list((state / "spill").rglob("*.seg")), timeout_s=120,
             what="the spill of the killed agents replayed")
    stop(agent)
    got = check(fresh_broker.bootstrap, topic, written, timeout_s=120)
    repeats = sum(got.duplicates.values()) - len(got.duplicates)
    print(f"crash loop: {KILLS} SIGKILLs, {written} lines, {len(got.gaps)} gaps, "
          f"{repeats} duplicate deliveries")
    assert got.gaps == [], f"{len(got.gaps)} lines lost, first {got.gaps[:5]}"


def test_a_torn_last_line_is_shipped_once_after_it_is_completed(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    state = tmp_path / "state"
    topic = new_topic()
    args = ["--path", str(log), "--topic", topic, "--state-dir", str(state),
            "--bootstrap-servers", kafka_broker.bootstrap]
    whole = numbered(1)
    append(log, numbered(0) + whole[:20])  # a writer stopped halfway through line 1
    agent = ship(*args)
    wait_for(lambda: committed(state).get(str(log)) == len(numbered(0)))
    agent.kill()
    agent.wait(30)
    append(log, whole[20:])
    agent = ship_running(state, *args)
    wait_for(lambda: committed(state).get(str(log)) == log.stat().st_size)
    stop(agent)
    got = check(kafka_broker.bootstrap, topic, 2)
    assert got.gaps == [] and got.duplicates == {} and got.received == 2


def test_a_toml_config_with_two_inputs_and_a_reload(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    first, second = log_file(tmp_path, "a.log"), log_file(tmp_path, "b.log")
    third = log_file(tmp_path, "c.log")
    state = tmp_path / "state"
    topic_a, topic_b = new_topic(), new_topic()
    toml = tmp_path / "ship.toml"

    def write_config(*extra: tuple[str, Path]) -> None:
        text = (f'state_dir = "{state}"\nbootstrap_servers = "{kafka_broker.bootstrap}"\n'
                'scan_interval_ms = 100\ncommit_interval_ms = 100\nacks = "all"\n\n'
                f'[[input]]\nname = "a"\npaths = ["{first}"]\ntopic = "{topic_a}"\n'
                'static_fields = {service = "svc-a"}\n')
        for name, path in extra:
            text += f'\n[[input]]\nname = "{name}"\npaths = ["{path}"]\ntopic = "{topic_b}"\n'
        toml.write_text(text)

    write_config()
    append(first, lines(0, 100))
    append(second, lines(0, 50))
    append(third, lines(0, 5))
    agent = ship_running(state, "--config", str(toml))
    wait_for(lambda: committed(state).get(str(first)) == first.stat().st_size)
    assert str(second) not in committed(state)
    write_config(("b", second))
    agent.send_signal(signal.SIGHUP)
    wait_for(lambda: committed(state).get(str(second)) == second.stat().st_size,
             what="the input added by SIGHUP")
    # One reload removes input b and adds input c: once c's file is shipped, b is gone, so
    # what b.log gets from now on stays unread (and its offset where it was).
    write_config(("c", third))
    agent.send_signal(signal.SIGHUP)
    wait_for(lambda: committed(state).get(str(third)) == third.stat().st_size,
             what="the reload that removes input b")
    append(second, lines(50, 60))
    append(first, lines(100, 110))
    wait_for(lambda: committed(state).get(str(first)) == first.stat().st_size)
    assert committed(state)[str(second)] == 50 * len(numbered(0))
    stop(agent)
    got_a = check(kafka_broker.bootstrap, topic_a, 110)
    assert got_a.gaps == [] and got_a.duplicates == {}
    assert {r["service"] for r in got_a.records} == {"svc-a"}
    got_b = check(kafka_broker.bootstrap, topic_b, 55)  # b's first 50 lines, then c's 5
    assert got_b.received == 55
    from_b = sorted(number_of(r["message"]) or 0 for r in got_b.records
                    if r["file"] == str(second))
    assert from_b == list(range(50))  # nothing appended after the removal, no duplicate


def test_a_bad_config_fails_at_start_naming_it(tmp_path: Path) -> None:
    toml = tmp_path / "ship.toml"
    toml.write_text('state_dir = "x"\n[[input]]\npaths = ["/tmp/x"]\ntopic = "t"\n'
                    'format = "nginxx"\n')
    agent = ship("--config", str(toml))
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert "input[0].format" in out
