-- The report window of API.md §3: today (partial) plus the p_days previous full local days.

-- Local midnight of today minus p_days, as an instant; DST-safe because the local date is
-- shifted first and converted back through the zone.
CREATE FUNCTION usage_since(p_now timestamptz, p_tz text, p_days integer)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT (((p_now AT TIME ZONE p_tz)::date - p_days)::timestamp AT TIME ZONE p_tz)
$$;
