package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/counter"
	"github.com/toad-project/toad/internal/metrics"
	"github.com/toad-project/toad/internal/unixsock"
	"github.com/toad-project/toad/replay"
)

// source feeds the table: a live capture, or capture files replayed once.
type source interface {
	stats() capture.Stats
	kind() metrics.Source
	// done is closed when a live capture fails.
	done() <-chan struct{}
	err() error
	close() error
}

// Run runs the daemon until ctx ends (SIGINT, SIGTERM) or something
// fails, then stops in order: not ready, drain, graceful stop of the API
// and of the preload socket (with its shared table), capture, state
// directory. It returns nil after a clean stop on ctx.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	root := cfg.Logger
	if root == nil {
		root = slog.New(slog.DiscardHandler)
	}
	// The daemon's own lines (starting, listening, serving, shutting down)
	// carry no component; its parts' do.
	log := root
	stateLog := root.With("component", "state")
	// Nothing is logged before the checks and the listeners succeed: a
	// mistake in the settings costs one line.
	if err := preflight(cfg); err != nil {
		return err
	}

	table, err := correlate.New(cfg.tableConfig())
	if err != nil {
		return err
	}
	defer table.Close()

	var src atomic.Pointer[source] // set once the source is attached
	captureStats := func() (capture.Stats, metrics.Source) {
		if s := src.Load(); s != nil {
			return (*s).stats(), (*s).kind()
		}
		return capture.Stats{}, metrics.NoSource
	}
	var js journalStats // set once the state directory is open
	latency := metrics.NewLatency()
	maxWait := cfg.MaxWait
	if maxWait == 0 {
		maxWait = api.NoWait // --max-wait 0: no lookup waits
	}
	var pre atomic.Pointer[preloadService] // set once its socket is open
	preloadStats := func() (preload.Stats, bool) { return pre.Load().stats() }
	srv, err := api.New(table, api.Config{
		MaxWait: maxWait,
		Logger:  root.With("component", "api"),
		Counters: func() map[string]uint64 {
			var m map[string]uint64
			if st, k := captureStats(); k != metrics.NoSource {
				m = captureCounters(&st)
			}
			if st, ok := preloadStats(); ok {
				if m == nil {
					m = map[string]uint64{}
				}
				maps.Copy(m, metrics.PreloadCounters(&st))
			}
			return m
		},
		Journal: js.get,
		Options: []grpc.ServerOption{grpc.ChainUnaryInterceptor(latency.UnaryServerInterceptor())},
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	b := cfg.Build
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewCollector(table, captureStats),
		metrics.NewJournalCollector(js.get),
		metrics.NewPreloadCollector(preloadStats),
		latency,
		metrics.BuildInfo(b.Version, b.Revision, b.Go),
	)
	var ready atomic.Bool
	httpSrv := newHTTPServer(reg, &ready, root.With("component", "http"))

	ls, err := listen(cfg)
	if err != nil {
		return err
	}
	// The preload socket opens with the others, and the libraries are
	// copied, before anything is logged; it is served once toad serves.
	p, err := startPreload(cfg, table, root.With("component", "preload"))
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	pre.Store(p)
	defer p.close()
	// A live capture is attached before anything is logged, so that a
	// missing capability, like a bad setting, costs one line. Replayed
	// files load while health answers NOT_SERVING, below.
	var s source
	if len(cfg.Pcaps) == 0 {
		if s, err = liveSource(cfg, table, root.With("component", "capture")); err != nil {
			for _, l := range ls {
				l.Close()
			}
			p.close()
			return err
		}
		defer s.close()
		src.Store(&s)
	}
	log.Info("starting", "version", b.Version, "revision", b.Revision, "go", b.Go)
	for _, k := range cfg.UnknownEnv {
		log.Warn("environment variable names no setting of toad serve: ignored", "var", k)
	}
	if len(cfg.FromEnv) > 0 {
		log.Info("settings from the environment", "vars", cfg.FromEnv)
	}
	if cfg.Snapshot != "" {
		log.Warn("--snapshot is deprecated: the table is kept in a state directory as it changes; name it with --state-dir",
			"snapshot", cfg.Snapshot, "state_dir", stateDirOf(cfg.StateDir, cfg.Snapshot))
	}
	if cfg.BlockTimeout != 0 {
		log.Warn("--block-timeout is deprecated and ignored: the capture hands each packet over as it arrives, with no block to time out; remove the setting",
			"block_timeout", cfg.BlockTimeout)
	}
	if len(cfg.Trusted) == 0 {
		log.Warn("no --trusted-proxies: believing a TOA from any peer, so anyone who reaches this host directly can forge a client address")
	}
	// Each listener now belongs to the server that serves it, which closes
	// it when it stops.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	defer httpSrv.Close()
	served := make(chan error, len(ls)+1)
	for _, l := range ls {
		log.Info(listeningMsg[l.role], "network", l.Addr().Network(), "addr", l.Addr().String(), "max_conns", l.maxConns)
		wg.Go(func() {
			var err error
			switch l.role {
			case roleAPI:
				err = srv.Serve(l)
			case roleHealth:
				err = srv.ServeHealth(l)
			case roleMetrics:
				if err = httpSrv.Serve(l); errors.Is(err, http.ErrServerClosed) {
					err = nil
				}
			}
			if err != nil {
				served <- fmt.Errorf("serve %s on %s: %w", l.role, l.Addr(), err)
			}
		})
	}

	if len(cfg.Pcaps) > 0 {
		if s, err = replaySource(ctx, cfg, table, root.With("component", "replay")); err != nil {
			return err
		}
		defer s.close()
		src.Store(&s)
	}

	// The capture runs before the state is recovered, so that no
	// handshake is missed meanwhile; connections it already saw keep what
	// it saw.
	var st *state
	if dir := stateDirOf(cfg.StateDir, cfg.Snapshot); dir != "" {
		if st, err = openState(dir, cfg.Snapshot, cfg.Fsync, s.kind() == metrics.Live, table, stateLog); err != nil {
			return fmt.Errorf("--state-dir %s: %w", dir, err)
		}
		js.s.Store(st)
	}

	stopHK := make(chan struct{})
	stopHousekeeping := sync.OnceFunc(func() { close(stopHK) })
	defer stopHousekeeping()
	if l, ok := s.(*live); ok {
		w := newWarner(root.With("component", "table"), warnEvery)
		wg.Go(func() { housekeep(stopHK, housekeepEvery, table, s.stats, l.c.Woken, cfg.IdleTimeout > 0, w) })
	}

	if p != nil {
		log.Info("listening for preload libraries", "network", "unixpacket", "addr", cfg.PreloadSocket,
			"shared_slots", cfg.PreloadSharedSlots)
		wg.Go(func() {
			if err := p.serve(); err != nil {
				served <- err
			}
		})
	}
	srv.SetServing(true)
	ready.Store(true)
	log.Info("serving", "connections", table.Len())
	if cfg.Ready != nil {
		a := addrs(ls)
		if p != nil {
			a.Preload = p.ln.Addr()
		}
		cfg.Ready(a)
	}

	var cause error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain", cfg.Drain, "timeout", cfg.ShutdownTimeout)
	case cause = <-served:
	case <-s.done():
		cause = fmt.Errorf("capture stopped: %w", s.err())
	}

	// Not ready: load balancers and clients watching health move away
	// during the drain, while lookups are still answered.
	ready.Store(false)
	srv.SetServing(false)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if cause == nil && cfg.Drain > 0 {
		t := time.NewTimer(cfg.Drain)
		select {
		case <-t.C:
		case <-sctx.Done():
		}
		t.Stop()
	}
	// The preload libraries' lookups in flight are answered meanwhile;
	// then they fall back to the kernel's addresses until the next toad.
	preloadDone := make(chan struct{})
	go func() {
		defer close(preloadDone)
		p.shutdown(sctx)
	}()
	srv.Shutdown(sctx) // logs when the bound cut it short
	<-preloadDone

	// The capture runs until the API has stopped, so that lookups waiting
	// for a handshake get it; the state directory then holds all it learnt.
	stopHousekeeping()
	if err := s.close(); err != nil && cause == nil {
		// Stopping anyway: an interface gone meanwhile changes nothing.
		log.Warn("capture failed while shutting down", "err", err)
	}
	if st != nil {
		// On error, the directory holds the last state written whole,
		// and the journal that followed it.
		if err := st.close(); err != nil {
			if cause != nil {
				cause = fmt.Errorf("%w; and %w", cause, err)
			} else {
				cause = err
			}
		}
	}
	hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
	defer hcancel()
	httpSrv.Shutdown(hctx)
	if cause == nil {
		log.Info("stopped")
	}
	return cause
}

