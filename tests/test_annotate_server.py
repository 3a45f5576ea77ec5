"""The annotation server's API: validation, path traversal, cross-site writes, the access token; proxies."""

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():  # Starlette's note about httpx, whatever the version pair installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tstcnn.annotate.database import DATABASE, Project
from tstcnn.annotate.proxy import browser_problem, playable
from tstcnn.annotate.server import CSRF_HEADER, create_app, is_loopback, page_url, serve
from tstcnn.cli import main
from tstcnn.io.video import iter_frames
from tstcnn.taxonomy import TTSTROKE21_CLASSES

from annotate_helpers import write_avi, write_video

A, B = TTSTROKE21_CLASSES[0], TTSTROKE21_CLASSES[8]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project.create(tmp_path / "project")
    project.add_video(write_video(tmp_path / "clip.mp4"))
    (tmp_path / "secret.txt").write_text("outside the project")
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> TestClient:
    app = create_app(project)
    client = TestClient(app, base_url="http://localhost:8000")
    client.headers[CSRF_HEADER] = app.state.csrf_token
    client.headers["Origin"] = "http://localhost:8000"
    return client


def test_page_carries_the_token_and_strict_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and client.headers[CSRF_HEADER] in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_stroke_round_trip_and_validation(client: TestClient, project: Project) -> None:
    vid = project.video("clip.mp4").id
    made = client.post(f"/api/videos/{vid}/strokes", json={"annotator": "ann", "begin": 2, "end": 9, "label": A})
    assert made.status_code == 201
    stroke = made.json()
    bad_bodies = [
        {"annotator": "ann", "begin": 2, "end": 99, "label": A},  # past the end
        {"annotator": "ann", "begin": 5, "end": 5, "label": A},  # empty
        {"annotator": "ann", "begin": "2", "end": 9, "label": A},  # a string
        {"annotator": "ann", "begin": 2.5, "end": 9, "label": A},  # not a frame
        {"annotator": "ann", "begin": 2, "end": 9, "label": "Smash"},  # unknown class
        {"annotator": "", "begin": 2, "end": 9, "label": A},
        {"annotator": "../../etc", "begin": 2, "end": 9, "label": A},
        {"annotator": "ann", "begin": 2, "end": 9, "label": A, "status": "accepted"},  # unknown field
        {"annotator": "ann", "begin": 2, "end": 9},
    ]
    for body in bad_bodies:
        response = client.post(f"/api/videos/{vid}/strokes", json=body)
        assert 400 <= response.status_code < 500, body
    assert client.post(f"/api/videos/{vid}/strokes", content=b"{not json",
                       headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/api/videos/999/strokes", json={"annotator": "ann", "begin": 0, "end": 2,
                                                        "label": A}).status_code == 404
    assert client.patch(f"/api/strokes/{stroke['id']}", json={"annotator": "bob", "label": B}).status_code == 400
    assert client.request("DELETE", f"/api/strokes/{stroke['id']}", json={"annotator": "bob"}).status_code == 400
    assert [s.to_json() for s in project.strokes()] == [stroke]  # nothing above changed anything
    moved = client.patch(f"/api/strokes/{stroke['id']}", json={"annotator": "ann", "begin": 3, "label": B}).json()
    assert (moved["begin"], moved["label"]) == (3, B)
    assert client.post(f"/api/videos/{vid}/undo", json={"annotator": "ann"}).json()["undone"]["begin"] == 2
    listed = client.get(f"/api/videos/{vid}/strokes").json()["strokes"]
    assert [(s["begin"], s["label"]) for s in listed] == [(2, A)]


def test_no_file_outside_the_project_is_served(client: TestClient, project: Project) -> None:
    for path in ["/static/../project.sqlite", "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt", "/static/..%2fserver.py",
                 "/static/%2e%2e%2fdatabase.py", "/api/videos/..%2f..%2fsecret.txt/media", "/../secret.txt",
                 "/static//etc/passwd", "/api/videos/1%2f..%2f..%2fsecret.txt/media", "/project.sqlite"]:
        response = client.get(path)
        assert response.status_code in (400, 404, 422), path
        assert b"outside the project" not in response.content and b"SQLite format" not in response.content
    media = client.get(f"/api/videos/{project.video('clip.mp4').id}/media", headers={"Range": "bytes=0-15"})
    assert media.status_code == 206 and media.content == (project.root / "videos" / "clip.mp4").read_bytes()[:16]
    assert client.get("/static/app.js").status_code == 200


