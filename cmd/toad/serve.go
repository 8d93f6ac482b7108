package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

const serveUsage = `usage: toad serve [flags]

Captures TCP segments carrying TOAs, keeps the connection table, and
answers the toad.v1.LookupService over gRPC on a unix socket and on
loopback TCP. With --pcap it replays capture files into the table instead
of capturing, then keeps serving what they held (the table is then frozen:
nothing expires).

Health (grpc.health.v1) turns SERVING once the capture is attached or the
files are loaded. SIGINT or SIGTERM: NOT_SERVING for --drain, then a
graceful stop bounded by --shutdown-timeout.

flags:
`

// serveConfig is toad serve's command line.
type serveConfig struct {
	Socket          string // "" serves no unix socket
	Listen          string // "" serves no TCP
	AllowRemote     bool
	Trusted         []netip.Prefix
	Dialects        *toa.Set
	Linger          time.Duration
	MaxWait         time.Duration
	Interface       string
	Pcaps           []string
	Drain           time.Duration
	ShutdownTimeout time.Duration
	Verbose         bool
}

func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, stdout)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return runServe(ctx, cfg, log)
}

// parseServe parses toad serve's arguments; -h prints the usage to help.
func parseServe(args []string, help io.Writer) (serveConfig, error) {
	cfg := serveConfig{
		Socket:          api.DefaultSocket,
		Listen:          api.DefaultListen,
		Dialects:        toa.DefaultSet(),
		Linger:          correlate.DefaultLinger,
		MaxWait:         api.DefaultMaxWait,
		Drain:           time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
	fs := flag.NewFlagSet("toad serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "unix socket `path` to serve on (mode 0660); empty for none")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP `address` to serve on; empty for none")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a --listen address that is not loopback: the API reveals client addresses")
	fs.Func("trusted-proxies", "comma-separated CIDR `ranges` of the proxies whose TOAs to believe (default: every peer)", func(s string) error {
		ps, err := parsePrefixes(s)
		cfg.Trusted = append(cfg.Trusted, ps...)
		return err
	})
	fs.Func("dialects", "TOA dialects to read: default, all, none, or a `list` such as 200/8,254/20 or +253/8,-28/7", func(s string) error {
		set, err := toa.ParseSet(s)
		if err == nil {
			cfg.Dialects = set
		}
		return err
	})
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "how long a closing connection is still answered")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "the longest a lookup may wait for a handshake in flight")
	fs.StringVar(&cfg.Interface, "interface", "", "interface to capture on (default: every interface)")
	fs.Func("pcap", "replay this pcap or pcapng `file` instead of capturing live (repeatable)", func(s string) error {
		cfg.Pcaps = append(cfg.Pcaps, s)
		return nil
	})
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "on shutdown, how long health reports NOT_SERVING before the server stops taking calls")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "bound on the graceful stop, drain included")
	fs.BoolVar(&cfg.Verbose, "v", false, "log debug messages")
	rest, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(help, serveUsage)
		fs.SetOutput(help)
		fs.PrintDefaults()
		return cfg, err
	}
	if err != nil {
		return cfg, err
	}
	switch {
	case len(rest) > 0:
		return cfg, usagef("unexpected arguments %q (capture files go with --pcap FILE)", rest)
	case cfg.Socket == "" && cfg.Listen == "":
		return cfg, usagef("--socket and --listen are both empty: nothing to serve on")
	case cfg.Linger <= 0:
		return cfg, usagef("--linger %v: want a positive duration such as 60s", cfg.Linger)
	case cfg.MaxWait < 0:
		return cfg, usagef("--max-wait %v: want 0 or more", cfg.MaxWait)
	case cfg.Drain < 0 || cfg.ShutdownTimeout <= 0:
		return cfg, usagef("--drain %v, --shutdown-timeout %v: want a drain of 0 or more and a positive timeout", cfg.Drain, cfg.ShutdownTimeout)
	case len(cfg.Pcaps) > 0 && cfg.Interface != "":
		return cfg, usagef("--interface and --pcap: capture live or replay files, not both")
	}
	return cfg, nil
}

// source feeds the table: a live capture, or capture files replayed once.
type source interface {
	// counters are the source's counters for GetStats.
	counters() map[string]uint64
	// done is closed when a live capture fails.
	done() <-chan struct{}
	err() error
	close() error
}

