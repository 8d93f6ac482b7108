// Package storecmp measures toad's journal beside two embedded stores,
// bbolt and pebble, on the connection table's workload. It is a module of
// its own so that neither store enters toad's dependencies.
//
//	cd journal/storecmp && go test -run '^$' -bench . -benchtime 1x
package storecmp

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/journal"
	"github.com/toad-project/toad/toa"
)

// The workload: 10,000 connections a second, each with a TOA in its SYN,
// closed a second later and expired after a 2s linger, written in a group
// every 10ms (100 connections a group). The table settles at 30,000
// entries; the measured part follows the warm-up.
const (
	perGroup = 100
	lifetime = 100 // groups a connection is open
	linger   = 200 // groups a closed connection lingers
	groupDur = 10 * time.Millisecond
	warmup   = lifetime + linger + 50
)

// measured is how many groups are measured after the warm-up.
var measured = flag.Int("groups", 500, "groups of 100 connections measured by BenchmarkWorkload")

var (
	t0     = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	server = netip.MustParseAddrPort("203.0.113.10:443")
)

// conn n's key, scattered over the key space as proxies' ports are.
func keyN(n int) correlate.Key {
	h := uint32(n) * 0x9E3779B1
	peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(h >> 24), byte(h >> 16)}), uint16(h))
	return correlate.KeyOf(peer, server)
}

func synN(n int, at time.Time) decode.Record {
	k := keyN(n)
	c := toa.Client{Dialect: toa.Kind254V4, Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}), Port: uint16(n >> 8), HasPort: true}
	return decode.Record{Time: at, Peer: k.Peer, Local: k.Local, Flags: decode.SYN, Seq: uint32(n), TOA: c, TOACount: 1}
}

func finN(n int, at time.Time) decode.Record {
	k := keyN(n)
	return decode.Record{Time: at, Peer: k.Peer, Local: k.Local, Flags: decode.FIN | decode.ACK, Seq: uint32(n) + 1}
}

// group applies group g of the workload.
func group(tab *correlate.Table, g int) {
	now := t0.Add(time.Duration(g) * groupDur)
	for i := range perGroup {
		r := synN(g*perGroup+i, now)
		tab.Observe(&r)
		if g >= lifetime {
			r = finN((g-lifetime)*perGroup+i, now)
			tab.Observe(&r)
		}
	}
	tab.Expire(now)
}

