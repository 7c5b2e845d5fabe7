package operator

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/target/engine"
)

// firstNormalOID is PostgreSQL's FirstNormalObjectId: roles below it are
// built in (the bootstrap superuser, pg_* roles) and never selected.
const firstNormalOID = 16384

// roleAttrs is what pg_roles says about one role, for the plan's guard
// preview. The revoker reads it again, under the role's lock, before it
// acts.
type roleAttrs struct {
	BuiltIn     bool
	Superuser   bool
	Replication bool
	BypassRLS   bool
}

// targetRoles is a snapshot of roles in one target, and who the revoker's
// connection logs in as there.
type targetRoles struct {
	// kind is the target's engine ("" is PostgreSQL): the names it
	// accepts are its own.
	kind        engine.Kind
	roles       map[string]roleAttrs
	currentUser string
	sessionUser string
}

// readRoles reads the named roles of a target, or every role when names is
// nil.
func readRoles(ctx context.Context, pool *pgxpool.Pool, names []string) (targetRoles, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tr := targetRoles{roles: map[string]roleAttrs{}}
	if err := pool.QueryRow(ctx, `SELECT current_user::text, session_user::text`).Scan(&tr.currentUser, &tr.sessionUser); err != nil {
		return tr, fmt.Errorf("read session: %w", err)
	}
	const cols = `SELECT rolname::text, oid < $1, rolsuper, rolreplication, rolbypassrls FROM pg_roles`
	var rows pgx.Rows
	var err error
	if names == nil {
		rows, err = pool.Query(ctx, cols, firstNormalOID)
	} else {
		rows, err = pool.Query(ctx, cols+` WHERE rolname = ANY($2::text[])`, firstNormalOID, names)
	}
	if err != nil {
		return tr, fmt.Errorf("read pg_roles: %w", err)
	}
	var name string
	var a roleAttrs
	_, err = pgx.ForEachRow(rows, []any{&name, &a.BuiltIn, &a.Superuser, &a.Replication, &a.BypassRLS}, func() error {
		tr.roles[name] = a
		return nil
	})
	if err != nil {
		return tr, fmt.Errorf("read pg_roles: %w", err)
	}
	return tr, nil
}
