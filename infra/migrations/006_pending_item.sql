-- What an approval item holds now, which may differ from what the guard decided: an
-- override replaces the action (and its proposer may not approve it), a re-check under a
-- newer policy changes quorum and roles. The queue shows exactly what will execute, with
-- the digest and policy version a review must name.
ALTER TABLE recommendation_facts
    ADD COLUMN pending_action_name text,
    ADD COLUMN pending_action_params jsonb,
    ADD COLUMN params_hash text,
    ADD COLUMN item_policy_version text,
    ADD COLUMN proposed_by text;

CREATE OR REPLACE VIEW approval_queue AS
SELECT r.recommendation_id, r.case_id, c.subject, c.queue, c.team, c.channel,
       c.issue_class, c.priority, r.workflow, r.phase,
       coalesce(r.pending_action_name, r.action_name) AS action_name,
       coalesce(r.pending_action_params, r.action_params) AS action_params,
       r.summary, r.rationale, r.similar_cases,
       r.confidence, r.predicted_category,
       a.description AS action_description, a.risk, a.effects, a.reversible,
       a.rollback_action, a.permission,
       r.approvals_required, r.approvals_received, r.approvers, r.eligible_roles,
       r.reasons, coalesce(r.item_policy_version, r.policy_version) AS policy_version,
       r.decided_at AS requested_at, r.expires_at,
       r.params_hash, r.proposed_by,
       r.action_name AS recommended_action_name, r.action_params AS recommended_action_params
FROM recommendation_facts r
JOIN case_state c ON c.case_id = r.case_id
LEFT JOIN catalog_actions a
       ON a.policy_version = coalesce(r.item_policy_version, r.policy_version)
      AND a.name = coalesce(r.pending_action_name, r.action_name)
WHERE r.review_status = 'pending';
