// Command wemesse-faults injects faults into real Wemesse server processes
// and checks what the server promises about them. Everything runs on
// 127.0.0.1: a throwaway PostgreSQL 15 cluster (run as the "postgres" OS
// user when started as root), and the server binary as child processes.
//
//	wemesse-faults [flags]
//
// Scenarios, in order (-only selects some):
//
//	outage   PostgreSQL stopped (pg_ctl stop -m fast) under mixed load
//	kill9    kill -9 of the server in the middle of an upload
//	sigterm  SIGTERM during a slow upload, with a long and a short shutdown timeout
//	flood    a flood of malformed requests, raw TCP garbage and slowloris
//
// Every scenario prints what it injected and each verification as PASS or
// FAIL; the last line is "N passed, M failed". The exit status is non-zero
// when any verification failed. Processes and temporary directories are
// removed on every exit path, Ctrl-C included; a watchdog cleans up even if
// this program is killed.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wemesse-faults:", err)
		os.Exit(1)
	}
}
