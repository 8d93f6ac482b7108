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
	"github.com/toad-project/toad/journal"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxWait              = 5 * time.Second
	DefaultMaxBatch             = 10000
	DefaultMaxWatchers          = 64
	DefaultWatchBuffer          = 1024
	DefaultWatchSendTimeout     = 10 * time.Second
	DefaultMaxConcurrentStreams = 256
	DefaultMaxRecvMsgSize       = 1 << 20
	DefaultMaxSendMsgSize       = 4 << 20
)

// DefaultConn bounds the connections of the API listeners: local clients
// that keep a connection for their lookups, and watchers.
var DefaultConn = ConnLimits{Idle: 5 * time.Minute, Age: 24 * time.Hour, AgeGrace: time.Minute}

// DefaultHealthConn bounds the connections of the health listener, which
// may face the network: probes dial anew for each check.
var DefaultHealthConn = ConnLimits{Idle: 10 * time.Second, Age: 5 * time.Minute, AgeGrace: 10 * time.Second}

// ConnLimits bound how long a connection may stay, so that clients that
// forget theirs, or hold them open on purpose, do not keep them for good.
// Zero fields take the defaults of the listener's kind.
type ConnLimits struct {
	// Idle closes a connection that has had no call in flight for this
	// long.
	Idle time.Duration
	// Age closes any connection this old (give or take 10%), once its
	// calls in flight have had AgeGrace to finish; Watch streams end then.
	Age      time.Duration
	AgeGrace time.Duration
}

func (l ConnLimits) withDefaults(def ConnLimits) (ConnLimits, error) {
	for _, d := range []*time.Duration{&l.Idle, &l.Age, &l.AgeGrace} {
		if *d < 0 {
			return l, fmt.Errorf("api config: negative connection limit %v", *d)
		}
	}
	if l.Idle == 0 {
		l.Idle = def.Idle
	}
	if l.Age == 0 {
		l.Age = def.Age
	}
	if l.AgeGrace == 0 {
		l.AgeGrace = def.AgeGrace
	}
	return l, nil
}

// handshakeTimeout bounds how long a new connection may take to send the
// HTTP/2 preface.
const handshakeTimeout = 5 * time.Second

// flushGrace is how long Shutdown lets a connection flush what its calls,
// all returned, wrote, and a blocked watcher's send complete, before it
// closes the connection: only a client that does not read needs more.
const flushGrace = 500 * time.Millisecond

// NoWait, as Config.MaxWait, lets no Lookup wait: every lookup answers
// from what the table holds at once, whatever wait it asks for.
const NoWait time.Duration = -1

