package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/preload"
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
	StateDir    string         // --state-dir; "" keeps the table in memory alone
	Fsync       bool           // --fsync
	// Snapshot is the deprecated --snapshot: the state is kept in
	// Snapshot.d when StateDir is not set, and a snapshot an older toad
	// left at Snapshot is loaded once into it.
	Snapshot string

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

	PreloadSocket      string      // --preload-socket; "" serves the preload library nothing
	PreloadSocketMode  fs.FileMode // --preload-socket-mode
	PreloadSocketGroup string      // --preload-socket-group: a group name or number; "" keeps toad's
	PreloadSharedSlots int         // --preload-shared-slots; 0: no shared table
	PreloadLibraryDir  string      // --preload-library-dir; "" copies no library

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
	Preload net.Addr // the preload socket
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

		PreloadSocket:      preload.DefaultSocket,
		PreloadSocketMode:  preload.DefaultSocketMode,
		PreloadSharedSlots: preload.DefaultSharedSlots,
	}
}

// Validate checks the settings that parse one by one but not together, or
// not within their bounds. Whether the system can honour them (the
// interface exists, the paths are writable) is checked by Run at start.
func (c *Config) Validate() error {
	// Zero means the default to capture and correlate, but a flag set to
	// zero is a mistake: these are refused here, the bounds by the
	// packages.
	switch {
	case c.Socket == "" && c.Listen == "":
		return errors.New("--socket and --listen are both empty: nothing to serve lookups on")
	case len(c.Pcaps) > 0 && c.Interface != "":
		return errors.New("--interface and --pcap: capture live or replay files, not both")
	case c.Linger <= 0:
		return fmt.Errorf("--linger %v: want a positive duration such as 60s", c.Linger)
	case c.MaxWait < 0:
		return fmt.Errorf("--max-wait %v: want 0 or more", c.MaxWait)
	case c.Capacity < 1:
		return fmt.Errorf("--capacity %d: want 1 or more", c.Capacity)
	case c.Readers < 1:
		return fmt.Errorf("--readers %d: want 1 or more", c.Readers)
	case c.RingSize < 1, c.BlockSize < 1, c.SnapLen < 1:
		return fmt.Errorf("--ring-size %d, --block-size %d, --snap-len %d: want each above 0", c.RingSize, c.BlockSize, c.SnapLen)
	case c.Drain < 0:
		return fmt.Errorf("--drain %v: want 0 or more", c.Drain)
	case c.ShutdownTimeout <= c.Drain:
		return fmt.Errorf("--shutdown-timeout %v leaves no time to stop after --drain %v: want it longer", c.ShutdownTimeout, c.Drain)
	}
	if err := c.tableConfig().Validate(); err != nil {
		return flagError(err)
	}
	if err := c.captureConfig(nil).Validate(); err != nil {
		return flagError(err)
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
		if err := api.CheckLoopback(c.Listen); errors.Is(err, api.ErrNotLoopback) {
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
	if err := c.validatePreload(); err != nil {
		return err
	}
	if c.Snapshot != "" && strings.HasSuffix(c.Snapshot, "/") {
		return fmt.Errorf("--snapshot %q: want a file, not a directory (or --state-dir %s)", c.Snapshot, c.Snapshot)
	}
	if c.Fsync && c.StateDir == "" && c.Snapshot == "" {
		return errors.New("--fsync without --state-dir: there is no state to sync")
	}
	return nil
}

// flags are the toad serve flags of the capture's and the table's Config
// fields.
var flags = map[string]string{
	"Capacity": "capacity", "Linger": "linger", "IdleTimeout": "idle-timeout",
	"Readers": "readers", "RingSize": "ring-size", "BlockSize": "block-size", "SnapLen": "snap-len", "Filter": "filter",
}

// flagError rewords a package's *ConfigError with the flag that sets the
// field.
func flagError(err error) error {
	var fe interface {
		ConfigField() (field string, value any, want string)
	}
	if !errors.As(err, &fe) {
		return err
	}
	field, value, want := fe.ConfigField()
	name, ok := flags[field]
	if !ok {
		return err
	}
	return fmt.Errorf("--%s %v: want %s", name, value, want)
}

// tableConfig is the connection table's configuration.
func (c *Config) tableConfig() correlate.Config {
	return correlate.Config{
		Capacity:    c.Capacity,
		Linger:      c.Linger,
		IdleTimeout: c.IdleTimeout,
		Trusted:     c.Trusted,
		Barrier:     true, // the live capture is attached to it; --pcap seals it
	}
}

// captureConfig is the live capture's configuration.
func (c *Config) captureConfig(log *slog.Logger) capture.Config {
	return capture.Config{
		Interface: c.Interface,
		Dialects:  c.Dialects,
		Readers:   c.Readers,
		RingSize:  c.RingSize,
		BlockSize: c.BlockSize,
		SnapLen:   c.SnapLen,
		Filter:    c.Filter,
		Logger:    log,
	}
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
