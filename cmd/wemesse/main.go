// Command wemesse is the Wemesse update and device-registry server.
//
//	wemesse [serve]                         run the server
//	wemesse signature create [--role R]     store a new signature, print its secret
//	wemesse signature list                  list signatures (never secrets)
//	wemesse signature revoke ID             delete a signature
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/joho/godotenv"
)

func main() {
	// A .env file fills in variables that the environment does not set.
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "wemesse: read .env:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wemesse:", err)
		os.Exit(1)
	}
}
