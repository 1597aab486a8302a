"""autograd.allocator: glibc's thresholds are raised once at import, and only where asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autograd import allocator

LINUX_GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")


def _probe(env: dict[str, str]) -> str:
    """`allocator.tuned` after importing autograd in a fresh interpreter with `env`."""
    code = "import autograd, autograd.allocator as a; print(a.tuned)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "NPGRAD_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        check=True, cwd=os.path.dirname(os.path.dirname(allocator.__file__)),
    )  # fmt: skip
    return result.stdout.strip()


@pytest.mark.skipif(not LINUX_GLIBC, reason="glibc only")
def test_import_tunes_malloc_unless_told_not_to() -> None:
    assert _probe({}) == "True"
    assert _probe({"NPGRAD_MALLOC_TUNING": "0"}) == "False"
    # the user's own glibc settings win
    assert _probe({"MALLOC_TRIM_THRESHOLD_": "1000000"}) == "False"


def test_tuning_twice_is_harmless() -> None:
    first = allocator.tune_malloc()
    assert allocator.tune_malloc() == first
