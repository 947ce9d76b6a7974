-- geosync DDL capture and control-message protection, installed into each
-- site's database by `geosyncctl init --dsn DSN` (as a superuser). Rerunning
-- it is safe and is how an existing deployment upgrades (docs/security.md).
--
-- Each DDL command's text is emitted as a transactional logical message with
-- prefix 'geosync.ddl', in the same transaction and at the same stream
-- position as the command, so that replicas execute it exactly where the
-- primary did.
--
-- The message content is JSON:
--   {"sql": "<the client's query text>", "search_path": "...",
--    "role": "<who ran it>", "tags": ["CREATE TABLE"]}
-- A replica runs the DDL as "role" (SET ROLE), so that it can do no more
-- there than its author could do here.
--
-- Who may write a geosync control message: PostgreSQL grants
-- pg_logical_emit_message to PUBLIC, so any login could emit a message
-- with prefix 'geosync.ddl' and have every replica run it. This script
-- revokes that grant: only superusers (geosyncd's own role) and the
-- SECURITY DEFINER trigger below can emit messages. geosyncd (source role)
-- refuses to start on a database where PUBLIC still may.
--
-- Event triggers do not fire under session_replication_role = replica, which
-- is how geosync applies changes, so applied DDL is never emitted again.
-- The text is the whole client query string (current_query()). Of a string
-- with several statements ("BEGIN; CREATE TABLE t(); INSERT ...; COMMIT"),
-- replicas run only the DDL of an allow-list: transaction control, data and
-- session statements are left out (common/ddl_text.cpp, docs/apply.md). The
-- trigger emits a given query string once per transaction.

REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, bytea) FROM PUBLIC;

-- geosync's own schema is "_geosync": a schema named like a role is on that
-- role's default search_path ("$user", public), so the earlier "geosync"
-- schema collected the tables that a role named geosync created. Installs
-- from before the rename are moved here (see the end of this script).
CREATE SCHEMA IF NOT EXISTS _geosync;
DROP EVENT TRIGGER IF EXISTS geosync_ddl_capture;
DROP EVENT TRIGGER IF EXISTS geosync_ddl_drop;

-- DROP reports nothing through pg_event_trigger_ddl_commands(); sql_drop
-- fires first and notes whether every dropped object was temporary.
CREATE OR REPLACE FUNCTION _geosync.note_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('geosync.drop_only_temp',
      coalesce((SELECT bool_and(is_temporary) FROM pg_event_trigger_dropped_objects()),
               false)::text, true);
END
$$;

