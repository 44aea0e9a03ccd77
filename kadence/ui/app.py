"""The web UI: a Starlette app with Jinja2 templates and htmx (vendored in `static/`).

Pages are rendered on the server; htmx swaps fragments (the list's rows and counts, an
execution's body, an action's result) and re-fetches them when the page's server-sent event
stream (`/live`, fed by `live.VisibilityWatch`) says the workflows it shows changed. Every Kafka
call is blocking, so the endpoints are plain functions: Starlette runs them on its thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kadence.failures import KadenceError, WorkflowNotFoundError
from kadence.streams.clients import make_admin
from kadence.streams.settings import Settings
from kadence.visibility import STATUS_NAMES, QueryError

from . import views
from .live import VisibilityWatch

HERE = Path(__file__).parent
PAGE_SIZE = 50
#: How long a broker check is trusted before the next page asks the broker again.
PROBE_TTL_S = 5.0
#: Updates that arrive within this window are sent to a page as one `changed` event.
DEBOUNCE_S = 0.3


class BrokerDown(Exception):
    """The broker does not answer, or the topics are missing: the message says which."""


class UI:
    """The app's state: settings, one Client, the visibility watch and the templates."""

    def __init__(self, settings: Settings, domain: str = "default") -> None:
        self.settings = settings
        self.domain = domain
        self.watch = VisibilityWatch(settings)
        self._client: Any = None
        self._probed_at = 0.0
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
        )
        self.templates.globals.update(time_text=views.time_text, status_names=STATUS_NAMES)
        self.templates.filters["urlq"] = _urlquote

    @property
    def client(self) -> Any:
        if self._client is None:
            from kadence.client import Client

            self._client = Client(self.settings, domain=self.domain)
        return self._client

    def close(self) -> None:
        self.watch.stop()
        if self._client is not None:
            self._client.close()

    def probe(self) -> None:
        """Raise BrokerDown unless the broker answered (and had the topics) within PROBE_TTL_S."""
        if time.monotonic() - self._probed_at < PROBE_TTL_S:
            return
        s = self.settings
        try:
            topics = make_admin(s).list_topics(timeout=3).topics
        except Exception as exc:  # noqa: BLE001 - whatever librdkafka says, the page says it plainly
            raise BrokerDown(
                f"Cannot reach the Kafka broker at {s.bootstrap} ({exc}). Start it, or restart "
                "`kadence ui` with the right --bootstrap and security settings."
            ) from None
        missing = [t for t in (s.history_topic, s.visibility_topic, s.commands_topic) if t not in topics]
        if missing:
            raise BrokerDown(
                f"The broker at {s.bootstrap} has no topic {missing[0]}: wrong --prefix ({s.prefix!r}), "
                "or the topics were never created (`kadence topics create`) and no engine has run."
            )
        self._probed_at = time.monotonic()

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("bootstrap", self.settings.bootstrap)
        context.setdefault("domain", self.domain)
        return HTMLResponse(self.templates.get_template(name).render(**context), status_code=status_code)

    def error(self, message: str, status_code: int, fragment: bool = False) -> HTMLResponse:
        return self.render("_error.html" if fragment else "error.html", status_code, message=message)


def _urlquote(value: Any) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def _args(text: str) -> list[Any]:
    """Arguments from the form: empty -> none; a JSON array -> its items; another JSON value -> it."""
    text = text.strip()
    if not text:
        return []
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


# -- the list ----------------------------------------------------------------------------------------
def _list_context(ui: UI, request: Request) -> dict[str, Any]:
    p = request.query_params
    filters = {k: p.get(k, "") for k in ("status", "type", "since", "q")}
    query = views.list_query(filters["status"], filters["type"], filters["since"], filters["q"])
    context: dict[str, Any] = {"filters": filters, "query": query, "statuses": views.STATUSES}
    context["since_choices"] = list(views.SINCE)
    client = ui.client
    token = p.get("page") or None
    page = client.list_workflows_page(
        query, page_size=PAGE_SIZE, next_page_token=token.encode() if token else None
    )
    unfiltered = views.list_query("", filters["type"], filters["since"], filters["q"])
    counts = client.count_workflows(unfiltered, group_by="ExecutionStatus")
    context.update(
        executions=page.executions,
        next_page=page.next_page_token.decode() if page.next_page_token else None,
        this_page=token,
        total=counts.count,
        counts={STATUS_NAMES.get(k, k): v for k, v in counts.groups.items()},
        any_workflows=counts.count > 0 or bool(filters["status"]),
    )
    return context


