"""The annotation page on a long session: a one-hour 120 fps video with 500 strokes per annotator, in Chromium.

Builds (once, in ``--work``) a project holding a one-hour 120 fps video (432,000 frames, tiny frames so it encodes
in about half a minute), two annotators with ``--strokes`` strokes each (the second moves boundaries by a few frames
and swaps a class now and then) and as many model proposals, serves it, and measures in headless Chromium:

* ``load``: from navigation to the page ready (project, video metadata, every stroke, the review counts);
* ``step``: a key press (→) until the frame counter shows the new frame (seek, timeline and overview redrawn);
* ``jump``: N (next stroke) until the counter shows the stroke's begin;
* ``zoom``: − until the timeline shows the whole hour (all strokes drawn), and back;
* ``disagreements``: turning the disagreement lane on (the server compares the two annotators' strokes).

Times include Playwright's round trip (a few ms). With ``--screenshots DIR`` it also writes the screenshots of
docs/annotate.md (a synthetic detection video at 320x180, two annotators, the model's proposals).

    python benchmarks/bench_annotate_page.py [--work /tmp/annotate-bench] [--strokes 500] [--screenshots docs]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

from tstcnn.annotate.database import Project
from tstcnn.annotate.server import bind, create_app
from tstcnn.io.mediaeval import read_actions
from tstcnn.synth import generate_dataset
from tstcnn.taxonomy import TTSTROKE21_CLASSES

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FPS, HOUR = 120, 3600


def long_video(path: Path, frames: int) -> Path:
    """``frames`` frames at 120 fps, 64x36, grey levels cycling (x264 ultrafast: ~15,000 frames/s)."""
    if path.exists():
        return path
    levels = [av.VideoFrame.from_ndarray(np.full((36, 64, 3), i, np.uint8), format="rgb24") for i in range(256)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(frames):
            for packet in stream.encode(levels[i % 256]):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def strokes(rng: random.Random, video_id: int, frames: int, count: int) -> list[dict]:
    """``count`` strokes of 60-240 frames spread over the video; a second annotator and the model follow them."""
    gap = frames // count
    rows = []
    for i in range(count):
        begin = i * gap + rng.randint(0, gap // 2)
        end = min(frames, begin + rng.randint(60, 240))
        label = rng.choice(TTSTROKE21_CLASSES[:-1])
        rows.append({"video_id": video_id, "annotator": "alice", "begin": begin, "end": end, "label": label})
        shift = rng.randint(-4, 4)
        rows.append({"video_id": video_id, "annotator": "bob", "begin": max(0, begin + shift),
                     "end": min(frames, end + shift),
                     "label": label if rng.random() > 0.1 else rng.choice(TTSTROKE21_CLASSES[:-1])})
        confidence = round(rng.uniform(0.2, 0.99), 3)
        rows.append({"video_id": video_id, "annotator": "model", "begin": begin, "end": end, "label": label,
                     "confidence": confidence, "top3": [[label, confidence]], "status": "proposed"})
    return rows


def serve(project: Project) -> tuple[object, threading.Thread, str]:
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(project), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://localhost:{sock.getsockname()[1]}/"


def timed(page: object, key: str, condition: str, repeat: int) -> list[float]:
    """Milliseconds from each key press until ``condition`` (a JS function of the previous frame) holds."""
    times = []
    for _ in range(repeat):
        before = page.get_attribute("body", "data-frame")
        began = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(condition, arg=before)
        times.append((time.perf_counter() - began) * 1000)
    return times


def describe(times: list[float]) -> dict:
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "n": len(times)}


def measure(work: Path, count: int, browser: object) -> dict:
    root = work / "long"
    if not (root / "project.sqlite").exists():
        began = time.perf_counter()
        video = long_video(work / "hour.mp4", FPS * HOUR)
        print(f"encoded the hour in {time.perf_counter() - began:.0f} s")
        project = Project.create(root)
        began = time.perf_counter()
        added = project.add_video(video, link=True)
        print(f"added it (frames counted by decoding) in {time.perf_counter() - began:.0f} s")
        project.add_strokes(strokes(random.Random(0), added.id, added.frames, count))
        project.close()
    project = Project.open(root)
    server, thread, url = serve(project)
    try:
        page = browser.new_page()
        page.set_default_timeout(60000)
        loads = []
        for _ in range(3):  # the first load also checks the video plays frame for frame (once per video)
            began = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            loads.append(round((time.perf_counter() - began) * 1000, 1))
        page.fill("#annotator", "alice")
        page.keyboard.press("Enter")
        page.wait_for_selector("input[data-annotator='bob']")
        page.check("input[data-annotator='bob']")
        moved = "previous => document.body.dataset.frame !== previous"
        results = {"strokes": len(project.strokes()), "frames": project.videos()[0].frames,
                   "load_ms": loads,
                   "step": describe(timed(page, "ArrowRight", moved, 100)),
                   "jump": describe(timed(page, "n", moved, 50))}
        zoom_out = []
        for _ in range(16):  # 10 s of video to the whole hour: 2x per press
            began = time.perf_counter()
            page.keyboard.press("-")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            zoom_out.append((time.perf_counter() - began) * 1000)
        results["zoom"] = describe(zoom_out)
        results["step_zoomed_out"] = describe(timed(page, "ArrowRight", moved, 50))
        began = time.perf_counter()
        page.check("#show-disagreements")
        page.wait_for_selector("#disagreements li")
        results["disagreements_ms"] = round((time.perf_counter() - began) * 1000, 1)
        results["disagreements"] = page.eval_on_selector_all("#disagreements li", "items => items.length")
        page.close()
    finally:
        server.should_exit = True
        thread.join(10)
        project.close()
    return results


def screenshots(work: Path, out: Path, browser: object) -> None:
    classes = ("Serve Forehand Topspin", "Offensive Backhand Hit", "Defensive Forehand Push", "Negative")
    data = work / "synth320"
    generate_dataset(data, layout="detection", per_class=2, classes=classes, size=(320, 180), fps=120, seed=3,
                     progress=False)
    video_path = sorted((data / "detectionTask" / "test").glob("*.mp4"))[0]
    truth = read_actions(video_path.with_suffix(".xml"))
    root = Path(tempfile.mkdtemp(prefix="shots-", dir=work)) / "project"
    project = Project.create(root)
    video = project.add_video(video_path)
    rows = []
    for i, a in enumerate(truth):
        rows.append({"video_id": video.id, "annotator": "alice", "begin": a.begin, "end": a.end, "label": a.move})
        rows.append({"video_id": video.id, "annotator": "bob", "begin": a.begin + 6 * (i % 2), "end": a.end,
                     "label": a.move if i != 1 else classes[2]})
        rows.append({"video_id": video.id, "annotator": "model", "begin": a.begin - 3, "end": a.end + 2,
                     "label": a.move, "confidence": 0.55 + 0.1 * i,
                     "top3": [[a.move, 0.55 + 0.1 * i], [next(c for c in classes[:3] if c != a.move), 0.2]],
                     "status": "proposed"})
    project.add_strokes(rows)
    server, thread, url = serve(project)
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#annotator", "alice")
        page.keyboard.press("Enter")
        page.wait_for_selector("input[data-annotator='bob']")
        page.check("input[data-annotator='bob']")
        page.keyboard.press("-")
        page.keyboard.press("-")
        page.keyboard.press("n")
        page.keyboard.press("n")
        page.keyboard.press("ArrowRight", delay=20)
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "annotate-page.png"))
        page.check("#show-disagreements")
        page.wait_for_selector("#disagreements li")
        page.check("#lowest-first")
        page.keyboard.press("r")
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "annotate-review.png"))
        page.keyboard.press("l")
        page.keyboard.type("offensive")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "annotate-classes.png"))
        page.close()
    finally:
        server.should_exit = True
        thread.join(10)
        project.close()
    print(f"wrote {out}/annotate-page.png, annotate-review.png, annotate-classes.png")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/annotate-bench", help="folder for the video and project (reused)")
    parser.add_argument("--strokes", type=int, default=500, help="strokes per annotator (default: 500)")
    parser.add_argument("--screenshots", default=None, metavar="DIR", help="also write the docs' screenshots here")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=args.chromium, args=ARGS,
                                                        headless=True, viewport={"width": 1280, "height": 800},
                                                        bypass_csp=True)
        if args.screenshots:
            Path(args.screenshots).mkdir(parents=True, exist_ok=True)
            screenshots(work, Path(args.screenshots), browser)
        results = measure(work, args.strokes, browser)
        browser.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
