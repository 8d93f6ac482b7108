package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/correlate"
)

// preloadSettings are toad serve's settings of the preload socket.
type preloadSettings struct {
	Socket      string      // "" serves no preload socket
	Mode        fs.FileMode // the socket's permissions
	Group       string      // the socket's group, a name or a number; "" keeps toad's
	SharedSlots int         // slots of the shared table; 0: none
	LibraryDir  string      // "" copies no library at start
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
