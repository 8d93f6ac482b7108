package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// TestServeLive runs toad serve on a live capture in a network namespace:
// health turns SERVING once the capture is attached, and a SYN carrying a
// TOA sent across a veth pair reaches a Watch stream and answers a lookup
// over the unix socket. (A lookup made before the SYN was captured is
// NOT_FOUND at once: lookups wait for the capture to catch up with their
// call, not for segments sent after it.)
func TestServeLive(t *testing.T) {
	privtest.Require(t, "ip")
	a, b := netnstest.New(t, "serve"), netnstest.New(t, "serve")
	netnstest.Veth(t, a, "veth-a", b, "veth-b")
	// craft's Ethernet frames go to 02:00:00:00:00:01.
	a.IP(t, "link set veth-a address 02:00:00:00:00:01", "addr add 192.0.2.20/24 dev veth-a")

	sock := filepath.Join(t.TempDir(), "toad.sock")
	servingIn(t, a.Do, func(c *Config) {
		c.Interface, c.Socket, c.Trusted, c.Drain = "veth-a", sock, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, 0
	})

	cc := dialUnix(t, sock)
	h, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health with the capture attached: %v, %v; want SERVING", h.GetStatus(), err)
	}

	peer, local := netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080")
	real := netip.MustParseAddrPort("203.0.113.7:51234")
	c := apitest.Client(t, sock, client.WithWait(20*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := c.Service().Watch(ctx, &toadv1.WatchRequest{})
	if err == nil {
		_, err = w.Header() // subscribed
	}
	if err != nil {
		t.Fatal(err)
	}
	syn := &craft.Segment{Src: peer, Dst: local, Flags: decode.SYN, Seq: 1000,
		Options: craft.Opts(craft.MSS(1460), craft.TOA(toa.Kind200V4, real))}
	if err := b.SendFrames("veth-b", craft.Frame(craft.Framing{Link: decode.LinkEthernet}, syn)); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			t.Fatalf("waiting for the SYN's event: %v", err)
		}
		if ev.GetConnection().GetPeer() == peer.String() {
			break
		}
	}
	got, err := c.Lookup(ctx, peer, local)
	if err != nil || got.Client != real || got.Dialect != toa.Kind200V4 {
		t.Errorf("Lookup(%v, %v) = %+v, %v; want client %v, dialect 200/8", peer, local, got, err, real)
	}
}

// TestServeSocketGroup: --socket-group gives the socket a group whose
// members may connect.
func TestServeSocketGroup(t *testing.T) {
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 65534 // root may give it any group
	}
	dir := filepath.Join(t.TempDir(), "run")
	sock := filepath.Join(dir, "toad.sock")
	serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.SocketGroup, c.Drain = []string{samplePath}, sock, strconv.Itoa(gid), 0
	})
	for _, p := range []string{sock, dir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Sys().(*syscall.Stat_t).Gid; got != uint32(gid) {
			t.Errorf("%s belongs to group %d, want %d", p, got, gid)
		}
	}
}
