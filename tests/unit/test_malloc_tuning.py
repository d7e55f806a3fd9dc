"""The node's malloc settings (node/malloc_tuning.py): buffers of a few hundred KB, freed while
small objects live between them, go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import sys
from node.malloc_tuning import tune_malloc
assert tune_malloc(), "not applied"
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon'):
            return int(line.split()[1]) // 1024
base = anon()
big, small = [], []
for i in range(300):
    buffer = bytearray(512 * 1024)
    buffer[::4096] = b'x' * len(buffer[::4096])  # touch every page
    big.append(buffer)
    small.append(bytearray(200))
    if i % 2:
        big.pop(0)  # freed as we go, as a node frees blocks and messages
held = anon()
big.clear()
print(base, held, anon())
"""


def _run(env_settings: dict[str, str]) -> tuple[int, int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env={**env, **env_settings},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    base, held, after = (int(x) for x in result.stdout.split())
    assert held >= base + 50, (base, held, after)
    return base, held, after


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc malloc and /proc")


def test_freed_large_buffers_leave_the_resident_set() -> None:
    base, held, after = _run({})
    assert after <= base + 16, f"{after - base} MB still resident after freeing (held {held})"


def test_an_operator_setting_in_the_environment_wins() -> None:
    """A threshold of 64 MB from the environment puts the buffers in the heap, between the
    small objects, so freeing them leaves the heap as large: the node did not override it."""
    _, held, after = _run({"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)})
    assert after >= held - 16, f"freed to {after} MB of {held}: the environment was overridden"
