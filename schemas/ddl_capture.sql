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

CREATE SCHEMA IF NOT EXISTS geosync;

-- DROP reports nothing through pg_event_trigger_ddl_commands(); sql_drop
-- fires first and notes whether every dropped object was temporary.
CREATE OR REPLACE FUNCTION geosync.note_drop() RETURNS event_trigger
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
CREATE OR REPLACE FUNCTION geosync.emit_ddl_message(author_search_path text, tag text)
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
REVOKE ALL ON FUNCTION geosync.emit_ddl_message(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION geosync.emit_ddl_message(text, text) TO PUBLIC;

-- The event trigger function runs as the DDL's author.
CREATE OR REPLACE FUNCTION geosync.emit_ddl() RETURNS event_trigger
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
  PERFORM geosync.emit_ddl_message(current_setting('search_path'), TG_TAG);
END
$$;

DROP EVENT TRIGGER IF EXISTS geosync_ddl_capture;
CREATE EVENT TRIGGER geosync_ddl_capture ON ddl_command_end
  EXECUTE FUNCTION geosync.emit_ddl();
DROP EVENT TRIGGER IF EXISTS geosync_ddl_drop;
CREATE EVENT TRIGGER geosync_ddl_drop ON sql_drop
  EXECUTE FUNCTION geosync.note_drop();

-- Every DDL author calls geosync.emit_ddl_message; nobody but its owner
-- creates anything in the schema.
REVOKE CREATE ON SCHEMA geosync FROM PUBLIC;
GRANT USAGE ON SCHEMA geosync TO PUBLIC;

-- Sequence snapshots ('geosync.sequences'), heartbeats ('geosync.heartbeat')
-- and markers ('geosync.marker') are emitted by geosyncd itself, as a
-- superuser, through pg_logical_emit_message.
