"""The annotation page in a real browser (Debian's Chromium, headless, driven by Playwright): strokes typed with the
keyboard at exact frames, relabelled, found again after a reload; the exported XMLs of a session typed from a
synthetic set's ground truth equal it frame for frame and ``tstcnn prepare`` reads the export; a second annotator and
the disagreements; model proposals accepted and corrected."""

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tstcnn.annotate.agreement import agreement, by_annotator
from tstcnn.annotate.database import Project
from tstcnn.annotate.exchange import export
from tstcnn.annotate.server import bind, create_app
from tstcnn.cli import main
from tstcnn.io.mediaeval import read_actions
from tstcnn.prep.store import Store
from tstcnn.synth import generate_dataset

from annotate_helpers import write_avi, write_video

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASSES = ("Serve Forehand Topspin", "Defensive Backhand Block", "Negative")
GREY_FRAMES = 30

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tstcnn synth --layout detection``, tiny: three videos of about 50 frames with two strokes each."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(out, layout="detection", per_class=1, classes=CLASSES, size=(64, 36), fps=10, seed=5,
                     workers=1, progress=False)
    return out / "detectionTask"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, synth: Path) -> Iterator[tuple[Project, str]]:
    """A project (a 120 fps grey-level video and the synthetic test video) served by uvicorn in a thread."""
    import uvicorn

    root = tmp_path_factory.mktemp("annotate") / "project"
    project = Project.create(root, CLASSES)
    project.add_video(write_video(root.parent / "grey.mp4", GREY_FRAMES, fps=120.0, size=(64, 48)))
    project.add_video(write_avi(root.parent / "old.avi", 20, fps=25, size=(64, 48)))  # played through a proxy
    for video in sorted(synth.rglob("*.mp4")):  # the synthetic set's three videos
        project.add_video(video)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(project), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield project, f"http://localhost:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()
    project.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    profile = tempfile.mkdtemp(prefix="tstcnn-chromium-")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=ARGS,
                                                        headless=True, viewport={"width": 1280, "height": 800},
                                                        bypass_csp=True)  # Playwright's waits evaluate strings
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def wait_until(condition: Callable[[], object], page: object = None, timeout: float = 15.0) -> object:
    """Poll ``condition`` (on the database) until it holds; on timeout, fail with what the page last said."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            assert value, f"timed out; the page says: {page.inner_text('#message') if page else '?'}"
            return value
        time.sleep(0.05)


def open_page(browser: object, url: str, annotator: str, video: str | None = None) -> object:
    """A new tab on the page, ``annotator`` typed in, on ``video`` when given."""
    page = browser.new_page()
    page.set_default_timeout(10000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    page.fill("#annotator", annotator)
    page.keyboard.press("Enter")
    if video is not None:
        choose_video(page, video)
    return page


def choose_video(page: object, name: str) -> None:
    labels = page.eval_on_selector_all("#video option", "options => options.map(o => o.label)")
    label = next(label for label in labels if label.startswith(name))
    if page.eval_on_selector("#video", "select => select.selectedOptions[0].label") == label:
        return
    page.select_option("#video", label=label)
    page.wait_for_function(f"() => document.querySelector('#message').textContent.includes({name!r})")


def go_to(page: object, frame: int) -> None:
    page.keyboard.press("g")
    page.keyboard.type(str(frame))
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.body.dataset.frame === '{frame}'")


def pick_class(page: object, label: str) -> None:
    page.keyboard.press("l")
    page.wait_for_selector("#picker[open]")
    page.keyboard.type(label)
    page.keyboard.press("Enter")
    page.wait_for_selector("#picker:not([open])", state="attached")


def shown_grey_level(page: object) -> float:
    """Mean red level of the frame the video element shows, once its seek is done."""
    return page.evaluate("""async () => {
        const video = document.getElementById('media');
        while (video.seeking || video.readyState < 2) await new Promise(r => setTimeout(r, 10));
        const canvas = document.createElement('canvas');
        canvas.width = video.videoWidth; canvas.height = video.videoHeight;
        const g = canvas.getContext('2d');
        g.drawImage(video, 0, 0);
        const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
        let sum = 0;
        for (let i = 0; i < data.length; i += 4) sum += data[i];
        return sum / (data.length / 4);
    }""")


def test_keyboard_stroke_at_exact_frames_relabel_reload_undo(served, browser) -> None:
    project, url = served
    grey = project.video("grey.mp4")
    page = open_page(browser, url, "alice", "grey.mp4")
    for frame in (0, 7, 17, GREY_FRAMES - 1):  # the frame shown is the frame counted: frame i has grey level 8 i
        go_to(page, frame)
        assert abs(shown_grey_level(page) - 8 * frame) < 4, frame
    go_to(page, 0)
    page.keyboard.press("[")  # 0.5x: 60 frames a second
    page.keyboard.press(" ")
    page.wait_for_function("() => Number(document.body.dataset.frame) >= 6")
    page.keyboard.press(" ")  # a pause lands on the frame counted, not between frames
    page.wait_for_function("() => document.getElementById('media').paused")
    level = shown_grey_level(page)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # drawn
    paused = int(page.get_attribute("body", "data-frame"))
    assert 6 <= paused < GREY_FRAMES and abs(level - 8 * paused) < 4  # the frame last counted, shown
    go_to(page, 5)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.body.dataset.frame === '6'")
    assert abs(shown_grey_level(page) - 48) < 4
    page.keyboard.press("Escape")
    pick_class(page, "Serve Forehand")
    page.keyboard.press("b")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("e")
    page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('saved')")
    (stroke,) = wait_until(lambda: project.strokes(grey.id, "alice"), page)
    assert (stroke.begin, stroke.end, stroke.label) == (6, 13, CLASSES[0])  # frames 6..12: end exclusive
    pick_class(page, "Backhand Block")  # the new stroke is selected: this relabels it
    wait_until(lambda: project.strokes(grey.id, "alice")[0].label == CLASSES[1])
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function("() => document.body.dataset.frame === '12'")  # back where it was
    assert page.input_value("#annotator") == "alice"
    row = page.inner_text("#strokes tbody tr")
    assert row.split("\t")[:4] == ["alice", "6", "12", CLASSES[1]]
    page.keyboard.press("p")  # the previous stroke: select it, then move its begin
    go_to(page, 4)
    page.keyboard.press("b")
    wait_until(lambda: project.strokes(grey.id, "alice")[0].begin == 4)
    page.keyboard.press("z")
    wait_until(lambda: project.strokes(grey.id, "alice")[0].begin == 6)
    page.keyboard.press("z")
    wait_until(lambda: project.strokes(grey.id, "alice")[0].label == CLASSES[0])
    page.keyboard.press("n")  # select it again, delete it, bring it back
    page.wait_for_function(f"() => document.body.dataset.selected === '{stroke.id}'")
    page.keyboard.press("Delete")
    wait_until(lambda: not project.strokes(grey.id, "alice"), page)
    page.keyboard.press("z")
    wait_until(lambda: project.strokes(grey.id, "alice") == [stroke], page)
    assert page.errors == []
    page.close()


def test_a_proxy_shows_the_originals_frames(served, browser) -> None:
    """An AVI the browser cannot play: the page plays its proxy, and frame i shown is the original's frame i."""
    project, url = served
    page = open_page(browser, url, "alice", "old.avi")
    assert "proxy" in page.inner_text("#message")
    assert page.inner_text("#frames") == str(project.video("old.avi").frames - 1) == "19"
    for frame in (0, 3, 11, 19):
        go_to(page, frame)
        assert abs(shown_grey_level(page) - 8 * frame) < 5, frame
    assert page.errors == []
    page.close()