func runServe(ctx context.Context, cfg serveConfig, log *slog.Logger) (err error) {
	table, err := correlate.New(correlate.Config{Trusted: cfg.Trusted, Linger: cfg.Linger})
	if err != nil {
		return err
	}
	defer table.Close()
	if len(cfg.Trusted) == 0 {
		log.Warn("no --trusted-proxies: believing a TOA from any peer, so anyone who reaches this host directly can forge a client address")
	}

	var src atomic.Pointer[source] // set once the source is attached
	srv, err := api.New(table, api.Config{
		MaxWait: cfg.MaxWait,
		Drain:   cfg.Drain,
		Logger:  log.With("component", "api"),
		Counters: func() map[string]uint64 {
			if s := src.Load(); s != nil {
				return (*s).counters()
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	listeners, err := listen(cfg)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close() // stops the Serve goroutines before wg.Wait
	served := make(chan error, len(listeners))
	for _, l := range listeners {
		log.Info("listening", "network", l.Addr().Network(), "addr", l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil {
				served <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}

	var s source
	if len(cfg.Pcaps) > 0 {
		s, err = replaySource(ctx, cfg, table, log)
	} else {
		s, err = liveSource(cfg, table, log, &wg)
	}
	if err != nil {
		return err
	}
	defer s.close()
	src.Store(&s)
	srv.SetServing(true)
	log.Info("serving", "connections", table.Len())

	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain", cfg.Drain)
	case err = <-served:
	case <-s.done():
		err = fmt.Errorf("capture stopped: %w", s.err())
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("graceful stop cut short", "timeout", cfg.ShutdownTimeout)
	}
	return err
}

// listen opens the configured listeners, closing them all on failure.
func listen(cfg serveConfig) ([]net.Listener, error) {
	var ls []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	if cfg.Socket != "" {
		l, err := api.ListenUnix(cfg.Socket, api.DefaultSocketMode)
		if err != nil {
			return fail(err)
		}
		ls = append(ls, l)
	}
	if cfg.Listen != "" {
		l, err := api.ListenTCP(cfg.Listen, cfg.AllowRemote)
		if err != nil {
			return fail(fmt.Errorf("%w (--allow-remote)", err))
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// replayed is the source of --pcap: files replayed once, at start.
type replayed struct{ stats capture.Stats }

func replaySource(ctx context.Context, cfg serveConfig, table *correlate.Table, log *slog.Logger) (*replayed, error) {
	dec := decode.New(cfg.Dialects)
	sink := &incoming{table: table, servers: map[correlate.Key]struct{}{}}
	r := &replayed{}
	for _, name := range cfg.Pcaps {
		st, err := replayFile(ctx, name, dec, sink)
		addStats(&r.stats, &st)
		if err != nil {
			return nil, fmt.Errorf("--pcap %s: %w", name, err)
		}
		log.Info("replayed", "file", name, "packets", st.Packets, "records", st.Records, "rejected", st.Rejected())
	}
	return r, nil
}

func (r *replayed) counters() map[string]uint64 { return captureCounters(&r.stats) }
func (r *replayed) done() <-chan struct{}       { return nil }
func (r *replayed) err() error                  { return nil }
func (r *replayed) close() error                { return nil }

// live is the source of a live capture, with the ticker that expires
// closing connections on the wall clock.
type live struct {
	c    *capture.Capture
	stop chan struct{}
	once sync.Once
}

func liveSource(cfg serveConfig, table *correlate.Table, log *slog.Logger, wg *sync.WaitGroup) (*live, error) {
	c, err := capture.Open(capture.Config{
		Interface: cfg.Interface,
		Dialects:  cfg.Dialects,
		Logger:    log.With("component", "capture"),
	}, table)
	if err != nil {
		return nil, err
	}
	l := &live{c: c, stop: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				table.Expire(now)
			case <-l.stop:
				return
			}
		}
	}()
	st := c.Stats()
	log.Info("capturing", "interface", cmp.Or(cfg.Interface, "all"), "readers", st.Readers, "filter", st.Filter)
	return l, nil
}

func (l *live) counters() map[string]uint64 {
	st := l.c.Stats()
	return captureCounters(&st)
}
func (l *live) done() <-chan struct{} { return l.c.Done() }
func (l *live) err() error            { return l.c.Err() }
func (l *live) close() error {
	l.once.Do(func() { close(l.stop) })
	return l.c.Close()
}

func captureCounters(st *capture.Stats) map[string]uint64 {
	return map[string]uint64{
		"capture_packets":        st.Packets,
		"capture_records":        st.Records,
		"capture_rejected":       st.Rejected(),
		"capture_kernel_packets": st.KernelPackets,
		"capture_drops":          st.Drops,
		"capture_freezes":        st.Freezes,
	}
}