-- Emits the DDL message. SECURITY DEFINER, because the DDL's author may not
-- call pg_logical_emit_message; with a fixed search_path, so the author
-- cannot hijack a name inside it. It takes only what it cannot compute: the
-- author's search_path (its own is fixed) and the command tag. The query
-- text and the author it computes itself, and it refuses to run outside DDL
-- (pg_event_trigger_ddl_commands() raises an error there). So a caller can
-- at most repeat a genuine message with another search_path: replicas run a
-- repeated DDL text of one transaction once, as its author.
-- Inside it current_user is its owner; the author is the role set with
-- SET ROLE, else the session user.
CREATE OR REPLACE FUNCTION _geosync.emit_ddl_message(author_search_path text, tag text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  tags jsonb;
  author text;
BEGIN
  SELECT jsonb_agg(DISTINCT command_tag) INTO tags FROM pg_event_trigger_ddl_commands();
  IF tags IS NULL THEN
    tags := jsonb_build_array(tag);
  END IF;
  author := current_setting('role');
  IF author IS NULL OR author = 'none' THEN
    author := session_user;
  END IF;
  PERFORM pg_logical_emit_message(true, 'geosync.ddl',
      jsonb_build_object('sql', current_query(),
                         'search_path', author_search_path,
                         'role', author,
                         'tags', tags)::text);
END
$$;
REVOKE ALL ON FUNCTION _geosync.emit_ddl_message(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _geosync.emit_ddl_message(text, text) TO PUBLIC;

-- The event trigger function runs as the DDL's author.
CREATE OR REPLACE FUNCTION _geosync.emit_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  has_commands boolean;
  all_temp boolean;
  marker text;
BEGIN
  SELECT count(*) > 0, bool_and(coalesce(schema_name LIKE 'pg\_temp%', false))
    INTO has_commands, all_temp
    FROM pg_event_trigger_ddl_commands();
  IF all_temp THEN
    RETURN;  -- only temporary objects: nothing to replicate
  END IF;
  IF NOT has_commands AND TG_TAG LIKE 'DROP%'
     AND current_setting('geosync.drop_only_temp', true) = 'true' THEN
    PERFORM set_config('geosync.drop_only_temp', 'false', true);
    RETURN;
  END IF;
  -- A multi-statement query string fires this trigger once per command;
  -- replicate the string once.
  marker := md5(current_query());
  IF current_setting('geosync.ddl_emitted', true) = marker THEN
    RETURN;
  END IF;
  PERFORM set_config('geosync.ddl_emitted', marker, true);
  PERFORM _geosync.emit_ddl_message(current_setting('search_path'), TG_TAG);
END
$$;

CREATE EVENT TRIGGER geosync_ddl_capture ON ddl_command_end
  EXECUTE FUNCTION _geosync.emit_ddl();
CREATE EVENT TRIGGER geosync_ddl_drop ON sql_drop
  EXECUTE FUNCTION _geosync.note_drop();

-- Every DDL author calls _geosync.emit_ddl_message; nobody but its owner
-- creates anything in the schema.
REVOKE CREATE ON SCHEMA _geosync FROM PUBLIC;
GRANT USAGE ON SCHEMA _geosync TO PUBLIC;

-- Sequence snapshots ('geosync.sequences'), heartbeats ('geosync.heartbeat')
-- and markers ('geosync.marker') are emitted by geosyncd itself, as a
-- superuser, through pg_logical_emit_message.

-- ---------------------------------------------------------------------------
-- The write guard: application writes only at the source.
--
-- Every replicated table (every ordinary or partitioned table outside the
-- system schemas and _geosync) carries the statement trigger
-- geosync_write_guard, BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE. It
-- refuses the statement (SQLSTATE 25006, read_only_sql_transaction) with a
-- message that names the site, its role and the source to write to instead.
--
-- Ordinary triggers do not fire under session_replication_role = replica,
-- which only superusers can set and which apply and seed use: geosync's own
-- writes pass, an application's cannot switch the guard off.
--
-- Open (the unfenced source): the trigger has
--   WHEN (pg_postmaster_start_time() IS DISTINCT FROM '<start time>')
-- where <start time> is the postmaster start time at which geosyncd last
-- confirmed that this site is the source. The condition is evaluated by the
-- executor without calling the function, so an open guard costs the source
-- no measurable throughput. When PostgreSQL restarts, the start time moves
-- on and the guard is closed again until geosyncd has checked the other
-- sites' epochs: a returning old primary takes no write before its agent
-- decides, however systemd orders the two services.
--
-- The state lives in the body of _geosync.guard_state(), not in a table,
-- so that no publication can ship one site's guard to another.
-- _geosync.set_guard() and _geosync.guard_tables() are geosyncd's (they
-- take locks and change triggers): only superusers may call them.

-- (Created empty: an install where geosyncd never ran has no state and no
-- guard. _geosync.set_guard replaces it; rerunning this script keeps it.)
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n
                 ON n.oid = p.pronamespace
                 WHERE n.nspname = '_geosync' AND p.proname = 'guard_state') THEN
    CREATE FUNCTION _geosync.guard_state() RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE AS 'SELECT NULL::jsonb';
  END IF;
END
$$;

