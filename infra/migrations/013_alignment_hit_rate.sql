-- shadow_alignment: one definition of a hit (the latest recommendation's action is among
-- actions_taken) with both denominators, named as `casegate eval recommender` names them:
-- action_match_rate = hits / with_action (an action was recommended), unchanged;
-- action_hit_rate = hits / humans_acted (humans took at least one action), new.
-- New columns go last so that CREATE OR REPLACE keeps the existing ones.
CREATE OR REPLACE VIEW shadow_alignment AS
SELECT r.workflow, r.phase, c.issue_class, c.queue, c.team, c.channel,
       count(*)::bigint AS compared,
       count(*) FILTER (WHERE r.predicted_category = c.issue_class)::bigint
           AS category_matches,
       count(*) FILTER (WHERE r.action_name IS NOT NULL)::bigint AS with_action,
       count(*) FILTER (WHERE r.action_name = ANY (c.actions_taken))::bigint AS action_matches,
       (count(*) FILTER (WHERE r.predicted_category = c.issue_class))::float8
           / nullif(count(*), 0) AS category_match_rate,
       (count(*) FILTER (WHERE r.action_name = ANY (c.actions_taken)))::float8
           / nullif(count(*) FILTER (WHERE r.action_name IS NOT NULL), 0) AS action_match_rate,
       count(*) FILTER (WHERE cardinality(c.actions_taken) > 0)::bigint AS humans_acted,
       (count(*) FILTER (WHERE r.action_name = ANY (c.actions_taken)))::float8
           / nullif(count(*) FILTER (WHERE cardinality(c.actions_taken) > 0), 0)
           AS action_hit_rate
FROM case_state c
JOIN recommendation_facts r ON r.recommendation_id = c.latest_recommendation_id
WHERE c.resolution_count > 0
GROUP BY r.workflow, r.phase, c.issue_class, c.queue, c.team, c.channel;
