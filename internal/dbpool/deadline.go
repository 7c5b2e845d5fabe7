package dbpool

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WithoutDefaultDeadline marks ctx so that calls made with it get no
// default deadline (Settings.CallTimeout): for the few calls that may
// rightly run long and have no deadline to give, such as migrations.
func WithoutDefaultDeadline(ctx context.Context) context.Context {
	return context.WithValue(ctx, noDefaultKey{}, true)
}

type noDefaultKey struct{}

// cancelKey holds, in a context the tracer derived, the cancel function
// of the deadline it added; nil when the context was the caller's own.
type cancelKey struct{}

// defaultDeadline is a pgx tracer that gives every acquire, query, batch
// and copy whose context has no deadline one of d: a call somebody made
// with a background context cannot wait forever on a silent server. With
// max, no query, batch or copy waits longer than max, whatever deadline
// its context has (acquires are not capped: waiting for a busy pool's
// connection is no silence).
type defaultDeadline struct{ d, max time.Duration }

var (
	_ pgx.QueryTracer       = defaultDeadline{}
	_ pgx.BatchTracer       = defaultDeadline{}
	_ pgx.CopyFromTracer    = defaultDeadline{}
	_ pgxpool.AcquireTracer = defaultDeadline{}
)

func (t defaultDeadline) start(ctx context.Context, capped bool) context.Context {
	if ctx.Value(cancelKey{}) != nil {
		// Derived by an outer call of ours: its deadline is not this
		// call's to end.
		return context.WithValue(ctx, cancelKey{}, context.CancelFunc(nil))
	}
	limit := time.Duration(0)
	deadline, has := ctx.Deadline()
	if !has && ctx.Value(noDefaultKey{}) == nil {
		limit = t.d
	}
	if capped && t.max > 0 && (limit == 0 || t.max < limit) && (!has || time.Until(deadline) > t.max) {
		limit = t.max
	}
	if limit <= 0 {
		return ctx
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	return context.WithValue(ctx, cancelKey{}, cancel)
}

func (defaultDeadline) end(ctx context.Context) {
	if cancel, _ := ctx.Value(cancelKey{}).(context.CancelFunc); cancel != nil {
		cancel()
	}
}

func (t defaultDeadline) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return t.start(ctx, true)
}

func (t defaultDeadline) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	t.end(ctx)
}

func (t defaultDeadline) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return t.start(ctx, true)
}

func (defaultDeadline) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t defaultDeadline) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	t.end(ctx)
}

func (t defaultDeadline) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return t.start(ctx, true)
}

func (t defaultDeadline) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	t.end(ctx)
}

func (t defaultDeadline) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return t.start(ctx, false)
}

func (t defaultDeadline) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	t.end(ctx)
}