-- The postmaster start time as text that parses the same under any
-- DateStyle and TimeZone.
CREATE OR REPLACE FUNCTION _geosync.start_stamp() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT pg_catalog.to_char(pg_catalog.pg_postmaster_start_time() AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- Whether this site refuses application writes and DDL now.
CREATE OR REPLACE FUNCTION _geosync.guarded() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT s IS NOT NULL AND (s ->> 'open_for') IS DISTINCT FROM _geosync.start_stamp()
  FROM (SELECT _geosync.guard_state() AS s) x
$$;

-- Why this site refuses writes, in words, for the trigger's error.
CREATE OR REPLACE FUNCTION _geosync.guard_reason() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s jsonb := _geosync.guard_state();
  source text := coalesce(nullif(s ->> 'source', ''), 'the source');
BEGIN
  RETURN CASE s ->> 'role'
    WHEN 'replica' THEN format('site %s is a replica (epoch %s); write to the source, site %s',
                               s ->> 'site', s ->> 'epoch', source)
    WHEN 'fenced' THEN format('site %s is fenced (epoch %s): %s; write to the source, site %s',
                              s ->> 'site', s ->> 'epoch',
                              coalesce(nullif(s ->> 'reason', ''), 'another site took over'),
                              source)
    ELSE format('site %s was the source (epoch %s) but PostgreSQL restarted since geosyncd last '
                'confirmed it; writes resume once geosyncd has checked the other sites'' epochs '
                '(start geosyncd), or go to whichever site is the source now',
                s ->> 'site', s ->> 'epoch')
  END;
END
$$;

-- The trigger function. It runs only when the guard is closed: refuses.
CREATE OR REPLACE FUNCTION _geosync.refuse_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'read_only_sql_transaction',
    MESSAGE = format('geosync: %s on %I.%I refused: %s', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                     _geosync.guard_reason()),
    HINT = 'Only the source takes application writes (docs/security.md, "Writes only at the '
           'source"). geosync applies changes under session_replication_role = replica.';
END
$$;

-- Puts the guard, with the current state's condition, on every replicated
-- table that lacks it or has an older one. Returns how many it changed.
CREATE OR REPLACE FUNCTION _geosync.guard_tables() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s jsonb := _geosync.guard_state();
  open_for text := s ->> 'open_for';
  stamp text := coalesce(open_for, 'closed');
  t regclass;
  n integer := 0;
  srr text := current_setting('session_replication_role');
BEGIN
  IF s IS NULL THEN
    RETURN 0;  -- geosyncd never ran here: no guard yet
  END IF;
  PERFORM set_config('session_replication_role', 'replica', true);
  FOR t IN
    SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
      AND ns.nspname NOT IN ('pg_catalog', 'information_schema', '_geosync')
      AND ns.nspname NOT LIKE 'pg\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid
                      AND g.tgname = 'geosync_write_guard'
                      AND g.tgargs = convert_to(stamp, 'UTF8') || '\x00'::bytea)
    ORDER BY c.oid
  LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER geosync_write_guard '
                   'BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT '
                   'WHEN (pg_catalog.pg_postmaster_start_time() IS DISTINCT FROM %L::timestamptz) '
                   'EXECUTE FUNCTION _geosync.refuse_write(%L)', t, open_for, stamp);
    n := n + 1;
  END LOOP;
  PERFORM set_config('session_replication_role', srr, true);
  RETURN n;
END
$$;

-- geosyncd's switch: open (writes allowed until PostgreSQL restarts) or
-- closed, with what the refusal says. Returns how many tables it changed.
CREATE OR REPLACE FUNCTION _geosync.set_guard(open boolean, site text, role text, source text,
                                              epoch bigint, reason text DEFAULT '')
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  state jsonb := jsonb_build_object(
      'open_for', CASE WHEN open THEN _geosync.start_stamp() END, 'site', site, 'role', role,
      'source', source, 'epoch', epoch, 'reason', reason);
  srr text := current_setting('session_replication_role');
