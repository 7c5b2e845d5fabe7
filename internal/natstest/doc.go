// Package natstest starts an embedded JetStream server for tests (store in
// the test's temp dir, shut down at cleanup) and probes what a client may
// do on a NATS server.
//
// A server from Start has no listener: tests connect in-process, as
// leaseguard does. StartWith can add a loopback listener, which then takes
// nkey credentials (generated in a temp dir unless given).
package natstest
