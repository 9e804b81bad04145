"""A page loaded in a real headless Chromium, driven over the DevTools protocol.

:func:`load_page` starts ``chromium`` on a free 127.0.0.1 port with its own profile, opens the page,
waits for its load event, makes every ``<img>`` load (lazy ones too) and reports console errors,
uncaught exceptions, failed requests and images that did not decode; then stops the browser by
its PID. Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

from tests.conftest import free_port, stop

CHECK_IMAGES = """
Promise.all(Array.from(document.images).map(img => {
  img.loading = 'eager';
  return img.decode().then(() => (img.naturalWidth > 0 ? null : img.getAttribute('src')),
                            () => img.getAttribute('src'));
})).then(bad => JSON.stringify({images: document.images.length, broken: bad.filter(x => x),
                                svg: document.querySelectorAll('svg').length, title: document.title,
                                links: Array.from(document.links).map(a => a.href)}))
"""


@dataclass
class PageLoad:
    url: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed requests
    images: int = 0
    broken: list[str] = field(default_factory=list)
    svg: int = 0
    title: str = ""
    links: list[str] = field(default_factory=list)


def chromium_or_skip() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("ACE_REQUIRE_CHROMIUM"):
            pytest.fail("ACE_REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)")
        pytest.skip("no headless browser: install Debian's 'chromium' (apt-get install chromium); .ci/run does")
    return exe


def load_page(url: str, timeout: float = 60) -> PageLoad:
    import websocket  # websocket-client, a dev dependency

    exe = chromium_or_skip()
    port = free_port()
    profile = tempfile.mkdtemp(prefix="ace-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-extensions", "--disable-sync", "--mute-audio",
         f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        target = _page_target(port, proc, deadline=time.monotonic() + timeout)
        ws = websocket.create_connection(target, timeout=timeout, suppress_origin=True)
        try:
            return _load(ws, url, time.monotonic() + timeout)
        finally:
            ws.close()
    finally:
        stop(proc)
        shutil.rmtree(profile, ignore_errors=True)


def _page_target(port: int, proc, deadline: float) -> str:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before it listened on {port}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"chromium did not answer on port {port}")


def _load(ws, url: str, deadline: float) -> PageLoad:
    result = PageLoad(url)
    ids = iter(range(1, 10**6))

    def send(method: str, **params) -> int:
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        return i

    def pump(until) -> dict:
        """Read messages, recording errors, until ``until(message)`` holds; return that message."""
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            m, p = msg.get("method"), msg.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                result.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                result.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                            for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                result.errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                result.errors.append(f"request failed: {p.get('errorText')} ({p.get('requestId')})")
            if until(msg):
                return msg
        raise TimeoutError(f"{url} did not finish loading")

    for domain in ("Runtime", "Log", "Network", "Page"):
        i = send(f"{domain}.enable")
        pump(lambda msg, i=i: msg.get("id") == i)
    send("Page.navigate", url=url)
    pump(lambda msg: msg.get("method") == "Page.loadEventFired")
    i = send("Runtime.evaluate", expression=CHECK_IMAGES, awaitPromise=True, returnByValue=True)
    reply = pump(lambda msg: msg.get("id") == i)
    value = json.loads(reply["result"]["result"]["value"])
    result.images, result.broken, result.svg = value["images"], value["broken"], value["svg"]
    result.title, result.links = value["title"], value["links"]
    time.sleep(0.3)  # late console messages
    ws.settimeout(0.5)
    try:
        pump(lambda msg: False)
    except Exception:  # a read timeout: nothing more to read
        pass
    return result
