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
from yolohand.viz.app import APP_PATH, STREAMLIT_FLAGS, parse_args, streamlit_command

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


# --------------------------------------------------------------------------- views (AppTest, no browser)

needs_streamlit = pytest.mark.skipif(importlib.util.find_spec("streamlit") is None,
                                     reason="streamlit not installed (yolohand[app])")


def _app(monkeypatch: pytest.MonkeyPatch, **query: str):
    """An AppTest of the real script, run once with ``query`` as the URL's query parameters."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", ["app.py"])  # not pytest's arguments
    for name in ("A", "B", "ROOT", "SIZE"):
        monkeypatch.delenv(f"YOLOHAND_APP_{name}", raising=False)
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@needs_streamlit
def test_pair_view_counts_the_shifted_square(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_a, csv_b = _two_csvs(tmp_path)
    at = _app(monkeypatch, a=str(csv_a), b=str(csv_b), view="pair", root=str(tmp_path / "root"), size="96,96")
    # 40x40 squares 12 px apart: 28x40 both, 12x40 only in each; IoU 1120 / 2080.
    assert _metrics(at) == {"IoU": f"{1120 / 2080:.4f}", "both (white)": "1120", "only A (green)": "480",
                            "only B (red)": "480"}
    assert at.selectbox(key="pair_class").value == 0  # the least agreeing class is chosen
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("X-ray image1.png, rows 4-76, cols 4-88") for c in captions), captions
    assert any("white both, green only A, red only B" in c for c in captions)
    table = at.dataframe[0].value
    assert table["IoU"].tolist() == [round(1120 / 2080, 4)] + [1.0] * (NUM_CLASSES - 1)
    # Another class: empty in both, said so instead of a picture.
    at.selectbox(key="pair_class").set_value(5).run()
    assert any("empty in both CSVs" in i.value for i in at.info)


@needs_streamlit
def test_classes_view_lists_the_disagreeing_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_a, csv_b = _two_csvs(tmp_path)
    at = _app(monkeypatch, a=str(csv_a), b=str(csv_b), view="classes", root=str(tmp_path / "root"), size="96,96")
    mean = (1120 / 2080 + NUM_CLASSES - 1) / NUM_CLASSES
    assert _metrics(at) == {"images": "1", "mean per-class IoU": f"{mean:.4f}", "classes below": "1"}
    below = at.dataframe[0].value
    assert below["class"].tolist() == ["finger-1"] and below["IoU"].tolist() == [round(1120 / 2080, 4)]
    captions = [c for img in at.image for c in img.captions]
    assert captions[-1] == f"image1.png finger-1: IoU {1120 / 2080:.3f}"  # the one worst pair
    at.slider(key="threshold").set_value(0.5).run()
    assert _metrics(at)["classes below"] == "0"


def _gt_and_eroded(root: Path, folder: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """CSV A = the ground truth of every image, CSV B = it eroded by a 3x3 square; and the
    dense reference Dice of B per train image (gt_masks + dice_masks, no runs)."""
    from yolohand.core.metrics import dice_masks
    from yolohand.data.layout import find_split, gt_masks, image_size, read_annotation

    items_a, items_b, dice = [], [], {}
    for split in ("train", "test"):
        for rec in find_split(root, split).records:
            h, w = image_size(rec.image_path)
            m = gt_masks(read_annotation(rec.json_path), h, w).view(np.uint8)
            eroded = np.stack([cv2.erode(x, np.ones((3, 3), np.uint8)) for x in m])
            items_a.append((rec.rel_path, rec.name, [encode(x) for x in m]))
            items_b.append((rec.rel_path, rec.name, [encode(x) for x in eroded]))
            dice[rec.name] = dice_masks(eroded, m)
    pa, pb = folder / "gt.csv", folder / "eroded.csv"
    write_submission(pa, [item[1:] for item in sorted(items_a)])
    write_submission(pb, [item[1:] for item in sorted(items_b)])
    return pa, pb, dice


@needs_streamlit
def test_browse_view_overlays_and_validates(synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolohand.data.layout import find_split

    csv_a, csv_b, dice = _gt_and_eroded(synth_root, tmp_path)
    rec = find_split(synth_root, "train").records[1]
    at = _app(monkeypatch, a=str(csv_a), b=str(csv_b), view="browse", root=str(synth_root), size="256,256",
              image=rec.name)
    assert at.radio(key="browse_split").value == "train" and at.selectbox(key="browse_image").value == rec.name
    assert [c for img in at.image for c in img.captions][0] == rec.rel_path  # the overlay, ground truth | CSV A
    assert _metrics(at) == {"mean Dice on this image": "1.0000"}  # CSV A is the ground truth
    at.radio(key="browse_csv").set_value("CSV B").run()
    assert _metrics(at) == {"mean Dice on this image": f"{float(np.mean(dice[rec.name])):.4f}"}
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["Dice"], np.round(dice[rec.name], 4))
    from yolohand.core.classes import CLASSES

    options = at.selectbox(key="val_class").options
    assert options == [f"{name}  (Dice {d:.3f})" for name, d in zip(CLASSES, dice[rec.name])]
    # No predictions: the ground truth alone, no validation.
    at.radio(key="browse_csv").set_value("none").run()
    assert not at.metric and len(at.image) == 1


@needs_streamlit
def test_views_explain_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, view="pair", root=str(tmp_path / "nowhere"))
    assert [i.value for i in at.info] == ["Choose CSV A and CSV B in the sidebar (path or upload)."]
    at = _app(monkeypatch, view="browse", root=str(tmp_path / "nowhere"))
    assert "No images under" in at.info[0].value
    at = _app(monkeypatch, view="classes", a=str(tmp_path / "missing.csv"))
    assert any("file not found" in e.value for e in at.sidebar.error)
    at = _app(monkeypatch, view="pair", size="big")
    assert "expected H,W" in at.error[0].value


@needs_streamlit
def test_pair_view_from_uploaded_csvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    csv_a, csv_b = _two_csvs(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    at = _app(monkeypatch, view="pair", root=str(tmp_path / "root"), size="96,96")
    at.sidebar.file_uploader(key="a_upload").set_value(("a.csv", csv_a.read_bytes(), "text/csv"))
    at.sidebar.file_uploader(key="b_upload").set_value(("b.csv", csv_b.read_bytes(), "text/csv"))
    at.run()
    assert not at.exception
    assert _metrics(at)["IoU"] == f"{1120 / 2080:.4f}"
    assert len(list((tmp_path / "tmp" / "yolohand_app_uploads").glob("*_a.csv"))) == 1


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
