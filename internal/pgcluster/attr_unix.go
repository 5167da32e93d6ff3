//go:build unix

package pgcluster

import "syscall"

// runAsAttr runs a server program as acct, if not nil, without
// supplementary groups.
func runAsAttr(acct *account) *syscall.SysProcAttr {
	if acct == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(acct.uid), Gid: uint32(acct.gid), Groups: []uint32{},
	}}
}

// detachedAttr puts the watchdog in its own session.
func detachedAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
