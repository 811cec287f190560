"""docs/client.md: the watch.py example runs and prints messagefromtopic messages."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from monitor.client import HubClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def watch_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if "asyncio.run(main(sys.argv[1], sys.argv[2]))" in b)


async def test_the_guides_watch_example_prints_topic_messages(module_hub, tmp_path):
    script = tmp_path / "watch.py"
    script.write_text(watch_example(), encoding="utf-8")
    watcher_token = module_hub.client_token("doc_supervisor", subscribe=["doc_team"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), module_hub.ws_url, watcher_token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        agent = HubClient(module_hub.ws_url, module_hub.client_token(
            "doc_agent", attributes=[("manual_status", "doc_team")]))
        async with agent:
            line = b""
            for i in range(100):  # until the watcher is subscribed and prints
                await agent.change_attribute("manual_status", f"s{i}")
                try:
                    line = await asyncio.wait_for(process.stdout.readline(), 0.1)
                    break
                except TimeoutError:
                    continue
        assert re.fullmatch(rb"doc_team #\d+: doc_agent manual_status = 's\d+'\n", line), \
            (line, await process.stderr.read(2000) if process.returncode is not None else b"")
    finally:
        process.kill()
        await process.wait()
