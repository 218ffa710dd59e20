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

-- name: record_file
INSERT INTO import_file (workspace_id, source, path, size, mtime_ns)
VALUES (%(workspace_id)s, %(source)s, %(path)s, %(size)s, %(mtime_ns)s)
ON CONFLICT (workspace_id, source, path) DO UPDATE
SET size = excluded.size, mtime_ns = excluded.mtime_ns, imported_at = now();
