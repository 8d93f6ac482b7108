package main

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/toa"
)

// sendFrames writes Ethernet frames out of iface from inside ns.
func sendFrames(t *testing.T, ns *netnstest.NS, iface string, frames ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send from %s: %v", ns.Name, err)
	}
}

// TestServeLive runs toad serve on a live capture in a network namespace:
// health turns SERVING once the capture is attached, and a SYN carrying a
// TOA sent across a veth pair answers a lookup over the unix socket that
// waits for it.
func TestServeLive(t *testing.T) {
	privtest.Require(t, "ip")
	a, b := netnstest.New(t, "serve"), netnstest.New(t, "serve")
	netnstest.Veth(t, a, "veth-a", b, "veth-b")
	// craft's Ethernet frames go to 02:00:00:00:00:01.
	a.IP(t, "link set veth-a address 02:00:00:00:00:01", "addr add 192.0.2.20/24 dev veth-a")

	sock := filepath.Join(t.TempDir(), "toad.sock")
	servingIn(t, a.Do, "--interface", "veth-a", "--socket", sock, "--listen", "", "--trusted-proxies", "198.51.100.0/24", "--drain", "0s")

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health with the capture attached: %v, %v; want SERVING", h.GetStatus(), err)
	}

	peer, local := netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080")
	real := netip.MustParseAddrPort("203.0.113.7:51234")
	c, err := client.New(sock, client.WithWait(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type result struct {
		conn client.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		got, err := c.Lookup(context.Background(), peer, local)
		done <- result{got, err}
	}()
	syn := &craft.Segment{Src: peer, Dst: local, Flags: decode.SYN, Seq: 1000,
		Options: craft.Opts(craft.MSS(1460), craft.TOA(toa.Kind200V4, real))}
	sendFrames(t, b, "veth-b", craft.Frame(craft.Framing{Link: decode.LinkEthernet}, syn))
	select {
	case r := <-done:
		if r.err != nil || r.conn.Client != real || r.conn.Dialect != toa.Kind200V4 {
			t.Errorf("Lookup(%v, %v) = %+v, %v; want client %v, dialect 200/8", peer, local, r.conn, r.err, real)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lookup did not return")
	}
}
