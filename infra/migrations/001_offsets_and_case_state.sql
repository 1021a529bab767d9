-- Where each projection consumer stands, written in the same transaction as its rows, so a
-- crash can neither lose nor double a row (the consumer seeks from here on start).
CREATE TABLE projection_offsets (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   int     NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- One row per case: its current state (DESIGN section 4). Every column comes from events
-- (updated_at is the last event's time), so a replay rebuilds exactly the same rows.
CREATE TABLE case_state (
    case_id                  text PRIMARY KEY,
    status                   text NOT NULL,
    source                   text,
    channel                  text,
    queue                    text,
    team                     text,
    issue_class              text,
    subject                  text,
    priority                 text,
    workflow                 text,
    phase                    text,
    opened_at                timestamptz,
    first_action_at          timestamptz,
    resolved_at              timestamptz,
    reopen_count             int NOT NULL DEFAULT 0,
    resolution_count         int NOT NULL DEFAULT 0,
    actions_taken            text[] NOT NULL DEFAULT '{}',
    reclassified             boolean NOT NULL DEFAULT false,
    latest_recommendation_id text,
    -- When issue_class was last set: corrections arrive on another topic than resolutions,
    -- so the latest by event time wins whatever order the projection reads them in.
    issue_class_at           timestamptz,
    updated_at               timestamptz NOT NULL
);
CREATE INDEX case_state_queue_status ON case_state (queue, status);
CREATE INDEX case_state_workflow ON case_state (workflow, phase);
