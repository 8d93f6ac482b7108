package unixsock

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrInUse reports a socket another process still serves on.
var ErrInUse = errors.New("socket in use")

// MaxPath is the longest unix socket path the kernel takes, in bytes:
// sun_path holds 108 with the terminating NUL. A longer path can be made by
// a rename, but nobody can connect to it.
const MaxPath = 107

// CheckPath returns an error naming the limit when path is too long for a
// unix socket, or empty.
func CheckPath(path string) error {
	switch {
	case path == "":
		return errors.New("empty socket path")
	case len(path) > MaxPath:
		return fmt.Errorf("socket path of %d bytes: the kernel takes at most %d (sun_path): choose a shorter path", len(path), MaxPath)
	}
	return nil
}

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// DirMode is the mode of the socket's directory when Listen makes it.
const DirMode fs.FileMode = 0o750

// Config says where a socket is made and who may connect to it.
type Config struct {
	// Network is "unix" (SOCK_STREAM) or "unixpacket" (SOCK_SEQPACKET).
	Network string
	// Path is the socket file.
	Path string
	// Mode is the socket file's permissions, 0o660 for example: connecting
	// needs write permission.
	Mode fs.FileMode
	// Group, when not empty, is the group (a name or a numeric id) given to
	// the socket file, and to its directory when Listen makes it. The
	// process must be allowed to chown to it: root, or a member of it.
	Group string
}

// Listen listens on a unix socket as c says, and removes the socket file
// when the listener closes.
//
// A socket file already at the path is replaced only when nobody answers on
// it (a crashed server's leftover): Listen fails with ErrInUse when a
// process still serves there, and refuses to replace anything that is not
// a socket. The socket is made under a temporary name, given its mode and
// group, and renamed into place, so it never exists at the path with
// looser permissions. When c.Mode lets the group or others connect, the
// directory must let them in too (search permission): Listen fails with a
// message saying so rather than serve a socket they cannot reach.
func Listen(c Config) (net.Listener, error) {
	if err := CheckPath(c.Path); err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	if c.Network != "unix" && c.Network != "unixpacket" {
		return nil, fmt.Errorf("listen unix: network %q: want unix or unixpacket", c.Network)
	}
	gid := -1
	if c.Group != "" {
		g, err := LookupGroup(c.Group)
		if err != nil {
			return nil, fmt.Errorf("listen unix %s: %w", c.Path, err)
		}
		gid = g
	}
	if err := checkStale(c.Network, c.Path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(c.Path)
	if err := makeDir(dir, gid); err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", c.Path, err)
	}
	if err := checkReachable(dir, c.Mode, gid); err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", c.Path, err)
	}
	tmp, err := tempPath(dir)
	if err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", c.Path, err)
	}
	l, err := net.ListenUnix(c.Network, &net.UnixAddr{Name: tmp, Net: c.Network})
	if err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listen unix %s: %w", c.Path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("give the socket to group %s: %w", c.Group, err))
		}
	}
	if err := os.Chmod(tmp, c.Mode.Perm()); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, c.Path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(c.Path)
	if err != nil {
		return fail(err)
	}
	return &listener{UnixListener: l, addr: &net.UnixAddr{Name: c.Path, Net: c.Network}, file: fi}, nil
}

// tempPath returns a random name in dir for the socket to be made under
// before it is renamed into place: ".toad-" and 8 hex digits, or as many
// digits as the kernel's limit leaves in a long directory.
func tempPath(dir string) (string, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	digits := hex.EncodeToString(rnd[:])
	if room := MaxPath - len(dir) - len("/.toad-.sock"); room >= len(digits) {
		return filepath.Join(dir, ".toad-"+digits+".sock"), nil
	}
	room := MaxPath - len(dir) - len("/.")
	if room < 4 {
		return "", fmt.Errorf("directory of %d bytes leaves no room, under the kernel's %d for a socket path, for the temporary name the socket is made under: choose a shorter directory", len(dir), MaxPath)
	}
	return filepath.Join(dir, "."+digits[:min(room, len(digits))]), nil
}

// LookupGroup returns the id of a group given by name or number.
func LookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		if id < 0 {
			return 0, fmt.Errorf("group %q: a group id is not negative", name)
		}
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w (getent group lists the groups)", name, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has id %q, not a number", name, g.Gid)
	}
	return id, nil
}

// makeDir makes dir (DirMode, given to gid when it is not -1) unless it
// exists.
func makeDir(dir string, gid int) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("give directory %s to the socket's group: %w", dir, err)
		}
	}
	return nil
}

// checkReachable fails when mode lets the group (gid, or the directory's
// own group when gid is -1) or others connect but dir does not let them
// search it.
func checkReachable(dir string, mode fs.FileMode, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	perm := fi.Mode().Perm()
	dirGID := groupOf(fi)
	if mode&0o002 != 0 && perm&0o001 == 0 {
		return fmt.Errorf("the socket's mode %04o lets others connect, but its directory %s (%04o) does not let them in: chmod o+x %s, or choose another directory", mode.Perm(), dir, perm, dir)
	}
	if gid >= 0 && mode&0o020 != 0 && perm&0o001 == 0 && (perm&0o010 == 0 || dirGID != gid) {
		return fmt.Errorf("the socket's group %d may connect, but its directory %s (%04o, group %d) does not let that group in: chgrp %d %s and chmod g+x %s, or choose another directory", gid, dir, perm, dirGID, gid, dir, dir)
	}
	return nil
}

// checkStale returns nil when path is free or holds a socket nobody serves.
func checkStale(network, path string) error {
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
	err = probe(network, path)
	if errors.Is(err, syscall.EPROTOTYPE) {
		// A socket of the other type: it may still be served.
		other := "unix"
		if network == "unix" {
			other = "unixpacket"
		}
		err = probe(other, path)
	}
	switch {
	case err == nil:
		return fmt.Errorf("listen unix %s: %w by another process: stop it or choose another socket path", path, ErrInUse)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil // stale: the rename replaces it
	}
	return fmt.Errorf("listen unix: probe existing socket: %w", err)
}

// probe connects to the socket at path and hangs up.
func probe(network, path string) error {
	c, err := net.DialTimeout(network, path, probeTimeout)
	if err == nil {
		c.Close()
	}
	return err
}

// listener reports the socket's final path and removes the file on Close,
// unless another listener has replaced it since.
type listener struct {
	*net.UnixListener
	addr *net.UnixAddr
	file fs.FileInfo
	once sync.Once
	err  error
}

func (l *listener) Addr() net.Addr { return l.addr }

func (l *listener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if cur, err := os.Lstat(l.addr.Name); err == nil && os.SameFile(cur, l.file) {
			os.Remove(l.addr.Name)
		}
	})
	return l.err
}
