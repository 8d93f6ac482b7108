package unixsock_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toad-project/toad/internal/unixsock"
)

// serve accepts and drops connections on l until it closes, so that
// probes are answered.
func serve(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func listen(t *testing.T, c unixsock.Config) net.Listener {
	t.Helper()
	l, err := unixsock.Listen(c)
	if err != nil {
		t.Fatalf("Listen(%+v): %v", c, err)
	}
	t.Cleanup(func() { l.Close() })
	serve(l)
	return l
}

func TestListen(t *testing.T) {
	for _, network := range []string{"unix", "unixpacket"} {
		t.Run(network, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run", "toad", "s.sock")
			l := listen(t, unixsock.Config{Network: network, Path: path, Mode: 0o660})
			if got := l.Addr().String(); got != path {
				t.Errorf("Addr = %s, want %s", got, path)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
				t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
			}
			dir, _ := os.Stat(filepath.Dir(path))
			if dir.Mode().Perm() != unixsock.DirMode {
				t.Errorf("directory mode %v, want %v", dir.Mode().Perm(), unixsock.DirMode)
			}
			c, err := net.Dial(network, path)
			if err != nil {
				t.Fatalf("dial the new socket: %v", err)
			}
			c.Close()
			ents, _ := os.ReadDir(filepath.Dir(path))
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries, want the socket alone", len(ents))
			}
			l.Close()
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file after Close: %v, want it removed", err)
			}
		})
	}
}

func TestListenRefuses(t *testing.T) {
	t.Run("in use", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.sock")
		listen(t, unixsock.Config{Network: "unix", Path: path, Mode: 0o660})
		for _, network := range []string{"unix", "unixpacket"} {
			if _, err := unixsock.Listen(unixsock.Config{Network: network, Path: path, Mode: 0o660}); !errors.Is(err, unixsock.ErrInUse) {
				t.Errorf("%s over a served stream socket: %v, want ErrInUse", network, err)
			}
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		os.WriteFile(path, []byte("keep"), 0o600)
		if _, err := unixsock.Listen(unixsock.Config{Network: "unixpacket", Path: path, Mode: 0o660}); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v, want a refusal", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep" {
			t.Error("the file was replaced")
		}
	})
	t.Run("closed directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "closed")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, 0o700)
		_, err := unixsock.Listen(unixsock.Config{Network: "unixpacket", Path: filepath.Join(dir, "s.sock"), Mode: 0o666})
		if err == nil || !strings.Contains(err.Error(), "does not let them in") {
			t.Errorf("a world-writable socket in a closed directory: %v, want a refusal that says why", err)
		}
	})
	t.Run("group", func(t *testing.T) {
		if _, err := unixsock.Listen(unixsock.Config{Network: "unixpacket", Path: filepath.Join(t.TempDir(), "s.sock"), Mode: 0o660, Group: "no-such-group-toad"}); err == nil {
			t.Error("Listen with an unknown group succeeded")
		}
	})
	t.Run("network", func(t *testing.T) {
		if _, err := unixsock.Listen(unixsock.Config{Network: "tcp", Path: filepath.Join(t.TempDir(), "s.sock")}); err == nil {
			t.Error("Listen on tcp succeeded")
		}
	})
}

func TestListenReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	// A crashed server's leftover: a socket file nobody serves.
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	listen(t, unixsock.Config{Network: "unixpacket", Path: path, Mode: 0o660})
	c, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatalf("dial the replacing socket: %v", err)
	}
	c.Close()
}
