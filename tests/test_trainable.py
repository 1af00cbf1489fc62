"""The trial worker's teardown stays off the user's console (CI once failed on it: a SIGTERM
from Ray landed in a garbage-collection callback and printed a traceback mid-sweep)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, sys, weakref
    from jersey_ray.sweep.trainable import _quiet_exit_in_finalizers

    class Thing:
        pass

    def exits(_):
        raise SystemExit(1)  # what Ray's SIGTERM handler raises

    def fails(_):
        raise ValueError("a real bug in a finalizer")

    _quiet_exit_in_finalizers()
    first = sys.unraisablehook
    _quiet_exit_in_finalizers()  # a reused worker installs it again: once is kept
    assert sys.unraisablehook is first, "installed twice"
    for callback in (exits, fails):
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        gc.collect()
    print("still running")
    """
)


def test_exit_during_garbage_collection_is_quiet_other_errors_are_not():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "still running"
    assert "SystemExit" not in proc.stderr
    assert proc.stderr.count("Traceback") == 1 and "a real bug in a finalizer" in proc.stderr
