// Package store is leaseguard's lease ledger in PostgreSQL: the migrations
// that create it, Apply, which folds lease events and creds observations into
// it, ResolveExpiry, which fills in expiry times the audit log does not carry,
// and the queries the detectors run against it.
//
// Every table lives in one schema (Config.Schema); connections get it as their
// search_path, so the SQL here and in the migrations uses unqualified names.
package store
