"""Ctrl-C that stops a training loop at a point where it can checkpoint, rather than wherever it happens to be."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

__all__ = ["StopRequest"]

log = logging.getLogger(__name__)


class StopRequest:
    """While installed, the first Ctrl-C (SIGINT) only sets :attr:`requested`: the loop checks it at a safe point
    (the end of an iteration), checkpoints and exits. A second Ctrl-C interrupts at once (``KeyboardInterrupt``).

    Installs itself only in the main thread (signal handlers cannot be set elsewhere); :meth:`restore` puts the
    process's previous handler back, so a script may train more than one run.

    Examples:
        >>> import os, signal
        >>> stop = StopRequest()
        >>> os.kill(os.getpid(), signal.SIGINT)
        >>> stop.requested
        True
        >>> stop.restore()
    """

    def __init__(self, message: str = "Ctrl-C: the run stops with a checkpoint after the current iteration "
                                      "(Ctrl-C again: at once, without one)") -> None:
        self.message, self.requested, self.previous = message, False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._request)

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once
        log.warning(self.message)

    def restore(self) -> None:
        """Puts back the SIGINT handler from before (idempotent)."""
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
