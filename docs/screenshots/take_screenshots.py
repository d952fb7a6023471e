"""Screenshot three pages of the built documentation as a reader sees them.

Usage (after building the site, see README's Documentation section; needs Debian's
``chromium`` and the ``docs`` extra, whose Jupyter dependencies bring tornado)::

    python docs/screenshots/take_screenshots.py docs/_build/html

writes ``landing.png``, ``api.png`` and ``notebook.png`` (1280 x 900) beside this file:
the landing page, the API page of ``conv_transpose2d`` and the first notebook scrolled to
its scatter-view section (text, code, a figure and the cell's output). Headless Chromium
is driven over its DevTools protocol on a loopback port, so a page can be scrolled and
MathJax can finish before the picture is taken; the PNGs are stored with a 256-colour
palette to keep them small.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

from PIL import Image
from tornado.websocket import websocket_connect

HERE = pathlib.Path(__file__).resolve().parent
PORT = 9333
WIDTH, HEIGHT = 1280, 900
PAGES = [  # (output name, page of the site, element to scroll into view or None)
    ("landing.png", "index.html", None),
    ("api.png", "api/generated/convtranspose.conv_transpose2d.html", None),
    ("notebook.png", "notebooks/01_understanding_conv_transpose.html",
     "the-scatter-view-every-input-pixel-stamps-the-kernel"),
]


async def _shoot(site):
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--remote-debugging-port={PORT}", f"--user-data-dir={profile}",
         f"--window-size={WIDTH},{HEIGHT}", "about:blank"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json") as r:
                    targets = json.load(r)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("chromium's DevTools port did not open")
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        ws = await websocket_connect(url, max_message_size=64 * 2**20)
        counter = iter(range(1, 10**9))

        async def call(method, **params):
            i = next(counter)
            ws.write_message(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.read_message())
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                   deviceScaleFactor=1, mobile=False)
        await call("Page.enable")
        for name, page, element in PAGES:
            path = (pathlib.Path(site) / page).resolve()
            if not path.exists():
                raise FileNotFoundError(f"{path}: build the site first")
            await call("Page.navigate", url=path.as_uri())
            await asyncio.sleep(4)                  # load, fonts, MathJax typesetting
            if element:
                await call("Runtime.evaluate",
                           expression=f"document.getElementById({element!r}).scrollIntoView()")
                await asyncio.sleep(1.5)
            shot = await call("Page.captureScreenshot", format="png")
            image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                HERE / name, optimize=True)
            print(f"{HERE / name}: {page}")
    finally:
        browser.terminate()
        browser.wait()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    asyncio.run(_shoot(sys.argv[1]))
