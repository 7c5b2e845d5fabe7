-- evidence_append with the pieces of all the events in one bytea (package
-- evidence, AppendMany).
--
-- pgx copies an array argument element by element into a buffer it grows
-- and drops after the call, and then into its message buffer, growing that
-- too: the seven bytea arrays of evidence_append cost eight times their
-- bytes in allocations, much of the process's copying and collecting during
-- a mass expiry. One bytea, the last argument, costs three and a half.
--
-- lens holds seven lengths per event, in order: canon_a, canon_b, canon_c,
-- body_a, body_b, body_c, body_d, as evidence_append (015) takes them; the
-- pieces follow each other in pieces in the same order. The rest is as
-- evidence_append did it; evidence_append stays for a binary of the
-- version before, and now packs its arguments and calls this function, so
-- the chain is sealed in one place.
CREATE FUNCTION evidence_append_packed(ids text[], types text[], subjects text[], lens integer[], pieces bytea)
RETURNS TABLE (out_seq bigint, out_prev_hash text, out_hash text, out_stored bytea)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    n         integer := coalesce(array_length(ids, 1), 0);
    head_seq  bigint;
    head_hash text;
    seq_txt   bytea;
    p         bytea[];
    pos       integer := 1;
    i         integer;
    k         integer;
BEGIN
    IF coalesce(array_length(lens, 1), 0) <> 7 * n
       OR (SELECT coalesce(sum(l), 0) FROM unnest(lens) AS l) <> length(pieces)
       OR EXISTS (SELECT 1 FROM unnest(lens) AS l WHERE l IS NULL OR l < 0) THEN
        RAISE EXCEPTION 'evidence_append_packed: % lengths for % events do not cut % bytes', coalesce(array_length(lens, 1), 0), n, length(pieces);
    END IF;
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM evidence_chain_head h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'evidence chain head row is missing' USING ERRCODE = 'LGE01';
    END IF;
    FOR i IN 1 .. n LOOP
        p := '{}';
        FOR k IN 1 .. 7 LOOP
            p := p || substring(pieces FROM pos FOR lens[7 * (i - 1) + k]);
            pos := pos + lens[7 * (i - 1) + k];
        END LOOP;
        SELECT o.seq, o.prev_hash, o.hash, o.event INTO out_seq, out_prev_hash, out_hash, out_stored
          FROM evidence_outbox o WHERE o.id = ids[i];
        IF FOUND THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        seq_txt := convert_to((head_seq + 1)::text, 'UTF8');
        out_seq := head_seq + 1;
        out_prev_hash := head_hash;
        out_hash := 'sha256:' || encode(sha256(p[1] || seq_txt || p[2] || convert_to(head_hash, 'UTF8') || p[3]), 'hex');
        out_stored := NULL;
        INSERT INTO evidence_outbox (seq, id, type, subject, prev_hash, hash, event)
            VALUES (out_seq, ids[i], types[i], subjects[i], out_prev_hash, out_hash,
                    p[4] || seq_txt || p[5] || convert_to(head_hash, 'UTF8') || p[6] || convert_to(out_hash, 'UTF8') || p[7]);
        head_seq := out_seq;
        head_hash := out_hash;
        RETURN NEXT;
    END LOOP;
    UPDATE evidence_chain_head h SET seq = head_seq, hash = head_hash WHERE h.id = 1;
END
$$;

CREATE OR REPLACE FUNCTION evidence_append(
    ids text[], types text[], subjects text[],
    canon_a bytea[], canon_b bytea[], canon_c bytea[],
    body_a bytea[], body_b bytea[], body_c bytea[], body_d bytea[])
RETURNS TABLE (out_seq bigint, out_prev_hash text, out_hash text, out_stored bytea)
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    WITH p AS (
        SELECT i, k, piece
          FROM generate_subscripts(ids, 1) AS i,
               unnest(ARRAY[canon_a[i], canon_b[i], canon_c[i], body_a[i], body_b[i], body_c[i], body_d[i]])
                   WITH ORDINALITY AS u(piece, k)
    )
    SELECT * FROM evidence_append_packed(ids, types, subjects,
        coalesce((SELECT array_agg(length(piece) ORDER BY i, k) FROM p), '{}'),
        coalesce((SELECT string_agg(piece, ''::bytea ORDER BY i, k) FROM p), ''::bytea))
$$;
