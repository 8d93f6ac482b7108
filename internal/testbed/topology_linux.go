package testbed

import (
	"testing"

	"github.com/toad-project/toad/internal/netnstest"
)

// LinkOrigin joins the proxy's org0 to the origin's eth0 with a veth pair,
//
//	proxy org0 192.0.2.1, 2001:db8:2::1 ---- eth0 origin 192.0.2.20, 2001:db8:2::20
//
// turns forwarding on in the proxy, and routes the proxy's ranges (the
// VIPs and its origin-side addresses) from the origin through it. extra
// are more `ip` commands for the origin (routes to other hosts).
func LinkOrigin(t testing.TB, proxy, origin *netnstest.NS, extra ...string) {
	t.Helper()
	netnstest.Veth(t, proxy, "org0", origin, "eth0")
	proxy.IP(t,
		"addr add 192.0.2.1/24 dev org0",
		"addr add 2001:db8:2::1/64 dev org0 nodad")
	proxy.Sysctl(t, "net.ipv4.ip_forward", "1")
	proxy.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	origin.IP(t, append([]string{
		"addr add 192.0.2.20/24 dev eth0",
		"addr add 2001:db8:2::20/64 dev eth0 nodad",
		"route add 198.51.100.0/24 via 192.0.2.1",
		"route add 2001:db8:100::/64 via 2001:db8:2::1",
	}, extra...)...)
}
