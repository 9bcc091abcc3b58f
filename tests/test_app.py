"""The Streamlit app: command line, and a real headless Chromium rendering a comparison.

The browser test is skipped when Streamlit (the ``yolohand[app]`` extra) or Chromium is absent.
It starts ``streamlit run yolohand/viz/app.py`` on 127.0.0.1 at a free port, passes two small CSVs
through the URL's query parameters (no clicking), drives Chromium over the DevTools protocol
until the comparison images have loaded, and checks the screenshot: the right size, not blank,
and holding the comparison colours (green = only A, red = only B, white = both).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from yolohand.cli import app as cli_app
from yolohand.core.classes import NUM_CLASSES
from yolohand.core.rle import encode
from yolohand.core.submission import write_submission
from yolohand.viz.app import STREAMLIT_FLAGS, parse_args, streamlit_command

WINDOW = (1400, 1000)  # width, height of the screenshot


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- command line


def test_streamlit_command_is_headless_without_usage_stats(tmp_path: Path) -> None:
    cmd = streamlit_command(port=9999, address="127.0.0.1", root=tmp_path, a="a.csv", size="256,256")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith("yolohand/viz/app.py")
    joined = " ".join(cmd)
    assert "--browser.gatherUsageStats false" in joined and "--server.headless true" in joined
    assert set(STREAMLIT_FLAGS) <= set(cmd)
    script_args = cmd[cmd.index("--") + 1 :]
    args = parse_args(script_args)
    assert (args.root, args.a, args.b, args.size) == (str(tmp_path), "a.csv", None, "256,256")


def test_app_command_says_how_to_install_streamlit(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    from yolohand.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["app"])
    assert exc.value.code == 1
    assert "pip install 'yolohand[app]'" in capsys.readouterr().err


def test_app_command_rejects_missing_csv(tmp_path: Path) -> None:
    pytest.importorskip("streamlit")
    result = CliRunner().invoke(cli_app, ["app", "--a", str(tmp_path / "nope.csv")])
    assert result.exit_code != 0
    assert "nope.csv" in str(result.exception)


# --------------------------------------------------------------------------- real browser


def _two_csvs(folder: Path, size: int = 96) -> tuple[Path, Path]:
    """Two one-image submissions: class 0 a square in A, the same square shifted in B; and the
    X-ray under ``folder/root/test/DCM/ID001/image1.png`` (a grey gradient)."""
    xray = folder / "root" / "test" / "DCM" / "ID001" / "image1.png"
    xray.parent.mkdir(parents=True)
    cv2.imwrite(str(xray), np.tile(np.linspace(30, 200, size).astype(np.uint8), (size, 1)))
    a = np.zeros((size, size), bool)
    a[20:60, 20:60] = True
    b = np.roll(a, 12, axis=1)
    rles_a = [encode(a)] + [""] * (NUM_CLASSES - 1)
    rles_b = [encode(b)] + [""] * (NUM_CLASSES - 1)
    pa, pb = folder / "a.csv", folder / "b.csv"
    write_submission(pa, [("image1.png", rles_a)])
    write_submission(pb, [("image1.png", rles_b)])
    return pa, pb


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, env: dict | None = None):
    """Run ``cmd`` in its own process group for the block; stop exactly that group afterwards."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(5)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read()
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


class _DevTools:
    """Minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws  # a websockets.sync.client connection
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


# True once the page shows the comparison: two images decoded, the IoU metric drawn, no script running.
_READY_JS = """(() => {
  const imgs = [...document.querySelectorAll('[data-testid="stMain"] img, section.main img, .main img')]
      .filter(i => i.complete && i.naturalWidth > 0);
  const text = document.body ? document.body.innerText : '';
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return imgs.length >= 2 && text.includes('IoU') && !(running && running.innerText.includes('Running'));
})()"""


@pytest.mark.skipif(importlib.util.find_spec("streamlit") is None, reason="streamlit not installed (yolohand[app])")
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed")
def test_app_renders_a_comparison_in_headless_chromium(tmp_path: Path) -> None:
    pytest.importorskip("websockets.sync.client")
    csv_a, csv_b = _two_csvs(tmp_path)
    st_port, cdp_port = _free_port(), _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", HOME=str(tmp_path))
    cmd = streamlit_command(port=st_port, address="127.0.0.1", root=tmp_path / "root", size="96,96")
    query = urllib.parse.urlencode({"a": csv_a, "b": csv_b, "view": "pair", "class": "finger-1"})
    url = f"http://127.0.0.1:{st_port}/?{query}"
    chrome = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--force-color-profile=srgb", f"--user-data-dir={tmp_path / 'chrome-profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
        f"--remote-debugging-port={cdp_port}", "--remote-allow-origins=*", "about:blank",
    ]
    shot = tmp_path / "app.png"
    with _process(cmd, tmp_path / "streamlit.log", env) as st_proc:
        _wait_http(f"http://127.0.0.1:{st_port}/_stcore/health", st_proc, tmp_path / "streamlit.log", 90)
        with _process(chrome, tmp_path / "chromium.log") as cr_proc:
            targets = json.loads(_wait_http(f"http://127.0.0.1:{cdp_port}/json/list", cr_proc,
                                            tmp_path / "chromium.log", 60))
            page = next(t for t in targets if t.get("type") == "page")
            from websockets.sync.client import connect

            with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20) as ws:
                cdp = _DevTools(ws)
                cdp.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                         deviceScaleFactor=1, mobile=False)
                cdp.call("Page.enable")
                cdp.call("Page.navigate", url=url)
                deadline = time.monotonic() + 90
                while not cdp.evaluate(_READY_JS):
                    if time.monotonic() > deadline:
                        text = cdp.evaluate("document.body ? document.body.innerText : ''")
                        pytest.fail(f"the comparison did not render within 90 s; page text:\n{text}\n"
                                    f"streamlit log:\n{(tmp_path / 'streamlit.log').read_text()[-2000:]}")
                    time.sleep(0.5)
                time.sleep(1.0)  # let the last layout settle
                png = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    shot.write_bytes(png)
    if out := os.environ.get("YOLOHAND_SCREENSHOT"):  # keep a copy to look at
        Path(out).write_bytes(png)

    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert img.shape == (WINDOW[1], WINDOW[0], 3)
    assert img.std() > 10, "screenshot is blank"
    r, g, b = (img[..., i].astype(int) for i in range(3))
    green = (g > 200) & (r < 60) & (b < 60)
    red = (r > 200) & (g < 60) & (b < 60)
    white = (r > 245) & (g > 245) & (b > 245)
    # The 40x40 squares shifted by 12 px: 12x40 only-A, 12x40 only-B, 28x40 both, enlarged >= 5x.
    assert green.sum() > 2000, "no 'only A' (green) pixels in the screenshot"
    assert red.sum() > 2000, "no 'only B' (red) pixels in the screenshot"
    # Rows crossing the squares read green, then white (both), then red, left to right.
    crossing = 0
    for y in np.flatnonzero(green.any(axis=1) & red.any(axis=1)):
        g_cols, r_cols = np.flatnonzero(green[y]), np.flatnonzero(red[y])
        between = white[y, g_cols.max() + 1 : r_cols.min()]
        crossing += bool(between.size > 50 and between.mean() > 0.9)
    assert crossing > 50, "no green | white | red band: the comparison is not drawn as expected"
