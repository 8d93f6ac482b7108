//go:build unix

package daemon

import "golang.org/x/sys/unix"

// fdLimit returns the process's descriptor limit: RLIMIT_NOFILE's soft
// limit, which the Go runtime raised to the hard one at start.
func fdLimit() (uint64, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return uint64(l.Cur), nil
}
