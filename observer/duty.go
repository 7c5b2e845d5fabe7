package observer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/leaseguard/leaseguard/store"
)

// ErrDutyLost means this process no longer holds the duty of observing a
// target: its lock connection is gone, or another process has taken the
// duty since.
var ErrDutyLost = errors.New("observer duty lost")

// Duty is the exclusive right of one process to observe one target, so that
// several leaseguard processes never observe (and publish, and act on) the
// same target at once.
//
// It is a session-level advisory lock held on a connection of the state
// store dedicated to it: the lease of the duty lasts as long as that
// session, and the server releases it when the session ends (process
// killed, network lost). Taking the duty also bumps the target's epoch in
// observer_targets; every pass locks that row and checks the epoch (Check),
// so a process whose lock connection died cannot commit a pass after
// another process took over: the two passes are serialised by the row lock,
// and the old holder's finds a newer epoch.
type Duty struct {
	mu       sync.Mutex
	conn     *pgx.Conn
	database string
	key      int64
	epoch    int64
	// stop ends the keeper; kept is closed when it has ended.
	stop chan struct{}
	kept chan struct{}
}

// A holder keeps its lock session busy: it pings it every dutyBeat, and the
// server ends the session after dutyIdle without a message
// (idle_session_timeout, PostgreSQL 14 and later). A holder that vanished
// without its session ending (a network that drops everything, a frozen
// process, a wedged proxy) so loses the duty within dutyIdle, and another
// process takes over; before, the session kept the lock for as long as the
// server kept it open.
const (
	dutyBeat = time.Second
	dutyIdle = 5 * time.Second
)

// dutyKey is the advisory lock key of a target's duty. It uses the one-key
// (bigint) form, whose lock space is apart from the two-key locks of the
// store (pg_locks.objsubid 1, not 2).
func dutyKey(schema, database string) int64 {
	h := fnv.New64a()
	h.Write([]byte("leaseguard.observer\x00" + schema + "\x00" + database))
	return int64(h.Sum64())
}

// tryDuty takes the duty of observing database, if no other process holds
// it. It returns nil and no error when another process does. holder names
// this process in observer_targets.
func tryDuty(ctx context.Context, st *store.Store, database, holder string, at time.Time) (*Duty, error) {
	c, err := st.Pool().Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("observer duty of %s: %w", database, err)
	}
	// The lock lives as long as this session: take the connection out of
	// the pool, which would otherwise hand it to others and keep it alive.
	conn := c.Hijack()
	key := dutyKey(st.Schema(), database)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("observer duty of %s: %w", database, err)
	}
	if !ok {
		closeConn(ctx, conn)
		return nil, nil
	}
	if err := setIdleSessionTimeout(ctx, conn); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("observer duty of %s: %w", database, err)
	}
	d := &Duty{conn: conn, database: database, key: key, stop: make(chan struct{}), kept: make(chan struct{})}
	err = conn.QueryRow(ctx, `
		INSERT INTO observer_targets (database, epoch, holder, holder_pid, acquired_at)
		VALUES ($1, 1, $2, pg_backend_pid(), $3)
		ON CONFLICT (database) DO UPDATE SET epoch = observer_targets.epoch + 1,
			holder = EXCLUDED.holder, holder_pid = EXCLUDED.holder_pid, acquired_at = EXCLUDED.acquired_at
		RETURNING epoch`, database, holder, dbTime(at)).Scan(&d.epoch)
	if err != nil {
		close(d.kept) // no keeper yet
		d.Release(ctx)
		return nil, fmt.Errorf("observer duty of %s: bump epoch: %w", database, err)
	}
	go d.keep()
	return d, nil
}

// setIdleSessionTimeout has the server end the lock session after dutyIdle
// without a message. A server before PostgreSQL 14 does not know the
// setting: there the session ends only when the server notices the
// connection is gone.
func setIdleSessionTimeout(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, fmt.Sprintf("SET idle_session_timeout = %d", dutyIdle.Milliseconds()))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42704" { // undefined_object
		return nil
	}
	return err
}

// keep pings the lock session every dutyBeat until the duty is released or
// a ping fails; a failed ping closes the connection (the next Check finds
// the duty lost).
func (d *Duty) keep() {
	defer close(d.kept)
	t := time.NewTicker(dutyBeat)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		if !d.beat() {
			return
		}
	}
}

// beat pings the lock session once and reports whether it answered.
func (d *Duty) beat() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), dutyBeat)
	defer cancel()
	if err := d.conn.Ping(ctx); err != nil {
		closeConn(ctx, d.conn)
		return false
	}
	return true
}

// Database is the target this duty is for.
func (d *Duty) Database() string { return d.database }

// Epoch is the fencing token of this holding.
func (d *Duty) Epoch() int64 { return d.epoch }

// Check, inside a pass transaction, confirms the duty is still held: the
// lock connection answers, and the target's epoch (locked FOR UPDATE until
// tx ends) is this holding's. Otherwise it returns an error wrapping
// ErrDutyLost, and the caller must roll back and stop observing.
func (d *Duty) Check(ctx context.Context, tx pgx.Tx) error {
	if err := d.ping(ctx); err != nil {
		return err
	}
	var epoch int64
	err := tx.QueryRow(ctx, `SELECT epoch FROM observer_targets WHERE database = $1 FOR UPDATE`, d.database).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s: no duty row", ErrDutyLost, d.database)
	}
	if err != nil {
		return fmt.Errorf("observer duty of %s: %w", d.database, err)
	}
	if epoch != d.epoch {
		return fmt.Errorf("%w: %s: epoch %d taken over by epoch %d", ErrDutyLost, d.database, d.epoch, epoch)
	}
	return nil
}

// ping checks, holding the connection from the keeper, that the lock
// session answers.
func (d *Duty) ping(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return fmt.Errorf("%w: %s: released", ErrDutyLost, d.database)
	}
	if d.conn.IsClosed() {
		return fmt.Errorf("%w: %s: lock connection closed", ErrDutyLost, d.database)
	}
	if err := d.conn.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: lock connection: %v", ErrDutyLost, d.database, err)
	}
	return nil
}

// Release gives the duty up. It is safe to call more than once.
func (d *Duty) Release(ctx context.Context) {
	d.stopKeeper()
	d.mu.Lock()
	conn := d.conn
	d.conn = nil
	d.mu.Unlock()
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, d.key)
	_ = conn.Close(ctx)
}

// stopKeeper ends the keeper and waits for it; safe more than once.
func (d *Duty) stopKeeper() {
	d.mu.Lock()
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	<-d.kept
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
