-- An event is the same event only on the same topic: the read models deduplicate on
-- (topic, event_id). On event_id alone, an upstream event on `cases` carrying the id of a
-- later internal event made that event look like a duplicate, and it was dropped from
-- audit_log, case_timeline and every read model.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_event_id_key;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_topic_event_id_key UNIQUE (topic, event_id);

ALTER TABLE case_timeline DROP CONSTRAINT case_timeline_pkey;
ALTER TABLE case_timeline ADD CONSTRAINT case_timeline_pkey PRIMARY KEY (topic, event_id);
