"""SIGTERM becomes one catchable exception in the process that asked for it (the command line exits 143 with
one line), while processes forked from it afterwards (data-loader workers) still die of it."""

import os
import signal
import time

import pytest

from geodiff.errors import Terminated, raise_on_sigterm


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigterm_raises_in_the_owner_and_kills_forked_children():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        raise_on_sigterm()
        pid = os.fork()
        if pid == 0:  # the child: inherits the handler, must still be ended by SIGTERM
            time.sleep(10)
            os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode boundary
    finally:
        signal.signal(signal.SIGTERM, previous)
