package proctest

import "syscall"

// ChildAttr is for every child process a tool or test starts: it puts the
// child in its own process group, so that a Ctrl-C at the terminal reaches
// only its parent (which stops it), and has the kernel kill it should the
// parent die without doing so. No server outlives its tool or test.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
