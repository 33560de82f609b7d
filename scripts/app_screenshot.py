"""Screenshot of the app with a real result: serve PRIOR on 127.0.0.1, upload PHOTO in a headless
Chromium (Selenium), run Restore, save the page as PNG.

    python scripts/app_screenshot.py --prior outputs/albums/00001/fit/prior --photo group.png \\
        --out docs/images/app.jpg --steps 20

``--group A B C`` composes the photo from three FFHQ-aligned faces side by side instead (the
README's screenshot: the person in the middle, two other people kept as they are).
Needs mystyle-pl[app,browser] and chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mystyle_pl.app import AppEngine, launch
from mystyle_pl.data.io import write_image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", required=True)
    p.add_argument("--photo", default=None, help="the photo to upload")
    p.add_argument("--group", nargs=3, default=None, metavar="FACE", help="compose the photo from three face images")
    p.add_argument("--out", default="docs/images/app.jpg")
    p.add_argument("--steps", type=int, default=20, help="projection steps (default 20: a CPU screenshot)")
    p.add_argument("--tab", default="Restore", help="the tab to run (Restore, Super-resolve)")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    work = Path(tempfile.mkdtemp(prefix="mystyle-shot-"))
    photo = args.photo
    if args.group:
        faces = [np.asarray(Image.open(f).convert("RGB").resize((320, 320), Image.Resampling.LANCZOS)) for f in args.group]
        photo = str(write_image(work / "group.png", np.concatenate(faces, axis=1)))
    engine = AppEngine(args.prior, device="auto", out_dir=work / "out", steps=args.steps)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(engine, host="127.0.0.1", port=port, block=False, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1300,2000"):
        options.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}")
        end = time.time() + args.timeout
        while not driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"):  # a loaded machine: wait for the page
            assert time.time() < end, "the page did not load in time"
            time.sleep(2)
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(Path(photo).resolve()))
        while "found" not in driver.find_element(By.CSS_SELECTOR, "#message").text and "Problem" not in driver.find_element(By.CSS_SELECTOR, "#message").text:
            assert time.time() < end, "no faces marked in time"
            time.sleep(1)
        print(driver.find_element(By.CSS_SELECTOR, "#message").text)
        for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']"):
            if b.text.strip() == args.tab:
                b.click()
        button = {"Restore": "run-restore", "Super-resolve": "run-superres"}[args.tab]
        driver.find_element(By.ID, button).click()
        while True:
            status = driver.find_element(By.CSS_SELECTOR, "#status").text
            if "done" in status or "Problem" in status:
                break
            assert time.time() < end, f"no result in time: {status!r}"
            time.sleep(2)
        print(status)
        time.sleep(3)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1300, min(int(height) + 40, 4000))
        time.sleep(2)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.out)
        print(f"screenshot: {args.out}")
    finally:
        driver.quit()
        demo.close()
        engine.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
