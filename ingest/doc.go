// Package ingest turns Vault audit entries and lease events, from whatever
// transport carries them, into lease ledger changes. Transports (JetStream,
// Kafka, files) hand batches of messages to a Processor and act on each
// message's disposition: done (ack), dead-lettered (ack after the dead
// letter is stored) or retry (nak with backoff).
package ingest
