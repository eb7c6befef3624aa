-- bouncemilter on PostgreSQL: one database, one schema, three roles. Run once as a superuser:
--
--     sudo -u postgres psql -v ON_ERROR_STOP=1 -f roles.sql
--     sudo -u postgres psql -c '\password bouncemilter_owner'     (and _milter, _report)
--
-- bouncemilter_owner   owns the schema; creates and upgrades it (the first `bouncemilter migrate-store --to
--                      postgresql://bouncemilter_owner@db/bouncemilter`), runs the admin commands (suppress,
--                      unsuppress, rebuild-suppressions, approve/reject, prune, import-suppressions).
-- bouncemilter_milter  what every MX host's milter (and `import`, `fetch`) connects as: it can read the store,
--                      insert and update rows, and nothing else - no DELETE, no DDL. Leave [store]
--                      retention_days at 0 on the milters and run `bouncemilter prune` as the owner from cron.
-- bouncemilter_report  read-only: stats, check, suppressed, history, export, Grafana, Datasette snapshots.
--
-- Every role finds the tables through its search_path (the schema bouncemilter), so the URLs need no options.

CREATE ROLE bouncemilter_owner LOGIN;
CREATE ROLE bouncemilter_milter LOGIN;
CREATE ROLE bouncemilter_report LOGIN;

CREATE DATABASE bouncemilter OWNER bouncemilter_owner ENCODING 'UTF8' TEMPLATE template0;
\connect bouncemilter

REVOKE ALL ON DATABASE bouncemilter FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE bouncemilter TO bouncemilter_milter, bouncemilter_report;

CREATE SCHEMA bouncemilter AUTHORIZATION bouncemilter_owner;
GRANT USAGE ON SCHEMA bouncemilter TO bouncemilter_milter, bouncemilter_report;
ALTER ROLE bouncemilter_owner IN DATABASE bouncemilter SET search_path = bouncemilter;
ALTER ROLE bouncemilter_milter IN DATABASE bouncemilter SET search_path = bouncemilter;
ALTER ROLE bouncemilter_report IN DATABASE bouncemilter SET search_path = bouncemilter;

-- Tables and sequences the owner creates now and in later migrations get the grants by themselves.
ALTER DEFAULT PRIVILEGES FOR ROLE bouncemilter_owner IN SCHEMA bouncemilter
    GRANT SELECT, INSERT, UPDATE ON TABLES TO bouncemilter_milter;
ALTER DEFAULT PRIVILEGES FOR ROLE bouncemilter_owner IN SCHEMA bouncemilter
    GRANT USAGE ON SEQUENCES TO bouncemilter_milter;
ALTER DEFAULT PRIVILEGES FOR ROLE bouncemilter_owner IN SCHEMA bouncemilter
    GRANT SELECT ON TABLES TO bouncemilter_report;

-- The same for tables that exist already (an existing store, e.g. after migrate-store). Re-run after an upgrade
-- made by another role than bouncemilter_owner.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA bouncemilter TO bouncemilter_milter;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA bouncemilter TO bouncemilter_milter;
GRANT SELECT ON ALL TABLES IN SCHEMA bouncemilter TO bouncemilter_report;
