-- The zone at a point, written once: the registry, the API's moves and re-registrations and the zone import's
-- re-zoning all call zone_at(longitude, latitude) (issue 12: one home for every rule). Before, four copies
-- of this query disagreed on ties: two ordered by level only, so a point in two overlapping wards got
-- whichever the planner met first.
--
-- The smallest zone wins (a ward before its district before the city), then the lowest id, so two
-- overlapping current zones of one level give the same answer every time. Only current zone rows count
-- (valid_to IS NULL); a point outside every ring, or a NULL coordinate, gives NULL. PostgreSQL's polygon
-- @> point test counts a point on the boundary as inside.
CREATE FUNCTION zone_at(longitude double precision, latitude double precision) RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT z.id FROM zone_rings r JOIN zones z ON z.id = r.zone_id
    WHERE z.valid_to IS NULL AND r.ring @> point(longitude, latitude)
    ORDER BY CASE z.level WHEN 'ward' THEN 0 WHEN 'district' THEN 1 ELSE 2 END, z.id
    LIMIT 1
$$;
