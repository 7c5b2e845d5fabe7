package cmdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// Drop returns a drop_role command for user in the target named database,
// reached through pool, corroborated by an operator. Its id is "cmd-"+user.
func Drop(t testing.TB, pool *pgxpool.Pool, database, user string) schemas.RevocationCommand {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := target.ReadIdentity(ctx, pool)
	if err != nil {
		t.Fatalf("read target identity: %v", err)
	}
	roles, err := target.ReadRoles(ctx, pool, []string{user})
	if err != nil {
		t.Fatalf("read role %s: %v", user, err)
	}
	now := time.Now().UTC()
	return schemas.RevocationCommand{
		Type: schemas.RevocationCommandType, ID: "cmd-" + user, Action: schemas.ActionDropRole,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Nonce: Nonce(), Issuer: "operator", Actor: "test",
		Rule: "operator-revoke", Database: database, Target: id, DBUser: user, RoleOID: roles[user].OID,
		Reason: "test", Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByOperator, CheckedAt: now},
	}
}

// Nonce is a fresh command nonce.
func Nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
