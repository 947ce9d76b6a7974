-- geosync DDL capture, installed into the primary database by
-- `geosyncctl init --dsn DSN`. Each DDL command's text is emitted as a
-- transactional logical message with prefix 'geosync.ddl', in the same
-- transaction and at the same stream position as the command, so that
-- replicas execute it exactly where the primary did.
--
-- The message content is JSON:
--   {"sql": "<the client's query text>", "search_path": "...", "tags": ["CREATE TABLE"]}
--
-- Event triggers do not fire under session_replication_role = replica, which
-- is how geosync applies changes, so applied DDL is never emitted again.
-- The text is the whole client query string (current_query()). Of a string
-- with several statements ("BEGIN; CREATE TABLE t(); INSERT ...; COMMIT"),
-- replicas run only the DDL: transaction control and data statements are
-- left out (common/ddl_text.cpp, docs/apply.md). The trigger emits
-- a given query string once per transaction.

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

CREATE OR REPLACE FUNCTION geosync.emit_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  tags jsonb;
  all_temp boolean;
  marker text;
BEGIN
  SELECT jsonb_agg(DISTINCT command_tag),
         bool_and(coalesce(schema_name LIKE 'pg\_temp%', false))
    INTO tags, all_temp
    FROM pg_event_trigger_ddl_commands();
  IF all_temp THEN
    RETURN;  -- only temporary objects: nothing to replicate
  END IF;
  IF tags IS NULL THEN
    IF TG_TAG LIKE 'DROP%' AND current_setting('geosync.drop_only_temp', true) = 'true' THEN
      PERFORM set_config('geosync.drop_only_temp', 'false', true);
      RETURN;
    END IF;
    tags := jsonb_build_array(TG_TAG);
  END IF;
  -- A multi-statement query string fires this trigger once per command;
  -- replicate the string once.
  marker := md5(current_query());
  IF current_setting('geosync.ddl_emitted', true) = marker THEN
    RETURN;
  END IF;
  PERFORM set_config('geosync.ddl_emitted', marker, true);
  PERFORM pg_logical_emit_message(true, 'geosync.ddl',
      jsonb_build_object('sql', current_query(),
                         'search_path', current_setting('search_path'),
                         'tags', tags)::text);
END
$$;

DROP EVENT TRIGGER IF EXISTS geosync_ddl_capture;
CREATE EVENT TRIGGER geosync_ddl_capture ON ddl_command_end
  EXECUTE FUNCTION geosync.emit_ddl();
DROP EVENT TRIGGER IF EXISTS geosync_ddl_drop;
CREATE EVENT TRIGGER geosync_ddl_drop ON sql_drop
  EXECUTE FUNCTION geosync.note_drop();

-- Sequence snapshots ('geosync.sequences') and heartbeats
-- ('geosync.heartbeat') are emitted by geosyncd itself through
-- pg_logical_emit_message; see docs/control-messages.md.
