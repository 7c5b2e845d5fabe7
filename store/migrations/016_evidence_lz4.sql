-- Evidence events are 2-4 KB of JSON, over the size PostgreSQL compresses
-- a row at; lz4 compresses and decompresses them several times faster than
-- the default pglz (appends and the relay's reads). A server built without
-- lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE evidence_outbox ALTER COLUMN event SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; evidence stays compressed with pglz';
END
$$;
