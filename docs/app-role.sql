-- The least-privilege database role for `skinscreen serve`, `ingest` and `worker` (PostgreSQL).
-- Run as the role that owns the tables (the one `skinscreen db upgrade` runs as), after each upgrade:
--   psql "$OWNER_URL" -f docs/app-role.sql
-- The role can read and add rows and update the pipeline's own tables, and delete API tokens; it owns
-- nothing, so it can neither drop the append-only triggers nor TRUNCATE or ALTER any table.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'skinscreen_app') THEN
        CREATE ROLE skinscreen_app LOGIN;  -- then: ALTER ROLE skinscreen_app PASSWORD '...';
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO skinscreen_app;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO skinscreen_app;
GRANT UPDATE ON batch, image, seen_file, prediction, account TO skinscreen_app;
GRANT DELETE ON api_token TO skinscreen_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO skinscreen_app;