def test_typed_ground_truth_exports_equal_and_prepare_reads_them(served, browser, synth, tmp_path, capsys) -> None:
    """The synthetic set's ground truth typed in with the keyboard, video by video; the export equals it."""
    project, url = served
    truth = {xml.stem: read_actions(xml) for xml in sorted(synth.rglob("*.xml"))}
    assert len(truth) == 3 and all(len(actions) == 2 for actions in truth.values())
    page = open_page(browser, url, "typist")
    for stem, actions in truth.items():
        video = project.video(f"{stem}.mp4")
        choose_video(page, video.name)
        for count, action in enumerate(actions, 1):
            page.keyboard.press("Escape")  # nothing selected: the class picked is the next stroke's
            pick_class(page, action.move)
            go_to(page, action.begin)
            page.keyboard.press("b")
            go_to(page, action.end - 1)  # the stroke's last frame
            page.keyboard.press("e")
            page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('saved')")
            wait_until(lambda n=count, v=video.id: len(project.strokes(v, "typist")) == n, page)
    assert page.errors == []
    page.close()
    export(project, tmp_path / "xml", annotator="typist")
    assert {xml.stem: read_actions(xml) for xml in sorted((tmp_path / "xml").glob("*.xml"))} == truth
    export(project, tmp_path / "clips", annotator="typist", layout="mediaeval-classification")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    code = main(["prepare", "--source", str(tmp_path / "clips"), "--layout", "mediaeval-classification", "--out",
                 str(tmp_path / "store"), "--preset", "cpu-small", "--width", "32", "--workers", "1", "--quiet",
                 "--classes", str(tmp_path / "classes.txt")])
    assert code == 0, capsys.readouterr().err
    stored = sorted((e.label, e.frames) for e in Store(tmp_path / "store").videos())
    assert stored == sorted((a.move, a.end - a.begin) for actions in truth.values() for a in actions)


