//go:build !unix

package pgcluster

import "syscall"

// runAsAttr cannot switch users here: run as a user PostgreSQL accepts.
func runAsAttr(*account) *syscall.SysProcAttr { return nil }

func detachedAttr() *syscall.SysProcAttr { return nil }
