"""The annotation page's server: a FastAPI application over one project folder, run by uvicorn in one process.

The page (``static/``) plays a video, shows its strokes on a timeline and saves each change through the JSON API
below; the database does the validating and the transactions. Safety, as a local tool reachable by any web page
the annotator's browser opens:

* Only the project's videos (by database id) and the page's own static files are served; no request names a path.
* Every body is a pydantic model (unknown fields refused); a bad one gets a 4xx and changes nothing. A body over
  ``MAX_BODY`` bytes is refused with 413 whether it declares its length or arrives chunked.
* Writes (POST, PATCH, PUT, DELETE) need the header ``X-Tstcnn-Token`` holding this process's random token, which
  only the page receives (in its HTML); a cross-site page can neither read it nor send a custom header without a
  CORS pre-flight, which is never granted. A cross-origin ``Origin`` or ``Sec-Fetch-Site`` is refused as well.
* Bound to loopback, only ``localhost``/``127.0.0.1``/``[::1]`` Host headers are answered (no DNS rebinding).
  Bound to another address, every request needs the access token (``?token=`` once, then a same-site cookie).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import secrets
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tstcnn.annotate import agreement
from tstcnn.annotate.assist import review_summary
from tstcnn.annotate.database import MAX_ANNOTATOR, MODEL_ANNOTATOR, REVIEW_DECISIONS, Project, Stroke, Video
from tstcnn.annotate.proxy import playable

__all__ = ["create_app", "serve", "bind", "page_url", "is_loopback", "CSRF_HEADER", "ACCESS_COOKIE", "MAX_BODY"]

logger = logging.getLogger(__name__)

CSRF_HEADER = "X-Tstcnn-Token"
ACCESS_COOKIE = "tstcnn_access"
MAX_BODY = 64 * 1024  # bytes; the largest body the page sends is one stroke
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
STATIC = resources.files("tstcnn.annotate") / "static"

Annotator = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ANNOTATOR)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Frame = Annotated[StrictInt, Field(ge=0, le=2**31)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewStroke(_Body):
    annotator: Annotator
    begin: Frame
    end: Frame
    label: Label


class StrokeChange(_Body):
    annotator: Annotator
    begin: Frame | None = None
    end: Frame | None = None
    label: Label | None = None


class Owner(_Body):
    annotator: Annotator


class ReviewDecision(_Body):
    annotator: Annotator
    decision: Literal["accepted", "corrected", "rejected"]
    begin: Frame | None = None
    end: Frame | None = None
    label: Label | None = None


assert tuple(ReviewDecision.model_fields["decision"].annotation.__args__) == REVIEW_DECISIONS


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """``Host`` without its port (``[::1]:8000`` → ``[::1]``)."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


class BodyLimit:
    """ASGI middleware that reads each request body, up to ``limit`` bytes, before the application sees it.

    A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as it arrives and
    refused as soon as it passes the limit, so no body larger than the limit is ever held in memory.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            await _refuse(400, "bad Content-Length header")(scope, receive, send)
            return
        if int(declared) > self.limit:
            await _refuse(413, "request body too large")(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(413, "request body too large")(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        buffered: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal buffered
            if buffered is None:
                return await receive()  # after the body: the disconnect a streaming response listens for
            message, buffered = buffered, None
            return message

        await self.app(scope, replay, send)


def _video_json(video: Video) -> dict[str, Any]:
    return dataclasses.asdict(video)


def _strokes_json(strokes: list[Stroke]) -> list[dict[str, Any]]:
    return [s.to_json() for s in strokes]


def _disagreements(project: Project, video_id: int, annotators: list[str]) -> list[dict[str, Any]]:
    """The page's disagreement marks: :func:`tstcnn.annotate.agreement.disagreements` over the chosen annotators."""
    grouped = agreement.by_annotator(project.strokes(video_id), annotators=annotators)
    if len(grouped) < 2:
        return []
    return [{**dataclasses.asdict(d), "video_id": video_id} for d in agreement.disagreements(grouped)]


