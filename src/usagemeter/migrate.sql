-- name: lock
-- One migrator at a time; released at commit.
SELECT pg_advisory_xact_lock(hashtext('usagemeter:migrate'));

-- name: create_table
CREATE TABLE IF NOT EXISTS schema_migration (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: defer_body_checks
-- SQL functions may name tables of a later file (as pg_dump loads a schema).
SET LOCAL check_function_bodies = off;

-- name: applied
SELECT version FROM schema_migration ORDER BY version;

-- name: record_all
INSERT INTO schema_migration (version) SELECT unnest(%(versions)s::text[]);

-- name: forget_legacy
DELETE FROM schema_migration WHERE version = ANY(%(versions)s::text[]);

-- name: table_exists
SELECT to_regclass('schema_migration') IS NOT NULL AS exists;
