"""A program that embeds midge, for test_signals.py: `python sigint_host.py MODE`.

async: an asyncio program; Ctrl-C must reach it as KeyboardInterrupt (asyncio.run's own).
own:   the program installed its own SIGINT handler first; it must run, broker untouched.
sync:  a program without an event loop (the thread form); Ctrl-C is KeyboardInterrupt.
handled: handle_signals=True; SIGINT stops the broker and the program goes on.
"""

import asyncio
import signal
import sys
import threading

import midge

CONNECT = bytes.fromhex("100c00044d5154540402003c0000")


async def still_serving(broker) -> bool:
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    writer.write(CONNECT)
    answer = await reader.readexactly(4)
    writer.close()
    return answer == bytes.fromhex("20020000")


async def main(mode: str) -> None:
    own = asyncio.Event()
    if mode == "own":
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, own.set)
    async with midge.Broker(handle_signals=(mode == "handled")) as broker:
        print("ready", broker.port, flush=True)
        if mode == "own":
            await own.wait()
            print("own handler ran; broker still serving:", await still_serving(broker), flush=True)
        elif mode == "handled":
            await broker.wait_closed()
            print("broker stopped by SIGINT; program goes on", flush=True)
        else:
            await asyncio.Event().wait()


if __name__ == "__main__":
    mode = sys.argv[1]
    try:
        if mode == "sync":
            with midge.Broker() as broker:
                print("ready", broker.port, flush=True)
                threading.Event().wait()
        else:
            asyncio.run(main(mode))
    except KeyboardInterrupt:
        print("KeyboardInterrupt in the program", flush=True)
        sys.exit(130)
