package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/capture/packet"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// Sink consumes decoded records. The record is only valid during the call.
// *correlate.Table is a Sink.
type Sink interface {
	Observe(r *decode.Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *decode.Record)

// Observe calls f(r).
func (f SinkFunc) Observe(r *decode.Record) { f(r) }

// Expirer is a Sink whose entries age on the capture clock. Replay calls
// Expire with capture time as the file advances and once at its end.
// *correlate.Table is an Expirer.
type Expirer interface {
	Expire(now time.Time) int
}

// Config configures a live capture. The zero value captures on every
// interface with one reader, the default dialects and sidecar-sized rings.
type Config struct {
	// Interface is the interface to capture on; "" means every interface.
	Interface string
	// Dialects are the TOA dialects the decoder and the kernel filter
	// look for; nil means toa.DefaultSet(). It must not change afterwards.
	Dialects *toa.Set
	// Readers is the number of sockets sharing the traffic through a
	// flow-hashed fanout group (PACKET_FANOUT_HASH), so that one
	// connection's packets stay in order on one reader. 0 means 1, which
	// is enough for the few packets per connection the filter passes;
	// at most 64.
	Readers int
	// FanoutGroup is the fanout group id when Readers > 1; 0 picks one
	// from the process id.
	FanoutGroup uint16
	// RingSize is each reader's ring in bytes; 0 means 4 MiB. The ring
	// holds what arrives while its reader is busy: a packet finding it
	// full is dropped (Stats.Drops).
	RingSize int
	// BlockSize is the unit in which the kernel allocates the ring, a
	// multiple of the page size; 0 means 64 KiB.
	BlockSize int
	// SnapLen is how many bytes of each packet the ring keeps, enough for
	// the headers; 0 means 512.
	SnapLen int
	// Filter is the strongest kernel filter to try; the zero value is
	// FilterTOA. Capture falls back to weaker ones when the kernel
	// refuses a program, and never fails over it.
	Filter Filter
	// Logger receives setup and fallback messages; nil discards them.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultRingSize  = packet.DefaultRingSize
	DefaultBlockSize = packet.DefaultBlockSize
	DefaultSnapLen   = packet.DefaultSnapLen
)

// maxReaders is the most readers a capture has.
const maxReaders = 64

// withDefaults fills in zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Dialects == nil {
		c.Dialects = toa.DefaultSet()
	}
	if c.Readers == 0 {
		c.Readers = 1
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case c.Readers < 0 || c.Readers > maxReaders:
		return c, &ConfigError{"Readers", c.Readers, fmt.Sprintf("1 to %d", maxReaders)}
	case c.BlockSize < 4096 || c.BlockSize%4096 != 0:
		return c, &ConfigError{"BlockSize", c.BlockSize, "a multiple of 4KiB"}
	case c.RingSize < c.BlockSize:
		return c, &ConfigError{"RingSize", c.RingSize, fmt.Sprintf("no less than the block size, %d", c.BlockSize)}
	case c.SnapLen < 128 || c.SnapLen > 65535:
		return c, &ConfigError{"SnapLen", c.SnapLen, "128 to 65535"}
	case c.Filter > FilterNone:
		return c, &ConfigError{"Filter", c.Filter, "toa, tcp, direction or none"}
	}
	return c, nil
}

// Validate reports the first field of c out of its bounds, as a
// *ConfigError; zero fields take their defaults and are valid.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// ConfigError is a Config field out of its bounds.
type ConfigError struct {
	Field string // the field, such as "RingSize"
	Value any    // its value
	Want  string // what it takes
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("capture config: %s %v: want %s", e.Field, e.Value, e.Want)
}

// ConfigField returns the field's name, for callers that name their
// settings otherwise (toad serve's flags).
func (e *ConfigError) ConfigField() (field string, value any, want string) {
	return e.Field, e.Value, e.Want
}

// Stats are a capture's counters.
type Stats struct {
	// Packets is how many frames were read from the rings or the file.
	Packets uint64
	// Records is how many records went to the sink.
	Records uint64
	// Failures counts the frames the decoder rejected, by reason (the OK
	// slot stays 0).
	Failures [decode.NumReasons]uint64

	// The rest is for live captures only.

	// KernelPackets is how many packets the kernel filter passed to the
	// sockets, including dropped ones.
	KernelPackets uint64
	// Drops is how many packets the kernel dropped because a ring was full.
	Drops uint64
	// Filter is the weakest filter attached to any reader.
	Filter Filter
	// IgnoreOutgoing reports that every socket skips outgoing packets by
	// itself (PACKET_IGNORE_OUTGOING, Linux 4.20), not only in the filter.
	IgnoreOutgoing bool
	// Readers is the number of sockets.
	Readers int
}

// Add adds the packet, record and failure counters of o to s: the
// counters of several files replayed one after the other.
func (s *Stats) Add(o *Stats) {
	s.Packets += o.Packets
	s.Records += o.Records
	for i, n := range o.Failures {
		s.Failures[i] += n
	}
}

// Rejected is the total of Failures.
func (s *Stats) Rejected() uint64 {
	var n uint64
	for _, v := range s.Failures {
		n += v
	}
	return n
}