def test_second_annotator_and_disagreements(served, browser) -> None:
    project, url = served
    video = project.video("test_0000.mp4")
    if not project.strokes(video.id, "typist"):
        pytest.skip("needs the typed session of the previous test")
    typed = project.strokes(video.id, "typist")
    # bob: the first stroke with another class, the second one frame early
    project.add_strokes([
        {"video_id": video.id, "annotator": "bob", "begin": typed[0].begin, "end": typed[0].end,
         "label": CLASSES[1] if typed[0].label == CLASSES[0] else CLASSES[0]},
        {"video_id": video.id, "annotator": "bob", "begin": typed[1].begin - 1, "end": typed[1].end - 1,
         "label": typed[1].label}])
    report = agreement(by_annotator(project.strokes(video.id), annotators=["bob", "typist"]), CLASSES)
    (pair,) = report["pairs"]
    assert (pair["matched"], pair["only_first"], pair["only_second"]) == (2, 0, 0)
    assert pair["boundary_p90_frames"] > 0 and pair["kappa"] is not None and pair["kappa"] < 1
    page = open_page(browser, url, "typist", "test_0000.mp4")
    page.check("input[data-annotator='bob']")
    page.check("#show-disagreements")
    page.wait_for_selector("#disagreements li")
    listed = page.inner_text("#disagreements")
    assert "class at" in listed and "bob" in listed
    rows = page.eval_on_selector_all("#strokes tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert sorted(rows) == ["bob", "bob", "typist", "typist"]
    assert page.errors == []
    page.close()


def test_model_proposals_accepted_corrected_rejected(served, browser) -> None:
    project, url = served
    video = project.video("test_0000.mp4")
    truth = [(4, 12, CLASSES[0], 0.9), (30, 38, CLASSES[1], 0.35), (14, 20, CLASSES[1], 0.6)]
    proposals = project.add_strokes([
        {"video_id": video.id, "annotator": "model", "begin": b, "end": e, "label": label, "confidence": c,
         "top3": [[label, c], [CLASSES[1 - CLASSES.index(label)], round(1 - c, 2)]], "status": "proposed"}
        for b, e, label, c in truth])
    page = open_page(browser, url, "carol", "test_0000.mp4")
    page.wait_for_selector("#review:not([hidden])")
    page.check("#lowest-first")
    page.keyboard.press("r")  # the least confident proposal first
    page.wait_for_function(f"() => document.body.dataset.selected === '{proposals[1].id}'")
    go_to(page, 39)
    page.keyboard.press("e")  # its last frame is 39, not 37: a correction
    page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('corrected')")
    page.keyboard.press("r")
    page.wait_for_function(f"() => document.body.dataset.selected === '{proposals[2].id}'")
    page.keyboard.press("x")
    page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('rejected')")
    page.keyboard.press("r")
    page.wait_for_function(f"() => document.body.dataset.selected === '{proposals[0].id}'")
    page.keyboard.press("a")
    wait_until(lambda: len(project.strokes(video.id, "carol", include_rejected=True)) == 3, page)
    reviewed = {s.origin: s for s in project.strokes(video.id, "carol", include_rejected=True)}
    assert (reviewed[proposals[0].id].status, reviewed[proposals[0].id].end) == ("accepted", 12)
    assert (reviewed[proposals[1].id].status, reviewed[proposals[1].id].end) == ("corrected", 40)
    assert reviewed[proposals[2].id].status == "rejected"
    assert [s.status for s in project.strokes(video.id, "carol")] == ["accepted", "corrected"]  # what exports see
    page.wait_for_function("() => document.querySelector('#accepted-share').textContent.startsWith('33%')")
    assert page.errors == []
    page.close()