func newTable(tb testing.TB) *correlate.Table {
	tab, err := correlate.New(correlate.Config{Capacity: 1 << 21, Linger: linger * groupDur})
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

// sink writes a group of change records (correlate.Recorder's) durably to
// the page cache.
type sink interface {
	write(recs []byte) error
	close() error
}

// store is one of the contenders.
type store struct {
	name string
	// open starts persisting tab in dir and returns a commit function
	// that writes every change made since the last.
	open func(tb testing.TB, dir string, tab *correlate.Table) (commit func() error, close func() error)
	// load reads what dir holds back into tab.
	load func(tb testing.TB, dir string, tab *correlate.Table) int
}

var stores = []store{
	{name: "none", open: func(testing.TB, string, *correlate.Table) (func() error, func() error) {
		return func() error { return nil }, func() error { return nil }
	}},
	{name: "journal", open: openJournal, load: loadJournal},
	{name: "bbolt", open: recorded(openBolt), load: loadBolt},
	{name: "pebble", open: recorded(openPebble), load: loadPebble},
}

func openJournal(tb testing.TB, dir string, tab *correlate.Table) (func() error, func() error) {
	j, _, err := journal.Open(dir, tab, journal.Config{Interval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return j.Flush, j.Close
}

func loadJournal(tb testing.TB, dir string, tab *correlate.Table) int {
	j, rcv, err := journal.Open(dir, tab, journal.Config{Interval: time.Hour, Now: func() time.Time { return time.Time{} }})
	if err != nil {
		tb.Fatal(err)
	}
	j.Close()
	return rcv.Loaded
}

// recorded feeds a store with the table's recorded changes.
func recorded(open func(tb testing.TB, dir string) sink) func(testing.TB, string, *correlate.Table) (func() error, func() error) {
	return func(tb testing.TB, dir string, tab *correlate.Table) (func() error, func() error) {
		s := open(tb, dir)
		rec, err := tab.Record(1 << 20)
		if err != nil {
			tb.Fatal(err)
		}
		var buf []byte
		commit := func() error {
			buf, _, _ = rec.Drain(buf[:0])
			return s.write(buf)
		}
		return commit, func() error { rec.Stop(); return s.close() }
	}
}

// A change record, as correlate writes it: op (bits 7-6) and flags, key,
// the rest; then a CRC-32C.
const (
	opPut, opClose, opRemove, opSyn = 0 << 6, 1 << 6, 2 << 6, 3 << 6
	wKey6, wClient6                 = 1, 2
)

// split returns the record at the start of b: its op byte, key and the
// rest, and its length with the CRC.
func split(b []byte) (op byte, key, rest []byte, n int) {
	op = b[0]
	kl := 12
	if op&wKey6 != 0 {
		kl = 36
	}
	l := 1 + kl
	switch op & 0xC0 {
	case opPut:
		l += 2 + 2 + 8 + 8 + 4 + 4
		if op&wClient6 != 0 {
			l += 12
		}
	case opClose:
		l += 8
	case opSyn:
		l += 4
	}
	return op, b[1 : 1+kl], b[1+kl : l], l + 4
}

// apply applies the records of b to a key-value view: a put stores the
// entry (flags byte, then the rest), a close or a syn rewrites it, a
// remove deletes it.
func apply(b []byte, get func([]byte) ([]byte, bool), set func(k, v []byte) error, del func([]byte) error) error {
	for len(b) > 0 {
		op, key, rest, n := split(b)
		b = b[n:]
		var err error
		switch op & 0xC0 {
		case opPut:
			err = set(key, append([]byte{op &^ 0xC0}, rest...))
		case opRemove:
			err = del(key)
		default:
			v, ok := get(key)
			if !ok {
				continue
			}
			v = slices.Clone(v)
			at := len(v) - 12 // stamp int64, syn uint32
			if op&0xC0 == opClose {
				v[0] |= 8 // closing
				copy(v[at:], rest[:8])
			} else {
				v[0] = v[0]&^32 | 16
				copy(v[at+8:], rest[:4])
			}
			err = set(key, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// image turns stored entries back into change records, and loads them.
type image struct {
	im correlate.Image
	b  []byte
}

func (m *image) add(key, v []byte) error {
	rec := append(append(append(m.b[:0], v[0]), key...), v[1:]...)
	m.b = binary.BigEndian.AppendUint32(rec, crc32c(rec))
	_, _, err := m.im.Apply(m.b)
	return err
}

type boltSink struct{ db *bolt.DB }

var bucket = []byte("conns")

func openBolt(tb testing.TB, dir string) sink {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		tb.Fatal(err)
	}
	return &boltSink{db}
}

func (s *boltSink) write(recs []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		return apply(recs,
			func(k []byte) ([]byte, bool) { v := b.Get(k); return v, v != nil },
			func(k, v []byte) error { return b.Put(slices.Clone(k), v) },
			b.Delete)
	})
}

func (s *boltSink) close() error { return s.db.Close() }

func loadBolt(tb testing.TB, dir string, tab *correlate.Table) int {
	s := openBolt(tb, dir).(*boltSink)
	defer s.close()
	var m image
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(m.add)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tab.LoadImage(&m.im, time.Time{})
}

type pebbleSink struct{ db *pebble.DB }

func openPebble(tb testing.TB, dir string) sink {
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return &pebbleSink{db}
}

func (s *pebbleSink) write(recs []byte) error {
	b := s.db.NewIndexedBatch()
	defer b.Close()
	err := apply(recs,
		func(k []byte) ([]byte, bool) {
			v, c, err := b.Get(k)
			if err != nil {
				return nil, false
			}
			defer c.Close()
			return slices.Clone(v), true
		},
		func(k, v []byte) error { return b.Set(k, v, nil) },
		func(k []byte) error { return b.Delete(k, nil) })
	if err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

func (s *pebbleSink) close() error { return s.db.Close() }

func loadPebble(tb testing.TB, dir string, tab *correlate.Table) int {
	s := openPebble(tb, dir).(*pebbleSink)
	defer s.close()
	it, err := s.db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	var m image
	for it.First(); it.Valid(); it.Next() {
		if err := m.add(it.Key(), it.Value()); err != nil {
			tb.Fatal(err)
		}
	}
	it.Close()
	return tab.LoadImage(&m.im, time.Time{})
}

// usage is the process's CPU time and bytes passed to write(2) so far.
func usage(tb testing.TB) (cpu time.Duration, wchar int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			wchar, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return cpu, wchar
}

// BenchmarkWorkload runs the workload on each store: CPU time of the whole
// process and bytes written per connection, and the time a group commit
// takes (a change waits for the next group, 10ms at most, then for that).
func BenchmarkWorkload(b *testing.B) {
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				tab := newTable(b)
				commit, closeStore := s.open(b, dir, tab)
				for g := range warmup {
					group(tab, g)
					if err := commit(); err != nil {
						b.Fatal(err)
					}
				}
				lat := make([]time.Duration, 0, *measured)
				cpu0, w0 := usage(b)
				for g := warmup; g < warmup+*measured; g++ {
					group(tab, g)
					start := time.Now()
					if err := commit(); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
				cpu1, w1 := usage(b)
				conns := float64(*measured * perGroup)
				slices.Sort(lat)
				b.ReportMetric(float64(cpu1-cpu0)/conns, "cpu-ns/conn")
				b.ReportMetric(float64(w1-w0)/conns, "written-B/conn")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "commit-p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "commit-p99-µs")
				b.ReportMetric(float64(tab.Len()), "entries")
				b.ReportMetric(0, "ns/op")
				if err := closeStore(); err != nil {
					b.Fatal(err)
				}
				tab.Close()
			}
		})
	}
}

// BenchmarkRecover1M writes a million live connections through each store
// (in groups of 10,000), closes it and measures reading them back into a
// new table.
func BenchmarkRecover1M(b *testing.B) {
	const conns, batch = 1_000_000, 10_000
	for _, s := range stores[1:] {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				tab := newTable(b)
				commit, closeStore := s.open(b, dir, tab)
				for n := range conns {
					r := synN(n, t0)
					tab.Observe(&r)
					if n%batch == batch-1 {
						if err := commit(); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := closeStore(); err != nil {
					b.Fatal(err)
				}
				tab.Close()
				into := newTable(b)
				b.StartTimer()
				if n := s.load(b, dir, into); n != conns {
					b.Fatalf("loaded %d, want %d", n, conns)
				}
				b.StopTimer()
				into.Close()
				b.StartTimer()
			}
		})
	}
}

// TestDiskFull runs each store on an 8 MiB tmpfs (6 MiB of it taken) until a write fails, then
// frees the space and writes again; it reports what each did.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	for _, s := range stores[1:] {
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
				t.Fatal(err)
			}
			defer syscall.Unmount(dir, syscall.MNT_DETACH)
			filler := filepath.Join(dir, "filler")
			os.WriteFile(filler, make([]byte, 6<<20), 0o600)
			tab := newTable(t)
			defer tab.Close()
			commit0, closeStore := s.open(t, dir, tab)
			// A store that blocks on a full disk is reported as such.
			commit := func() error {
				done := make(chan error, 1)
				go func() {
					defer func() {
						if p := recover(); p != nil {
							done <- fmt.Errorf("panic: %v", p)
						}
					}()
					done <- commit0()
				}()
				select {
				case err := <-done:
					return err
				case <-time.After(10 * time.Second):
					return errBlocked
				}
			}
			var err error
			g := 0
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
					}
				}()
				for ; g < 20000 && err == nil; g++ {
					group(tab, g)
					err = commit()
				}
			}()
			t.Logf("%s: after %d groups: %v (ENOSPC: %v)", s.name, g, err, errors.Is(err, syscall.ENOSPC))
			os.Remove(filler)
			var after error
			func() {
				defer func() {
					if p := recover(); p != nil {
						after = fmt.Errorf("panic: %v", p)
					}
				}()
				for i := range 10 {
					group(tab, g+i)
					if after = commit(); after != nil {
						return
					}
				}
			}()
			t.Logf("%s: once space was freed: %v", s.name, after)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Logf("%s: close panicked: %v", s.name, p)
					}
				}()
				t.Logf("%s: close: %v", s.name, closeStore())
			}()
		})
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var errBlocked = errors.New("commit blocked for 10s")
