// Package dbpool gives leaseguard's PostgreSQL pools (the state store and
// the target databases) what keeps a slow, hung or vanished server from
// stalling leaseguard: a connect timeout, server-side statement, lock and
// idle-in-transaction timeouts on every connection, TCP keepalive and a TCP
// user timeout, so a half-open connection dies in seconds, a ping timeout
// when an idle connection is taken from the pool, and a health-check
// period.
//
// These are the backstop. The callers still put a context deadline on every
// acquire, begin and query: a server that keeps the connection open and
// answers nothing (a hung PostgreSQL, a wedged pgbouncer) defeats every
// timer here but the client's own.
package dbpool
