-- Governance: policy dry-runs, and when each operator's token was last used.

-- One row per `casegate policy dry-run` (or the console's dry-run) of a candidate policy:
-- the report that was shown, keyed by a random id and found by the candidate's sha256.
-- `policy publish` refuses a candidate with no row here (unless overridden, which the
-- PolicyPublished event records), so a loosened policy is never published unseen.
CREATE TABLE policy_dry_runs (
    dry_run_id        text        PRIMARY KEY,
    candidate_sha256  text        NOT NULL CHECK (candidate_sha256 ~ '^[0-9a-f]{64}$'),
    candidate_version text        NOT NULL,
    document          text        NOT NULL,  -- the candidate as dry-run, for the console to publish
    baseline_version  text,
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    ran_by            text        NOT NULL,
    ran_at            timestamptz NOT NULL DEFAULT now(),
    decisions         int         NOT NULL,
    changed           int         NOT NULL,
    report            jsonb       NOT NULL
);
CREATE INDEX policy_dry_runs_candidate ON policy_dry_runs (candidate_sha256, ran_at);

-- When the token was last used, to the minute: the console writes it at most once a
-- minute per operator and process, so authentication stays a read on almost every request.
ALTER TABLE operators ADD COLUMN last_used_at timestamptz;

-- shadow_alignment: what operators finally did is what upstream lists in actions_taken
-- *and* the recommended action they approved as it was (casegate ran it; upstream may
-- never list it), so an approved recommendation no longer counts as a miss. Overrides and
-- reclassifications count as before: an override's own action is not the recommendation,
-- and the category is compared with the class after corrections (case_state.issue_class).
-- Same columns, names and types.
CREATE OR REPLACE VIEW shadow_alignment AS
WITH compared AS (
    SELECT r.workflow, r.phase, c.issue_class, c.queue, c.team, c.channel,
           r.predicted_category = c.issue_class AS category_match,
           r.action_name IS NOT NULL AS with_action,
           r.action_name = ANY (c.actions_taken)
               OR (r.verdict = 'accepted' AND r.final_action_name = r.action_name)
               AS action_match
    FROM case_state c
    JOIN recommendation_facts r ON r.recommendation_id = c.latest_recommendation_id
    WHERE c.resolution_count > 0
)
SELECT workflow, phase, issue_class, queue, team, channel,
       count(*)::bigint AS compared,
       count(*) FILTER (WHERE category_match)::bigint AS category_matches,
       count(*) FILTER (WHERE with_action)::bigint AS with_action,
       count(*) FILTER (WHERE action_match)::bigint AS action_matches,
       (count(*) FILTER (WHERE category_match))::float8 / nullif(count(*), 0)
           AS category_match_rate,
       (count(*) FILTER (WHERE action_match))::float8
           / nullif(count(*) FILTER (WHERE with_action), 0) AS action_match_rate
FROM compared
GROUP BY workflow, phase, issue_class, queue, team, channel;
