package journal

import (
	"errors"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

var (
	t0     = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	server = netip.MustParseAddrPort("203.0.113.10:443")
	cmpNet = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, correlate.Key{})
)

// at is the virtual time of step n.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// keyN is the n-th of 16M IPv4 keys; every fifth n below 1<<16 has an
// IPv6 key instead, from 2001:db8::/32.
func keyN(n int) correlate.Key {
	if n%5 == 4 && n < 1<<16 {
		peer := netip.AddrPortFrom(netip.MustParseAddr("2001:db8::7"), uint16(n))
		return correlate.KeyOf(peer, netip.MustParseAddrPort("[2001:db8::10]:443"))
	}
	peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n))
	return correlate.KeyOf(peer, server)
}

// clientN is connection n's client, IPv6 for every third n, with
// gen telling connections on the same key apart.
func clientN(n, gen int) toa.Client {
	if n%3 == 2 {
		a := netip.MustParseAddr("2001:db8:c::").As16()
		a[13], a[14], a[15] = byte(gen), byte(n>>8), byte(n)
		return toa.Client{Dialect: toa.Kind254V6, Addr: netip.AddrFrom16(a), Port: uint16(n), HasPort: true}
	}
	return toa.Client{Dialect: toa.Kind254V4, Addr: netip.AddrFrom4([4]byte{192, 0, byte(2 + gen), byte(n)}), Port: uint16(n >> 8), HasPort: true}
}

func syn(k correlate.Key, seq uint32, c toa.Client, when time.Time) decode.Record {
	r := decode.Record{Time: when, Peer: k.Peer(), Local: k.Local(), Flags: decode.SYN, Seq: seq, TOA: c}
	if !c.IsZero() {
		r.TOACount = 1
	}
	return r
}

func fin(k correlate.Key, when time.Time) decode.Record {
	return decode.Record{Time: when, Peer: k.Peer(), Local: k.Local(), Flags: decode.FIN | decode.ACK, Seq: 2}
}

// ackTOA is a handshake's last ACK carrying the TOA, whose SYN the
// capture missed: the entry's initial sequence number is inferred.
func ackTOA(k correlate.Key, seq uint32, c toa.Client, when time.Time) decode.Record {
	return decode.Record{Time: when, Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK, Seq: seq + 1, TOA: c, TOACount: 1}
}

// step applies step n of the workload every test of this package shares.
func step(tab *correlate.Table, n int) { stepFrom(tab, 0, n) }

// stepFrom applies step n of the workload on connections base and up:
// connection base+n opens (its TOA in the SYN, or in the ACK for every
// fourth); the SYN of the connection opened by ACK 4 steps earlier
// confirms its initial sequence number; every third step closes the
// connection of 5 steps earlier; every seventh, a new connection takes the
// key of the one of 10 steps earlier; every fiftieth, the table expires
// what lingered. Step n happens at at(base+n).
func stepFrom(tab *correlate.Table, base, n int) {
	now := at(base + n)
	c := base + n
	var r decode.Record
	if n%4 == 1 {
		r = ackTOA(keyN(c), uint32(c), clientN(c, 0), now)
	} else {
		r = syn(keyN(c), uint32(c), clientN(c, 0), now)
	}
	tab.Observe(&r)
	if n%4 == 1 && n >= 4 {
		r = syn(keyN(c-4), uint32(c-4), toa.Client{}, now)
		tab.Observe(&r)
	}
	if n%3 == 0 && n >= 5 {
		r = fin(keyN(c-5), now)
		tab.Observe(&r)
	}
	if n%7 == 0 && n >= 10 {
		r = syn(keyN(c-10), uint32(c)+1<<20, clientN(c-10, 1), now)
		tab.Observe(&r)
	}
	if n%50 == 0 {
		tab.Expire(now)
	}
}

// expiredAt is the time of the last expiry the workload on base made by
// step n: recovering at that clock skips what it expired, which the
// journal does not record.
func expiredAt(base, n int) time.Time { return at(base + n - n%50) }

// touched returns the connections step n on base changes.
func touched(base, n int) []int {
	c := []int{base + n}
	for _, d := range []int{4, 5, 10} {
		if n >= d {
			c = append(c, base+n-d)
		}
	}
	return c
}

func newTable(t testing.TB, cfg correlate.Config) *correlate.Table {
	t.Helper()
	tab, err := correlate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tab.Close)
	return tab
}

func entries(tab *correlate.Table) map[correlate.Key]correlate.Entry {
	m := make(map[correlate.Key]correlate.Entry)
	tab.Range(func(e correlate.Entry) bool {
		m[e.Key] = e
		return true
	})
	return m
}

// tableCfg is the table every test uses: big enough that nothing is
// evicted, unless a test says otherwise, and a linger of 20 steps.
var tableCfg = correlate.Config{Capacity: 1 << 14, Shards: 8, Linger: 20 * time.Millisecond}

// recovered loads what dir holds into a fresh table, as Open does, without
// changing dir.
func recovered(t testing.TB, dir string, now time.Time) (*correlate.Table, Recovery) {
	t.Helper()
	return recoveredInto(t, dir, now, tableCfg)
}

// smallCfg is a table for the few entries of the tests that recover
// thousands of times.
var smallCfg = correlate.Config{Capacity: 512, Shards: 1, Linger: tableCfg.Linger}

func recoveredInto(t testing.TB, dir string, now time.Time, cfg correlate.Config) (*correlate.Table, Recovery) {
	t.Helper()
	im, rcv, err := recoverImage(dir)
	if err != nil {
		t.Fatalf("recover %s: %v", dir, err)
	}
	tab := newTable(t, cfg)
	rcv.Loaded = tab.LoadImage(im, now)
	return tab, rcv
}

// copyDir copies the files of src into a new directory, as a crash would
// leave them. The journal may be writing meanwhile: its snapshots never
// change once in place and its segments only grow, so each file read at
// its own moment still makes a state a crash could leave; a file removed
// (an older generation) or renamed (a snapshot put in place) between the
// listing and the read makes it start again.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	for try := 0; ; try++ {
		err := copyFiles(src, dst)
		if err == nil {
			return dst
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 100 {
			t.Fatal(err)
		}
		os.RemoveAll(dst)
		os.Mkdir(dst, 0o700)
	}
}

func copyFiles(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// diff returns the difference between two tables' entries, or "".
func diff(want, got map[correlate.Key]correlate.Entry) string {
	if maps.Equal(want, got) {
		return ""
	}
	return cmp.Diff(want, got, cmpNet)
}

// noClock makes recovery expire nothing.
func noClock() time.Time { return time.Time{} }

// journaled opens a journal in dir, with an hour between its writes, on
// a new table, and applies and flushes the workload's first n steps.
func journaled(t testing.TB, dir string, n int) (*Journal, *correlate.Table) {
	t.Helper()
	src := newTable(t, tableCfg)
	j, _ := open(t, dir, src, Config{Interval: time.Hour})
	for n := range n {
		step(src, n)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	return j, src
}

func open(t testing.TB, dir string, tab *correlate.Table, cfg Config) (*Journal, Recovery) {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = noClock
	}
	j, rcv, err := Open(dir, tab, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j, rcv
}
