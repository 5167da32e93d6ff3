//go:build !linux

package storage

import "os"

// startWriteback does nothing where sync_file_range does not exist; the
// final sync writes everything.
func startWriteback(f *os.File, off, n int64) error { return nil }

// dropWritten does nothing where sync_file_range does not exist.
func dropWritten(f *os.File, off, n int64) error { return nil }
