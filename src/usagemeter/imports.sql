-- Log import (docs/import.md): a run's records are COPYed into a staging table, then written
-- as one task and one usage row each, under fixed task ids, so writing them again changes
-- nothing but what grew.

-- name: workspace_id
SELECT id FROM workspace WHERE slug = %(slug)s;

-- name: create_workspace
INSERT INTO workspace (name, slug) VALUES (%(name)s, %(slug)s)
ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug
RETURNING id;

-- name: files_imported
SELECT path, size, mtime_ns FROM import_file
WHERE workspace_id = %(workspace_id)s AND source = %(source)s;

-- name: record_files
-- The files read, in one statement (a history has thousands).
INSERT INTO import_file (workspace_id, source, path, size, mtime_ns)
SELECT %(workspace_id)s, %(source)s, f.path, f.size, f.mtime_ns
FROM unnest(%(paths)s::text[], %(sizes)s::bigint[], %(mtimes_ns)s::bigint[])
     f(path, size, mtime_ns)
ON CONFLICT (workspace_id, source, path) DO UPDATE
SET size = excluded.size, mtime_ns = excluded.mtime_ns, imported_at = now();
