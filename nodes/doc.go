// Package nodes keeps the register of the leaseguard processes that share
// a state store, with the command signing key each signs with and the keys
// each accepts, so that processes that would refuse each other's commands
// are found at start (and while they run), not by users left in place.
//
// It owns the nodes table.
package nodes
