"""Install the built wheel and sdist into fresh virtual environments and import them.

Run by ``tox -e release`` after ``python -m build``: proves the artifacts install on their own
(declared dependencies only, no source tree on the path) and carry ``py.typed`` and the
console script.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

CHECK = (
    "import importlib.resources as r, kafkalog, kafkalog.cli.main;"
    "assert r.files('kafkalog').joinpath('py.typed').is_file();"
    "print('kafkalog', kafkalog.__version__, 'from', kafkalog.__file__)"
)


def _install_and_check(artifact: Path, env_dir: Path) -> None:
    venv.create(env_dir, with_pip=True, clear=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(artifact)], check=True)
    # Run from the env dir so the source tree can not shadow the installed package.
    subprocess.run([python, "-c", CHECK], check=True, cwd=env_dir)
    subprocess.run([env_dir / "bin" / "kafkalog", "--help"], check=True,
                   stdout=subprocess.DEVNULL, cwd=env_dir)


def main(argv: list[str]) -> int:
    dist, env_root = Path(argv[1]), Path(argv[2])
    wheels = sorted(dist.glob("kafkalog-*.whl"))
    sdists = sorted(dist.glob("kafkalog-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        return 1
    for artifact in (wheels[0], sdists[0]):
        _install_and_check(artifact, env_root / artifact.name.replace(".", "_"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
