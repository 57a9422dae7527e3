"""The operator's HTTP routes beside ``/mcp`` on the HTTP transport, behind the same token:

- ``GET /metrics``: Prometheus text (``lumos_mcp.metrics``); ``Authorization: Bearer <token>``.
- ``/console``: a web page for the operator (pending approvals with their diff, verdict,
  rationale, telemetry and expiry, approve and deny buttons; armed transactions with their
  countdown; the knob timeline from replay). Everything it needs is served from here: no
  external asset.

The console's login. A browser does not send a bearer header on its own, so the page asks
for the token once (a form POSTed to ``/console/login``, compared in constant time) and sets a
session cookie (random, ``HttpOnly``, ``SameSite=Strict``, path ``/console``). Every state
change (approve, deny) is a POST that must carry the session's CSRF token in the
``X-CSRF-Token`` header (a cross-site form cannot set a header, and the token is only in the
page), come from this origin when the browser says where it comes from (``Origin``), and name
the digest of the change the operator saw: an approval is refused when it no longer matches
the approval's digest (the approval itself stays bound to the change's digest at apply).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from lumos_mcp.errors import LumosError
from lumos_mcp.metrics import AuditCounter, log_stamps, render, service_facts
from lumos_mcp.replay import load

COOKIE = "lumos_console"
SESSION_TTL_S = 8 * 3600.0
MAX_SESSIONS = 64
MAX_BODY = 4096
TIMELINE_SEGMENTS = 30
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the browser send Origin: null
    "Cache-Control": "no-store",
}


@dataclass
class _Session:
    csrf: str
    expires: float


class Sessions:
    """Console sessions: random ids, each with its CSRF token; at most ``MAX_SESSIONS``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, _Session] = {}

    def open(self) -> tuple[str, str]:
        now = self._clock()
        with self._lock:
            for sid in [s for s, v in self._by_id.items() if v.expires <= now]:
                del self._by_id[sid]
            while len(self._by_id) >= MAX_SESSIONS:
                del self._by_id[next(iter(self._by_id))]
            sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            self._by_id[sid] = _Session(csrf, now + SESSION_TTL_S)
            return sid, csrf

    def get(self, sid: str | None) -> _Session | None:
        if not sid:
            return None
        with self._lock:
            found = self._by_id.get(sid)
            if found is None or found.expires <= self._clock():
                return None
            return found


def _asset(name: str) -> bytes:
    return importlib_resources.files("lumos_mcp").joinpath("webassets", name).read_bytes()


