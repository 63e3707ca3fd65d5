"""Headless Chromium driven over the DevTools protocol (no extra package: ``websockets`` ships with Prefect).

:func:`find_chromium` locates a browser (``$EMIN_CHROMIUM``, ``chromium``, ``chromium-browser``,
``google-chrome``); :class:`Browser` starts it headless with a throw-away profile and opens
one page, which :meth:`Browser.load` navigates and polls until a JavaScript condition holds.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--hide-scrollbars", "--mute-audio",
]  # fmt: skip


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    env = os.environ.get("EMIN_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """``with Browser() as b: b.load(url, "document.title != ''"); b.eval("...")``."""

    def __init__(self, binary: str | None = None, *, width: int = 1400, height: int = 1000) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise RuntimeError("no Chromium found")
        self.width, self.height = width, height
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="emin-chromium-")
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.loads(resp.read()) if t.get("type") == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=20)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped)."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression!r}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def load(
        self, url: str, until: str = "document.readyState === 'complete'", timeout: float = 45.0
    ) -> None:
        """Navigate to ``url`` and wait until the JS expression ``until`` is truthy."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        time.sleep(0.3)
        while time.monotonic() < deadline:
            try:
                if self.eval(until):
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        text = self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise AssertionError(f"{url}: {until!r} not true after {timeout:.0f} s; page text:\n{text}")

    def resize(self, width: int, height: int) -> None:
        """Set the viewport (apps that scroll inside a container need a tall viewport for a full screenshot)."""
        self.width, self.height = width, height
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def text(self) -> str:
        return str(self.eval("document.body.innerText"))

    def image_widths(self) -> list[int]:
        """``naturalWidth`` of every <img> on the page (0 = not decoded)."""
        return list(self.eval("Array.from(document.images).map(i => i.naturalWidth)") or [])

    def screenshot(self, path: str | Path, *, full_page: bool = False, height: int | None = None) -> None:
        """A PNG of the viewport (or the whole page, or the top ``height`` px)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page or height:
            h = height or int(self.eval("document.documentElement.scrollHeight"))
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1}}  # fmt: skip
        data = self.send("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
