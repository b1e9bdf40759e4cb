-- JavaScript codec health per stats interval (issue 10): decodes stopped at the time limit (QuickJS's
-- interrupt or a killed worker), worker crashes, memory exhaustion, uplinks refused because their codec's
-- circuit breaker was open, and how many codecs were disabled when the row was written. The Pipeline board
-- reads them from here; the hourly rollup does not carry them (they matter for hours, not months).
ALTER TABLE ingest_stats ADD COLUMN js_timeouts bigint NOT NULL DEFAULT 0;
ALTER TABLE ingest_stats ADD COLUMN js_crashes bigint NOT NULL DEFAULT 0;
ALTER TABLE ingest_stats ADD COLUMN js_out_of_memory bigint NOT NULL DEFAULT 0;
ALTER TABLE ingest_stats ADD COLUMN codec_refused bigint NOT NULL DEFAULT 0;
ALTER TABLE ingest_stats ADD COLUMN codecs_disabled integer NOT NULL DEFAULT 0;
