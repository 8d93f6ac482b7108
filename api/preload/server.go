package preload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/internal/unixsock"
)

// Defaults for the zero fields of Config and SocketConfig.
const (
	// DefaultSocket is where the library looks for toad unless
	// TOAD_PRELOAD_SOCKET says otherwise.
	DefaultSocket = "/run/toad/preload.sock"
	// DefaultSocketMode lets the owner and the group connect, as for
	// toad's gRPC socket.
	DefaultSocketMode fs.FileMode = 0o660
	DefaultMaxWait                = 5 * time.Second
	DefaultMaxConns               = 1024
)

// writeTimeout bounds the write of an answer: a library that stopped
// reading loses its connection rather than hold a goroutine.
const writeTimeout = time.Second

// Lookuper answers lookups; *correlate.Table is one.
type Lookuper interface {
	Lookup(ctx context.Context, k correlate.Key, wait time.Duration) (correlate.Entry, error)
}

// Config bounds a Server and says what it tells the libraries.
type Config struct {
	// Trusted are toad's trusted proxy ranges, as the table was given
	// them: the libraries pass connections from other peers through
	// without asking. Empty means every peer is trusted.
	Trusted []netip.Prefix
	// MaxWait caps the wait a lookup may ask for; 0 means DefaultMaxWait.
	MaxWait time.Duration
	// MaxConns is the most library connections served at once (a library
	// holds one per thread that accepts); 0 means DefaultMaxConns. Past
	// it, a connection is answered BUSY and closed.
	MaxConns int
	// Shared, when set, is given to every library in its WELCOME: lookups
	// of the connections it holds cost them no round trip. The server
	// does not close it.
	Shared *SharedTable
	// Logger receives the server's rare events; nil discards them.
	Logger *slog.Logger
}

// SocketConfig says where Listen makes the socket and who may connect.
type SocketConfig struct {
	// Path is the socket file; empty means DefaultSocket.
	Path string
	// Mode is the socket's permissions; 0 means DefaultSocketMode.
	Mode fs.FileMode
	// Group, when set (a name or a number), is given to the socket so that
	// its members may connect with Mode's group permission: the group of
	// the workers that load the library (www-data for nginx on Debian).
	Group string
}

// Listen makes the SOCK_SEQPACKET unix socket a Server serves on: its
// directory made (0750) if missing, a crashed server's leftover replaced,
// the file removed when the listener closes.
func Listen(c SocketConfig) (net.Listener, error) {
	if c.Path == "" {
		c.Path = DefaultSocket
	}
	if c.Mode == 0 {
		c.Mode = DefaultSocketMode
	}
	return unixsock.Listen(unixsock.Config{Network: "unixpacket", Path: c.Path, Mode: c.Mode, Group: c.Group})
}

// Server answers the preload library's lookups.
type Server struct {
	lookup   Lookuper
	cfg      Config
	trusted  []netip.Prefix
	welcome  Welcome
	ranges   []Ranges
	log      *slog.Logger
	warnedAt atomic.Int64 // when the last version mismatch was logged

	ctx    context.Context // ends when Close begins: waiting lookups give up
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*net.UnixConn]struct{}
	wg        sync.WaitGroup

	c counters

	// connDone, when set (by tests), is called after a connection is gone.
	connDone func()
}

