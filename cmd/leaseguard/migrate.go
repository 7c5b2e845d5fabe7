package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/store"
)

func (m *Main) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "apply the state-store migrations and exit",
		Long:  "Migrate applies the pending migrations of the state store (LEASEGUARD_DATABASE_SCHEMA) and exits.\nrun does the same at start.",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return migrateCmd(cmd.Context(), m) },
	}
}

func migrateCmd(ctx context.Context, m *Main) error {
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
