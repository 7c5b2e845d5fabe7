// Package pause is the one way leaseguard's loops wait: a timer that a
// shutdown or a wake-up cuts short, so no loop sleeps through either
// (For, Until), and the ticker loops of the background workers (Every,
// Repeat).
package pause
