package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// DefaultTarget is where toad serves by default.
const DefaultTarget = "unix:///run/toad/toad.sock"

// DefaultWait is how long a lookup waits for a handshake toad has not seen
// yet: the TOA may arrive with the very ACK that let accept return.
const DefaultWait = 500 * time.Millisecond

// ErrNotFound reports a connection toad does not know: the proxy sent no
// TOA, its peer is not a trusted proxy, or the connection did not come
// through a proxy at all.
var ErrNotFound = errors.New("toad: connection not found")

// Client asks one toad server.
type Client struct {
	cc   *grpc.ClientConn
	svc  toadv1.LookupServiceClient
	wait time.Duration
}

// Option configures a Client.
type Option func(*Client, *[]grpc.DialOption)

// WithWait sets how long lookups wait for a handshake in flight; the server
// caps it. Zero answers at once.
func WithWait(d time.Duration) Option {
	return func(c *Client, _ *[]grpc.DialOption) { c.wait = d }
}

// WithDialOptions adds gRPC dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(_ *Client, o *[]grpc.DialOption) { *o = append(*o, opts...) }
}

// New returns a Client for the toad at target: "unix:///path/to.sock", a
// bare socket path, or "host:port". It does not connect until the first
// call.
func New(target string, opts ...Option) (*Client, error) {
	c := &Client{wait: DefaultWait}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	for _, o := range opts {
		o(c, &dopts)
	}
	t, err := Target(target)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(t, dopts...)
	if err != nil {
		return nil, fmt.Errorf("toad client: %w", err)
	}
	c.cc, c.svc = cc, toadv1.NewLookupServiceClient(cc)
	return c, nil
}

// Target turns a toad address as operators write it (a socket path,
// "unix:///path", "host:port") into a gRPC target.
func Target(addr string) (string, error) {
	switch {
	case addr == "":
		return "", errors.New("toad client: empty address: want unix:///path/to.sock or host:port")
	case strings.HasPrefix(addr, "/"):
		return "unix://" + addr, nil
	case strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:"):
		return addr, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("toad client: address %q: want unix:///path/to.sock or host:port", addr)
	}
	return "passthrough:///" + addr, nil
}

// Close closes the connection to toad.
func (c *Client) Close() error { return c.cc.Close() }

// Service returns the generated client, for the calls this package does not
// wrap (BatchLookup, Watch, GetStats).
func (c *Client) Service() toadv1.LookupServiceClient { return c.svc }

// Connection is what toad knows of one connection.
type Connection struct {
	// Client is the real client; its port is 0 when the dialect carries
	// none (HasPort false).
	Client    netip.AddrPort
	HasPort   bool
	Dialect   toa.Dialect
	FirstSeen time.Time
	State     toadv1.ConnectionState
}

// Lookup returns what toad knows of the connection from peer to local, as
// the server's socket reports them, waiting for a handshake in flight up to
// the client's wait. A connection toad does not know is ErrNotFound.
func (c *Client) Lookup(ctx context.Context, peer, local netip.AddrPort) (Connection, error) {
	req := &toadv1.LookupRequest{Peer: peer.String(), Local: local.String()}
	if c.wait > 0 {
		req.Wait = durationpb.New(c.wait)
	}
	resp, err := c.svc.Lookup(ctx, req)
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return Connection{}, fmt.Errorf("%w: %s", ErrNotFound, status.Convert(err).Message())
		}
		return Connection{}, fmt.Errorf("toad lookup: %w", err)
	}
	return FromProto(resp.GetConnection())
}

// FromProto converts a connection as the API sends it.
func FromProto(pc *toadv1.Connection) (Connection, error) {
	addr, err := netip.ParseAddr(pc.GetClientIp())
	if err != nil {
		return Connection{}, fmt.Errorf("toad lookup: client address %q: %w", pc.GetClientIp(), err)
	}
	var d toa.Dialect
	if pc.GetDialect() != "" {
		if d, err = toa.ParseDialect(pc.GetDialect()); err != nil {
			return Connection{}, fmt.Errorf("toad lookup: %w", err)
		}
	}
	c := Connection{
		Client:  netip.AddrPortFrom(addr, uint16(pc.GetClientPort())),
		HasPort: pc.GetClientPort() != 0,
		Dialect: d,
		State:   pc.GetState(),
	}
	if pc.GetFirstSeen() != nil {
		c.FirstSeen = pc.GetFirstSeen().AsTime()
	}
	return c, nil
}

// RealAddr returns the real client of conn, a TCP connection the server
// accepted, waiting for a handshake in flight up to the client's wait. When
// conn comes from a Listener, its own lookup answers (asked once, bounded by
// its client's wait; ctx does not apply). A connection toad does not know
// is ErrNotFound.
func (c *Client) RealAddr(ctx context.Context, conn net.Conn) (*net.TCPAddr, error) {
	if tc, ok := conn.(*Conn); ok {
		return tc.realAddr()
	}
	return c.realAddr(ctx, conn)
}

func (c *Client) realAddr(ctx context.Context, conn net.Conn) (*net.TCPAddr, error) {
	peer, err := addrPort(conn.RemoteAddr())
	if err != nil {
		return nil, err
	}
	local, err := addrPort(conn.LocalAddr())
	if err != nil {
		return nil, err
	}
	got, err := c.Lookup(ctx, peer, local)
	if err != nil {
		return nil, err
	}
	return net.TCPAddrFromAddrPort(got.Client), nil
}

func addrPort(a net.Addr) (netip.AddrPort, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), nil
	}
	if a == nil {
		return netip.AddrPort{}, errors.New("toad lookup: connection has no address")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("toad lookup: %s address %q is not ip:port: only TCP connections have a real client", a.Network(), a)
	}
	return ap, nil
}

var defaultClient = sync.OnceValues(func() (*Client, error) { return New(DefaultTarget) })

// Default returns the client of the toad at DefaultTarget, made on first
// use and shared by Wrap and RealAddr.
func Default() (*Client, error) { return defaultClient() }

// RealAddr returns the real client of conn, asking the default client.
func RealAddr(ctx context.Context, conn net.Conn) (*net.TCPAddr, error) {
	c, err := Default()
	if err != nil {
		return nil, err
	}
	return c.RealAddr(ctx, conn)
}