// preflight checks what the settings ask of the system before anything
// starts, so that a mistake costs one clear line.
func preflight(cfg Config) error {
	if cfg.Interface != "" {
		if _, err := net.InterfaceByName(cfg.Interface); err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) {
				err = oe.Err
			}
			return fmt.Errorf("--interface %s: %w (ip link lists the interfaces)", cfg.Interface, err)
		}
	}
	for _, name := range cfg.Pcaps {
		if name == "-" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("--pcap %s: %w", name, errors.Unwrap(err)) // the path is said already
		}
		f.Close()
	}
	if cfg.Snapshot != "" {
		if fi, err := os.Stat(cfg.Snapshot); err == nil && fi.IsDir() {
			return fmt.Errorf("--snapshot %s is a directory: name it with --state-dir instead", cfg.Snapshot)
		}
	}
	if dir := stateDirOf(cfg.StateDir, cfg.Snapshot); dir != "" {
		flag := "--state-dir " + dir
		if cfg.StateDir == "" {
			flag = "--snapshot " + cfg.Snapshot + ": state directory " + dir
		}
		// A full disk is no reason not to serve: the journal warns of it
		// and catches up when it can.
		if _, err := checkState(dir); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	return nil
}

// Listener roles.
const (
	roleAPI     = "api"
	roleHealth  = "health"
	roleMetrics = "metrics"
)

