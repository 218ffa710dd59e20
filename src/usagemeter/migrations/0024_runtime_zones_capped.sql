-- A read adds a zone to a runtime's day buckets only while the runtime has fewer than 8
-- (its own, its former own ones, and those its daily report was read in first; a zone
-- change always adds the new own zone). A read in any other zone is exact from the
-- segments, as before its zone had buckets. Without a bound, a query parameter could have
-- every runtime's buckets cut in each of the ~600 zones there are, each adding about one row
-- per key and local date. First reads in new zones at the same instant may each add one past
-- it: the bound is on storage, not a count to keep exact.
CREATE OR REPLACE FUNCTION register_runtime_zone(p_runtime_id uuid, p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    SELECT r.id, p_zone, false FROM agent_runtime r
    WHERE r.id = p_runtime_id
      AND (SELECT count(*) FROM usage_day_zone z WHERE z.runtime_id = r.id) < 8
    ON CONFLICT DO NOTHING;
$$;
