//go:build !linux

package main

import "syscall"

// childAttr has nothing to add outside Linux; Stop ends the server.
func childAttr() *syscall.SysProcAttr { return nil }
