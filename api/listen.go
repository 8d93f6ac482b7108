package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultSocket is where toad serves its unix socket unless told otherwise.
const DefaultSocket = "/run/toad/toad.sock"

// DefaultSocketMode lets the owner and the group connect.
const DefaultSocketMode fs.FileMode = 0o660

// DefaultListen is the loopback TCP address toad's documentation and
// examples use when lookups over TCP are turned on; toad serve listens on
// no TCP address unless told to.
const DefaultListen = "127.0.0.1:50051"

// ErrInUse reports a unix socket another process still serves on.
var ErrInUse = errors.New("socket in use")

// MaxSocketPath is the longest unix socket path the kernel takes, in bytes:
// sun_path holds 108 with the terminating NUL. A longer path can be made by
// a rename, but nobody can connect to it.
const MaxSocketPath = 107

// CheckSocketPath returns an error naming the limit when path is too long
// for a unix socket, or empty.
func CheckSocketPath(path string) error {
	switch {
	case path == "":
		return errors.New("empty socket path")
	case len(path) > MaxSocketPath:
		return fmt.Errorf("socket path of %d bytes: the kernel takes at most %d (sun_path): choose a shorter path", len(path), MaxSocketPath)
	}
	return nil
}

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// ListenUnix listens on a unix socket at path, with permissions mode, and
// removes the socket file when the listener closes. The directory is made
// (mode 0750) if missing.
//
// A socket file already at path is replaced only when nobody answers on it
// (a crashed server's leftover); ListenUnix fails with ErrInUse when a
// process still serves there, and refuses to replace anything that is not
// a socket. The socket is made under a temporary name, given its mode, and
// renamed into place, so it never exists at path with looser permissions.
func ListenUnix(path string, mode fs.FileMode) (net.Listener, error) {
	return ListenUnixGroup(path, mode, -1)
}

// ListenUnixGroup is ListenUnix with the socket given group gid, so that
// its members may connect with mode 0660; -1 keeps the process's group. A
// directory it makes gets the group too. The process must belong to the
// group, or be root.
func ListenUnixGroup(path string, mode fs.FileMode, gid int) (net.Listener, error) {
	if err := CheckSocketPath(path); err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	tmp, err := tempSocketPath(dir)
	if err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	_, err = os.Stat(dir)
	made := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	if made && gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return nil, fmt.Errorf("listen unix: give %s group %d: %w", dir, gid, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("give the socket group %d: %w (toad must be root or a member of it)", gid, err))
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: l, addr: &net.UnixAddr{Name: path, Net: "unix"}, file: fi}, nil
}

// tempSocketPath returns a random name in dir for the socket to be made
// under before it is renamed into place: ".toad-" and 8 hex digits, or as
// many digits as the kernel's limit leaves in a long directory.
func tempSocketPath(dir string) (string, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	digits := hex.EncodeToString(rnd[:])
	if room := MaxSocketPath - len(dir) - len("/.toad-.sock"); room >= len(digits) {
		return filepath.Join(dir, ".toad-"+digits+".sock"), nil
	}
	room := MaxSocketPath - len(dir) - len("/.")
	if room < 4 {
		return "", fmt.Errorf("directory of %d bytes leaves no room, under the kernel's %d for a socket path, for the temporary name the socket is made under: choose a shorter directory", len(dir), MaxSocketPath)
	}
	return filepath.Join(dir, "."+digits[:min(room, len(digits))]), nil
}

// checkStale returns nil when path is free or holds a socket nobody serves.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen unix: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen unix: %s exists and is not a socket (%v): refusing to replace it; remove it or choose another socket path", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen unix %s: %w by another process: stop it or choose another socket path", path, ErrInUse)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // stale: the rename replaces it
	}
	return fmt.Errorf("listen unix: probe existing socket: %w", err)
}

// unixListener reports the socket's final path and removes the file on
// Close, unless another listener has replaced it since.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
	file fs.FileInfo
	once sync.Once
	err  error
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if cur, err := os.Lstat(l.addr.Name); err == nil && os.SameFile(cur, l.file) {
			os.Remove(l.addr.Name)
		}
	})
	return l.err
}

// ListenTCP listens on a TCP address. Unless allowRemote, the address must
// be a loopback one (127.0.0.1:50051, [::1]:50051, localhost:50051): the API
// tells who the clients are, and must not be reachable from the network by
// accident.
func ListenTCP(addr string, allowRemote bool) (net.Listener, error) {
	if !allowRemote {
		if err := CheckLoopback(addr); err != nil {
			return nil, fmt.Errorf("listen tcp: %w", err)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen tcp: %w", err)
	}
	if ta, ok := l.Addr().(*net.TCPAddr); !allowRemote && (!ok || !ta.IP.IsLoopback()) {
		l.Close()
		return nil, fmt.Errorf("listen tcp: %s %w", addr, ErrNotLoopback)
	}
	return l, nil
}

// ErrNotLoopback is the error of a TCP address that is not a loopback one
// where only loopback is allowed.
var ErrNotLoopback = errors.New("is not a loopback address, and the API reveals client addresses: listen on 127.0.0.1 or [::1], or allow remote access explicitly")

// CheckLoopback returns an error wrapping ErrNotLoopback unless addr is a
// loopback host:port (127.0.0.1:50051, [::1]:50051, localhost:50051).
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port, for example %s", addr, DefaultListen)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s %w", addr, ErrNotLoopback)
	}
	return nil
}
