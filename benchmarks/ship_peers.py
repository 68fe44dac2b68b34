"""The ship section's peers: ``kcat -P`` (librdkafka, no parsing: the ceiling) and rsyslog
(``imfile`` + ``omkafka``), raw and parsed with ``mmnormalize``.

They are not installed by the suite; on Debian: ``apt-get install kcat rsyslog-kafka``. A peer
that is missing, or whose configuration rsyslog refuses, is skipped with the reason.

rsyslog runs as a foreground ``rsyslogd -n`` with its own configuration, work directory and pid
file in a temporary directory, so it touches nothing of the system's rsyslog. It reads the file
from its start (``imfile`` with no state file) and is measured until the topic holds every
line. Parsed, each line goes through a liblognorm rulebase (version 2) for nginx's combined
format with typed fields (``status`` and ``bytes`` are JSON numbers), and the record is
``$!all-json``: the ten fields alone, the peer the issue's targets were set against. Adding the
message and the file's name and offset (``addMetadata``), as the agent's records carry them,
made rsyslog about half as fast in trials on the development machine; the lighter peer keeps
the parsed ratio from flattering the agent. ``addMetadata`` is turned off in both modes (it is
on by default and unused by either template).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from benchmarks.ship_proc import TOPIC_POLL_S, Child, ShipperError, TopicCounter, Usage

# nginx's combined format: $remote_addr - $remote_user [$time_local] "$request" $status
# $body_bytes_sent "$http_referer" "$http_user_agent"; ten named fields, two of them numbers.
COMBINED_RULEBASE = r"""version=2
rule=:%client_ip:word% %ident:word% %user:word% [%{"name":"time","type":"char-to","extradata":"]"}%] "%method:word% %path:word% %{"name":"protocol","type":"char-to","extradata":"\""}%" %{"name":"status","type":"number","format":"number"}% %{"name":"bytes","type":"number","format":"number"}% "%{"name":"referrer","type":"char-to","extradata":"\""}%" "%{"name":"user_agent","type":"char-to","extradata":"\""}%"
"""  # noqa: E501 - one rule is one line

RSYSLOG_MODES = {"raw": "rsyslog raw (%msg%)", "mmnormalize": "rsyslog mmnormalize"}


def missing(program: str, package: str) -> str | None:
    """Why ``program`` can not run here, or None if it is on PATH."""
    if shutil.which(program) is None:
        return f"{program} not found (Debian: apt-get install {package})"
    return None


def versions() -> dict[str, str]:
    """The peers' versions, where they are installed (kcat names its librdkafka, which is the
    system's and so also omkafka's)."""
    out: dict[str, str] = {}
    for program, argv, pattern in (
        ("kcat", ["kcat", "-V"], r"Version (\S+) .*?librdkafka (\S+)"),
        ("rsyslog", ["rsyslogd", "-v"], r"rsyslogd\s+(\S+)"),
    ):
        if shutil.which(argv[0]) is None:
            continue
        try:
            said = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(pattern, said.stdout + said.stderr)
        if m:
            out[program] = m.group(1)
            if m.lastindex == 2:
                out["librdkafka (system)"] = m.group(2)
    return out


def run_kcat(bootstrap: str, topic: str, log: Path, work: Path, timeout_s: float) -> Usage:
    """``kcat -P -l``: every line of ``log`` a message, librdkafka's defaults (acks=all, no
    compression); it exits once every message is acknowledged."""
    argv = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-l", str(log)]
    with Child(argv, work / f"kcat-{topic}.out") as child:
        return child.wait_exit(timeout_s)


def rsyslog_conf(mode: str, bootstrap: str, topic: str, log: Path, work: Path) -> str:
    """The configuration of a foreground rsyslogd that ships ``log`` to ``topic``."""
    parsed = mode == "mmnormalize"
    lines = [
        f'global(workDirectory="{work}")',
        'module(load="imfile")',
        'module(load="omkafka")',
    ]
    if parsed:
        lines += ['module(load="mmnormalize")',
                  'template(name="ship" type="string" string="%$!all-json%")']
    else:
        lines.append('template(name="ship" type="string" string="%msg%")')
    lines += [
        # rsyslog's own messages (errors from omkafka, say) go to a file we can show
        f'*.* action(type="omfile" file="{work}/rsyslogd.log")',
        # addMetadata is on by default in rsyslog 8.2302 and costs rsyslog as much as the
        # rest of the raw path (200k instead of 460k lines/s here): neither mode uses it
        f'input(type="imfile" file="{log}" tag="nginx" ruleset="ship" addMetadata="off")',
        'ruleset(name="ship") {',
    ]
    if parsed:
        lines.append(f'  action(type="mmnormalize" rulebase="{work}/combined.rb")')
    lines += [
        f'  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" template="ship"'
        ' partitions.auto="on")',
        "}",
    ]
    return "\n".join(lines) + "\n"


def prepare_rsyslog(mode: str, bootstrap: str, topic: str, log: Path, work: Path) -> Path:
    """Write the config (and rulebase) into ``work``; check it with ``rsyslogd -N1``.
    ShipperError with rsyslog's words if it refuses it (a module missing, say)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "combined.rb").write_text(COMBINED_RULEBASE)
    conf = work / "rsyslog.conf"
    conf.write_text(rsyslog_conf(mode, bootstrap, topic, log, work))
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], capture_output=True,
                           text=True, timeout=60, check=False)
    if check.returncode != 0:
        raise ShipperError(f"rsyslogd -N1 refused the config: "
                           f"{(check.stdout + check.stderr).strip()[-600:]}")
    return conf


def run_rsyslog(mode: str, bootstrap: str, topic: str, *, log: Path, lines: int, work: Path,
                counter: TopicCounter, partitions: int, timeout_s: float) -> Usage:
    """rsyslogd shipping ``log`` (``mode`` raw or mmnormalize), timed from its start until
    ``topic`` holds ``lines`` records."""
    conf = prepare_rsyslog(mode, bootstrap, topic, log, work)
    argv = ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")]
    with Child(argv, work / "rsyslogd.out") as child:
        try:
            return child.wait_for(lambda: counter.count(topic, partitions), lines, timeout_s,
                                  TOPIC_POLL_S)
        except ShipperError as exc:
            internal = work / "rsyslogd.log"
            said = internal.read_text(errors="replace")[-800:] if internal.exists() else ""
            raise ShipperError(f"{exc}; rsyslogd.log: {said}") from None