def list_page(request: Request) -> Response:
    ui: UI = request.app.state.ui
    return _guarded(
        ui,
        lambda: ui.render("list.html", request_query=str(request.query_params), **_list_context(ui, request)),
        request,
    )


def list_fragment(request: Request) -> Response:
    ui: UI = request.app.state.ui
    return _guarded(ui, lambda: ui.render("_list_body.html", **_list_context(ui, request)), request, True)


# -- one execution -----------------------------------------------------------------------------------
def _execution_context(ui: UI, workflow_id: str, run_id: str) -> dict[str, Any]:
    from kadence.cli._present import describe_fields
    from kadence.history import fold

    client = ui.client
    events = client.get_handle(workflow_id).history()
    if not events:
        raise WorkflowNotFoundError(
            workflow_id, f"workflow {workflow_id!r} not found in domain {ui.domain!r}"
        )
    runs = views.runs_of(events)
    run_id = run_id if run_id in runs else runs[-1]
    run_events = [e for e in events if e["run_id"] == run_id]
    state = fold(run_events)
    described = describe_fields(state)
    groups = views.group_history(run_events)
    by_key = {(g.kind, g.key): g for g in groups}
    for activity in described["activities"]:
        group = by_key.get(("activity", activity["scheduled_event_id"]))
        activity["last_failure"] = group.last_failure if group else None
    rows = list(client.list_workflows(f"WorkflowId = '{_esc(workflow_id)}' AND RunId = '{_esc(run_id)}'"))
    info = rows[0] if rows else None
    root_id = info.root_workflow_id if info is not None and info.root_workflow_id else workflow_id
    root_run = info.root_run_id if info is not None else ""
    tree_rows = list(client.list_workflows(f"RootWorkflowId = '{_esc(root_id)}'"))
    tree = views.relationship_tree(workflow_id, tree_rows)
    child_status = {n.workflow_id: n.status for n in tree}
    for child in described["children"]:
        child["status"] = child_status.get(child["workflow_id"], "Starting")
    return {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "runs": runs,
        "d": described,
        "status": STATUS_NAMES.get(described["status"], described["status"]),
        "groups": groups,
        "tree": tree,
        "root_id": root_id,
        "root_run": root_run,
        "event_count": len(run_events),
        "events_json": json.dumps(_events_json(run_events), indent=1),
    }


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _events_json(events: list[dict[str, Any]]) -> list[Any]:
    from kadence.replayer import events_to_json

    return events_to_json(events)


def execution_page(request: Request) -> Response:
    ui: UI = request.app.state.ui
    workflow_id, run_id = request.query_params.get("id", ""), request.query_params.get("run", "")
    if not workflow_id:
        return ui.error("No workflow id given: open a workflow from the list.", 400)
    return _guarded(
        ui, lambda: ui.render("execution.html", **_execution_context(ui, workflow_id, run_id)), request
    )


def execution_fragment(request: Request) -> Response:
    ui: UI = request.app.state.ui
    workflow_id, run_id = request.query_params.get("id", ""), request.query_params.get("run", "")
    return _guarded(
        ui,
        lambda: ui.render("_execution_body.html", **_execution_context(ui, workflow_id, run_id)),
        request,
        True,
    )


