// Package bus connects leaseguard to NATS JetStream: to a user's cluster by
// URL, or to a server embedded in the process for a single-node install, the
// demo and the tests. It also declares the streams leaseguard relies on.
package bus
