// Package pause is the one way leaseguard's retry loops wait: a timer
// that a shutdown or a wake-up cuts short, so no loop sleeps through
// either.
package pause
