"""The Kafka broker jars: resolved once with Maven from ``pom.xml`` (next to this file) into
``<repo>/.cache/kafka-4.3.1/libs``, or taken from ``$KAFKALOG_KAFKA_JARS``.

The cache itself (staging directory, completion marker, file lock) is ``tests/cache_swap.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from cache_swap import MARKER, fill_cache, run_maven

from broker.errors import BrokerError
from broker.processes import death_signal_prefix

__all__ = ["KAFKA_VERSION", "ensure_jars"]

KAFKA_VERSION = "4.3.1"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_REPO_ROOT = _HERE.parents[1]
_JARS_ENV = "KAFKALOG_KAFKA_JARS"
# The jar that proves the download produced a broker (and not, say, an empty dir).
_BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"


def _jars_dir() -> Path:
    override = os.environ.get(_JARS_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return _REPO_ROOT / ".cache" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    # Stored in the marker so that editing pom.xml invalidates an existing cache.
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


def ensure_jars(timeout: float = 600.0) -> Path:
    """Return a directory holding the Kafka broker jars, downloading them if needed.

    The directory is ``$KAFKALOG_KAFKA_JARS`` or ``<repo>/.cache/kafka-4.3.1/libs``; a
    directory of jars without our ``.complete`` marker is used as is. Jars are resolved
    with Maven from ``tests/broker/pom.xml`` into a temporary sibling directory, marked
    complete and renamed into place, so an interrupted download is never reused; a
    file lock serialises concurrent callers (see ``tests/cache_swap.py``).
    """
    libs = _jars_dir()
    if not (libs / MARKER).exists() and any(libs.glob("*.jar")):
        # Jars we did not download (e.g. $KAFKALOG_KAFKA_JARS=<kafka dist>/libs): use
        # them as they are, and never replace or delete somebody else's directory.
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"{libs} holds jars but no kafka_2.13-*.jar broker jar")
        return libs
    return fill_cache(libs, _pom_digest(), _BROKER_JAR, lambda staging: _maven(staging, timeout),
                      timeout=timeout, what="another process is downloading Kafka jars")


def _maven(staging: Path, timeout: float) -> None:
    """Resolve the broker's jars from pom.xml into ``staging``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
            f"{KAFKA_VERSION} jars (or point ${_JARS_ENV} at a directory of jars)."
        )
    # pdeathsig: a Maven orphaned by a killed caller would keep writing into the staging dir
    # after the next caller has started cleaning it up.
    cmd = [
        *death_signal_prefix(), mvn, "-q", "-B", "-f", str(_POM),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    run_maven(cmd, timeout=timeout, error=BrokerError)
    if not (staging / _BROKER_JAR).is_file():
        raise BrokerError(f"Maven ran but {staging} has no {_BROKER_JAR}: {' '.join(cmd)}")
