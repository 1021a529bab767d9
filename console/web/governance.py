"""The governance pages: the weekly review, and the policy page where a candidate is
dry-run on the recorded history before it can be published.

The policy page runs the same dry-run as `casegate policy dry-run` and records it the same
way; its publish button only ever publishes the document of a recorded dry-run (by id),
with that id in the PolicyPublished event, and only for the roles in
CASEGATE_POLICY_PUBLISHER_ROLES.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from console.api.deps import Conn, Svc
from console.api.service_errors import Conflict, Forbidden, Invalid, NotFound
from console.dryrun import parse_since, record_dry_run, run_dry_run
from console.policy_topic import publish_policy
from console.web.forms import FormSession
from console.web.render import render
from console.web.session import Session, WebSession
from console.weekly import sections, title_of, weekly_report
from infra.acl import PUBLISHER
from infra.kafka_auth import as_principal
from policy.loader import PolicyInvalid, load_policy_text

router = APIRouter(include_in_schema=False)


@router.get("/reports/weekly")
def weekly_page(request: Request, session: Session, conn: Conn, week_ending: str = "") -> Response:
    try:
        last = date.fromisoformat(week_ending) if week_ending else datetime.now(UTC).date()
    except ValueError:
        raise Invalid([(("query", "week_ending"), "give a date as YYYY-MM-DD")]) from None
    report = weekly_report(conn, last + timedelta(days=1))
    heading, compared = title_of(report)
    return render(
        request,
        "weekly.html",
        session=session,
        heading=heading,
        compared=compared,
        sections=sections(report),
        week_ending=last.isoformat(),
    )


def may_publish(svc_roles: str, session: WebSession) -> bool:
    allowed = {r.strip() for r in svc_roles.split(",") if r.strip()}
    return bool(allowed & set(session.operator.roles))


def policy_page(
    request: Request,
    session: WebSession,
    svc: Svc,
    conn: Conn,
    *,
    candidate: str = "",
    since: str = "30d",
    report: dict[str, object] | None = None,
    problems: list[str] | None = None,
    published: str | None = None,
    status: int = 200,
) -> Response:
    in_force = svc.policies.get(conn)
    return render(
        request,
        "policy.html",
        status=status,
        session=session,
        in_force=in_force,
        candidate=candidate,
        since=since,
        report=report,
        problems=problems or [],
        published=published,
        may_publish=may_publish(svc.settings.policy_publisher_roles, session),
        publisher_roles=svc.settings.policy_publisher_roles,
    )


@router.get("/policy")
def policy_get(request: Request, session: Session, svc: Svc, conn: Conn) -> Response:
    return policy_page(request, session, svc, conn)


@router.post("/policy/dry-run")
def policy_dry_run(
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
    candidate: str = Form(""),
    since: str = Form("30d"),
) -> Response:
    report: dict[str, object] | None = None
    status = 200
    try:
        loaded = load_policy_text(candidate)
        start = parse_since(since, svc.clock())
    except (PolicyInvalid, ValueError) as exc:
        # An invalid document names each place at fault; a bad `since` says what it wants.
        problems = (
            [f"{where}: {message}" for where, message in exc.errors]
            if isinstance(exc, PolicyInvalid)
            else [str(exc)]
        )
        status = 422
    else:
        problems = []
        result = run_dry_run(svc.settings, svc.codec, conn, loaded, start)
        in_force = svc.policies.get(conn)
        dry_run_id = record_dry_run(
            conn,
            result,
            loaded.text,
            session.operator.name,
            in_force.loaded.version if in_force else None,
        )
        report = {"dry_run_id": dry_run_id, **result.to_json()}
    return policy_page(
        request,
        session,
        svc,
        conn,
        candidate=candidate,
        since=since,
        report=report,
        problems=problems,
        status=status,
    )


@router.post("/policy/publish")
def policy_publish(
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
    dry_run_id: str = Form(""),
) -> Response:
    if not may_publish(svc.settings.policy_publisher_roles, session):
        raise Forbidden(
            f"publishing a policy needs one of the roles {svc.settings.policy_publisher_roles}"
        )
    row = conn.execute(
        "SELECT document, report, baseline_version FROM policy_dry_runs WHERE dry_run_id = %s",
        (dry_run_id,),
    ).fetchone()
    if row is None:
        raise NotFound("no such dry-run: dry-run the candidate first, then publish it")
    in_force = svc.policies.get(conn)
    if row[2] != (in_force.loaded.version if in_force else None):
        raise Conflict(
            f"this dry-run was made against policy {row[2]}, no longer the one in force: "
            "dry-run the candidate again"
        )
    loaded = load_policy_text(row[0])
    known = conn.execute(
        "SELECT 1 FROM policy_versions WHERE version = %s", (loaded.version,)
    ).fetchone()
    if known is not None:
        raise Conflict(
            f"version {loaded.version} was already published; a version is published once, "
            "give the document a new version",
        )
    # As the publisher principal, as `casegate policy publish` does: only it writes policy.
    event = publish_policy(
        as_principal(svc.settings, PUBLISHER),
        svc.codec,
        loaded,
        session.operator.name,
        dry_run=dry_run_id,
    )
    report = row[1] if isinstance(row[1], dict) else orjson.loads(row[1])
    return policy_page(
        request,
        session,
        svc,
        conn,
        candidate=loaded.text,
        report={"dry_run_id": dry_run_id, **report},
        published=f"published policy {event.version} (sha256 {event.sha256[:12]}) "
        f"by {event.author}, dry-run {dry_run_id}",
    )
