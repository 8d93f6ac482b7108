//go:build !unix

package unixsock

import "io/fs"

// groupOf returns -1: files have no unix group here.
func groupOf(fs.FileInfo) int { return -1 }
