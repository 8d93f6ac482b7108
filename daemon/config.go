package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/toa"
)

// Config is the daemon's configuration. Each field is documented by the
// toad serve flag that sets it; errors name that flag. Start from
// DefaultConfig: the zero value serves nothing and fails Validate.
type Config struct {
	Interface string   // --interface; "" captures on every interface
	Pcaps     []string // --pcap: replay these instead of capturing

	Socket        string // --socket; "" serves no unix socket
	SocketGroup   string // --socket-group: a group name or number; "" keeps toad's
	Listen        string // --listen; "" serves no TCP
	AllowRemote   bool   // --allow-remote
	HealthListen  string // --health-listen; "" serves no health-only listener
	MetricsListen string // --metrics-listen; "" serves no HTTP

	Trusted     []netip.Prefix // --trusted-proxies
	Dialects    *toa.Set       // --dialects
	Linger      time.Duration  // --linger
	MaxWait     time.Duration  // --max-wait; 0: lookups never wait
	Capacity    int            // --capacity
	IdleTimeout time.Duration  // --idle-timeout
	Snapshot    string         // --snapshot; "" neither loads nor writes one

	Readers   int // --readers
	RingSize  int // --ring-size
	BlockSize int // --block-size
	// BlockTimeout is the deprecated --block-timeout, ignored: set, it is
	// warned of at start.
	BlockTimeout time.Duration
	SnapLen      int            // --snap-len
	Filter       capture.Filter // --filter

	Drain           time.Duration // --drain
	ShutdownTimeout time.Duration // --shutdown-timeout

	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Build is what the binary knows of how it was built, logged at start
	// and exported as toad_build_info.
	Build Build
	// FromEnv are the environment variables that set something, and
	// UnknownEnv the TOAD_* ones that name no setting: logged at start.
	FromEnv, UnknownEnv []string
	// Ready, when set, is called once the daemon serves, with the
	// addresses its listeners are bound to.
	Ready func(Addrs)
}

// Build identifies the running binary.
type Build struct {
	Version  string // the stamped release, or "dev"
	Revision string // the VCS commit, or "unknown"
	Go       string // the Go release that compiled it
}

// Addrs are the addresses the daemon's listeners are bound to; nil for a
// listener it does not serve.
type Addrs struct {
	Socket  net.Addr // the API's unix socket
	API     net.Addr // the API's TCP listener
	Health  net.Addr
	Metrics net.Addr
}

// Defaults of the daemon that have no constant elsewhere.
const (
	DefaultHealthListen    = ":50052"
	DefaultMetricsListen   = "127.0.0.1:9470"
	DefaultDrain           = time.Second
	DefaultShutdownTimeout = 10 * time.Second
)

// DefaultConfig returns the configuration of toad serve with no flags.
func DefaultConfig() Config {
	return Config{
		Socket:          api.DefaultSocket,
		HealthListen:    DefaultHealthListen,
		MetricsListen:   DefaultMetricsListen,
		Dialects:        toa.DefaultSet(),
		Linger:          correlate.DefaultLinger,
		MaxWait:         api.DefaultMaxWait,
		Capacity:        correlate.DefaultCapacity,
		Readers:         1,
		RingSize:        capture.DefaultRingSize,
		BlockSize:       capture.DefaultBlockSize,
		SnapLen:         capture.DefaultSnapLen,
		Drain:           DefaultDrain,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// Validate checks the settings that parse one by one but not together, or
// not within their bounds. Whether the system can honour them (the
// interface exists, the paths are writable) is checked by Run at start.
func (c *Config) Validate() error {
	switch {
	case c.Socket == "" && c.Listen == "":
		return errors.New("--socket and --listen are both empty: nothing to serve lookups on")
	case len(c.Pcaps) > 0 && c.Interface != "":
		return errors.New("--interface and --pcap: capture live or replay files, not both")
	case c.Linger <= 0:
		return fmt.Errorf("--linger %v: want a positive duration such as 60s", c.Linger)
	case c.MaxWait < 0:
		return fmt.Errorf("--max-wait %v: want 0 or more", c.MaxWait)
	case c.Capacity < 1 || c.Capacity > correlate.MaxCapacity:
		return fmt.Errorf("--capacity %d: want 1 to %d", c.Capacity, correlate.MaxCapacity)
	case c.IdleTimeout < 0:
		return fmt.Errorf("--idle-timeout %v: want 0 (never) or more", c.IdleTimeout)
	case c.Readers < 1 || c.Readers > 64:
		return fmt.Errorf("--readers %d: want 1 to 64", c.Readers)
	case c.BlockSize < 4096 || c.BlockSize%4096 != 0:
		return fmt.Errorf("--block-size %d: want a multiple of 4KiB", c.BlockSize)
	case c.RingSize < c.BlockSize:
		return fmt.Errorf("--ring-size %d is smaller than --block-size %d", c.RingSize, c.BlockSize)
	case c.SnapLen < 128 || c.SnapLen > 65535:
		return fmt.Errorf("--snap-len %d: want 128 to 65535", c.SnapLen)
	case c.Drain < 0:
		return fmt.Errorf("--drain %v: want 0 or more", c.Drain)
	case c.ShutdownTimeout <= c.Drain:
		return fmt.Errorf("--shutdown-timeout %v leaves no time to stop after --drain %v: want it longer", c.ShutdownTimeout, c.Drain)
	}
	for _, a := range []struct{ flag, addr string }{
		{"listen", c.Listen}, {"health-listen", c.HealthListen}, {"metrics-listen", c.MetricsListen},
	} {
		if a.addr == "" {
			continue
		}
		if err := checkListenAddr(a.addr); err != nil {
			return fmt.Errorf("--%s %q: %w", a.flag, a.addr, err)
		}
	}
	if c.Listen != "" && !c.AllowRemote {
		host, _, _ := net.SplitHostPort(c.Listen)
		if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
			return fmt.Errorf("--listen %s is not a loopback address, and the API reveals client addresses: listen on 127.0.0.1 or [::1], or add --allow-remote", c.Listen)
		}
	}
	if c.Socket != "" {
		if err := api.CheckSocketPath(c.Socket); err != nil {
			return fmt.Errorf("--socket %s: %w", c.Socket, err)
		}
	}
	if c.SocketGroup != "" && c.Socket == "" {
		return fmt.Errorf("--socket-group %s without --socket: there is no socket to give it", c.SocketGroup)
	}
	if c.Snapshot != "" && strings.HasSuffix(c.Snapshot, "/") {
		return fmt.Errorf("--snapshot %q: want a file, not a directory", c.Snapshot)
	}
	return nil
}

// checkListenAddr checks a TCP listen address: a port number, and an IP
// address, localhost or nothing (every address) for the host. Other host
// names are refused: what they resolve to is not what was read.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return errors.New("want host:port, such as 127.0.0.1:9470 or :50052")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" || host == "localhost" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address: want one such as 127.0.0.1, [::1] or 192.0.2.20, localhost, or none for every address", host)
	}
	return nil
}
