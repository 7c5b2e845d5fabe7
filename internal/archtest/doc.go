// Package archtest holds tests of the code base's shape that no single
// package can check for itself: for now, that no function outside tests
// is longer than maxFuncLines.
package archtest
