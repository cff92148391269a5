"""Serving the app with one or more processes.

With several workers each process binds its own listening socket with
SO_REUSEPORT, so the kernel spreads incoming connections evenly over the
processes. (One shared socket, as `uvicorn --workers` uses, lets whichever
process wakes first accept a burst of keep-alive connections, and one core ends
up doing the work of two.)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn

from boxoffice.settings import get_settings

APP = "boxoffice.app:create_app"


def run(*, host: str, port: int, workers: int, access_log: bool, worker: bool) -> None:
    """Serve until interrupted; blocks. With ``worker``, the first process also
    delivers the outbox (one worker is enough, and SQLite allows only one)."""
    if workers == 1:
        os.environ["BOXOFFICE_RUN_WORKER"] = "1" if worker else "0"
        get_settings.cache_clear()  # the app reads the settings again, with the above
        uvicorn.run(APP, factory=True, host=host, port=port, access_log=access_log)
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_serve,
            args=(host, port, access_log, worker and i == 0),
            name=f"boxoffice-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn shuts down gracefully on SIGTERM

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    # A worker that died on its own takes the server down, for the supervisor to restart.
    if any(p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT) for p in processes):
        sys.exit(1)


def _serve(host: str, port: int, access_log: bool, run_worker: bool) -> None:
    os.environ["BOXOFFICE_RUN_WORKER"] = "1" if run_worker else "0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048, reuse_port=True)
    config = uvicorn.Config(APP, factory=True, access_log=access_log)
    uvicorn.Server(config).run(sockets=[sock])
