"""Many processes opening one new SQLite database at once: none is refused.

Switching a new file to WAL needs a moment of exclusive access, and SQLite answers "database is
locked" at once (no busy wait) to a process that asks just then. Without tunery's retry, about 5%
of these opens failed on this machine.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import collections, multiprocessing, os, sys
from tunery.store.sqlite import connect

def open_and_write(args):
    path, i = args
    try:
        conn = connect(path)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
        return "ok"
    except Exception as exc:
        return repr(exc)

if __name__ == "__main__":
    root, outcomes = sys.argv[1], collections.Counter()
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        for trial in range(15):
            path = os.path.join(root, f"new-{trial}.db")
            outcomes.update(pool.map(open_and_write, [(path, i) for i in range(6)]))
    print(dict(outcomes))
"""


def test_processes_opening_a_new_database_together_all_get_in(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    result = subprocess.run([sys.executable, script, tmp_path], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "{'ok': 90}"