def history_download(request: Request) -> Response:
    ui: UI = request.app.state.ui
    workflow_id, run_id = request.query_params.get("id", ""), request.query_params.get("run", "")

    def build() -> Response:
        ui.probe()
        events = ui.client.get_handle(workflow_id).history(run_id=run_id or None)
        if not events:
            return ui.error(f"workflow {workflow_id!r} not found in domain {ui.domain!r}", 404)
        name = f"{workflow_id}-{run_id or 'all-runs'}-history.json".replace("/", "_")
        return JSONResponse(
            {"workflow_id": workflow_id, "events": _events_json(events)},
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return _guarded(ui, build, request)


async def action(request: Request) -> Response:
    """POST signal / query / cancel / terminate: the result as a fragment (the form asked first)."""
    ui: UI = request.app.state.ui
    form = await request.form()
    kind = request.path_params["kind"]
    workflow_id = str(form.get("id", ""))
    name = str(form.get("name", "")).strip()
    reason = str(form.get("reason", "")).strip()
    args_text = str(form.get("args", ""))

    def run() -> Response:
        ui.probe()
        handle = ui.client.get_handle(workflow_id)
        try:
            args = _args(args_text)
        except ValueError as exc:
            return ui.render("_result.html", ok=False, message=f"The arguments are not JSON: {exc}")
        if kind in ("signal", "query") and not name:
            return ui.render("_result.html", ok=False, message=f"Give the {kind}'s name.")
        if kind == "signal":
            handle.signal(name, *args)
            message = f"Signal {name} sent to {workflow_id}; the engine recorded it."
        elif kind == "query":
            result = handle.query(name, *args, timeout=10.0)
            return ui.render("_result.html", ok=True, message=f"{name} =", value=json.dumps(result, indent=1))
        elif kind == "cancel":
            handle.cancel(reason)
            message = f"Cancellation of {workflow_id} requested; the workflow decides how to finish."
        elif kind == "terminate":
            if not reason:
                return ui.render("_result.html", ok=False, message="Give a reason to terminate.")
            handle.terminate(reason)
            message = f"{workflow_id} terminated: {reason}"
        else:
            return ui.render("_result.html", ok=False, message=f"unknown action {kind!r}")
        return ui.render("_result.html", ok=True, message=message)

    return await asyncio.to_thread(_guarded, ui, run, request, True)


# -- live updates ------------------------------------------------------------------------------------
async def live(request: Request) -> Response:
    """Server-sent events: `changed` when a visibility row changes (of workflow `id`, if given)."""
    ui: UI = request.app.state.ui
    ui.watch.start()
    only = request.query_params.get("id") or None

    async def stream() -> AsyncIterator[dict[str, str]]:
        queue = ui.watch.subscribe()
        try:
            while True:
                changed = await queue.get()
                await asyncio.sleep(DEBOUNCE_S)
                while not queue.empty():
                    changed |= queue.get_nowait()
                if only is None or only in changed:
                    yield {"event": "changed", "data": str(len(changed))}
        finally:
            ui.watch.unsubscribe(queue)

    return EventSourceResponse(stream(), ping=15)


# -- errors ------------------------------------------------------------------------------------------
def _guarded(ui: UI, build: Any, request: Request, fragment: bool = False) -> Response:
    """`build()`, or a page (fragment) that says what went wrong: never a blank page."""
    try:
        ui.probe()
        response: Response = build()
        return response
    except BrokerDown as exc:
        return ui.error(str(exc), 503, fragment)
    except QueryError as exc:
        return ui.error(f"The query is not valid: {exc}", 400, fragment)
    except WorkflowNotFoundError as exc:
        return ui.error(str(exc), 404, fragment)
    except KadenceError as exc:
        return ui.error(str(exc), 502, fragment)
    except ValueError as exc:
        return ui.error(f"Bad request: {exc}", 400, fragment)


def create_app(settings: Settings, domain: str = "default") -> Starlette:
    """The UI for the deployment `settings` points at (its broker, topic prefix, security)."""
    ui = UI(settings, domain)
    routes = [
        Route("/", list_page),
        Route("/fragment/list", list_fragment),
        Route("/execution", execution_page),
        Route("/fragment/execution", execution_fragment),
        Route("/execution/history.json", history_download),
        Route("/action/{kind}", action, methods=["POST"]),
        Route("/live", live),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ui.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ui = ui
    return app


__all__ = ["UI", "BrokerDown", "create_app"]
