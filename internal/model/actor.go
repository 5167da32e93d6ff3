package model

import "context"

// Actors that are not signatures.
const (
	ActorCLI    = "cli"    // the wemesse command line
	ActorSystem = "system" // the server itself, on no one's request
)

type actorKey struct{}

// WithActor returns ctx carrying who makes the changes done under it: a
// signature's Label, or ActorCLI. The auth middleware and the command line
// set it; the service layer reads it with ActorOf for the audit trail.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorOf returns the actor WithActor put in ctx, or ActorSystem.
func ActorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return ActorSystem
}
