// Package faultproxy is a TCP proxy whose behaviour a test switches while it
// runs, to put a dependency (PostgreSQL, NATS, Kafka, Vault, an alert sink)
// through the faults of a network without touching the dependency itself.
//
// It has three modes:
//
//   - Pass forwards bytes both ways, like any TCP proxy.
//   - Reset closes every connection with a TCP reset and resets every new
//     one as soon as it is accepted: a crashed server, a restarted
//     load balancer.
//   - Blackhole keeps every connection open and forwards nothing, in either
//     direction: what it reads is dropped. New connections are accepted and
//     never reach the upstream. This is a hung server, a wedged pgbouncer or
//     a firewall that drops packets: the client's writes succeed and its
//     reads never return, so only the client's own deadlines get it out.
//
// A connection a blackhole caught stays silent for good, also after the
// proxy is back in Pass: bytes of its streams were dropped, so they could not
// be resumed. It is closed only by the proxy's Close or a switch to Reset.
// When one side of such a connection closes, the other side is not told
// (a firewall that drops packets drops the FIN too): its upstream session
// lives on, as a server session whose client vanished does. Connections
// accepted after the switch back to Pass forward normally.
//
// A Proxy is safe for concurrent use.
package faultproxy
