-- The W3C trace id each event's record carried (its traceparent header), so that a case's
-- trace page can link the trace in Jaeger, Tempo or any OpenTelemetry backend.
ALTER TABLE case_timeline ADD COLUMN trace_id text;
