package main

import "context"

func demoCmd(context.Context, *Main, []string) error { return usageError{"demo: not built yet"} }
