-- Run once by the postgres image on a new volume (docker-entrypoint-initdb.d), as the
-- owner the image creates (POSTGRES_USER): the application gets a login role of its own,
-- neither superuser nor owner, so it cannot disable the audit log's append-only trigger.
-- The migrations (run as the owner) grant it what it needs.
CREATE ROLE casegate_app LOGIN PASSWORD 'casegate_app' NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT CONNECT ON DATABASE casegate TO casegate_app;
