// Package archtest holds tests of leaseguard's shape rather than its
// behaviour, which no single package can check for itself: which package
// writes which table of the state store, which package may import which,
// and that no function outside tests is longer than maxFuncLines. It has
// no code of its own.
package archtest