def create_app(project: Project, *, access_token: str | None = None, loopback: bool = True) -> FastAPI:
    """The application over an open ``project``.

    Args:
        project: the project; the caller closes it.
        access_token: required of every request when given (``?token=`` on the page's URL sets a cookie).
        loopback: answer only Host headers naming this machine (the server is bound to a loopback address).
    """
    app = FastAPI(title="tstcnn annotate", docs_url=None, redoc_url=None, openapi_url=None)
    csrf = secrets.token_urlsafe(32)
    app.state.csrf_token = csrf
    app.state.project = project
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # inside the guard: a refused request is not read

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if loopback and _host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            return _refuse(421, "this server answers only requests for localhost")
        if access_token is not None:
            given = (request.cookies.get(ACCESS_COOKIE) or request.query_params.get("token")
                     or request.headers.get("authorization", "").removeprefix("Bearer "))
            if not secrets.compare_digest(given.encode(), access_token.encode()):
                return _refuse(401, "an access token is needed: open the URL printed by tstcnn annotate")
            if request.query_params.get("token") and request.method == "GET" and request.url.path == "/":
                response: Response = RedirectResponse("/", status_code=303)  # drop the token from the address bar
                response.set_cookie(ACCESS_COOKIE, access_token, httponly=True, samesite="strict")
                return response
        if request.method in UNSAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
                return _refuse(403, "cross-origin write refused")
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return _refuse(403, "cross-site write refused")
            if not secrets.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf.encode()):
                return _refuse(403, f"missing or wrong {CSRF_HEADER} header: reload the page")
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        return response

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return _refuse(400, str(exc))

    @app.exception_handler(sqlite3.OperationalError)
    async def busy(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        logger.warning("database error on %s %s: %s", request.method, request.url.path, exc)
        return _refuse(503, f"the project database is busy or unwritable ({exc}); try again")

    @app.exception_handler(KeyError)
    async def missing(request: Request, exc: KeyError) -> JSONResponse:
        return _refuse(404, str(exc.args[0]) if exc.args else "not found")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{CSRF_TOKEN}}", csrf), headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/project")
    def project_info() -> dict[str, Any]:
        return {"root": project.root.name, "classes": list(project.classes),
                "videos": [_video_json(v) for v in project.videos()], "annotators": project.annotators(),
                "model_annotator": MODEL_ANNOTATOR, "revision": project.revision()}

    @app.get("/api/revision")
    def revision() -> dict[str, int]:
        return {"revision": project.revision()}

    @app.get("/api/videos/{video_id}")
    def video_info(video_id: int) -> dict[str, Any]:
        video = project.video(video_id)
        media = playable(project, video)
        return {**_video_json(video), "play_fps": media.fps, "proxy": media.proxy}

    @app.get("/api/videos/{video_id}/media")
    def video_media(video_id: int) -> FileResponse:
        media = playable(project, project.video(video_id))
        return FileResponse(media.path, media_type=media.media_type, content_disposition_type="inline")

    @app.get("/api/videos/{video_id}/strokes")
    def video_strokes(video_id: int) -> dict[str, Any]:
        project.video(video_id)
        return {"revision": project.revision(),
                "strokes": _strokes_json(project.strokes(video_id, include_rejected=True))}

    @app.get("/api/videos/{video_id}/disagreements")
    def video_disagreements(video_id: int, annotators: str = "") -> dict[str, Any]:
        project.video(video_id)
        names = [n for n in annotators.split(",") if n] or [n for n in project.annotators() if n != MODEL_ANNOTATOR]
        return {"annotators": names, "disagreements": _disagreements(project, video_id, names)}

    @app.post("/api/videos/{video_id}/strokes", status_code=201)
    def add_stroke(video_id: int, body: NewStroke) -> dict[str, Any]:
        return project.add_stroke(video_id, body.annotator, body.begin, body.end, body.label).to_json()

    @app.patch("/api/strokes/{stroke_id}")
    def change_stroke(stroke_id: int, body: StrokeChange) -> dict[str, Any]:
        changes = body.model_dump(exclude={"annotator"}, exclude_none=True)
        if not changes:
            raise HTTPException(400, "nothing to change")
        return project.update_stroke(stroke_id, body.annotator, **changes).to_json()

    @app.delete("/api/strokes/{stroke_id}")
    def delete_stroke(stroke_id: int, body: Owner) -> dict[str, Any]:
        project.delete_stroke(stroke_id, body.annotator)
        return {"deleted": stroke_id}

    @app.post("/api/strokes/{stroke_id}/review")
    def review(stroke_id: int, body: ReviewDecision) -> dict[str, Any]:
        changes = body.model_dump(exclude={"annotator", "decision"}, exclude_none=True)
        return project.review(stroke_id, body.annotator, body.decision, **changes).to_json()

    @app.post("/api/videos/{video_id}/undo")
    def undo(video_id: int, body: Owner) -> dict[str, Any]:
        project.video(video_id)
        stroke = project.undo(body.annotator, video_id)
        return {"undone": stroke.to_json() if stroke else None}

    @app.get("/api/review")
    def review_state(annotator: str | None = None) -> dict[str, Any]:
        return review_summary(project, annotator)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    sock.listen(128)
    return sock


def page_url(host: str, port: int, access_token: str | None = None) -> str:
    name = "localhost" if is_loopback(host) else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return f"http://{name}:{port}/" + (f"?token={access_token}" if access_token else "")


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8000, access_token: str | None = None,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the page over the project in ``root`` until interrupted (Ctrl+C).

    Args:
        root: the project folder (opened, not created).
        host: the address to bind; any but a loopback address needs ``access_token``.
        port: the TCP port (0: a free one).
        access_token: required of every request when given.
        ready: called with the page's URL once the server listens.
    """
    import uvicorn  # only the server needs it

    loopback = is_loopback(host)
    if not loopback and not access_token:
        raise ValueError(f"--host {host} lets other machines connect: give an access token (--token)")
    project = Project.open(root)
    try:
        sock = bind(host, port)
        app = create_app(project, access_token=access_token, loopback=loopback)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=2))
        if ready is not None:
            ready(page_url(host, sock.getsockname()[1], access_token))
        with sock:
            server.run(sockets=[sock])
    finally:
        project.close()
