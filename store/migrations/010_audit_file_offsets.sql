-- The audit-file follower (ingest/auditfile.go) remembers how far it has
-- published each Vault file audit log into JetStream, so a restart neither
-- skips nor repeats entries. A row is written only after JetStream has
-- acknowledged every entry before byte_offset. device and inode identify
-- the file the offset belongs to (a rotated log is found again by them);
-- they are the bits of the unsigned values, stored as bigint.
CREATE TABLE audit_file_offsets (
    path        text PRIMARY KEY,
    device      bigint NOT NULL,
    inode       bigint NOT NULL,
    byte_offset bigint NOT NULL CHECK (byte_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
