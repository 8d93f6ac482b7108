package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/correlate"
)

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
// opened on failure; serve starts serving. It returns nil when cfg names
// no preload socket.
func startPreload(cfg Config, table *correlate.Table, log *slog.Logger) (*preloadService, error) {
	if cfg.PreloadLibraryDir != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("--preload-library-dir: find the libraries beside toad: %w", err)
		}
		if _, err := preload.InstallLibraries(filepath.Dir(exe), cfg.PreloadLibraryDir); err != nil {
			return nil, fmt.Errorf("--preload-library-dir %s: %w (the libraries ship beside the toad binary: make build writes them to bin/)", cfg.PreloadLibraryDir, err)
		}
	}
	if cfg.PreloadSocket == "" {
		return nil, nil
	}
	ln, err := preload.Listen(preload.SocketConfig{Path: cfg.PreloadSocket, Mode: cfg.PreloadSocketMode, Group: cfg.PreloadSocketGroup})
	if err != nil {
		return nil, fmt.Errorf("--preload-socket %s: %w", cfg.PreloadSocket, err)
	}
	p := &preloadService{ln: ln, socket: cfg.PreloadSocket, log: log}
	if cfg.PreloadSharedSlots > 0 {
		if p.shared, err = preload.NewSharedTable(table, cfg.PreloadSharedSlots); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--preload-shared-slots %d: %w", cfg.PreloadSharedSlots, err)
		}
	}
	maxWait := cfg.MaxWait
	if maxWait == 0 {
		maxWait = time.Microsecond // --max-wait 0: libraries wait for nothing
	}
	p.srv, err = preload.New(table, preload.Config{Trusted: cfg.Trusted, MaxWait: maxWait, Shared: p.shared, Logger: log})
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

// validatePreload checks the preload settings that parse but do not fit.
func (c *Config) validatePreload() error {
	n := c.PreloadSharedSlots
	switch {
	case c.PreloadSocket == "" && c.PreloadSocketGroup != "":
		return fmt.Errorf("--preload-socket-group %s without --preload-socket: there is no socket to give it", c.PreloadSocketGroup)
	case c.PreloadSocketMode&^0o777 != 0 || c.PreloadSocketMode&0o600 != 0o600:
		return fmt.Errorf("--preload-socket-mode %#o: want permissions such as 0660 that let toad's user read and write", uint32(c.PreloadSocketMode))
	case n < 0 || n != 0 && (n < preload.BucketSlots || n&(n-1) != 0):
		return fmt.Errorf("--preload-shared-slots %d: want 0 or a power of two from %d", n, preload.BucketSlots)
	}
	if c.PreloadSocket != "" {
		if err := api.CheckSocketPath(c.PreloadSocket); err != nil {
			return fmt.Errorf("--preload-socket %s: %w", c.PreloadSocket, err)
		}
	}
	return nil
}
