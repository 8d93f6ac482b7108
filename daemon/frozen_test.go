package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/toad-project/toad/internal/craft/gen"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// TestServePcapAnswersAtOnce: with --pcap the table is frozen, nothing can
// come that it lacks, so a lookup of a connection it does not hold is
// answered NOT_FOUND at once, however long it may wait, and a known one
// as always. (The call's deadline only bounds a toad that would wait.)
func TestServePcapAnswersAtOnce(t *testing.T) {
	dir := t.TempDir()
	capFile, truth := writeSample(t, dir)
	sock := filepath.Join(dir, "toad.sock")
	serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.MaxWait, c.Trusted, c.Drain = []string{capFile}, sock, time.Hour, trusted, 0
	})
	cc := dialUnix(t, sock)
	svc := toadv1.NewLookupServiceClient(cc)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := svc.Lookup(ctx, &toadv1.LookupRequest{Peer: "198.51.100.250:65000", Local: "192.0.2.20:8080", Wait: durationpb.New(time.Hour)})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("lookup of an unknown connection: %v, want NOT_FOUND", err)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "waited") {
		t.Errorf("message %q: the lookup did not wait, and should not say it did", msg)
	}
	var known *gen.Conn
	for i := range truth.Conns {
		if c := &truth.Conns[i]; c.Resolvable() {
			known = c
			break
		}
	}
	r, err := svc.Lookup(ctx, &toadv1.LookupRequest{Peer: known.Peer.String(), Local: known.Local.String(), Wait: durationpb.New(time.Hour)})
	if err != nil || r.GetConnection().GetClientIp() != known.Client.Addr.String() {
		t.Errorf("lookup of %v > %v: %v, %v; want client %v", known.Peer, known.Local, r.GetConnection().GetClient(), err, known.Client.Addr)
	}
	st, err := svc.GetStats(context.Background(), &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if tb := st.GetTable(); tb.GetLookupsNotFound() != 1 || tb.GetLookupsTimedOut() != 0 || tb.GetLookupsOk() != 1 {
		t.Errorf("lookups: %d not found at once, %d timed out, %d answered; want 1, 0, 1",
			tb.GetLookupsNotFound(), tb.GetLookupsTimedOut(), tb.GetLookupsOk())
	}
}

// TestServeBlockTimeoutDeprecated: --block-timeout, which no longer means
// anything, is accepted, whatever its value, and warned of at start.
func TestServeBlockTimeoutDeprecated(t *testing.T) {
	dir := t.TempDir()
	capFile, _ := writeSample(t, dir)
	d := serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.Drain, c.BlockTimeout = []string{capFile}, filepath.Join(dir, "toad.sock"), 0, 500*time.Microsecond
	})
	m := d.waitLog(t, "--block-timeout is deprecated and ignored: the capture hands each packet over as it arrives, with no block to time out; remove the setting")
	if m["level"] != "WARN" || m["block_timeout"] != "500µs" {
		t.Errorf("warning %v: want level WARN and block_timeout=500µs", m)
	}
}
