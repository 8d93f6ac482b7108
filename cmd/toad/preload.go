package main

import (
	"errors"
	"flag"
	"io/fs"
	"path/filepath"
	"strconv"

	"github.com/toad-project/toad/daemon"
)

// preloadSocketName is the preload socket's name beside --socket: with
// the default --socket, /run/toad/preload.sock, where the library looks
// unless told.
const preloadSocketName = "preload.sock"

// preloadFlags defines the preload socket's flags on set. *given records
// whether --preload-socket (or its variable) was set; if not,
// settlePreload puts the socket beside --socket.
func preloadFlags(set *flag.FlagSet, c *daemon.Config, given *bool) {
	set.Func("preload-socket", "unix socket `path` (SOCK_SEQPACKET) the LD_PRELOAD library, libtoad_preload.so, asks; empty for none (default: preload.sock beside --socket, /run/toad/preload.sock; none without --socket)", func(v string) error {
		c.PreloadSocket, *given = v, true
		return nil
	})
	set.Func("preload-socket-mode", "the preload socket's permissions, in octal `mode` (default 0660)", func(v string) error {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o777 {
			return errors.New("want octal permissions such as 0660")
		}
		c.PreloadSocketMode = fs.FileMode(m)
		return nil
	})
	set.StringVar(&c.PreloadSocketGroup, "preload-socket-group", "", "`group` (name or number) given the preload socket: that of the workers that load the library, such as www-data (default: toad's own)")
	set.IntVar(&c.PreloadSharedSlots, "preload-shared-slots", c.PreloadSharedSlots, "`slots` of the table of open connections the libraries map (64 bytes each, a power of two); 0 for none: every lookup a round trip")
	set.StringVar(&c.PreloadLibraryDir, "preload-library-dir", "", "`directory` into which the preload libraries beside the toad binary are copied at start, for an application container sharing it")
}

// settlePreload puts the preload socket beside --socket unless it was
// given: toad's sockets share a directory, and a toad given another
// --socket (a test's, a second instance's) takes no other's preload
// socket.
func settlePreload(c *daemon.Config, given bool) {
	if given {
		return
	}
	c.PreloadSocket = ""
	if c.Socket != "" {
		c.PreloadSocket = filepath.Join(filepath.Dir(c.Socket), preloadSocketName)
	}
}