// New returns a Server answering from l. It serves nothing until Serve.
func New(l Lookuper, cfg Config) (*Server, error) {
	if l == nil {
		return nil, errors.New("preload: nil Lookuper")
	}
	switch {
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("preload config: MaxWait is negative (%v)", cfg.MaxWait)
	case cfg.MaxConns < 0:
		return nil, fmt.Errorf("preload config: MaxConns is negative (%d)", cfg.MaxConns)
	case len(cfg.Trusted) > MaxRanges:
		return nil, fmt.Errorf("preload config: %d trusted ranges, the protocol carries at most %d", len(cfg.Trusted), MaxRanges)
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	cfg.MaxWait = min(cfg.MaxWait, time.Duration(1<<32-1)*time.Microsecond)
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		lookup:    l,
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*net.UnixConn]struct{}),
	}
	for i, p := range cfg.Trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("preload config: Trusted[%d] %v is not a CIDR range", i, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.trusted = append(s.trusted, p.Masked())
	}
	var flags uint8
	if len(s.trusted) == 0 {
		flags |= FlagAllTrusted
	}
	s.welcome = Welcome{
		Status:     StatusOK,
		Flags:      flags,
		Ranges:     uint16(len(s.trusted)),
		Generation: Generation(flags, s.trusted),
		MaxWait:    cfg.MaxWait,
	}
	if cfg.Shared != nil {
		s.welcome.Flags |= FlagSharedTable
		s.welcome.SharedSize = uint64(cfg.Shared.Size())
	}
	for i := 0; i < len(s.trusted); i += RangesPerFrame {
		s.ranges = append(s.ranges, Ranges{First: uint16(i), Prefixes: s.trusted[i:min(i+RangesPerFrame, len(s.trusted))]})
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Serve accepts library connections on l, which Listen made (or any
// "unixpacket" listener), until Shutdown or Close, which close l. It may
// be called for several listeners at once. It returns nil after Shutdown
// or Close, or the error that stopped l.
func (s *Server) Serve(l net.Listener) error {
	if n := l.Addr().Network(); n != "unixpacket" {
		return fmt.Errorf("preload: serve on a %s listener: the protocol needs unixpacket (SOCK_SEQPACKET); use Listen", n)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
				errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors or memory for a moment: the
				// connections in the backlog wait, the libraries fall
				// back meanwhile.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("preload: accept: %w", err)
		}
		backoff = 0
		c, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		s.start(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// start serves c in a goroutine of its own, or refuses it when the server
// is full or closing.
func (s *Server) start(c *net.UnixConn) {
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.cfg.MaxConns {
		closing := s.closing
		s.mu.Unlock()
		var f Frame
		st := StatusBusy
		if closing {
			st = StatusNotServing
		} else {
			s.c.connsRefused.Add(1)
		}
		w := Welcome{Status: st}
		w.Put(&f, 0)
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		c.Write(f[:])
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.c.connsAccepted.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveConn(c)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		if s.connDone != nil {
			s.connDone()
		}
	}()
}

// serveConn answers c's frames, one at a time, until c ends or breaks the
// protocol.
func (s *Server) serveConn(c *net.UnixConn) {
	// One byte more than a frame, so that a longer message shows.
	var buf [FrameSize + 1]byte
	in := (*Frame)(buf[:FrameSize])
	var out Frame
	var pid uint32
	for {
		n, err := c.Read(buf[:])
		if err != nil {
			return
		}
		h, err := ParseHeader(in, n)
		switch {
		case errors.Is(err, ErrVersion):
			s.c.badVersion.Add(1)
			s.warnVersion(h, pid)
			w := Welcome{Status: StatusBadVersion}
			w.Put(&out, h.ID)
			s.write(c, &out)
			return
		case err != nil:
			s.c.badFrames.Add(1)
			return
		}
		switch h.Type {
		case TypeHello:
			s.c.hellos.Add(1)
			pid = ParseHello(in).PID
			s.welcome.Put(&out, h.ID)
			if !s.writeWelcome(c, &out) {
				return
			}
			for i := range s.ranges {
				s.ranges[i].Put(&out, h.ID)
				if !s.write(c, &out) {
					return
				}
			}
		case TypeLookup:
			l, err := ParseLookup(in)
			s.c.add(&l.Report)
			a := Answer{Status: StatusBadRequest, Generation: s.welcome.Generation}
			if err != nil {
				s.c.badRequests.Add(1)
			} else {
				s.answer(&l, &a)
			}
			a.Put(&out, h.ID)
			if !s.write(c, &out) {
				return
			}
		case TypeReport:
			r := ParseReport(in)
			s.c.reports.Add(1)
			s.c.add(&r)
		default:
			s.c.badRequests.Add(1)
			a := Answer{Status: StatusBadRequest, Generation: s.welcome.Generation}
			a.Put(&out, h.ID)
			if !s.write(c, &out) {
				return
			}
		}
	}
}

// answer looks l up and fills a.
func (s *Server) answer(l *Lookup, a *Answer) {
	s.c.lookups.Add(1)
	if !s.trusts(l.Peer.Addr()) {
		// The library's ranges are stale, or it holds fewer than toad has:
		// the table never holds such a peer, so do not wait for it.
		s.c.untrusted.Add(1)
		s.c.notFound.Add(1)
		a.Status = StatusNotFound
		return
	}
	e, err := s.lookup.Lookup(s.ctx, correlate.KeyOf(l.Peer, l.Local), min(l.Wait, s.cfg.MaxWait))
	switch {
	case err == nil:
		s.c.found.Add(1)
		a.Status, a.Client = StatusOK, e.Client
	case errors.Is(err, correlate.ErrClosed), s.ctx.Err() != nil:
		s.c.notServing.Add(1)
		a.Status = StatusNotServing
	case errors.Is(err, correlate.ErrNotFound):
		s.c.notFound.Add(1)
		a.Status = StatusNotFound
	default:
		s.c.lookupErrors.Add(1)
		a.Status = StatusNotServing
	}
}

func (s *Server) trusts(a netip.Addr) bool {
	if len(s.trusted) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// writeWelcome sends a WELCOME frame with the shared table's descriptor,
// or without the table once it is closed.
func (s *Server) writeWelcome(c *net.UnixConn, f *Frame) bool {
	if s.cfg.Shared == nil {
		return s.write(c, f)
	}
	var err error
	sent := s.cfg.Shared.withRights(func(oob []byte) {
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, _, err = c.WriteMsgUnix(f[:], oob, nil)
	})
	if !sent {
		f[9] &^= FlagSharedTable
		return s.write(c, f)
	}
	if err != nil {
		s.c.writeErrors.Add(1)
		return false
	}
	return true
}

// write sends f on c, and reports whether it could.
func (s *Server) write(c *net.UnixConn, f *Frame) bool {
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(f[:]); err != nil {
		s.c.writeErrors.Add(1)
		return false
	}
	return true
}

// warnVersion logs a library of another protocol version, at most once a
// minute: each such library retries once per circuit-breaker interval.
func (s *Server) warnVersion(h Header, pid uint32) {
	now := time.Now().UnixNano()
	last := s.warnedAt.Load()
	if now-last < int64(time.Minute) || !s.warnedAt.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("a preload library speaks another protocol version: it falls back to the kernel's addresses; install the library that comes with this toad",
		"library_version", h.Version, "version", Version, "pid", pid)
}

// Shutdown stops the server gracefully: the listeners close, idle
// connections are closed (their libraries fall back and reconnect to the
// next toad), lookups in flight are answered. When ctx ends first,
// Shutdown closes the rest as Close does and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	s.mu.Lock()
	for c := range s.conns {
		// A connection waiting for its next frame stops; one answering
		// finishes, then stops at its next read.
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections close,
// waiting lookups give up and are answered NOT_SERVING if the library is
// still there. It waits for the connections' goroutines and may be called
// more than once.
func (s *Server) Close() error {
	s.beginClose()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// beginClose refuses new connections and closes the listeners.
func (s *Server) beginClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
}