// listeningMsg is the log message of each role's listener.
var listeningMsg = map[string]string{
	roleAPI:     "listening",
	roleHealth:  "listening for health checks",
	roleMetrics: "listening for metrics",
}

// listener is an open listener, what it serves, and how many connections
// it holds at most.
type listener struct {
	net.Listener
	role     string
	maxConns int
}

// listen opens the configured listeners, each bounded by its share of the
// process's descriptors, closing them all on failure.
func listen(cfg Config) ([]listener, error) {
	limit, err := fdLimit()
	if err != nil {
		return nil, fmt.Errorf("read the descriptor limit: %w", err)
	}
	apiListeners := 0
	for _, a := range []string{cfg.Socket, cfg.Listen} {
		if a != "" {
			apiListeners++
		}
	}
	budget, err := NewConnBudget(limit, cfg.Readers, apiListeners)
	if err != nil {
		return nil, err
	}
	var ls []listener
	fail := func(err error) ([]listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	add := func(l net.Listener, role string, n int) {
		ls = append(ls, listener{netutil.LimitListener(l, n), role, n})
	}
	if cfg.Socket != "" {
		sc := unixsock.Config{Network: "unix", Path: cfg.Socket, Mode: api.DefaultSocketMode}
		if cfg.SocketGroup != "" {
			// Looked up here so that a group that does not exist is named
			// by its flag; the socket gets its number.
			gid, err := unixsock.LookupGroup(cfg.SocketGroup)
			if err != nil {
				return fail(fmt.Errorf("--socket-group %s: %w", cfg.SocketGroup, err))
			}
			sc.Group = strconv.Itoa(gid)
		}
		l, err := unixsock.Listen(sc)
		if err != nil {
			return fail(fmt.Errorf("--socket %s: %w", cfg.Socket, err))
		}
		add(l, roleAPI, budget.API)
	}
	if cfg.Listen != "" {
		l, err := api.ListenTCP(cfg.Listen, cfg.AllowRemote)
		if err != nil {
			return fail(fmt.Errorf("--listen %s: %w", cfg.Listen, err))
		}
		add(l, roleAPI, budget.API)
	}
	for _, a := range []struct {
		flag, addr, role string
		maxConns         int
	}{
		{"health-listen", cfg.HealthListen, roleHealth, budget.Health},
		{"metrics-listen", cfg.MetricsListen, roleMetrics, budget.Metrics},
	} {
		if a.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fail(fmt.Errorf("--%s %s: %w", a.flag, a.addr, err))
		}
		add(l, a.role, a.maxConns)
	}
	return ls, nil
}

