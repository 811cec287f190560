"""The floor of our stack: a minimal ``websockets`` server (uvloop where available).

``broadcast`` mode sends each received message to every other connection with
``websockets.broadcast`` (one frame encoding, one write per connection). ``ack`` mode
answers each JSON request with ``{"service": S, "body": {"r": 0, "requestId": N}}``:
the request/reply floor for the connection and durable-change benchmarks.

    python bench/baseline_ws_server.py --port 8765 [--mode broadcast|ack]
"""

import argparse
import asyncio
import json

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()
SEP = (",", ":")


async def handler(ws, mode):
    CLIENTS.add(ws)
    try:
        async for message in ws:
            if mode == "broadcast":
                broadcast(CLIENTS - {ws}, message)
            else:
                req = json.loads(message)
                await ws.send(json.dumps({"service": req["service"], "body": {
                    "r": 0, "requestId": req["body"].get("requestId")}}, separators=SEP))
    finally:
        CLIENTS.discard(ws)


async def main(port, mode):
    async with serve(lambda ws: handler(ws, mode), "127.0.0.1", port, compression=None,
                     max_queue=None, backlog=1024) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--mode", choices=("broadcast", "ack"), default="broadcast")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(main(args.port, args.mode))
    except ImportError:
        asyncio.run(main(args.port, args.mode))
