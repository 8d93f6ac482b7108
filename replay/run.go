package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/lifetime"
	"github.com/toad-project/toad/toa"
)

// DefaultGap is the shortest time between two files without packets that
// Run reports as a gap, unless told otherwise.
const DefaultGap = 10 * time.Second

// Config says what Run reads, what it asks, and where it writes.
type Config struct {
	// Files are the capture files, pcap or pcapng, gzipped or not, in any
	// order; "-" is standard input.
	Files []string
	// Dialects are the TOA dialects read; nil means toa.DefaultSet().
	Dialects *toa.Set
	// Trusted are the proxy ranges whose TOAs are believed; empty means
	// every peer.
	Trusted []netip.Prefix
	// Linger is how long, in capture time, an ended connection's 4-tuple
	// is held so that its late segments are not taken for a new
	// connection; 0 means correlate.DefaultLinger.
	Linger time.Duration
	// Gap is the shortest time between files without packets reported in
	// the Summary; 0 means DefaultGap.
	Gap time.Duration
	// Query selects the connections written.
	Query Query
	// Format is how they are written, to Out.
	Format Format
	Out    io.Writer
	// Open, when set, opens the files instead of capture.ReplayFiles'
	// own opener.
	Open func(name string) (io.ReadCloser, error)
	// Done, when set, is called with each file as it has been read.
	Done func(capture.File)
}

// Summary is what Run read and found.
type Summary struct {
	// Files are the files in the order they were read (see
	// capture.ReplayFiles), Seams where they meet with a gap longer than
	// Gap or an overlap.
	Files []capture.File
	Seams []capture.Seam
	Gap   time.Duration
	// Capture adds up the files' counters.
	Capture capture.Stats
	// Conns are the connections' counters.
	Conns lifetime.Stats
	// Query is the question asked, Written how many connections it
	// selected.
	Query   Query
	Written uint64
}

// check checks cfg, which the caller filled in, and sets its defaults.
func (cfg *Config) check() error {
	switch {
	case len(cfg.Files) == 0:
		return errors.New("no capture file given")
	case cfg.Out == nil:
		return errors.New("no output")
	case cfg.Linger < 0:
		return fmt.Errorf("linger %v: want a positive duration such as 60s", cfg.Linger)
	case cfg.Gap < 0:
		return fmt.Errorf("gap %v: want a positive duration such as 10s", cfg.Gap)
	}
	if cfg.Linger == 0 {
		cfg.Linger = correlate.DefaultLinger
	}
	if cfg.Gap == 0 {
		cfg.Gap = DefaultGap
	}
	return nil
}

// Run replays cfg.Files as one capture and writes each connection
// cfg.Query selects as it ends, then those still open at the end, in the
// order they were first seen. On an error it returns the Summary so far:
// the connections that ended before it have been written.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Summary{Gap: cfg.Gap, Query: cfg.Query}
	none := "no connection carried a TOA"
	if cfg.Query != (Query{}) {
		none = "no connection matched " + cfg.Query.String()
	}
	w := newWriter(cfg.Format, cfg.Out, none)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error // the first write error, which stops the replay
	tr, err := lifetime.New(lifetime.Config{Trusted: cfg.Trusted, Linger: cfg.Linger}, func(c *lifetime.Conn) {
		if werr != nil || !s.Query.Match(c) {
			return
		}
		if werr = w.write(c); werr != nil {
			cancel()
			return
		}
		s.Written++
	})
	if err != nil {
		return nil, err
	}
	files, err := capture.ReplayFiles(ctx, cfg.Files, capture.FilesConfig{
		Decoder: decode.New(cfg.Dialects),
		Keep:    Relevant,
		Open:    cfg.Open,
		Done:    cfg.Done,
	}, capture.NewIncoming(tr, cfg.Linger))
	s.Files = files
	for i := range files {
		s.Capture.Add(&files[i].Stats)
	}
	s.Seams = capture.Seams(files, cfg.Gap)
	if err == nil {
		tr.Finish()
	}
	s.Conns = tr.Stats()
	if ferr := w.finish(err == nil); werr == nil {
		werr = ferr
	}
	if werr != nil {
		err = fmt.Errorf("write output: %w", werr) // what stopped the replay, if anything did
	}
	return s, err
}

// Relevant reports whether a record can change what a replay finds: it
// carries a TOA, or opens or closes a connection (SYN, SYN-ACK, FIN,
// RST). The others, most of a capture, are decoded and counted only.
func Relevant(r *decode.Record) bool {
	return r.TOACount > 0 || r.Flags&(decode.SYN|decode.FIN|decode.RST) != 0
}
