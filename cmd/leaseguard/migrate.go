package main

import (
	"context"
	"fmt"

	"github.com/leaseguard/leaseguard/store"
)

func migrateCmd(ctx context.Context, m *Main, args []string) error {
	fs := m.flags("migrate", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadStoreConfig("migrate")
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(m.Stdout, "schema %s is up to date\n", cfg.DatabaseSchema)
	return nil
}

// openStore opens the state store and applies pending migrations.
func openStore(ctx context.Context, cfg Config) (*store.Store, error) {
	st, err := store.Open(ctx, store.Config{URL: cfg.DatabaseURL, Schema: cfg.DatabaseSchema, Conn: cfg.stateConn()})
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate state store: %w", err)
	}
	return st, nil
}
