"""The traps of the Python docs' "Developing with asyncio" page, as aiolog reports them.

Run it: ``python examples/asyncio_pitfalls.py`` (``--uvloop`` to run on uvloop, ``--format
text`` or ``logfmt`` for other renderings). Each pitfall below happens for real; stdout gets
one JSON line per record, and ``docs/asyncio.md`` explains every field. The records to look
for, by their ``diagnostic`` field:

``slow_callback``
    a task step that blocks the loop (``time.sleep`` in a coroutine): ``duration``, and the
    task and coroutine that did it;
``never_awaited``
    ``send_welcome_email(...)`` called without ``await``: the coroutine's name and, in debug
    mode, where it was created;
``never_retrieved``
    a fire-and-forget task that failed and that nobody awaited: the task, its coroutine,
    the exception with its traceback, and where the task was created;
``callback_exception``
    a ``call_later`` callback that raised: the callback's name, the handle, the exception;
``pending_task_destroyed``
    a task still waiting when its loop went away;
``resource_warning``
    a socket nobody closed (debug mode shows ``ResourceWarning``): where it was dropped.

Records without a ``diagnostic`` show the context aiolog adds to every record: ``callback``
for a record logged in a loop callback, and the task of the ``asyncio.to_thread`` worker that
logged (here: the exception of a non-thread-safe call, which debug mode detects).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import time

import aiolog

log = logging.getLogger("shop")


# -------------------------------------------------------------- "Running blocking code"


async def resize_image() -> None:
    """Blocks the event loop for 150 ms: nothing else runs meanwhile."""
    time.sleep(0.15)  # noqa: ASYNC251 - the pitfall itself


# -------------------------------------------------------------- never-awaited coroutines


async def send_welcome_email(user: str) -> None:
    """Would send an email, if anyone awaited it."""
    log.info("welcome email sent to %s", user)


async def sign_up(user: str) -> None:
    """Forgets the ``await``: the email is never sent, Python only warns."""
    send_welcome_email(user)  # type: ignore[unused-coroutine]  # the pitfall itself
    log.info("signed up %s", user)


# -------------------------------------------------------------- never-retrieved exceptions


async def charge_card(order: int) -> None:
    """Fails, in a task that nobody awaits."""
    await asyncio.sleep(0)
    raise ConnectionError(f"payment gateway unreachable for order {order}")


async def checkout(order: int) -> None:
    """Fires and forgets: the failure surfaces only when the task is garbage collected."""
    asyncio.create_task(charge_card(order), name=f"charge-{order}")  # noqa: RUF006
    await asyncio.sleep(0.01)


# -------------------------------------------------------------- exceptions in callbacks


def expire_session() -> None:
    """A timer callback with a bug."""
    log.info("expiring session")  # this record names the callback
    raise KeyError("session-42")


# -------------------------------------------------------------- concurrency and threads


def order_shipped(order: int) -> None:
    """A loop callback: the record it logs names it."""
    log.info("order %d shipped", order)


def notify_from_a_worker(loop: asyncio.AbstractEventLoop, order: int) -> None:
    """Runs in a worker thread: calls the loop the wrong way, then the right way."""
    try:
        loop.call_soon(order_shipped, order)  # not thread-safe: debug mode says so
    except RuntimeError:
        log.exception("loop called from a worker thread")  # names the task that started it
    loop.call_soon_threadsafe(order_shipped, order)


async def handle_order(order: int) -> None:
    """Hands blocking work to a thread, as the docs recommend."""
    await asyncio.to_thread(notify_from_a_worker, asyncio.get_running_loop(), order)


# -------------------------------------------------------------- pending tasks, resources


def abandon_a_pending_task(loop_factory: type[asyncio.AbstractEventLoop] | None) -> None:
    """Closes a loop with a task still waiting, then drops it."""
    loop = asyncio.new_event_loop() if loop_factory is None else loop_factory()
    loop.set_debug(True)

    async def wait_forever(future: asyncio.Future[None]) -> None:
        await future

    loop.create_task(wait_forever(loop.create_future()), name="stuck-worker")
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def leak_a_socket() -> None:
    """An unclosed socket: a ResourceWarning, shown in debug mode."""
    sock = socket.socket()
    del sock


async def main() -> None:
    await asyncio.create_task(resize_image(), name="resize-image")
    await asyncio.create_task(sign_up("ann@example.com"), name="sign-up")
    await asyncio.create_task(checkout(42), name="checkout-42")
    asyncio.get_running_loop().call_later(0.01, expire_session)
    await asyncio.sleep(0.05)
    await asyncio.create_task(handle_order(7), name="order-7")
    await asyncio.sleep(0.01)
    gc.collect()  # the dropped task and the forgotten coroutine are reported now


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--format", default="json", choices=["json", "logfmt", "text"])
    args = parser.parse_args()

    # Debug mode as the docs recommend for development, reported as structured records.
    pipeline = aiolog.configure(
        [f"stdout?format={args.format}"], asyncio_debug=True, asyncio_slow_callback=0.1
    )
    logging.getLogger("asyncio").setLevel(logging.INFO)  # keep asyncio's DEBUG chatter out
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.Loop
        uvloop.run(main())
    else:
        asyncio.run(main())
    abandon_a_pending_task(loop_factory)
    leak_a_socket()
    gc.collect()
    pipeline.flush()


if __name__ == "__main__":
    run()
