"""Print pip arguments that make pip take PyTorch's CPU wheels, where PyTorch's CPU index answers.

Usage: ``python .ci/torch_index.py [URL]`` prints ``--extra-index-url URL`` when ``URL/torch/``
answers within 5 s, and nothing otherwise (with a note on stderr), so that a machine without that
index (an offline mirror, or this project's build machines, where pip finds the CPU wheel through
its own ``find-links``) does not wait on pip's network retries. With the index, a pin such as
``torch==2.13.0+cpu`` can only resolve to the CPU build.
"""

from __future__ import annotations

import sys
import urllib.request

DEFAULT = "https://download.pytorch.org/whl/cpu"


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether ``url/torch/`` answers an HTTP GET within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as r:
            r.read(1)
        return True
    except Exception:  # DNS failure, refusal, timeout, HTTP error: all mean "not usable here"
        return False


def index_args(url: str = DEFAULT) -> list[str]:
    """``["--extra-index-url", url]`` if the index answers, else ``[]`` (noted on stderr)."""
    if not url:
        return []
    if reachable(url):
        return ["--extra-index-url", url]
    print(
        f"note: {url} does not answer; pip resolves torch from its configured indexes and find-links",
        file=sys.stderr,
    )
    return []


if __name__ == "__main__":
    print(" ".join(index_args(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)))