// FailureSummary lists the nonzero failure counters as "reason=n" pairs,
// "none" when there are none.
func (s *Stats) FailureSummary() string {
	var b strings.Builder
	for r, n := range s.Failures {
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", decode.Reason(r), n)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// counters are one reader's user-space counters.
type counters struct {
	packets  atomic.Uint64
	records  atomic.Uint64
	failures [decode.NumReasons]atomic.Uint64
	_        [64]byte // keep readers' counters on separate cache lines
}

func (c *counters) addTo(s *Stats) {
	s.Packets += c.packets.Load()
	s.Records += c.records.Load()
	for i := range c.failures {
		s.Failures[i] += c.failures[i].Load()
	}
}

// Capture is a running live capture.
type Capture struct {
	cfg     Config
	sink    Sink
	dec     *decode.Decoder
	readers []*reader

	wg   sync.WaitGroup
	done chan struct{}

	mu     sync.Mutex
	err    error // the error that stopped the readers
	closed bool
	final  Stats // the counters at Close

	stopping  atomic.Bool // the sockets take no more packets
	stopOnce  sync.Once
	closeOnce sync.Once

	wokenArmed atomic.Bool // someone waits on woken
	wokenMu    sync.Mutex
	woken      chan struct{} // closed at the next packet; nil when nobody waits
}

// ErrStopped is returned by Sync once the capture has stopped taking
// packets: it can no longer vouch for what the host receives.
var ErrStopped = errors.New("capture stopped")

// Open starts a live capture that hands every decoded segment to sink. It
// fails with an error saying what to grant when the process lacks
// CAP_NET_RAW, and wraps errors.ErrUnsupported off Linux.
func Open(cfg Config, sink Sink) (*Capture, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Capture{cfg: cfg, sink: sink, dec: decode.New(cfg.Dialects), done: make(chan struct{})}
	if err := c.open(); err != nil {
		for _, r := range c.readers {
			r.close()
		}
		return nil, err
	}
	for _, r := range c.readers {
		c.wg.Go(func() {
			if err := r.run(c); err != nil {
				c.fail(err)
			}
		})
	}
	go func() {
		c.wg.Wait()
		close(c.done)
	}()
	return c, nil
}

// fail records the first fatal reader error and stops the other readers.
func (c *Capture) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.stopOnce.Do(func() {
		c.stopping.Store(true)
		for _, r := range c.readers {
			r.close()
		}
	})
}

// Done is closed once every reader has stopped: after Close, or when a
// reader hit an error (see Err).
func (c *Capture) Done() <-chan struct{} { return c.done }

// Err returns the error that stopped the readers, or nil.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Sync returns once every packet the kernel had put in the capture's
// rings when Sync was called has been decoded and passed to the sink. It
// learns that from the sockets themselves: each counts the packets it
// was given, and each reader those it has handed over. A packet that
// carried a segment the host has since processed (one that let TCP
// accept a connection, say) reached the rings before that, so after Sync
// the sink has seen it. With no packet outstanding Sync costs a system
// call per reader and does not wait. It returns early with ctx's error,
// or with ErrStopped once the capture has begun to stop. *Capture so satisfies
// correlate.Source.
func (c *Capture) Sync(ctx context.Context) error {
	if c.stopping.Load() {
		return ErrStopped
	}
	if err := c.sync(ctx); err != nil {
		if c.stopping.Load() {
			return fmt.Errorf("%w: %w", ErrStopped, err)
		}
		return err
	}
	return nil
}

// Woken returns a channel closed when a reader next hands over a packet,
// so that a goroutine with nothing to do until traffic comes can sleep on
// it rather than poll. Packets handed over before the call do not close
// it: read Stats after calling Woken to learn of those.
func (c *Capture) Woken() <-chan struct{} {
	c.wokenMu.Lock()
	defer c.wokenMu.Unlock()
	if c.woken == nil {
		c.woken = make(chan struct{})
		c.wokenArmed.Store(true)
	}
	return c.woken
}

// wake closes the channel of Woken, if anyone waits on it: a readers'
// hot path, an atomic load when nobody does.
func (c *Capture) wake() {
	if !c.wokenArmed.Load() {
		return
	}
	c.wokenMu.Lock()
	if c.woken != nil {
		close(c.woken)
		c.woken = nil
		c.wokenArmed.Store(false)
	}
	c.wokenMu.Unlock()
}

// Stats returns the capture's counters so far.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.final
	}
	return c.statsLocked()
}

func (c *Capture) statsLocked() Stats {
	s := Stats{Readers: len(c.readers), IgnoreOutgoing: len(c.readers) > 0}
	for _, r := range c.readers {
		r.counters.addTo(&s)
		r.kernelStats(&s)
		s.Filter = max(s.Filter, r.filter)
		s.IgnoreOutgoing = s.IgnoreOutgoing && r.ignoreOutgoing
	}
	return s
}

// Close stops the capture: the sockets take no more packets, the readers
// hand the sink what the rings still hold (so the counters agree: every
// packet the kernel passed was decoded), then the sockets close and the
// readers end. It returns the error that had stopped the readers, if any.
// Close is idempotent.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		c.stopOnce.Do(c.stop)
		<-c.done
		c.mu.Lock()
		defer c.mu.Unlock()
		c.final = c.statsLocked()
		c.closed = true
	})
	return c.Err()
}
