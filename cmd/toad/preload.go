package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/correlate"
)

// preloadSettings are toad serve's settings of the preload socket.
type preloadSettings struct {
	Socket      string      // "" serves no preload socket
	socketSet   bool        // Socket was given, not derived from --socket
	Mode        fs.FileMode // the socket's permissions
	Group       string      // the socket's group, a name or a number; "" keeps toad's
	SharedSlots int         // slots of the shared table; 0: none
	LibraryDir  string      // "" copies no library at start
}

// preloadSocketName is the preload socket's name beside --socket: with
// the default --socket, /run/toad/preload.sock, where the library looks
// unless told.
const preloadSocketName = "preload.sock"

// defaultPreloadSettings are toad serve's defaults: mode 0660, the
// default shared table, and (settled by settle) the socket beside
// --socket.
func defaultPreloadSettings() preloadSettings {
	return preloadSettings{Mode: preload.DefaultSocketMode, SharedSlots: preload.DefaultSharedSlots}
}

// preloadFlags defines the preload socket's flags on fs.
func preloadFlags(set *flag.FlagSet, s *preloadSettings) {
	set.Func("preload-socket", "unix socket `path` (SOCK_SEQPACKET) the LD_PRELOAD library, libtoad_preload.so, asks; empty for none (default: preload.sock beside --socket, /run/toad/preload.sock; none without --socket)", func(v string) error {
		s.Socket, s.socketSet = v, true
		return nil
	})
	set.Func("preload-socket-mode", "the preload socket's permissions, in octal `mode` (default 0660)", func(v string) error {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o777 || m&0o600 != 0o600 {
			return errors.New("want octal permissions such as 0660 that let toad's user read and write")
		}
		s.Mode = fs.FileMode(m)
		return nil
	})
	set.StringVar(&s.Group, "preload-socket-group", "", "`group` (name or number) given the preload socket: that of the workers that load the library, such as www-data (default: toad's own)")
	set.IntVar(&s.SharedSlots, "preload-shared-slots", s.SharedSlots, "`slots` of the table of open connections the libraries map (64 bytes each, a power of two); 0 for none: every lookup a round trip")
	set.StringVar(&s.LibraryDir, "preload-library-dir", "", "`directory` into which the preload libraries beside the toad binary are copied at start, for an application container sharing it")
}

// settle puts the socket beside socket, the API's, unless it was given,
// and checks the preload settings that parse but do not fit.
func (s *preloadSettings) settle(socket string) error {
	if !s.socketSet && socket != "" {
		s.Socket = filepath.Join(filepath.Dir(socket), preloadSocketName)
	}
	n := s.SharedSlots
	switch {
	case s.Socket == "" && s.Group != "":
		return usagef("--preload-socket-group %s without --preload-socket: there is no socket to give it", s.Group)
	case n < 0 || n != 0 && (n < preload.BucketSlots || n&(n-1) != 0):
		return usagef("--preload-shared-slots %d: want 0 or a power of two from %d", n, preload.BucketSlots)
	}
	if s.Socket != "" {
		if err := api.CheckSocketPath(s.Socket); err != nil {
			return usagef("--preload-socket %s: %v", s.Socket, err)
		}
	}
	return nil
}

// preloadService is the preload socket's server and its shared table.
// A nil *preloadService serves nothing, and its methods do nothing.
type preloadService struct {
	srv    *preload.Server
	shared *preload.SharedTable
	ln     net.Listener
	socket string
	log    *slog.Logger
}

// startPreload copies the libraries where asked, opens the preload
// socket and builds its server (and the shared table), closing what it
// opened on failure. Serve starts serving. It returns nil when s names no
// socket.
func startPreload(s preloadSettings, table *correlate.Table, trusted []netip.Prefix, maxWait time.Duration, log *slog.Logger) (*preloadService, error) {
	if s.LibraryDir != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("--preload-library-dir: find the libraries beside toad: %w", err)
		}
		if _, err := preload.InstallLibraries(filepath.Dir(exe), s.LibraryDir); err != nil {
			return nil, fmt.Errorf("--preload-library-dir %s: %w (the libraries ship beside the toad binary: make build writes them to bin/)", s.LibraryDir, err)
		}
	}
	if s.Socket == "" {
		return nil, nil
	}
	ln, err := preload.Listen(preload.SocketConfig{Path: s.Socket, Mode: s.Mode, Group: s.Group})
	if err != nil {
		return nil, fmt.Errorf("--preload-socket %s: %w", s.Socket, err)
	}
	p := &preloadService{ln: ln, socket: s.Socket, log: log}
	if s.SharedSlots > 0 {
		if p.shared, err = preload.NewSharedTable(table, s.SharedSlots); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--preload-shared-slots %d: %w", s.SharedSlots, err)
		}
	}
	if maxWait == 0 {
		maxWait = time.Microsecond // --max-wait 0: libraries wait for nothing
	}
	p.srv, err = preload.New(table, preload.Config{Trusted: trusted, MaxWait: maxWait, Shared: p.shared, Logger: log})
	if err != nil {
		ln.Close()
		if p.shared != nil {
			p.shared.Close()
		}
		return nil, err
	}
	return p, nil
}

// serve serves the socket until shutdown or close.
func (p *preloadService) serve() error {
	if err := p.srv.Serve(p.ln); err != nil {
		return fmt.Errorf("serve preload on %s: %w", p.socket, err)
	}
	return nil
}

// shutdown answers the lookups in flight and closes the connections
// (libraries fall back to the kernel's addresses until the next toad),
// then marks the shared table dead and frees it.
func (p *preloadService) shutdown(ctx context.Context) {
	if p == nil {
		return
	}
	if err := p.srv.Shutdown(ctx); err != nil {
		p.log.Warn("preload connections cut short", "err", err)
	}
	if p.shared != nil {
		p.shared.Close()
	}
}

// close stops everything at once; it may follow shutdown.
func (p *preloadService) close() error {
	if p == nil {
		return nil
	}
	p.ln.Close() // when Serve never ran; the server closes it otherwise
	err := p.srv.Close()
	if p.shared != nil {
		err = errors.Join(err, p.shared.Close())
	}
	return err
}

// stats returns the server's counters, and false when there is none.
func (p *preloadService) stats() (preload.Stats, bool) {
	if p == nil {
		return preload.Stats{}, false
	}
	return p.srv.Stats(), true
}
