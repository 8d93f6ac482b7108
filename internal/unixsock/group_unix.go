//go:build unix

package unixsock

import (
	"io/fs"
	"syscall"
)

// groupOf returns the group owning a file, or -1 when it cannot tell.
func groupOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