def _secure(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response


def _error(status: int, code: str, message: str, **fields: Any) -> Response:
    return _secure(JSONResponse({"error": {"code": code, "message": message, "fields": fields}}, status_code=status))


class OperatorApp:
    """The routes over a running ``Service`` (typed ``Any``: the service imports nothing from here)."""

    def __init__(self, service: Any, token: str, hosts: Iterable[str] | None = None) -> None:
        self.service = service
        self._token = token.encode()
        self.hosts = frozenset(hosts) if hosts is not None else None
        """``Host`` headers answered (None: any): a DNS-rebinding page gets 421, not the console."""
        self.sessions = Sessions()
        self.counter = AuditCounter(service.audit.path)
        self._timeline_lock = threading.Lock()
        self._timeline_key: Any = None
        self._timeline: dict[str, Any] = {}

    # ------------------------------------------------------------------ auth
    def _bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def _session(self, request: Request) -> _Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site request (browsers send Origin on every POST)
        return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/metrics", self._checked(self.metrics), methods=["GET"]),
            Route("/console", self._checked(self.page), methods=["GET"]),
            Route("/console/login", self._checked(self.login), methods=["POST"]),
            Route("/console/console.js", self._checked(self.script), methods=["GET"]),
            Route("/console/console.css", self._checked(self.style), methods=["GET"]),
            Route("/console/api/state", self._checked(self.state), methods=["GET"]),
            Route("/console/api/approvals/{approval_id}/{decision}", self._checked(self.decide), methods=["POST"]),
        ]

    def _checked(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if self.hosts is not None and request.headers.get("host", "") not in self.hosts:
                return _error(421, "misdirected", "this server does not answer for that host name")
            return await handler(request)

        return endpoint

    async def metrics(self, request: Request) -> Response:
        if not self._bearer_ok(request):
            return _error(401, "unauthorized", "a bearer token is needed")
        text = await anyio.to_thread.run_sync(lambda: render(lambda: service_facts(self.service, self.counter)))
        return Response(text, media_type=PROMETHEUS_TEXT)

    async def page(self, request: Request) -> Response:
        name = "console.html" if self._session(request) is not None else "login.html"
        return _secure(HTMLResponse(_asset(name)))

    async def script(self, request: Request) -> Response:
        return _secure(Response(_asset("console.js"), media_type="text/javascript"))

    async def style(self, request: Request) -> Response:
        return _secure(Response(_asset("console.css"), media_type="text/css"))

    async def login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return _error(403, "cross_origin", "login from another origin is refused")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", "request body too large")
        form = await request.form()
        token = str(form.get("token", "")).strip().encode()
        if not hmac.compare_digest(token, self._token):
            return _secure(RedirectResponse("/console?denied=1", status_code=303))
        sid, _ = self.sessions.open()
        response = RedirectResponse("/console", status_code=303)
        response.set_cookie(COOKIE, sid, max_age=int(SESSION_TTL_S), path="/console", httponly=True, samesite="strict")
        return _secure(response)

    async def state(self, request: Request) -> Response:
        session = self._session(request)
        if session is None and not self._bearer_ok(request):
            return _error(401, "unauthorized", "log in at /console or send a bearer token")
        data = await anyio.to_thread.run_sync(self.snapshot)
        data["csrf"] = session.csrf if session is not None else None
        return _secure(Response(orjson.dumps(data), media_type="application/json"))

    async def decide(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _error(401, "unauthorized", "log in at /console first")
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()) or not self._same_origin(request):
            return _error(403, "csrf", "missing or wrong CSRF token, or another origin")
        decision = request.path_params["decision"]
        if decision not in ("approve", "deny"):
            return _error(404, "not_found", "approve or deny")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", "request body too large")
        try:
            payload = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            return _error(400, "bad_request", "the body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("digest"), str):
            return _error(400, "bad_request", "the body names the digest of the change shown")
        note = str(payload.get("note") or "")[:500]
        return await anyio.to_thread.run_sync(
            self._decide, request.path_params["approval_id"], decision == "approve", payload["digest"], note
        )

    def _decide(self, approval_id: str, grant: bool, digest: str, note: str) -> Response:
        approval = next((a for a in self.service.approvals.list(status=None) if a.id == approval_id), None)
        if approval is None:
            return _error(404, "approval_invalid", "no such approval", approval=approval_id)
        if not hmac.compare_digest(approval.digest.encode(), digest.encode()):
            return _error(409, "digest_mismatch", "the change is not the one shown: reload", approval=approval_id)
        try:
            decided = self.service.decide_approval(approval_id, grant, by="console", note=note)
        except LumosError as e:
            return _error(409, e.code, str(e), **{k: str(v) for k, v in e.fields.items()})
        return _secure(JSONResponse({"id": decided.id, "status": decided.status, "txid": decided.txid}))

    # ------------------------------------------------------------------ the page's data
    def timeline(self) -> dict[str, Any]:
        """The knob timeline from replay, replayed again only when the audit log changed (the
        page asks every 2 s; a long log takes a while to verify)."""
        service = self.service
        with self._timeline_lock:
            try:
                key = log_stamps(service.audit.path)
                if key != self._timeline_key:
                    self._timeline = self._replayed()
                    self._timeline_key = key
            except LumosError as e:
                return {"verified": False, "error": e.code, "knobs": {}, "marks": {}}
            return self._timeline

    def _replayed(self) -> dict[str, Any]:
        service = self.service
        try:
            history = load(service.audit.path, mode=service.mode)
        except LumosError as e:
            return {"verified": False, "error": e.code, "knobs": {}, "marks": {}}
        return {
            "verified": history.verified,
            "first_ts": history.first_ts,
            "last_ts": history.last_ts,
            "knobs": {
                k: [
                    {"value": s.value, "since": s.since, "until": s.until, "state": s.state, "tx": s.tx}
                    for s in segs[-TIMELINE_SEGMENTS:]
                ]
                for k, segs in sorted(history.timelines.items())
            },
            "marks": {
                k: [{"ts": m.ts, "event": m.event, "value": m.value} for m in marks[-TIMELINE_SEGMENTS * 2 :]]
                for k, marks in sorted(history.marks.items())
            },
        }

    def snapshot(self) -> dict[str, Any]:
        service = self.service
        now = service.clock()
        pending = []
        for a in service.approvals.list(status="pending"):
            item: dict[str, Any] = {
                "id": a.id,
                "txid": a.txid,
                "digest": a.digest,
                "summary": a.summary,
                "expires_in_s": round(a.expires_at - now, 1),
                "requested_by": a.requested_by,
                "diff": None,
                "verdict": None,
                "rationale": None,
            }
            try:
                staged = service.staged(a.txid)
            except LumosError:
                staged = None
            if staged is not None:
                v = staged.verdict
                item["diff"] = [
                    {"knob": c.knob, "before": c.before, "after": c.after, "unit": c.unit} for c in staged.tx.changes
                ]
                item["verdict"] = {
                    "allowed": v.allowed,
                    "approval_required": v.approval_required,
                    "approval_reasons": list(v.approval_reasons),
                    "denials": [d.message for d in v.denials],
                    "policy": service.policy.name,
                }
                item["rationale"] = staged.rationale
                item["stale"] = staged.tx.digest != a.digest
            pending.append(item)
        status = service.status()
        timeline = self.timeline()
        return {
            "now": now,
            "mode": service.mode,
            "policy": service.policy.name,
            "pending": pending,
            "armed": status["armed"],
            "telemetry": service.evidence(),
            "journal_problem": status["journal_problem"],
            "timeline": timeline,
        }


def operator_routes(service: Any, token: str, host: str | None = None, port: int | None = None) -> list[BaseRoute]:
    """``/metrics`` and ``/console`` over ``service``, behind ``token``; with ``host`` and ``port``,
    only for requests naming that address (and ``localhost`` when it is a loopback one)."""
    hosts = None
    if host is not None and port is not None:
        names = {host, "localhost", "127.0.0.1", "[::1]"} if host in ("127.0.0.1", "localhost", "::1") else {host}
        hosts = {f"[{n}]:{port}" if ":" in n and not n.startswith("[") else f"{n}:{port}" for n in names}
    return OperatorApp(service, token, hosts).routes()


__all__ = ["COOKIE", "OperatorApp", "Sessions", "operator_routes"]
