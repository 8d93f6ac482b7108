package kfilter

import (
	"net/netip"

	"github.com/toad-project/toad/bench/replaycmp"
	"github.com/toad-project/toad/capture"
)

// Config says what traffic to send and which filters to measure.
type Config struct {
	// Mix is the traffic; its packets go over the link as raw IP.
	Mix replaycmp.Mix
	// Filters are measured in turn; nil means FilterTOA, then FilterNone
	// (the socket's direction setting alone) for comparison.
	Filters []capture.Filter
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Result is what one filter let through.
type Result struct {
	// Filter is the filter asked for; Attached the one the kernel took.
	Filter, Attached capture.Filter
	// Skipped says why nothing was measured.
	Skipped string
	// Sent counts the traffic's packets on the link, both ways; Inbound
	// those towards the server.
	Sent, Inbound int
	// Passed is how many of the traffic's packets the kernel handed to the
	// capture's ring (the socket's counter, less the end marker).
	Passed uint64
	// Predicted is how many of the inbound packets the filter's program
	// accepts when golang.org/x/net/bpf runs it in Go: what Passed should
	// be when nothing is lost.
	Predicted int
	// Drops are packets the kernel dropped for a full ring.
	Drops uint64
	// Found are the mappings the table behind the capture held at the
	// end; Agrees reports that they equal the traffic's ground truth.
	Found, Truth replaycmp.Mappings
	Agrees       bool
}

// Share is the share of the link's packets that reached user space.
func (r *Result) Share() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Passed) / float64(r.Sent)
}

// servers are the generator's server addresses: packets to them go
// towards the server.
var servers = []netip.Addr{
	netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21"),
	netip.MustParseAddr("2001:db8::20"), netip.MustParseAddr("2001:db8::21"),
}

// inbound reports whether an IP packet goes towards a server. Anything
// that is not a readable IP header counts as inbound: the proxies' end
// sends it.
func inbound(ip []byte) bool {
	var dst netip.Addr
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		dst = netip.AddrFrom4([4]byte(ip[16:20]))
	case len(ip) >= 40 && ip[0]>>4 == 6:
		dst = netip.AddrFrom16([16]byte(ip[24:40]))
	default:
		return true
	}
	for _, s := range servers {
		if dst == s {
			return true
		}
	}
	return false
}

func filters(cfg Config) []capture.Filter {
	if cfg.Filters == nil {
		return []capture.Filter{capture.FilterTOA, capture.FilterNone}
	}
	return cfg.Filters
}
