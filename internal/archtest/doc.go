// Package archtest holds tests of leaseguard's shape rather than its
// behaviour: which package writes which table of the state store, and which
// package may import which. It has no code of its own.
package archtest
