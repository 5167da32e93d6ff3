//go:build !linux

package main

import "syscall"

// childAttr has nothing to add outside Linux; Stop ends the server.
func childAttr() *syscall.SysProcAttr { return nil }

// pgAttr cannot switch users outside Linux here: run the tool as a user
// PostgreSQL accepts.
func pgAttr(*pgAccount) *syscall.SysProcAttr { return nil }

func pgChildAttr(acct *pgAccount) *syscall.SysProcAttr { return pgAttr(acct) }

func detachedAttr() *syscall.SysProcAttr { return nil }
