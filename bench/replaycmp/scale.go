package replaycmp

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft/gen"
)

// ScaleConfig says which sizes Scale measures.
type ScaleConfig struct {
	// Sizes are the numbers of connections, smallest first.
	Sizes []int
	// Data is the share of plain data packets in the mix (see Mix).
	Data float64
	Seed uint64
	// Rounds is how many times sizes up to RepeatUpTo connections are
	// measured, the median counting; larger ones run once. 0 means 3.
	Rounds     int
	RepeatUpTo int
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Point is what one size cost.
type Point struct {
	Conns   int
	Packets int
	// DataSegments is how many data segments each way each connection had.
	DataSegments int
	Runs         int
	// Replay is the median time toad took to decode the frames and apply
	// them to its table, the generator's time left out.
	Replay time.Duration
	// TableBytes is the heap the table held at the end, with every
	// connection in it (HeapAlloc after a collection, with the table minus
	// without); Entries how many entries it held.
	TableBytes int64
	Entries    int
	// Agrees reports that the table held exactly the ground truth's
	// mappings, every run.
	Agrees bool
	// Generated is how long the generator took, all runs together.
	Generated time.Duration
}

// NsPerPacket is the median replay time per packet.
func (p *Point) NsPerPacket() float64 {
	return float64(p.Replay.Nanoseconds()) / float64(max(p.Packets, 1))
}

// NsPerConn is the median replay time per connection.
func (p *Point) NsPerConn() float64 {
	return float64(p.Replay.Nanoseconds()) / float64(max(p.Conns, 1))
}

// BytesPerEntry is the table's heap per entry held.
func (p *Point) BytesPerEntry() float64 {
	return float64(p.TableBytes) / float64(max(p.Entries, 1))
}

// Scale measures, for each size, how long toad takes to decode a capture
// of that many connections and apply it to a table sized for them, and
// how much memory the table then holds. The frames stream from the
// generator through memory in batches, so that no file limits the size;
// only the decoding and the table are timed.
func Scale(ctx context.Context, cfg ScaleConfig) ([]Point, error) {
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var points []Point
	for _, n := range cfg.Sizes {
		mix := Mix{Conns: n, Data: cfg.Data, Seed: cfg.Seed}
		gc, err := mix.Config()
		if err != nil {
			return nil, err
		}
		p := Point{Conns: n, DataSegments: gc.DataSegments, Agrees: true}
		rounds := cfg.Rounds
		if n > cfg.RepeatUpTo {
			rounds = 1
		}
		var replays []time.Duration
		for range rounds {
			r, err := scaleOnce(ctx, gc)
			if err != nil {
				return nil, fmt.Errorf("%d connections: %w", n, err)
			}
			replays = append(replays, r.Replay)
			p.Runs++
			p.Packets, p.TableBytes, p.Entries = r.Packets, r.TableBytes, r.Entries
			p.Agrees = p.Agrees && r.Agrees
			p.Generated += r.Generated
			logf("scale: %d connections, %d packets: replay %v (%.0f ns/packet), table %d MiB for %d entries, mappings agree: %v",
				n, r.Packets, r.Replay.Round(time.Millisecond), r.NsPerPacket(), r.TableBytes>>20, r.Entries, r.Agrees)
		}
		p.Replay = median(replays, func(d time.Duration) time.Duration { return d })
		points = append(points, p)
	}
	return points, nil
}

// batch holds frames copied from the generator until they are replayed.
type batch struct {
	buf  []byte
	ends []int
	ts   []time.Time
}

func (b *batch) full(n int) bool { return len(b.buf)+n > cap(b.buf) || len(b.ends) == cap(b.ends) }

func (b *batch) add(ts time.Time, frame []byte) {
	b.buf = append(b.buf, frame...)
	b.ends = append(b.ends, len(b.buf))
	b.ts = append(b.ts, ts)
}

func (b *batch) reset() { b.buf, b.ends, b.ts = b.buf[:0], b.ends[:0], b.ts[:0] }

func scaleOnce(ctx context.Context, gc gen.Config) (Point, error) {
	p := Point{Conns: gc.Conns}
	b := &batch{buf: make([]byte, 0, 4<<20), ends: make([]int, 0, 1<<14), ts: make([]time.Time, 0, 1<<14)}
	d := decode.New(nil)
	var rec decode.Record
	before := heapAlloc()
	t, err := correlate.New(correlate.Config{Capacity: max(gc.Conns, 1), Trusted: gen.Trusted, Linger: keepAll})
	if err != nil {
		return p, err
	}
	defer t.Close()
	replay := func() {
		start, from := time.Now(), 0
		for i, end := range b.ends {
			if d.Decode(decode.LinkEthernet, b.buf[from:end], b.ts[i], &rec) == decode.OK {
				t.Observe(&rec)
			}
			from = end
		}
		p.Replay += time.Since(start)
		b.reset()
	}
	var truth Mappings
	start := time.Now()
	st, err := gen.Stream(gc, func(ts time.Time, _ decode.LinkType, frame []byte) error {
		if b.full(len(frame)) {
			replay()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		b.add(ts, frame)
		return nil
	}, truth.Truth)
	if err != nil {
		return p, err
	}
	replay()
	p.Generated = time.Since(start) - p.Replay
	p.Packets = st.Packets
	p.TableBytes = int64(heapAlloc()) - int64(before)
	runtime.KeepAlive(b)
	runtime.KeepAlive(d)
	p.Entries = t.Len()
	found := tableMappings(t)()
	p.Agrees = found == truth
	return p, nil
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
