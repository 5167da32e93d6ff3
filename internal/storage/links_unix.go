//go:build unix

package storage

import (
	"io/fs"
	"syscall"
)

// hardLinked reports whether the file has other hard links: the server's
// own files never do.
func hardLinked(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Nlink > 1
}
