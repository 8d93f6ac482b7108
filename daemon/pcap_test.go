package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// TestServePcapRotated: --pcap files rotated by tcpdump -C and named out of
// capture order build the table as the capture did: a 4-tuple the proxies
// reused answers its last connection's client, not an earlier one's.
func TestServePcapRotated(t *testing.T) {
	dir := t.TempDir()
	cfg := gen.Config{Seed: 21, Conns: 120, Concurrency: 4, Proxies: 2, Ports: 5, DataSegments: 1, IPv6: 0.3,
		Ends: gen.Ends{FIN: 0.4, RST: 0.2}, Gap: 2 * time.Second, Framings: []craft.Framing{{Link: decode.LinkEthernet}}}
	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	names := make([]string, 12)
	for i := range names {
		names[i] = filepath.Join(dir, "cap.pcap")
		if i > 0 {
			names[i] += fmt.Sprint(i)
		}
	}
	truth, err := gen.WriteSplit(names, gen.PCAP, cfg, func(ts time.Time, _ int) int {
		return min(int(ts.Sub(start)/(2*time.Minute)), len(names)-1)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The last connection on each 4-tuple is the one the table holds.
	last := map[[2]netip.AddrPort]gen.Conn{}
	reused := 0
	for _, c := range truth.Conns {
		k := [2]netip.AddrPort{c.Peer, c.Local}
		if prev, ok := last[k]; ok {
			reused++
			if c.Opened.Before(prev.Opened) {
				continue
			}
		}
		last[k] = c
	}
	if reused < 50 {
		t.Fatalf("%d connections reuse a 4-tuple, want most", reused)
	}
	d := serving(t, func(c *Config) {
		c.Socket, c.Listen, c.Trusted, c.Drain = "", "127.0.0.1:0", trusted, 0
		c.Linger = 24 * time.Hour                     // the table keeps the closed ones, so that every 4-tuple answers
		c.Pcaps = slices.Sorted(slices.Values(names)) // a shell glob: cap.pcap, cap.pcap1, cap.pcap10, ...
	})
	c := apitest.Client(t, d.api, client.WithWait(0))
	checked := 0
	for k, want := range last {
		got, err := c.Lookup(context.Background(), k[0], k[1])
		switch {
		case want.Client.IsZero():
			// The last connection carried no TOA: the table holds nothing,
			// or an earlier connection's entry it must not answer with.
			if err == nil {
				t.Errorf("%v > %v: answered %v, want not found: its last connection carried no TOA", k[0], k[1], got.Client)
			}
		case err != nil:
			t.Errorf("%v > %v: %v, want %v", k[0], k[1], err, want.Client)
		case got.Client.Addr() != want.Client.Addr || got.Dialect != want.Client.Dialect || !got.FirstSeen.Equal(want.FirstSeen):
			t.Errorf("%v > %v: got %v (%v, first seen %v), want the last connection's %v (%v, %v)",
				k[0], k[1], got.Client, got.Dialect, got.FirstSeen, want.Client, want.Client.Dialect, want.FirstSeen)
		default:
			checked++
		}
	}
	if checked < 10 {
		t.Errorf("%d 4-tuples answered, want more to test", checked)
	}
}
