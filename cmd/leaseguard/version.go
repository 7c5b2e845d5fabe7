package main

// Set by the Makefile with -ldflags -X (see `make build`).
var (
	version   = "dev"
	commit    string
	buildDate string
)
