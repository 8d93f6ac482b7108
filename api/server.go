package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/toad-project/toad/correlate"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxWait              = 5 * time.Second
	DefaultMaxBatch             = 10000
	DefaultMaxWatchers          = 64
	DefaultWatchBuffer          = 1024
	DefaultMaxConcurrentStreams = 256
	DefaultMaxRecvMsgSize       = 1 << 20
	DefaultMaxSendMsgSize       = 4 << 20
)

// NoWait, as Config.MaxWait, lets no Lookup wait: every lookup answers
// from what the table holds at once, whatever wait it asks for.
const NoWait time.Duration = -1

// Bounds of the health-only server of ServeHealth.
const (
	healthMaxMsgSize = 4 << 10
	healthMaxStreams = 16
)

// Config bounds a Server. Zero fields take the defaults above.
type Config struct {
	// MaxWait caps the wait a Lookup may ask for; NoWait lets none wait.
	MaxWait time.Duration
	// MaxBatch is the most keys one BatchLookup may hold.
	MaxBatch int
	// MaxWatchers is the most Watch streams served at once.
	MaxWatchers int
	// WatchBuffer is how many events each watcher may fall behind before it
	// loses some.
	WatchBuffer int
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	MaxConcurrentStreams uint32
	// MaxRecvMsgSize and MaxSendMsgSize bound message sizes, in bytes.
	MaxRecvMsgSize int
	MaxSendMsgSize int
	// Drain is how long Shutdown reports NOT_SERVING to health checks
	// before it stops taking calls, so that load balancers and clients
	// watching health move away first. Zero skips the drain.
	Drain time.Duration
	// Counters, when set, adds other components' counters (the capture's,
	// for example) to GetStats. It must be safe for concurrent use.
	Counters func() map[string]uint64
	// Options are added after the server's own, for interceptors and
	// stats handlers (metrics, tracing).
	Options []grpc.ServerOption
	// Logger receives the server's rare events; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxBatch", int64(c.MaxBatch)},
		{"MaxWatchers", int64(c.MaxWatchers)}, {"WatchBuffer", int64(c.WatchBuffer)},
		{"MaxRecvMsgSize", int64(c.MaxRecvMsgSize)}, {"MaxSendMsgSize", int64(c.MaxSendMsgSize)},
		{"Drain", int64(c.Drain)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("api config: %s is negative (%d)", f.name, f.v)
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	switch {
	case c.MaxWait == 0:
		c.MaxWait = DefaultMaxWait
	case c.MaxWait < 0 && c.MaxWait != NoWait:
		return c, fmt.Errorf("api config: MaxWait is negative (%d): want NoWait, 0 for the default, or a bound", c.MaxWait)
	}
	def(&c.MaxBatch, DefaultMaxBatch)
	def(&c.MaxWatchers, DefaultMaxWatchers)
	def(&c.WatchBuffer, DefaultWatchBuffer)
	def(&c.MaxRecvMsgSize, DefaultMaxRecvMsgSize)
	def(&c.MaxSendMsgSize, DefaultMaxSendMsgSize)
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// ServiceName is the full name of the lookup service, as health checks
// and reflection know it.
const ServiceName = "toad.v1.LookupService"

// Server serves the lookup service, health and reflection over gRPC.
type Server struct {
	cfg        Config
	grpc       *grpc.Server
	healthOnly *grpc.Server // grpc.health.v1 alone, for ServeHealth
	health     *health.Server
	svc        *service

	serving  atomic.Bool
	mu       sync.Mutex // orders SetServing against shutdown
	down     bool       // Shutdown or Close has begun
	stopOnce sync.Once
	doneOnce sync.Once
	stopping chan struct{} // closed when Watch streams must end
	done     chan struct{} // closed when the gRPC server has stopped
}

// New returns a Server answering from t. It serves nothing until Serve.
func New(t *correlate.Table, cfg Config) (*Server, error) {
	if t == nil {
		return nil, errors.New("api: nil table")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		health:   health.NewServer(),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.svc = &service{table: t, cfg: &s.cfg, stopping: s.stopping, serving: &s.serving,
		watchers: make(chan struct{}, cfg.MaxWatchers)}
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		// Local clients may ping to keep a Watch alive; anything more
		// eager than this is abuse and gets the connection closed.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Find dead watchers: ping an idle connection after a minute, drop
		// it when the ping goes unanswered.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    time.Minute,
			Timeout: 20 * time.Second,
		}),
	}, cfg.Options...)...)
	toadv1.RegisterLookupServiceServer(s.grpc, s.svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	// Health checks are small and few; this server may face the network.
	s.healthOnly = grpc.NewServer(
		grpc.MaxRecvMsgSize(healthMaxMsgSize),
		grpc.MaxSendMsgSize(healthMaxMsgSize),
		grpc.MaxConcurrentStreams(healthMaxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second}),
		grpc.ConnectionTimeout(5*time.Second),
	)
	healthpb.RegisterHealthServer(s.healthOnly, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return s, nil
}

// Serve accepts connections on l until Shutdown or Close, which close l.
// It may be called for several listeners at once, each from its own
// goroutine. It returns nil after Shutdown or Close, or the error that
// stopped l.
func (s *Server) Serve(l net.Listener) error {
	err := s.grpc.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
	}
	return err
}

// ServeHealth serves grpc.health.v1, and nothing else, on l until Shutdown
// or Close, which close l. It reports the same status as the health service
// of Serve's listeners. It is meant for probes that dial from the network
// (a kubelet dials the pod's IP), so that the lookups, which reveal client
// addresses, need not be reachable there. It returns as Serve does.
func (s *Server) ServeHealth(l net.Listener) error {
	err := s.healthOnly.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
	}
	return err
}

// SetServing says whether the source of connections is attached: a live
// capture running, or a replay loaded. Health checks answer SERVING only
// while it is. Once Shutdown or Close has begun, it changes nothing.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return
	}
	s.serving.Store(serving)
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(ServiceName, st)
}

// Shutdown stops the server gracefully: health turns NOT_SERVING for the
// configured drain, Watch streams end with UNAVAILABLE, calls in flight
// finish, then the listeners close. When ctx ends first, the remaining
// calls are cut off and Shutdown returns ctx's error. It is safe to call
// more than once and together with Close.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.goDown() {
		// Another Shutdown or Close is under way: wait for it.
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.cfg.Drain > 0 {
		t := time.NewTimer(s.cfg.Drain)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-s.done: // Close cut the drain short
		}
		t.Stop()
	}
	s.stopOnce.Do(func() { close(s.stopping) })
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = ctx.Err()
		s.cfg.Logger.Warn("graceful stop cut short", "err", err)
		s.grpc.Stop()
		<-stopped
	}
	// Health answered NOT_SERVING until now; its calls are cut, not
	// waited for: a health Watch would otherwise hold the stop.
	s.healthOnly.Stop()
	s.markDone()
	return err
}

// Close stops the server at once: listeners close, calls in flight are
// cut off. It is idempotent.
func (s *Server) Close() error {
	s.goDown()
	s.stopOnce.Do(func() { close(s.stopping) })
	s.grpc.Stop()
	s.healthOnly.Stop()
	s.markDone()
	return nil
}

// goDown turns health to NOT_SERVING for good. It reports whether this
// call did it.
func (s *Server) goDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false
	}
	s.down = true
	s.serving.Store(false)
	s.health.Shutdown()
	return true
}

func (s *Server) markDone() { s.doneOnce.Do(func() { close(s.done) }) }
