"""What every request handler needs: the process's services, a connection, the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import psycopg
from confluent_kafka import Producer
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from console.api.policies import PolicyCache
from console.api.service_errors import Unauthorized
from console.auth import Operator, UsageRecorder, authenticate
from infra.keys import Revealer
from infra.settings import Settings
from schemas.codec import Codec


@dataclass(frozen=True)
class Services:
    """Built once by the composition root (cli.serve or a test) and shared."""

    settings: Settings
    pool: ConnectionPool
    producer: Producer
    codec: Codec
    policies: PolicyCache
    clock: Callable[[], datetime]
    revealer: Revealer  # opens sealed personal data for display (policy.sealing)
    usage: UsageRecorder = field(default_factory=UsageRecorder)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def connection(svc: Annotated[Services, Depends(services)]) -> Iterator[psycopg.Connection]:
    with svc.pool.connection() as conn:
        yield conn


bearer = HTTPBearer(
    auto_error=False,
    description="An operator token from `casegate operators add NAME --roles …`.",
)


def current_operator(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    conn: Annotated[psycopg.Connection, Depends(connection)],
    svc: Annotated[Services, Depends(services)],
) -> Operator:
    """The operator the bearer token belongs to; 401 when it is missing, unknown or revoked."""
    if credentials is None:
        raise Unauthorized(
            "missing bearer token: send the header 'Authorization: Bearer <token>' with a "
            "token from `casegate operators add`"
        )
    operator = authenticate(conn, credentials.credentials)
    if operator is None:
        raise Unauthorized("invalid or revoked token")
    svc.usage.used(conn, operator)
    return operator


Conn = Annotated[psycopg.Connection, Depends(connection)]
Svc = Annotated[Services, Depends(services)]
CurrentOperator = Annotated[Operator, Depends(current_operator)]
