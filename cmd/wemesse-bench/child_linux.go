package main

import "syscall"

// childAttr makes the kernel kill the server if this process dies without
// stopping it (a panic, SIGKILL), so no server outlives the benchmark.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// pgAttr runs a PostgreSQL program as acct (the postgres OS user when we
// are root), since PostgreSQL refuses to run as root.
func pgAttr(acct *pgAccount) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if acct != nil {
		a.Credential = &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid)}
	}
	return a
}

// pgChildAttr is pgAttr for the postmaster, which also gets SIGQUIT (an
// immediate shutdown that takes its backends along) if this process dies.
func pgChildAttr(acct *pgAccount) *syscall.SysProcAttr {
	a := pgAttr(acct)
	a.Pdeathsig = syscall.SIGQUIT
	return a
}

// detachedAttr puts a watchdog in its own session, so Ctrl-C in the
// terminal does not reach it before it has cleaned up.
func detachedAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
