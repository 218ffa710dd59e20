-- name: lock
-- One migrator at a time; released at commit.
SELECT pg_advisory_xact_lock(hashtext('usagemeter:migrate'));

-- name: create_table
CREATE TABLE IF NOT EXISTS schema_migration (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version FROM schema_migration ORDER BY version;

-- name: record
INSERT INTO schema_migration (version) VALUES (%(version)s);

-- name: table_exists
SELECT to_regclass('schema_migration') IS NOT NULL AS exists;
