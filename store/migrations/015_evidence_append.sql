-- Appending evidence in one statement (package evidence, AppendMany).
--
-- Every appender in every process waits for the chain head row from the
-- moment it locks it until its transaction commits. When the lock, the read
-- of stored ids, the insert and the head update were separate statements,
-- with the hashing done by the client in between, a client short of CPU
-- held the lock across those trips and stalled all the others. Here they are
-- one statement: the client prepares each event beforehand, encoded with its
-- seal cut out, and this function joins the pieces around the chain
-- position and the previous hash and hashes them (SHA-256, as
-- evidence.Seal does; the evidence package's tests check that both agree
-- byte for byte).
--
-- Per event i: canon_a[i] || chainseq || canon_b[i] || prevhash ||
-- canon_c[i] is the canonical form hashed; body_a[i] || chainseq ||
-- body_b[i] || prevhash || body_c[i] || hash || body_d[i] is the event as
-- stored. An id already stored (or repeated in the call) is returned as
-- stored and does not advance the chain.
CREATE FUNCTION evidence_append(
    ids text[], types text[], subjects text[],
    canon_a bytea[], canon_b bytea[], canon_c bytea[],
    body_a bytea[], body_b bytea[], body_c bytea[], body_d bytea[])
RETURNS TABLE (out_seq bigint, out_prev_hash text, out_hash text, out_stored bytea)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
    seq_txt   bytea;
    body      bytea;
    i         integer;
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM evidence_chain_head h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'evidence chain head row is missing' USING ERRCODE = 'LGE01';
    END IF;
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        SELECT o.seq, o.prev_hash, o.hash, o.event INTO out_seq, out_prev_hash, out_hash, out_stored
          FROM evidence_outbox o WHERE o.id = ids[i];
        IF FOUND THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        seq_txt := convert_to((head_seq + 1)::text, 'UTF8');
        out_seq := head_seq + 1;
        out_prev_hash := head_hash;
        out_hash := 'sha256:' || encode(sha256(canon_a[i] || seq_txt || canon_b[i] ||
            convert_to(head_hash, 'UTF8') || canon_c[i]), 'hex');
        out_stored := NULL;
        body := body_a[i] || seq_txt || body_b[i] || convert_to(head_hash, 'UTF8') ||
            body_c[i] || convert_to(out_hash, 'UTF8') || body_d[i];
        INSERT INTO evidence_outbox (seq, id, type, subject, prev_hash, hash, event)
            VALUES (out_seq, ids[i], types[i], subjects[i], out_prev_hash, out_hash, body);
        head_seq := out_seq;
        head_hash := out_hash;
        RETURN NEXT;
    END LOOP;
    UPDATE evidence_chain_head h SET seq = head_seq, hash = head_hash WHERE h.id = 1;
END
$$;
