-- metrics: the duration sums are taken over exact numeric seconds and only the totals are
-- turned into float8. Summing float8 values gives a result that depends on the order the
-- rows are read in, which is the tables' physical order: a replay (same rows, written in
-- another order) then differed from the live view in the last bits of a sum, and so did
-- any two databases holding the same events. Same columns, names and types as before.
CREATE OR REPLACE VIEW metrics AS
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
           0 AS cases_opened, 0 AS first_actions, 0::numeric AS first_action_seconds,
           0 AS cases_resolved, 0 AS resolved_now, 0::numeric AS resolution_seconds,
           0 AS cases_reopened
    FROM recommendation_facts r JOIN case_state c ON c.case_id = r.case_id
    UNION ALL
    SELECT coalesce(r.produced_at, e.requested_at)::date, r.workflow, r.phase, c.issue_class,
           c.queue, c.team, c.channel,
           0, 0, 0, 0, 0, 0, 0,
           1, (e.status IN ('failed', 'rolled_back'))::int, e.rolled_back::int,
           0, 0, 0::numeric, 0, 0, 0::numeric, 0
    FROM executions e
    JOIN case_state c ON c.case_id = e.case_id
    LEFT JOIN recommendation_facts r ON r.recommendation_id = e.recommendation_id
    UNION ALL
    SELECT c.opened_at::date, c.workflow, c.phase, c.issue_class, c.queue, c.team, c.channel,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           1, (c.first_action_at IS NOT NULL)::int,
           coalesce(extract(epoch FROM c.first_action_at - c.opened_at), 0),
           (c.resolution_count > 0)::int,
           (c.resolved_at IS NOT NULL)::int,
           coalesce(extract(epoch FROM c.resolved_at - c.opened_at), 0),
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
       sum(first_action_seconds)::float8 AS first_action_seconds,
       sum(cases_resolved)::bigint AS cases_resolved,
       sum(resolved_now)::bigint AS resolved_now,
       sum(resolution_seconds)::float8 AS resolution_seconds,
       sum(cases_reopened)::bigint AS cases_reopened,
       sum(accepted)::float8 / nullif(sum(reviewed), 0) AS acceptance_rate,
       sum(overridden)::float8 / nullif(sum(reviewed), 0) AS override_rate,
       sum(first_action_seconds)::float8 / nullif(sum(first_actions), 0)
           AS mean_first_action_seconds,
       sum(resolution_seconds)::float8 / nullif(sum(resolved_now), 0) AS mean_resolution_seconds,
       sum(executions_failed)::float8 / nullif(sum(executions), 0) AS error_rate,
       sum(executions_rolled_back)::float8 / nullif(sum(executions), 0) AS rollback_rate,
       sum(denied)::float8 / nullif(sum(decided), 0) AS denial_rate,
       sum(cases_reopened)::float8 / nullif(sum(cases_resolved), 0) AS reopen_rate
FROM facts
GROUP BY day, workflow, phase, issue_class, queue, team, channel;
