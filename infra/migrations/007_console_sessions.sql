-- Operator tokens expire, and the pages sign in with a server-side session instead of
-- carrying the operator's long-lived token in a cookie: signing out revokes the session
-- row, so a copied cookie stops working at once, and revoking the operator ends all of
-- their sessions. Tokens issued before this migration expire 30 days after issue.
ALTER TABLE operators ADD COLUMN token_expires_at timestamptz;
UPDATE operators SET token_expires_at = created_at + interval '30 days';
ALTER TABLE operators ALTER COLUMN token_expires_at SET NOT NULL;

CREATE TABLE console_sessions (
    session_sha256 text        PRIMARY KEY CHECK (session_sha256 ~ '^[0-9a-f]{64}$'),
    operator       text        NOT NULL REFERENCES operators (name),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);
CREATE INDEX console_sessions_operator ON console_sessions (operator) WHERE revoked_at IS NULL;
