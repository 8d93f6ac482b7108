//go:build !unix

package daemon

// fdLimit returns a limit large enough that only the listeners' own
// bounds apply where there is no RLIMIT_NOFILE.
func fdLimit() (uint64, error) { return 1 << 20, nil }
