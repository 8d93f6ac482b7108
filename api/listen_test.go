package api_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toad-project/toad/api"
)

// answers reports whether something accepts connections on the socket.
func answers(path string) bool {
	c, err := net.Dial("unix", path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func listenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	l, err := api.ListenUnix(path, api.DefaultSocketMode)
	if err != nil {
		t.Fatalf("ListenUnix(%s): %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() { // accept and drop, so that probes are answered
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l
}

func TestListenUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "toad", "toad.sock")
	l := listenUnix(t, path)
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr = %s, want %s", got, path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	if !answers(path) {
		t.Fatal("nothing answers on the new socket")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want the socket alone (no temporary left)", len(ents))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close: Lstat = %v, want the socket file gone", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestListenUnixStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toad.sock")
	// A crashed server's socket: the file stays, nobody listens.
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	if answers(path) {
		t.Fatal("the stale socket still answers")
	}
	listenUnix(t, path)
	if !answers(path) {
		t.Error("the stale socket was not replaced by a live one")
	}
}

func TestListenUnixInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toad.sock")
	listenUnix(t, path)
	l, err := api.ListenUnix(path, api.DefaultSocketMode)
	if !errors.Is(err, api.ErrInUse) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("ListenUnix on a live socket = %v, want ErrInUse", err)
	}
	if !answers(path) {
		t.Error("the live socket stopped answering")
	}
}

func TestListenUnixNotSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toad.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := api.ListenUnix(path, api.DefaultSocketMode)
	if err == nil {
		l.Close()
		t.Fatal("ListenUnix over a regular file: no error")
	}
	if !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("error %q does not say the file is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Errorf("the file now holds %q, want it untouched", b)
	}
}

// TestListenUnixReplaced: a listener closing after another took its path
// leaves the newcomer's socket alone.
func TestListenUnixReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toad.sock")
	old := listenUnix(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	listenUnix(t, path)
	old.Close()
	if !answers(path) {
		t.Error("closing the old listener removed the new one's socket")
	}
}

func TestListenTCP(t *testing.T) {
	tests := []struct {
		addr        string
		allowRemote bool
		err         string // "" for success
	}{
		{"127.0.0.1:0", false, ""},
		{"localhost:0", false, ""},
		{"0.0.0.0:0", false, "not a loopback address"},
		{":0", false, "not a loopback address"},
		{"[::]:0", false, "not a loopback address"},
		{"192.0.2.1:0", false, "not a loopback address"},
		{"toad.example:0", false, "not a loopback address"},
		{"0.0.0.0:0", true, ""},
		{"127.0.0.1", false, "want host:port"},
	}
	for _, tt := range tests {
		l, err := api.ListenTCP(tt.addr, tt.allowRemote)
		if l != nil {
			l.Close()
		}
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ListenTCP(%q, %v) = %v, want success", tt.addr, tt.allowRemote, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ListenTCP(%q, %v) = %v, want an error containing %q", tt.addr, tt.allowRemote, err, tt.err)
		}
	}
}

// pathOfLen returns a path of n bytes under dir, its last element name
// long: the directory made for it is padded to fit.
func pathOfLen(t *testing.T, dir, name string, n int) string {
	t.Helper()
	pad := n - len(dir) - len("/") - len("/") - len(name)
	if pad < 1 {
		t.Fatalf("%s is too long to make a path of %d bytes under it", dir, n)
	}
	p := filepath.Join(dir, strings.Repeat("d", pad), name)
	if len(p) != n {
		t.Fatalf("made a path of %d bytes, want %d", len(p), n)
	}
	return p
}

// TestListenUnixPathLimit: a path the kernel cannot connect to is refused
// with the limit named; the longest it takes works, even in a directory
// too long for the usual temporary name.
func TestListenUnixPathLimit(t *testing.T) {
	const maxSocketPath = 107 // sun_path's 108 bytes, with the NUL
	dir := t.TempDir()
	long := pathOfLen(t, dir, "toad.sock", maxSocketPath+1)
	if l, err := api.ListenUnix(long, api.DefaultSocketMode); err == nil {
		l.Close()
		t.Errorf("ListenUnix of a %d-byte path succeeded; want an error naming the limit", len(long))
	} else if !strings.Contains(err.Error(), "at most 107") {
		t.Errorf("ListenUnix of a %d-byte path: %v; want the limit named", len(long), err)
	}
	for _, name := range []string{"toad.sock", "t.sock"} {
		path := pathOfLen(t, dir, name, maxSocketPath)
		listenUnix(t, path)
		if !answers(path) {
			t.Errorf("nothing answers on %s (%d bytes)", path, len(path))
		}
	}
}
