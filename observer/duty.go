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
// store dedicated to the duties (a lockSession): the lease of the duty
// lasts as long as that session, and the server releases it when the
// session ends (process killed, network lost). Taking the duty also bumps
// the target's epoch in observer_targets; every pass locks that row and
// checks the epoch (Check), so a process whose lock connection died cannot
// commit a pass after another process took over: the two passes are
// serialised by the row lock, and the old holder's finds a newer epoch.
//
// The duties of one observer share its lock session, so a process
// observing 50 targets holds one such connection, not 50 (each outside the
// state store's pool): when it ends, every duty on it is lost at once.
type Duty struct {
	sess     *lockSession
	database string
	key      int64
	epoch    int64
	once     sync.Once
	released bool // under sess.mu
}

// lockSession is a state-store connection, out of the pool, on which
// duties hold their advisory locks; a keeper pings it while it holds any.
type lockSession struct {
	mu   sync.Mutex
	conn *pgx.Conn // nil once closed
	held int       // duties holding a lock on it
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

// openLockSession takes a connection out of the state store's pool for
// duties, and starts its keeper.
func openLockSession(ctx context.Context, st *store.Store) (*lockSession, error) {
	c, err := st.Pool().Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// The locks live as long as this session: take the connection out of
	// the pool, which would otherwise hand it to others and keep it alive.
	conn := c.Hijack()
	if err := setIdleSessionTimeout(ctx, conn); err != nil {
		closeConn(ctx, conn)
		return nil, err
	}
	s := &lockSession{conn: conn, stop: make(chan struct{}), kept: make(chan struct{})}
	go s.keep()
	return s, nil
}

// alive reports whether the session may still hold locks.
func (s *lockSession) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil && !s.conn.IsClosed()
}

// tryDuty takes the duty of observing database on a lock session of its
// own, if no other process holds it. It returns nil and no error when
// another process does. holder names this process in observer_targets.
func tryDuty(ctx context.Context, st *store.Store, database, holder string, at time.Time) (*Duty, error) {
	s, err := openLockSession(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("observer duty of %s: %w", database, err)
	}
	d, err := s.tryDuty(ctx, st.Schema(), database, holder, at)
	if d == nil {
		s.close(ctx)
	}
	return d, err
}

// tryDuty takes the duty of observing database on s, if no other process
// holds it (nil and no error when one does).
func (s *lockSession) tryDuty(ctx context.Context, schema, database, holder string, at time.Time) (*Duty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil, fmt.Errorf("%w: %s: lock session closed", ErrDutyLost, database)
	}
	key := dutyKey(schema, database)
	var ok bool
	if err := s.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		return nil, fmt.Errorf("observer duty of %s: %w", database, err)
	}
	if !ok {
		return nil, nil
	}
	d := &Duty{sess: s, database: database, key: key}
	err := s.conn.QueryRow(ctx, `
		INSERT INTO observer_targets (database, epoch, holder, holder_pid, acquired_at)
		VALUES ($1, 1, $2, pg_backend_pid(), $3)
		ON CONFLICT (database) DO UPDATE SET epoch = observer_targets.epoch + 1,
			holder = EXCLUDED.holder, holder_pid = EXCLUDED.holder_pid, acquired_at = EXCLUDED.acquired_at
		RETURNING epoch`, database, holder, dbTime(at)).Scan(&d.epoch)
	if err != nil {
		s.unlock(ctx, key)
		return nil, fmt.Errorf("observer duty of %s: bump epoch: %w", database, err)
	}
	s.held++
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

// keep pings the lock session every dutyBeat until it is closed or a ping
// fails; a failed ping closes the connection (the next Check of each duty
// on it finds the duty lost).
func (s *lockSession) keep() {
	defer close(s.kept)
	t := time.NewTicker(dutyBeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !s.beat() {
			return
		}
	}
}

// beat pings the lock session once and reports whether it answered.
func (s *lockSession) beat() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), dutyBeat)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		closeConn(ctx, s.conn)
		return false
	}
	return true
}

// unlock releases one duty's lock; s.mu is held.
func (s *lockSession) unlock(ctx context.Context, key int64) {
	if s.conn == nil || s.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		// A lock that cannot be given back must not outlive its duty.
		closeConn(ctx, s.conn)
	}
}

// release gives one duty's lock back, and closes the session with the last.
func (s *lockSession) release(ctx context.Context, d *Duty) {
	s.mu.Lock()
	d.released = true
	s.unlock(ctx, d.key)
	s.held--
	last := s.held <= 0
	s.mu.Unlock()
	if last {
		s.close(ctx)
	}
}

// close ends the keeper and the session; safe more than once.
func (s *lockSession) close(ctx context.Context) {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	<-s.kept
	if conn != nil {
		closeConn(ctx, conn)
	}
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

// ping checks, holding the session from its keeper, that the lock session
// answers.
func (d *Duty) ping(ctx context.Context) error {
	s := d.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || d.released {
		return fmt.Errorf("%w: %s: released", ErrDutyLost, d.database)
	}
	if s.conn.IsClosed() {
		return fmt.Errorf("%w: %s: lock connection closed", ErrDutyLost, d.database)
	}
	if err := s.conn.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: lock connection: %v", ErrDutyLost, d.database, err)
	}
	return nil
}

// Release gives the duty up. It is safe to call more than once.
func (d *Duty) Release(ctx context.Context) {
	d.once.Do(func() { d.sess.release(ctx, d) })
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
