-- The read models of DESIGN section 4. Every column is derived from events only (no
-- wall-clock columns), so a replay from the topics rebuilds exactly the same rows.

-- audit_log: one row per event, append-only, hash-chained per source topic-partition.
-- Chaining per partition keeps the chain's order the log's own order, so a replay
-- rebuilds the same chain; seq numbers each chain from 1 so a removed row leaves a gap.
CREATE TABLE audit_log (
    topic          text        NOT NULL,
    partition      int         NOT NULL,
    seq            bigint      NOT NULL,
    kafka_offset   bigint      NOT NULL,
    event_id       text        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    case_id        text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    actor          text,
    policy_version text,
    payload        text        NOT NULL,  -- the event's JSON form, exactly as hashed
    prev_hash      text        NOT NULL,
    hash           text        NOT NULL,
    PRIMARY KEY (topic, partition, seq)
);
CREATE INDEX audit_log_case ON audit_log (case_id, occurred_at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The application role may only read and append (the trigger guards everyone else).
DO $$
BEGIN
    IF coalesce(current_setting('casegate.app_role', true), '') <> '' THEN
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM %I',
                       current_setting('casegate.app_role'));
    END IF;
END $$;

-- case_timeline: every event of a case, in order, with a one-line account.
CREATE TABLE case_timeline (
    event_id     text        PRIMARY KEY,
    case_id      text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    topic        text        NOT NULL,
    partition    int         NOT NULL,
    kafka_offset bigint      NOT NULL,
    event_type   text        NOT NULL,
    actor        text,
    summary      text        NOT NULL,
    detail       jsonb       NOT NULL
);
CREATE INDEX case_timeline_case ON case_timeline (case_id, occurred_at, topic, kafka_offset);

-- Published policies and their catalogs, so read models can say what an action does.
CREATE TABLE policy_versions (
    version      text        PRIMARY KEY,
    sha256       text        NOT NULL,
    author       text        NOT NULL,
    published_at timestamptz NOT NULL,
    document     text        NOT NULL
);
CREATE TABLE catalog_actions (
    policy_version  text    NOT NULL REFERENCES policy_versions (version),
    name            text    NOT NULL,
    description     text    NOT NULL,
    risk            text    NOT NULL,
    effects         jsonb   NOT NULL,
    reversible      boolean NOT NULL,
    rollback_action text,
    permission      text    NOT NULL,
    approvals       int     NOT NULL,
    approval_roles  text[]  NOT NULL,
    PRIMARY KEY (policy_version, name)
);

