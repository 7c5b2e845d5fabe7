// Command leaseguard-bench measures leaseguard against baselines taken in
// the same run: audit decoding, end-to-end ingest over JetStream and Kafka,
// revocation throughput, expiry-to-drop latency and memory. It prints a
// table and writes bench/results.json. See bench/README.md.
package main
