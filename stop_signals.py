"""Stopping a long run cleanly: Ctrl-C and SIGTERM both end it through a saved checkpoint, and the
TensorBoard writer is closed without hanging on an interrupted write."""

from __future__ import annotations

import signal
import sys
import threading


class StopSignals:
    """Ctrl-C and SIGTERM (a `kill`, a job scheduler's time limit) both stop training the same way:
    KeyboardInterrupt in the main loop, which saves a checkpoint. `exit_status` then tells the caller
    which one it was, 130 or 143 as a shell reports them, so a scheduler never reads a stop as success.
    Only the first SIGTERM interrupts: `timeout` signals the process and then its process group, and
    the second copy must not cut short the checkpoint that the first one started (SIGKILL still stops)."""

    def __init__(self):
        self.received = signal.SIGINT
        signal.signal(signal.SIGTERM, self._terminate)

    def _terminate(self, signum, frame):
        if self.received == signal.SIGTERM:  # already stopping
            return
        self.received = signal.SIGTERM
        raise KeyboardInterrupt

    @property
    def exit_status(self) -> int:
        return 128 + int(self.received)


def close_writer(writer, timeout_s: float = 10.0) -> None:
    """`writer.close()` (a SummaryWriter), given up after `timeout_s` with a warning. A KeyboardInterrupt
    that lands inside one of the writer's queue operations can leave its background thread asleep until
    its next periodic flush (two minutes), and close() waits for that thread: 4 of 21 SIGTERMs
    to finetune_groot.py at `--log-every 1`. The checkpoint is saved before this, so only the last
    scalars are at stake, and the writer's thread is a daemon: it does not hold up the exit."""
    closer = threading.Thread(target=writer.close, daemon=True)
    closer.start()
    closer.join(timeout_s)
    if closer.is_alive():
        print(f"warning: TensorBoard's event writer did not close within {timeout_s:.0f} s (interrupted while "
              "writing); its last scalars may be missing", file=sys.stderr, flush=True)
