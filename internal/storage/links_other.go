//go:build !unix

package storage

import "io/fs"

// hardLinked reports false where link counts are not known.
func hardLinked(info fs.FileInfo) bool { return false }