def test_cross_site_writes_are_refused(client: TestClient, project: Project) -> None:
    vid = project.video("clip.mp4").id
    body = {"annotator": "ann", "begin": 0, "end": 4, "label": A}
    url = f"/api/videos/{vid}/strokes"
    token = client.headers.pop(CSRF_HEADER)
    assert client.post(url, json=body).status_code == 403  # no token
    assert client.post(url, json=body, headers={CSRF_HEADER: token[:-1] + "x"}).status_code == 403
    assert client.post(url, json=body, headers={CSRF_HEADER: token, "Origin": "http://evil.example"}).status_code == 403
    assert client.post(url, json=body, headers={CSRF_HEADER: token, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post(url, json=body, headers={CSRF_HEADER: token, "Host": "evil.example"}).status_code == 421
    assert client.get("/api/project", headers={"Host": "rebound.example:8000"}).status_code == 421  # DNS rebinding
    assert project.strokes() == []
    big = {**body, "label": "x" * 70_000}
    assert client.post(url, json=big, headers={CSRF_HEADER: token}).status_code == 413
    bad_length = {CSRF_HEADER: token, "Content-Length": "12abc", "Content-Type": "application/json"}
    assert client.post(url, content=json.dumps(body).encode(), headers=bad_length).status_code == 400
    assert client.post(url, json=body, headers={CSRF_HEADER: token}).status_code == 201


def test_chunked_bodies_are_capped_on_a_live_server(project: Project) -> None:
    """Over a real socket, a body sent chunked (no Content-Length) is counted as it arrives: over the limit, 413
    and nothing saved; under it, saved."""
    import httpx
    import uvicorn

    from tstcnn.annotate.server import MAX_BODY, bind

    app = create_app(project)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://localhost:{sock.getsockname()[1]}"
        vid = project.video("clip.mp4").id
        headers = {CSRF_HEADER: app.state.csrf_token, "Origin": url, "Content-Type": "application/json"}
        with httpx.Client(base_url=url, timeout=20) as client:
            for _ in range(200):  # the server thread starts listening
                with contextlib.suppress(httpx.ConnectError):
                    client.get("/api/revision")
                    break
                threading.Event().wait(0.05)

            def chunks(body: bytes, size: int = 1024):
                for i in range(0, len(body), size):
                    yield body[i:i + size]

            stroke = {"annotator": "ann", "begin": 1, "end": 6, "label": A}
            big = json.dumps({**stroke, "label": "x" * (MAX_BODY + 10)}).encode()
            refused = client.post(f"/api/videos/{vid}/strokes", content=chunks(big), headers=headers)
            assert refused.status_code == 413 and "content-length" not in refused.request.headers
            assert project.strokes() == []
            made = client.post(f"/api/videos/{vid}/strokes", content=chunks(json.dumps(stroke).encode(), 16),
                               headers=headers)
            assert made.status_code == 201 and made.request.headers.get("transfer-encoding") == "chunked"
            assert [s.label for s in project.strokes()] == [A]
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()


def test_access_token_off_loopback(project: Project) -> None:
    app = create_app(project, access_token="s3cret-token-123", loopback=False)
    client = TestClient(app, base_url="http://192.0.2.7:8000")
    assert client.get("/api/project").status_code == 401
    assert client.get("/api/project", params={"token": "wrong"}).status_code == 401
    first = client.get("/", params={"token": "s3cret-token-123"}, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    assert client.get("/api/project").status_code == 200  # the cookie set by the first visit
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="access token"):
        serve(project.root, host="0.0.0.0", port=0)
    assert page_url("0.0.0.0", 80, "t0k") == "http://0.0.0.0:80/?token=t0k"


def test_review_counts_proposals_accepted_unchanged(client: TestClient, project: Project) -> None:
    vid = project.video("clip.mp4").id
    proposals = project.add_strokes([{"video_id": vid, "annotator": "model", "begin": b, "end": b + 4, "label": A,
                                      "confidence": c, "top3": [[A, c], [B, 1 - c]], "status": "proposed"}
                                     for b, c in ((0, 0.9), (10, 0.3), (20, 0.6))])
    url = "/api/strokes/{}/review"
    accepted = client.post(url.format(proposals[0].id), json={"annotator": "ann", "decision": "accepted"})
    assert accepted.status_code == 200
    fixed = client.post(url.format(proposals[1].id), json={"annotator": "ann", "decision": "corrected", "end": 13})
    assert fixed.json()["end"] == 13 and fixed.json()["origin"] == proposals[1].id
    assert client.post(url.format(proposals[2].id), json={"annotator": "ann", "decision": "maybe"}).status_code == 422
    summary = client.get("/api/review", params={"annotator": "ann"}).json()
    assert summary["reviewers"]["ann"]["pending"] == 1
    assert summary["overall"]["accepted_unchanged"] == pytest.approx(0.5)


def test_proxy_keeps_every_frame_in_place(project: Project, tmp_path: Path) -> None:
    write_avi(tmp_path / "old.avi", 27)
    video = project.add_video(tmp_path / "old.avi")
    assert browser_problem(project.video_path(video), video.fps) is not None
    media = playable(project, video)
    assert media.proxy and media.path.suffix == ".mp4" and media.fps == 25
    assert browser_problem(media.path, media.fps) is None  # the proxy plays frame for frame
    original = [f.mean() for f in iter_frames(project.video_path(video))]
    proxy = [f.mean() for f in iter_frames(media.path)]
    assert len(proxy) == len(original) == video.frames == 27
    assert np.abs(np.array(proxy) - np.array(original)).max() < 3  # frame i of the proxy is frame i of the original
    assert playable(project, video) == media  # made once
    assert json.loads((project.root / "proxies" / "old.avi.json").read_text())["proxy"] is True
    assert not playable(project, project.video("clip.mp4")).proxy


def test_cli_adds_videos_and_reports_bad_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_video(tmp_path / "good.mp4", frames=12)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 4000)
    root = tmp_path / "p"
    status = main(["annotate", str(root), str(tmp_path / "good.mp4"), str(tmp_path / "bad.mp4"), "--no-serve", "-q"])
    assert status == 1
    out, err = capsys.readouterr()
    assert "good.mp4: 12 frames" in out and "bad.mp4" in err
    with Project.open(root) as project:
        assert [v.name for v in project.videos()] == ["good.mp4"]
    (root / DATABASE).write_bytes(b"garbage" * 500)
    status = main(["annotate", str(root), "--no-serve"])
    assert status == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("tstcnn annotate: error:") and "not a readable annotation database" in message
    assert len(message.splitlines()) == 1


@pytest.mark.slow
def test_server_killed_during_saves_loses_nothing_saved(tmp_path: Path) -> None:
    """``tstcnn annotate`` in its own process, saving strokes posted one after the other, killed with SIGKILL while
    a save is in flight: every save it acknowledged is in the database, which is whole."""
    import httpx

    root = tmp_path / "project"
    with Project.create(root) as project:
        video = project.add_video(write_video(tmp_path / "clip.mp4"))
    child = subprocess.Popen([sys.executable, "-m", "tstcnn.cli", "annotate", str(root), "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("annotation page: http://localhost:"), line
        url = line.split()[2]
        client = httpx.Client(base_url=url, timeout=20)
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
        headers = {CSRF_HEADER: token, "Origin": url.rstrip("/")}
        saved = []
        for i in range(40):
            body = {"annotator": "ann", "begin": i % 20, "end": i % 20 + 5, "label": A}
            response = client.post(f"/api/videos/{video.id}/strokes", json=body, headers=headers)
            assert response.status_code == 201
            saved.append(response.json()["id"])
        in_flight = threading.Thread(target=lambda: _post_quietly(client, video.id, headers), daemon=True)
        in_flight.start()
        child.send_signal(signal.SIGKILL)
        child.wait(20)
        in_flight.join(20)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    with Project.open(root) as project:
        ids = [s.id for s in project.strokes()]
    assert set(saved) <= set(ids) and len(ids) in (40, 41)
    assert sqlite3.connect(root / DATABASE).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _post_quietly(client: object, video_id: int, headers: dict) -> None:
    with contextlib.suppress(Exception):  # the server dies under it
        client.post(f"/api/videos/{video_id}/strokes", json={"annotator": "ann", "begin": 0, "end": 3, "label": B},
                    headers=headers)