-- One row per recommendation: what was recommended, what guardrails and humans made of it.
CREATE TABLE recommendation_facts (
    recommendation_id  text PRIMARY KEY,
    case_id            text NOT NULL,
    produced_at        timestamptz,
    workflow           text,
    phase              text,
    predicted_category text,
    confidence         double precision,
    action_name        text,
    action_params      jsonb,
    summary            text,
    rationale          text,
    similar_cases      jsonb,
    provenance         jsonb,
    outcome            text,       -- GuardrailDecided.outcome
    reasons            text[],
    policy_version     text,
    decided_at         timestamptz,
    approvals_required int,
    approvals_received int NOT NULL DEFAULT 0,
    approvers          text[] NOT NULL DEFAULT '{}',
    eligible_roles     text[],
    expires_at         timestamptz,
    review_status      text,       -- pending | approved | rejected | expired
    verdict            text,       -- accepted | overridden | rejected (the humans' final word)
    final_action_name  text,
    final_action_params jsonb,
    overridden         boolean NOT NULL DEFAULT false,
    reviews_denied     int NOT NULL DEFAULT 0,
    closed_at          timestamptz
);
CREATE INDEX recommendation_facts_case ON recommendation_facts (case_id);
CREATE INDEX recommendation_facts_pending ON recommendation_facts (review_status)
    WHERE review_status = 'pending';

CREATE TABLE executions (
    execution_id      text PRIMARY KEY,
    recommendation_id text,
    case_id           text NOT NULL,
    action_name       text,
    action_params     jsonb,
    mode              text,
    requested_by      text,
    policy_version    text,
    requested_at      timestamptz,
    status            text NOT NULL,  -- requested | succeeded | failed | rolled_back
    error_class       text,
    message           text,
    timed_out         boolean NOT NULL DEFAULT false,
    rolled_back       boolean NOT NULL DEFAULT false,
    finished_at       timestamptz
);
CREATE INDEX executions_case ON executions (case_id);
CREATE INDEX executions_recommendation ON executions (recommendation_id);

-- approval_queue: pending reviews with everything an operator needs on one row.
CREATE VIEW approval_queue AS
SELECT r.recommendation_id, r.case_id, c.subject, c.queue, c.team, c.channel,
       c.issue_class, c.priority, r.workflow, r.phase,
       r.action_name, r.action_params, r.summary, r.rationale, r.similar_cases,
       r.confidence, r.predicted_category,
       a.description AS action_description, a.risk, a.effects, a.reversible,
       a.rollback_action, a.permission,
       r.approvals_required, r.approvals_received, r.approvers, r.eligible_roles,
       r.reasons, r.policy_version, r.decided_at AS requested_at, r.expires_at
FROM recommendation_facts r
JOIN case_state c ON c.case_id = r.case_id
LEFT JOIN catalog_actions a ON a.policy_version = r.policy_version AND a.name = r.action_name
WHERE r.review_status = 'pending';

-- metrics: the seven rollout metrics with the counts behind them. Recommendation and
-- execution counts fall on the recommendation's day; case counts on the case's opening day.
-- cases_resolved counts cases ever resolved (re-open rate); resolved_now and
-- resolution_seconds cover cases resolved at present (time to resolution).
CREATE VIEW metrics AS
WITH facts AS (
    SELECT r.produced_at::date AS day, r.workflow, r.phase, c.issue_class, c.queue, c.team,
           c.channel,
           1 AS recommendations,
           (r.outcome IS NOT NULL)::int AS decided,
           (r.outcome = 'denied')::int AS denied,
           (r.verdict IS NOT NULL)::int AS reviewed,
           (r.verdict = 'accepted')::int AS accepted,
           (r.verdict = 'overridden')::int AS overridden,
           (r.verdict = 'rejected')::int AS rejected,
           0 AS executions, 0 AS executions_failed, 0 AS executions_rolled_back,
           0 AS cases_opened, 0 AS first_actions, 0.0 AS first_action_seconds,
           0 AS cases_resolved, 0 AS resolved_now, 0.0 AS resolution_seconds,
           0 AS cases_reopened
    FROM recommendation_facts r JOIN case_state c ON c.case_id = r.case_id
    UNION ALL
    SELECT coalesce(r.produced_at, e.requested_at)::date, r.workflow, r.phase, c.issue_class,
           c.queue, c.team, c.channel,
           0, 0, 0, 0, 0, 0, 0,
           1, (e.status IN ('failed', 'rolled_back'))::int, e.rolled_back::int,
           0, 0, 0.0, 0, 0, 0.0, 0
    FROM executions e
    JOIN case_state c ON c.case_id = e.case_id
    LEFT JOIN recommendation_facts r ON r.recommendation_id = e.recommendation_id
    UNION ALL
    SELECT c.opened_at::date, c.workflow, c.phase, c.issue_class, c.queue, c.team, c.channel,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           1, (c.first_action_at IS NOT NULL)::int,
           coalesce(extract(epoch FROM c.first_action_at - c.opened_at), 0)::float8,
           (c.resolution_count > 0)::int,
           (c.resolved_at IS NOT NULL)::int,
           coalesce(extract(epoch FROM c.resolved_at - c.opened_at), 0)::float8,
           (c.reopen_count > 0)::int
    FROM case_state c
    WHERE c.opened_at IS NOT NULL  -- not a case upstream never opened
)
SELECT day, workflow, phase, issue_class, queue, team, channel,
       sum(recommendations)::bigint AS recommendations,
       sum(decided)::bigint AS decided,
       sum(denied)::bigint AS denied,
       sum(reviewed)::bigint AS reviewed,
       sum(accepted)::bigint AS accepted,
       sum(overridden)::bigint AS overridden,
       sum(rejected)::bigint AS rejected,
       sum(executions)::bigint AS executions,
       sum(executions_failed)::bigint AS executions_failed,
       sum(executions_rolled_back)::bigint AS executions_rolled_back,
       sum(cases_opened)::bigint AS cases_opened,
       sum(first_actions)::bigint AS first_actions,
       sum(first_action_seconds) AS first_action_seconds,
       sum(cases_resolved)::bigint AS cases_resolved,
       sum(resolved_now)::bigint AS resolved_now,
       sum(resolution_seconds) AS resolution_seconds,
       sum(cases_reopened)::bigint AS cases_reopened,
       sum(accepted)::float8 / nullif(sum(reviewed), 0) AS acceptance_rate,
       sum(overridden)::float8 / nullif(sum(reviewed), 0) AS override_rate,
       sum(first_action_seconds) / nullif(sum(first_actions), 0) AS mean_first_action_seconds,
       sum(resolution_seconds) / nullif(sum(resolved_now), 0) AS mean_resolution_seconds,
       sum(executions_failed)::float8 / nullif(sum(executions), 0) AS error_rate,
       sum(executions_rolled_back)::float8 / nullif(sum(executions), 0) AS rollback_rate,
       sum(denied)::float8 / nullif(sum(decided), 0) AS denial_rate,
       sum(cases_reopened)::float8 / nullif(sum(cases_resolved), 0) AS reopen_rate
FROM facts
GROUP BY day, workflow, phase, issue_class, queue, team, channel;

-- shadow_alignment: for resolved cases, did the latest recommendation's category and
-- action match what operators finally did (final class after corrections, actions taken)?
CREATE VIEW shadow_alignment AS
SELECT r.workflow, r.phase, c.issue_class, c.queue, c.team, c.channel,
       count(*)::bigint AS compared,
       count(*) FILTER (WHERE r.predicted_category = c.issue_class)::bigint
           AS category_matches,
       count(*) FILTER (WHERE r.action_name IS NOT NULL)::bigint AS with_action,
       count(*) FILTER (WHERE r.action_name = ANY (c.actions_taken))::bigint AS action_matches,
       (count(*) FILTER (WHERE r.predicted_category = c.issue_class))::float8
           / nullif(count(*), 0) AS category_match_rate,
       (count(*) FILTER (WHERE r.action_name = ANY (c.actions_taken)))::float8
           / nullif(count(*) FILTER (WHERE r.action_name IS NOT NULL), 0) AS action_match_rate
FROM case_state c
JOIN recommendation_facts r ON r.recommendation_id = c.latest_recommendation_id
WHERE c.resolution_count > 0
GROUP BY r.workflow, r.phase, c.issue_class, c.queue, c.team, c.channel;
