package main

import (
	"context"
	"errors"
)

const kfakeSubcommand = "kfake-broker"

func runKfakeBroker([]string) int { return 1 }
func runKafka(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
func runSocket(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
func runObserver(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
func runAlerts(context.Context, *caseEnv) (Observation, Goal, error) {
	return Observation{}, Goal{}, errors.New("todo")
}
