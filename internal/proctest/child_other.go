//go:build !linux

package proctest

import "syscall"

// ChildAttr is for every child process a tool or test starts: it puts the
// child in its own process group, so that a Ctrl-C at the terminal reaches
// only its parent, which stops it.
func ChildAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
