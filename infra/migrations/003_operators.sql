-- Console operators: a bearer token maps to an operator id and roles. Only the token's
-- sha256 is kept (tokens are 32 random bytes, so a fast hash is enough); revoking sets
-- revoked_at, and the console checks it on every request, so a revoked token stops at once.
CREATE TABLE operators (
    name         text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    token_sha256 text        NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    roles        text[]      NOT NULL CHECK (cardinality(roles) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- One row per client-supplied idempotency key of a review or reclassification. The console
-- inserts the key first and produces the event only when the insert happened, so the same
-- key twice yields the same review_id and one event. request_sha256 fingerprints the
-- request, so a key reused for a different request is refused instead of silently replayed.
CREATE TABLE review_requests (
    idempotency_key text        PRIMARY KEY,
    actor           text        NOT NULL,
    review_id       text        NOT NULL UNIQUE,
    request_sha256  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
