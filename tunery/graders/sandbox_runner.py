"""Runs inside the python grader's sandbox process; never imported by tunery itself.

Started as `python -I sandbox_runner.py CONFIG_JSON` (isolated mode: no user site, no PYTHON*
variables, the script's own directory not on the path, so tunery is not importable). The first
stdin line is the user's source; then each line is one `{"sample": ..., "item": ...}` and each
reply one JSON line on the real stdout: `{"score": x}` or `{"error": kind, "details": text}`.
The user's prints go to stderr, so they cannot break the protocol.

Before the user's code runs, an audit hook (PEP 578, which code cannot remove) refuses sockets,
new processes, native libraries, and every file outside the read-only Python installation and
the sandbox's own scratch directory. The parent adds rlimits and, where the kernel allows, an
empty network namespace.
"""

import json
import math
import os
import sys


def _install_guard(readable: list[str], writable: str) -> None:
    readable = [os.path.realpath(p) + os.sep for p in readable]
    writable = os.path.realpath(writable) + os.sep
    denied_prefixes = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "ctypes.")
    changes = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink"}
    denied = {"os.system", "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "_posixsubprocess.fork_exec"}

    def guard(event, args):
        if event.startswith(denied_prefixes) or event in denied:
            what = "network access" if event.startswith("socket.") else f"{event}"
            raise PermissionError(f"{what} is not allowed in a python grader")
        if event in ("open", "os.listdir", "os.scandir") or event in changes:
            path = args[0] if args else "."
            if isinstance(path, int) or path is None:
                return
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            full = os.path.realpath(path) + os.sep
            mode = args[1] if event == "open" else ""
            writing = event in changes or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            if full.startswith(writable):
                return
            if not writing and any(full.startswith(root) for root in readable):
                return
            raise PermissionError(f"file access to {path} is not allowed in a python grader")

    sys.addaudithook(guard)


def _reply(stream, message: dict) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def main() -> None:
    config = json.loads(sys.argv[1])
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the user's prints land on stderr
    source = json.loads(sys.stdin.readline())["source"]
    # Modules a grader commonly needs, imported before the guard shuts the file system.
    import collections  # noqa: F401
    import re  # noqa: F401
    import statistics  # noqa: F401

    _install_guard(config["readable"], config["scratch"])
    namespace = {"__name__": "grader"}
    try:
        exec(compile(source, "<grader>", "exec"), namespace)  # the user's own code, in this sandbox only
    except BaseException as exc:  # noqa: BLE001 - any failure is the user's, reported as such
        _reply(replies, {"error": "python_grader_runtime_error", "details": f"{type(exc).__name__}: {exc}"})
        return
    grade = namespace.get("grade")
    if not callable(grade):
        _reply(
            replies, {"error": "python_grader_runtime_error", "details": "the source defines no grade(sample, item)"}
        )
        return
    _reply(replies, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            value = grade(request["sample"], request["item"])
        except BaseException as exc:  # noqa: BLE001
            _reply(replies, {"error": "python_grader_runtime_error", "details": f"{type(exc).__name__}: {exc}"})
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            _reply(replies, {"score": float(value)})
        else:
            _reply(
                replies,
                {
                    "error": "python_grader_runtime_error",
                    "details": f"grade returned {value!r:.80}, not a finite number",
                },
            )


if __name__ == "__main__":
    main()
