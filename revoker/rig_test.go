package revoker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/leaseguard/leaseguard/internal/pgtest"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/store"
)

// migratedStore is a state store in a fresh schema named after prefix,
// migrated, closed at cleanup.
func migratedStore(t *testing.T, prefix string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: pgtest.URL(), Schema: pgtest.Schema(t, prefix)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// testKeys is a fresh signer and a verifier that trusts it.
func testKeys(t *testing.T) (*revoker.Signer, *revoker.Verifier) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := revoker.NewSigner(priv)
	verifier, err := revoker.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}
