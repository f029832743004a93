"""Run upstream venvstacks (0.8.0b2) with a local runtime archive instead of a download.

    VENVSTACKS_LOCAL_RUNTIME=/path/cpython-3.11.7+local-...-install_only.tar.gz \\
        PEER_PYTHON -I tools/upstream_offline.py lock|build|publish ... venvstacks.toml

Upstream fetches its runtimes from GitHub through pbs-installer, which cannot be
reached here. In 0.8, as in 0.7, ``venvstacks.stacks._pdm_python_install``
imports ``download``, ``get_download_link`` and ``install_file`` from
``pbs_installer`` each time it is called, so replacing ``pbs_installer.download``
with a copy of the local archive is enough: the link lookup still runs (it only
reads pbs-installer's table) and ``install_file`` unpacks the copy. The spec's
``python_implementation`` must therefore name a version in that table
(cpython@3.11.7 is, as an ``install_only`` archive with pbs-installer 2025.7.23,
which ``pdm[locked]==2.25.9`` pins). Nothing else in upstream 0.8 needs the
network beyond the package index: it locks with ``uv lock`` / ``uv export`` and
installs with ``uv pip install``.

Run this with the interpreter of a virtual environment holding upstream
``venvstacks==0.8.0b2`` and ``pdm[locked]==2.25.9``, not with this repository's
tool (``-I`` keeps the current folder and this folder off ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import sys

ENV_VAR = "VENVSTACKS_LOCAL_RUNTIME"


def _local_download(python_file: tuple[str, str | None], destination: str, client: object = None) -> str:
    """Stand-in for ``pbs_installer.download``: copy the local archive to ``destination``."""
    local = os.environ[ENV_VAR]
    url = python_file[0]
    # The upstream checksum belongs to the real download; the local archive is not checked against it.
    print(f"[offline] {url} -> {os.path.basename(local)}", file=sys.stderr)
    shutil.copyfile(local, destination)
    # The returned "original file name" selects the unpacker, so keep the archive's suffix.
    return os.path.basename(local)


def main() -> None:
    """Patch pbs-installer, then hand over to upstream's command line."""
    local = os.environ.get(ENV_VAR)
    if not local or not os.path.isfile(local):
        raise SystemExit(f"upstream_offline: set {ENV_VAR} to a runtime archive (got {local!r})")
    import pbs_installer

    pbs_installer.download = _local_download  # type: ignore[assignment]
    from venvstacks.cli import main as upstream_main  # upstream's package, from the peer environment

    upstream_main()


if __name__ == "__main__":
    main()
