//go:build !linux

package main

import "syscall"

// childAttr puts the server in its own process group, so that a Ctrl-C at
// the terminal reaches only us (we stop it ourselves).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
