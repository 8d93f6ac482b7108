// Package privtest gates tests that need root (network namespaces, raw
// sockets): they skip with a reason on a developer's machine, and fail
// instead of skipping when CI is set, so that CI always runs them.
package privtest

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips t, or fails it under CI, unless the process is root and each
// named command is on PATH.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skip(t, "needs root (network namespaces and raw sockets): run with sudo, or as root in CI")
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			skip(t, "needs "+c+" on PATH (Debian: apt-get install iproute2)")
		}
	}
}

func skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("privileged test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// InCI reports whether the tests run under CI (CI=true), where privileged
// tests must run rather than skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}
