package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditFileOffset is how far a followed audit log file has been published:
// every complete line before Offset of the file identified by Device and
// Inode is stored in JetStream.
type AuditFileOffset struct {
	Path      string
	Device    uint64
	Inode     uint64
	Offset    int64
	UpdatedAt time.Time
}

// AuditFileOffset returns the stored offset of the file followed at path,
// or ErrNotFound.
func (s *Store) AuditFileOffset(ctx context.Context, path string) (AuditFileOffset, error) {
	o := AuditFileOffset{Path: path}
	var dev, ino int64
	err := s.pool.QueryRow(ctx,
		`SELECT device, inode, byte_offset, updated_at FROM audit_file_offsets WHERE path = $1`, path).
		Scan(&dev, &ino, &o.Offset, &o.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	if err != nil {
		return o, fmt.Errorf("read audit file offset of %s: %w", path, err)
	}
	o.Device, o.Inode = uint64(dev), uint64(ino)
	return o, nil
}

// SaveAuditFileOffset records o (Path, Device, Inode, Offset), replacing
// what was stored for the path.
func (s *Store) SaveAuditFileOffset(ctx context.Context, o AuditFileOffset) error {
	if o.Offset < 0 {
		return fmt.Errorf("audit file offset %d of %s is negative", o.Offset, o.Path)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO audit_file_offsets (path, device, inode, byte_offset, updated_at)
		VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (path) DO UPDATE
		SET device = EXCLUDED.device, inode = EXCLUDED.inode, byte_offset = EXCLUDED.byte_offset, updated_at = now()`,
		o.Path, int64(o.Device), int64(o.Inode), o.Offset)
	if err != nil {
		return fmt.Errorf("save audit file offset of %s: %w", o.Path, err)
	}
	return nil
}
