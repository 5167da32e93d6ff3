package main

import "syscall"

// childAttr makes the kernel kill the server if this process dies without
// stopping it (a panic, SIGKILL), so no server outlives the benchmark.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
