"""The browser app (``mystyle-pl serve``) on a tiny prior, driven by a real headless browser.

The app runs in this process (gradio's server in a thread, on 127.0.0.1 and a free port), so the
test's asset isolation applies; Chromium (Debian's ``chromium`` + ``chromium-driver``) is driven
through Selenium. The photo is scikit-image's astronaut (a real face dlib finds). A tiny prior has
no identity centre: the app takes the most confident face and says so. Without gradio, Selenium,
chromedriver or dlib the tests skip with the reason (scripts/setup.sh installs them).
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.io import write_image
from mystyle_pl.prior import PersonalPrior

from .helpers import make_tiny_stylegan2

R = 16
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _face_models() -> str | None:
    try:
        from mystyle_pl.data.faces import check_face_models

        check_face_models()
    except Exception as e:  # dlib or its models missing
        return str(e)
    return None


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    g = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = g.mapping(torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(0)))
    return PersonalPrior(g, Anchors(w=w, names=[f"{i}.png" for i in range(4)])).save(tmp_path_factory.mktemp("prior") / "prior")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """astronaut.png (a face), notes.png (text), truncated.png, wall.png (no face), huge.png (over the test's limit)."""
    skimage_data = pytest.importorskip("skimage.data", reason="the test photo is scikit-image's astronaut")
    why = _face_models()
    if why:
        pytest.skip(f"the app finds faces with dlib: {why}")
    folder = tmp_path_factory.mktemp("photos")
    write_image(folder / "astronaut.png", skimage_data.astronaut())
    (folder / "notes.png").write_text("not an image")
    data = (folder / "astronaut.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    write_image(folder / "wall.png", np.full((200, 260, 3), 120, np.uint8))
    write_image(folder / "huge.png", np.zeros((1100, 1000, 3), np.uint8))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(prior_dir, tmp_path_factory):
    pytest.importorskip("gradio", reason="the app needs the optional extra: pip install 'mystyle-pl[app]'")
    from mystyle_pl.app import AppEngine

    out = tmp_path_factory.mktemp("app_out")
    e = AppEngine(prior_dir, device="cpu", out_dir=out, steps=1, lpips_weight=0.0, max_upload_pixels=1_000_000,
                  edit_directions=2)  # fmt: skip
    yield e
    e.close()


@pytest.fixture(scope="module")
def server(engine, photos):
    from mystyle_pl.app import launch

    port = free_port()
    demo = launch(engine, host="127.0.0.1", port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def browser(server):
    webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests need selenium: pip install 'mystyle-pl[browser]'")
    if not CHROMEDRIVER or not CHROMIUM:
        pytest.skip("no chromium / chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,2400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# ------------------------------------------------------------------ page helpers


def by_css(driver, css, timeout=60.0, condition=lambda els: bool(els)):
    from selenium.webdriver.common.by import By

    end = time.time() + timeout
    while True:
        els = driver.find_elements(By.CSS_SELECTOR, css)
        if condition(els):
            return els
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {css!r}; status: {text_of(driver, '#status')!r}, "
                                 f"message: {text_of(driver, '#message')!r}")  # fmt: skip
        time.sleep(0.3)


def text_of(driver, css) -> str:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else ""


# Gradio shows a running event's timer ("0.1s") over an output while it is pending, beside the output's
# previous text: a status read then is the last run's, not this one's.
PENDING = re.compile(r"^\s*\d+(\.\d+)?s\b")


def wait_text(driver, css, words, timeout=90.0) -> str:
    """The text of ``css`` once it shows one of ``words`` and no pending event's timer."""
    end = time.time() + timeout
    while time.time() < end:
        text = text_of(driver, css)
        if any(w in text for w in words) and not PENDING.match(text):
            return text
        time.sleep(0.3)
    raise AssertionError(f"{css} never showed {words}: {text_of(driver, css)!r}; status {text_of(driver, '#status')!r}")


def open_page(driver, url):
    driver.get(url)
    by_css(driver, "#upload input[type=file]")


def upload(driver, path: Path, words=("face(s) found",)) -> str:
    (inp,) = by_css(driver, "#upload input[type=file]")[:1]
    inp.send_keys(str(path))
    return wait_text(driver, "#message", words)


def clear_upload(driver, url):
    """Remove the uploaded file (the component's clear button) so the next upload starts fresh; the page
    is reloaded only when the button cannot be found."""
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "#upload button"):
        label = ((b.get_attribute("aria-label") or "") + (b.get_attribute("title") or "")).lower()
        if "clear" in label or "remove" in label:
            try:
                b.click()
            except Exception:  # replaced by a re-render: try the next one
                continue
    end = time.time() + 15
    while time.time() < end:
        if driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"):
            return
        time.sleep(0.3)
    open_page(driver, url)


def open_tab(driver, label):
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']"):
        if b.text.strip() == label:
            b.click()
            return
    raise AssertionError(f"no tab {label!r}")


def image_of(driver, css, server, previous: str | None = None, timeout=120.0) -> tuple[np.ndarray, str]:
    """The image an image component shows, downloaded from its src (waits for a src other than ``previous``)."""
    (img,) = by_css(driver, f"{css} img", timeout,
                    lambda els: any((e.get_attribute("src") or "") not in ("", previous) for e in els))[:1]  # fmt: skip
    src = img.get_attribute("src")
    if src.startswith("data:"):
        import base64

        data = base64.b64decode(src.split(",", 1)[1])
    else:
        data = urllib.request.urlopen(src, timeout=30).read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), src


def run_and_read(driver, button, server, previous=None):
    (b,) = by_css(driver, f"#{button}")[:1]
    b.click()
    status = wait_text(driver, "#status", ["done", "Problem"], timeout=180)
    assert "done" in status, status
    return image_of(driver, "#result", server, previous)


# ------------------------------------------------------------------ tests


def test_each_task_in_the_browser(browser, server, photos, engine):
    source = np.asarray(Image.open(photos / "astronaut.png").convert("RGB")).astype(int)
    open_page(browser, server)
    message = upload(browser, photos / "astronaut.png")
    assert "identity is unknown" in message and "processed" in message
    marked, _ = image_of(browser, "#faces", server)
    assert marked.shape == (512, 512, 3)

    result, src = run_and_read(browser, "run-restore", server)
    assert result.shape == source.shape
    changed = np.abs(result.astype(int) - source).max(axis=2) > 0
    assert 0 < changed.mean() < 0.5  # the face, not the photo
    downloads = by_css(browser, "#downloads a")
    assert any("result.png" in (a.get_attribute("href") or "") for a in downloads)
    assert any("record.json" in (a.get_attribute("href") or "") for a in downloads)
    before, _ = image_of(browser, "#before", server)
    after, _ = image_of(browser, "#after", server)
    assert before.shape[0] < after.shape[0] == R  # blind restoration: a low-resolution crop in, R px out

    open_tab(browser, "Super-resolve")
    result, src = run_and_read(browser, "run-superres", server, src)
    assert result.shape == (1024, 1024, 3)  # x2, the default factor

    open_tab(browser, "Edit")
    result, src = run_and_read(browser, "run-edit", server, src)
    assert result.shape == source.shape

    open_tab(browser, "Inpaint")
    paint(browser)
    result, src = run_and_read(browser, "run-inpaint", server, src)
    assert result.shape == source.shape and (result != source).any()

    open_tab(browser, "New photos")
    by_css(browser, "#run-samples")[0].click()
    wait_text(browser, "#status", ["new photo"])
    assert len(by_css(browser, "#samples img", 60, lambda els: len(els) >= 4)) >= 4

    # Nothing but results and gradio's cache (the uploads) in the app's output folder.
    assert {p.name for p in engine.out_dir.iterdir()} <= {"runs", "cache"}
    assert len(list((engine.out_dir / "runs").glob("*/record.json"))) >= 5
    assert sorted(p.name for p in photos.iterdir()) == ["astronaut.png", "huge.png", "notes.png", "truncated.png", "wall.png"]


def paint(driver):
    """One stroke with the brush across the middle of the inpainting canvas."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "#inpaint-editor button"):
        if (b.get_attribute("aria-label") or b.get_attribute("title") or "").lower().startswith("brush"):
            b.click()
            break
    (canvas,) = by_css(driver, "#inpaint-editor canvas")[:1]
    w, h = canvas.size["width"], canvas.size["height"]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, 0, 0).click_and_hold()
    for dx in range(-w // 8, w // 8, max(1, w // 40)):
        chain = chain.move_to_element_with_offset(canvas, dx, -h // 10)
    chain.release().perform()
    time.sleep(1.0)


def test_bad_uploads_show_a_message_and_the_next_upload_works(browser, server, photos):
    open_page(browser, server)
    assert "not a photo this app can read" in upload(browser, photos / "notes.png", ["Problem: notes.png"])
    clear_upload(browser, server)
    assert "not a photo this app can read" in upload(browser, photos / "truncated.png", ["Problem: truncated.png"])
    clear_upload(browser, server)
    assert "above the limit" in upload(browser, photos / "huge.png", ["Problem: huge.png"])
    clear_upload(browser, server)
    assert "no face found" in upload(browser, photos / "wall.png", ["Problem: wall.png"])
    by_css(browser, "#run-restore")[0].click()  # no usable photo: a message, no crash
    assert "Upload a photo" in wait_text(browser, "#status", ["Problem"])
    clear_upload(browser, server)
    upload(browser, photos / "astronaut.png")
    run_and_read(browser, "run-restore", server)


def test_two_sessions_at_once_both_complete(browser, server, photos):
    first = browser.current_window_handle
    open_page(browser, server)
    upload(browser, photos / "astronaut.png")
    browser.switch_to.new_window("tab")
    second = browser.current_window_handle
    open_page(browser, server)
    upload(browser, photos / "astronaut.png")
    for handle in (first, second):  # submit in both before waiting for either
        browser.switch_to.window(handle)
        by_css(browser, "#run-restore")[0].click()
    for handle in (first, second):
        browser.switch_to.window(handle)
        assert "done" in wait_text(browser, "#status", ["done", "Problem"], timeout=180)
        result, _ = image_of(browser, "#result", server)
        assert result.shape == (512, 512, 3)
    browser.close()
    browser.switch_to.window(first)


def test_engine_refuses_a_photo_without_the_person(engine, photos):
    """With an identity no face is near, the photo is analysed, marked and refused (no restoration)."""
    from mystyle_pl.app import AppError

    saved = engine._identity
    engine._identity = ([5.0] * 128, "a test identity")
    try:
        up = engine.read_upload(photos / "astronaut.png")
        assert not up.person_found and "no face of the person: closest" in up.message and "threshold 0.58" in up.message
        with pytest.raises(AppError, match="no face of the person"):
            engine.run("restore", up)
    finally:
        engine._identity = saved


def test_serve_without_gradio_names_the_extra(monkeypatch, prior_dir):
    import builtins

    from mystyle_pl.app import require_gradio
    from mystyle_pl.errors import UserError

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    with pytest.raises(UserError, match=r"pip install 'mystyle-pl\[app\]'"):
        require_gradio()


def test_serve_binds_locally_unless_asked():
    from mystyle_pl.app import is_public

    assert not is_public("127.0.0.1", False) and not is_public("localhost", False)
    assert is_public("0.0.0.0", False) and is_public("127.0.0.1", True)
