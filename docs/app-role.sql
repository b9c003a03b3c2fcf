-- The least-privilege database role for `skinscreen serve`, `ingest` and `worker` (PostgreSQL).
-- Run as the role that owns the tables (the one `skinscreen db upgrade` runs as), after each upgrade:
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f docs/app-role.sql
-- The owner needs no CREATEROLE: where it may not create roles, a database administrator first runs
--   CREATE ROLE skinscreen_app LOGIN PASSWORD '...';
-- and this script then only grants. The role can read and add rows, update the pipeline's own tables
-- and the accounts' password, state and role, and delete API tokens; it owns nothing, so it can neither
-- drop the append-only triggers nor TRUNCATE or ALTER any table. The database's guards (installed by
-- `db upgrade`) also stamp its audit rows and verdicts with the database's clock and refuse it making
-- an admin: admins are made with `skinscreen users add --role admin` run as the owner.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'skinscreen_app') THEN
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE EXCEPTION USING
                MESSAGE = 'role skinscreen_app does not exist and ' || current_user || ' may not create roles',
                HINT = 'a database administrator runs CREATE ROLE skinscreen_app LOGIN PASSWORD ''...'';'
                    ' then run this script again';
        END IF;
        CREATE ROLE skinscreen_app LOGIN;  -- then: ALTER ROLE skinscreen_app PASSWORD '...';
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO skinscreen_app;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO skinscreen_app;
GRANT UPDATE ON batch, image, seen_file, prediction, dicom_export TO skinscreen_app;
REVOKE UPDATE ON account FROM skinscreen_app;
GRANT UPDATE (password_hash, active, role, session_generation) ON account TO skinscreen_app;
GRANT DELETE ON api_token TO skinscreen_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO skinscreen_app;