BEGIN
  IF state IS DISTINCT FROM _geosync.guard_state() THEN
    PERFORM set_config('session_replication_role', 'replica', true);
    EXECUTE format('CREATE OR REPLACE FUNCTION _geosync.guard_state() RETURNS jsonb '
                   'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                   format('SELECT %L::jsonb', state::text));
    PERFORM set_config('session_replication_role', srr, true);
  END IF;
  RETURN _geosync.guard_tables();
END
$$;

-- DDL on a guarded site: refused too, so that an application can neither
-- change a replica's schema nor drop or disable the guard. Temporary
-- objects are allowed (reports on a replica use them). geosyncd's own DDL
-- runs under session_replication_role = replica, where event triggers do
-- not fire.
CREATE OR REPLACE FUNCTION _geosync.refuse_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  persistent boolean;
BEGIN
  IF NOT _geosync.guarded() THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN
    SELECT bool_or(NOT is_temporary) INTO persistent FROM pg_event_trigger_dropped_objects();
  ELSE
    SELECT bool_or(coalesce(schema_name NOT LIKE 'pg\_temp%', true)) INTO persistent
      FROM pg_event_trigger_ddl_commands();
  END IF;
  IF coalesce(persistent, false) THEN
    RAISE EXCEPTION USING
      ERRCODE = 'read_only_sql_transaction',
      MESSAGE = format('geosync: %s refused: %s', TG_TAG, _geosync.guard_reason()),
      HINT = 'Schema changes are made at the source; geosync replicates them.';
  END IF;
END
$$;
DROP EVENT TRIGGER IF EXISTS geosync_guard_ddl;
CREATE EVENT TRIGGER geosync_guard_ddl ON ddl_command_end
  EXECUTE FUNCTION _geosync.refuse_ddl();
DROP EVENT TRIGGER IF EXISTS geosync_guard_drop;
CREATE EVENT TRIGGER geosync_guard_drop ON sql_drop
  EXECUTE FUNCTION _geosync.refuse_ddl();

-- A table created at the open source gets the guard at once, in the same
-- transaction, so that it is guarded after a restart like every other.
-- SECURITY DEFINER: the table's creator may not create triggers.
CREATE OR REPLACE FUNCTION _geosync.guard_new_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF _geosync.guard_state() IS NULL OR NOT EXISTS (
      SELECT 1 FROM pg_event_trigger_ddl_commands()
      WHERE object_type IN ('table', 'table column') AND NOT in_extension
        AND coalesce(schema_name NOT LIKE 'pg\_temp%', true)) THEN
    RETURN;
  END IF;
  PERFORM _geosync.guard_tables();
END
$$;
REVOKE ALL ON FUNCTION _geosync.guard_new_tables() FROM PUBLIC;
DROP EVENT TRIGGER IF EXISTS geosync_guard_new_tables;
CREATE EVENT TRIGGER geosync_guard_new_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
  EXECUTE FUNCTION _geosync.guard_new_tables();

REVOKE ALL ON FUNCTION _geosync.guard_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION _geosync.set_guard(boolean, text, text, text, bigint, text) FROM PUBLIC;
SELECT _geosync.guard_tables();

-- ---------------------------------------------------------------------------
-- Installs from before the rename kept geosync's functions in schema
-- "geosync": drop them, and the schema if nothing else is in it. Tables a
-- role named geosync created there are left alone, with a warning.
DROP FUNCTION IF EXISTS geosync.emit_ddl();
DROP FUNCTION IF EXISTS geosync.note_drop();
DROP FUNCTION IF EXISTS geosync.emit_ddl_message(text, text);
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'geosync') THEN
    BEGIN
      DROP SCHEMA geosync;
      RAISE NOTICE 'geosync: moved geosync''s functions from schema geosync to _geosync';
    EXCEPTION WHEN dependent_objects_still_exist THEN
      RAISE WARNING 'geosync: schema "geosync" still holds objects geosync did not create (a role '
                    'named geosync puts its new tables there through search_path "$user"); left '
                    'in place: move them with ALTER TABLE geosync.t SET SCHEMA public';
    END;
  END IF;
END
$$;