// Bounds of the health-only server of ServeHealth.
const (
	healthMaxMsgSize = 4 << 10
	healthMaxStreams = 16
	healthBufferSize = 4 << 10 // per connection, each way
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
	// WatchSendTimeout ends a Watch stream whose client has not taken an
	// event for this long (its send blocked on flow control): its
	// connection is closed, and its place goes to the next watcher.
	WatchSendTimeout time.Duration
	// Conn bounds the connections of the listeners Serve serves,
	// HealthConn those of ServeHealth's.
	Conn, HealthConn ConnLimits
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
	// Journal, when set, adds the counters of the journal that keeps the
	// table on disk to GetStats; it reports false while there is none. It
	// must be safe for concurrent use.
	Journal func() (journal.Stats, bool)
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
		{"Drain", int64(c.Drain)}, {"WatchSendTimeout", int64(c.WatchSendTimeout)},
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
	if c.WatchSendTimeout == 0 {
		c.WatchSendTimeout = DefaultWatchSendTimeout
	}
	var err error
	if c.Conn, err = c.Conn.withDefaults(DefaultConn); err != nil {
		return c, err
	}
	if c.HealthConn, err = c.HealthConn.withDefaults(DefaultHealthConn); err != nil {
		return c, err
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
	doneOnce sync.Once
	stopping context.Context // done when Watch streams must end
	stop     context.CancelFunc
	done     chan struct{} // closed when the gRPC server has stopped

	// Calls in flight on the API listeners, so that Shutdown knows when
	// what is left is only bytes a client does not read.
	calls    atomic.Int64
	draining atomic.Bool   // Shutdown waits for calls to reach zero
	idle     chan struct{} // a token when calls reach zero while draining
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
		cfg:    cfg,
		health: health.NewServer(),
		done:   make(chan struct{}),
		idle:   make(chan struct{}, 1),
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.svc = &service{table: t, cfg: &s.cfg, stopping: s.stopping, serving: &s.serving,
		watchers: make(chan struct{}, cfg.MaxWatchers), log: cfg.Logger}
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(connCredentials{}), // so that a watcher's connection can be closed
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.ConnectionTimeout(handshakeTimeout),
		// Local clients may ping to keep a Watch alive; anything more
		// eager than this is abuse and gets the connection closed.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Find dead watchers: ping an idle connection after a minute, drop
		// it when the ping goes unanswered. Forget idle and old ones.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
			MaxConnectionIdle:     cfg.Conn.Idle,
			MaxConnectionAge:      cfg.Conn.Age,
			MaxConnectionAgeGrace: cfg.Conn.AgeGrace,
		}),
		grpc.ChainUnaryInterceptor(s.countUnary),
		grpc.ChainStreamInterceptor(s.countStream),
	}, cfg.Options...)...)
	toadv1.RegisterLookupServiceServer(s.grpc, s.svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	// Health checks are small and few; this server may face the network.
	s.healthOnly = grpc.NewServer(
		grpc.MaxRecvMsgSize(healthMaxMsgSize),
		grpc.MaxSendMsgSize(healthMaxMsgSize),
		grpc.MaxConcurrentStreams(healthMaxStreams),
		grpc.ReadBufferSize(healthBufferSize),
		grpc.WriteBufferSize(healthBufferSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     cfg.HealthConn.Idle,
			MaxConnectionAge:      cfg.HealthConn.Age,
			MaxConnectionAgeGrace: cfg.HealthConn.AgeGrace,
		}),
		grpc.ConnectionTimeout(handshakeTimeout),
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
func (s *Server) Serve(l net.Listener) error { return s.stopped(s.grpc.Serve(l)) }

// ServeHealth serves grpc.health.v1, and nothing else, on l until Shutdown
// or Close, which close l. It reports the same status as the health service
// of Serve's listeners. It is meant for probes that dial from the network
// (a kubelet dials the pod's IP), so that the lookups, which reveal client
// addresses, need not be reachable there. It returns as Serve does.
func (s *Server) ServeHealth(l net.Listener) error { return s.stopped(s.healthOnly.Serve(l)) }

// stopped is nil for what a gRPC server's Serve returns once the Server
// stops, and err otherwise.
func (s *Server) stopped(err error) error {
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
// finish, then the listeners close. A watcher whose client does not read
// its stream, and any connection that still holds unread bytes once every
// call has returned, is closed after a short grace rather than waited
// for. When ctx ends first, the remaining calls are cut off and Shutdown
// returns ctx's error. It is safe to call more than once and together
// with Close.
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
	s.stop()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-s.callsDone(ctx):
		// Every call returned: what is left is bytes a client does not
		// read. Give the others the grace to flush theirs.
		t := time.NewTimer(flushGrace)
		select {
		case <-stopped:
		case <-t.C:
			s.cfg.Logger.Info("closing the connections of clients that do not read what they were sent")
			s.grpc.Stop()
			<-stopped
		case <-ctx.Done():
		}
		t.Stop()
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		select {
		case <-stopped:
		default:
			err = ctx.Err()
			s.cfg.Logger.Warn("graceful stop cut short", "err", err)
			s.grpc.Stop()
			<-stopped
		}
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
	s.stop()
	s.grpc.Stop()
	s.healthOnly.Stop()
	s.markDone()
	return nil
}

// countUnary and countStream count the calls in flight.
func (s *Server) countUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.calls.Add(1)
	defer s.callReturned()
	return h(ctx, req)
}

func (s *Server) countStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	s.calls.Add(1)
	defer s.callReturned()
	return h(srv, ss)
}

func (s *Server) callReturned() {
	if s.calls.Add(-1) == 0 && s.draining.Load() {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// callsDone returns a channel closed once no call is in flight, or ctx
// ends. Only Shutdown calls it, once.
func (s *Server) callsDone(ctx context.Context) <-chan struct{} {
	s.draining.Store(true)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for s.calls.Load() > 0 {
			select {
			case <-s.idle:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
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
