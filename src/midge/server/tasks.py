"""Background tasks the server and its edges start: kept in a set until they end (so
shutdown can cancel them and nothing is garbage-collected mid-run), with any exception
logged instead of lost."""

from __future__ import annotations

import asyncio


def spawn(loop, tasks: set, coroutine, log, what: str, after=None) -> asyncio.Task:
    """Run `coroutine` as a task in `tasks`; log "`what` task failed: ..." if it raises;
    call `after()` when it ends, whatever happened."""
    task = loop.create_task(coroutine)
    tasks.add(task)

    def done(task):
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(f"{what} task failed: {task.exception()!r}")
        if after is not None:
            after()

    task.add_done_callback(done)
    return task
