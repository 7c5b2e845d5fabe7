package main

import (
	"context"
	"errors"
)

func runSocket(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
func runObserver(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
func runAlerts(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