// addrs are the addresses ls are bound to.
func addrs(ls []listener) Addrs {
	var a Addrs
	for _, l := range ls {
		switch {
		case l.role == roleAPI && l.Addr().Network() == "unix":
			a.Socket = l.Addr()
		case l.role == roleAPI:
			a.API = l.Addr()
		case l.role == roleHealth:
			a.Health = l.Addr()
		case l.role == roleMetrics:
			a.Metrics = l.Addr()
		}
	}
	return a
}

// replayed is the source of --pcap: files replayed once, at start.
type replayed struct{ st capture.Stats }

func replaySource(ctx context.Context, cfg Config, table *correlate.Table, log *slog.Logger) (*replayed, error) {
	r := &replayed{}
	files, err := capture.ReplayFiles(ctx, cfg.Pcaps, capture.FilesConfig{
		Decoder: decode.New(cfg.Dialects),
		Done: func(f capture.File) {
			log.Info("replayed", "file", f.Name, "packets", f.Stats.Packets, "records", f.Stats.Records, "rejected", f.Stats.Rejected())
		},
	}, capture.NewIncoming(table, cfg.Linger))
	for i := range files {
		r.st.Add(&files[i].Stats)
	}
	if err != nil {
		return nil, fmt.Errorf("--pcap %w", err)
	}
	for _, s := range capture.Seams(files, replay.DefaultGap) {
		log.Warn("capture files leave a gap or overlap", "before", s.Before, "after", s.After, "gap", s.Gap())
	}
	table.Seal() // the files are all there is: no lookup waits for more
	return r, nil
}

func (r *replayed) stats() capture.Stats  { return r.st }
func (r *replayed) kind() metrics.Source  { return metrics.Replay }
func (r *replayed) done() <-chan struct{} { return nil }
func (r *replayed) err() error            { return nil }
func (r *replayed) close() error          { return nil }

// live is the source of a live capture.
type live struct{ c *capture.Capture }

func liveSource(cfg Config, table *correlate.Table, log *slog.Logger) (*live, error) {
	c, err := capture.Open(cfg.captureConfig(log), table)
	if err != nil {
		return nil, err
	}
	table.Attach(c) // lookups learn from the capture when it has caught up with them
	return &live{c: c}, nil
}

func (l *live) stats() capture.Stats  { return l.c.Stats() }
func (l *live) kind() metrics.Source  { return metrics.Live }
func (l *live) done() <-chan struct{} { return l.c.Done() }
func (l *live) err() error            { return l.c.Err() }
func (l *live) close() error          { return l.c.Close() }

// captureCounters are the capture's counters as GetStats reports them.
func captureCounters(st *capture.Stats) map[string]uint64 {
	m := make(map[string]uint64, len(capture.Counters)+len(capture.LiveCounters))
	for _, list := range [][]counter.Desc[capture.Stats]{capture.Counters, capture.LiveCounters} {
		for _, c := range list {
			m[c.Name] = c.Value(st)
		}
	}
	return m
}
