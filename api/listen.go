package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"

	"github.com/toad-project/toad/internal/unixsock"
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
var ErrInUse = unixsock.ErrInUse

// MaxSocketPath is the longest unix socket path the kernel takes, in bytes:
// sun_path holds 108 with the terminating NUL.
const MaxSocketPath = unixsock.MaxPath

// CheckSocketPath returns an error naming the limit when path is too long
// for a unix socket, or empty.
func CheckSocketPath(path string) error { return unixsock.CheckPath(path) }

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
	return unixsock.Listen(unixsock.Config{Network: "unix", Path: path, Mode: mode})
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
