-- rollout_events: every rollout event (supervisors' requests, the rollout processor's
-- proposals, approvals, promotions, demotions and refusals), one row each, appended by the
-- read models. Derived from events only, so a replay rebuilds it identically.
CREATE TABLE rollout_events (
    topic          text        NOT NULL,
    event_id       text        NOT NULL,
    kafka_offset   bigint      NOT NULL,
    workflow       text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    event_type     text        NOT NULL,
    proposal_id    text,
    actor          text,
    from_phase     text,
    to_phase       text,
    policy_version text,        -- proposed under, or published
    reason         text,
    summary        text        NOT NULL,
    detail         jsonb       NOT NULL,  -- the event's JSON form (evidence included)
    PRIMARY KEY (topic, event_id)
);
CREATE INDEX rollout_events_workflow ON rollout_events (workflow, occurred_at);
CREATE INDEX rollout_events_proposal ON rollout_events (proposal_id) WHERE proposal_id IS NOT NULL;

-- rollout_proposals: each PromotionProposed with the approvals it got and, once promoted,
-- the version that was published. Whether an open one is stale (computed under an older
-- policy than the one in force) is for the reader to tell, against policy_versions.
CREATE VIEW rollout_proposals AS
SELECT p.proposal_id, p.workflow, p.from_phase, p.to_phase, p.policy_version,
       p.occurred_at AS proposed_at,
       (p.detail->>'approvals_required')::int AS approvals_required,
       p.detail->'checks' AS checks,
       (p.detail->>'sample')::bigint AS sample,
       coalesce(
           (SELECT array_agg(a.actor ORDER BY a.occurred_at, a.kafka_offset)
            FROM rollout_events a
            WHERE a.event_type = 'PromotionApprovalRecorded' AND a.proposal_id = p.proposal_id),
           '{}') AS approvers,
       w.policy_version AS promoted_to,
       w.occurred_at AS promoted_at,
       CASE WHEN w.event_id IS NULL THEN 'open' ELSE 'promoted' END AS status
FROM rollout_events p
LEFT JOIN rollout_events w
       ON w.event_type = 'WorkflowPromoted' AND w.proposal_id = p.proposal_id
WHERE p.event_type = 'PromotionProposed';

-- The rollout processor reads a workflow's decisions of given policy versions, newest
-- first, every interval (processors.rollout_evidence).
CREATE INDEX recommendation_facts_rollout
    ON recommendation_facts (workflow, policy_version, decided_at);
CREATE INDEX executions_policy_version ON executions (policy_version);
