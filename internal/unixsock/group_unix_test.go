//go:build unix

package unixsock_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/unixsock"
)

func TestListenGroup(t *testing.T) {
	privtest.Require(t) // chown to another group
	dir := filepath.Join(t.TempDir(), "made")
	path := filepath.Join(dir, "s.sock")
	listen(t, unixsock.Config{Network: "unixpacket", Path: path, Mode: 0o660, Group: "65534"})
	for _, p := range []string{path, dir} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 65534 {
			t.Errorf("%s has group %d, want 65534", p, gid)
		}
	}
}
