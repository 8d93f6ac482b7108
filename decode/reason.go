package decode

import "strconv"

// Reason tells why a frame yielded no Record. The zero value, OK, means a
// Record was produced.
type Reason uint8

// Reasons a frame is rejected.
const (
	OK              Reason = iota
	UnsupportedLink        // the link type is not one Decode knows
	Truncated              // a header runs past the captured bytes
	NotIP                  // the link layer carries something other than IPv4 or IPv6
	BadIPHeader            // wrong version, header length or total length
	Fragment               // a non-first fragment, or a first one without the whole TCP header
	NotTCP                 // an IP packet of another protocol
	BadTCPHeader           // TCP data offset below 5 or past the IP payload
	BadOptions             // the TCP option list cannot be walked
	numReasons
)

var reasonNames = [...]string{
	OK:              "ok",
	UnsupportedLink: "unsupported_link",
	Truncated:       "truncated",
	NotIP:           "not_ip",
	BadIPHeader:     "bad_ip_header",
	Fragment:        "fragment",
	NotTCP:          "not_tcp",
	BadTCPHeader:    "bad_tcp_header",
	BadOptions:      "bad_options",
}

// NumReasons is the number of Reason values, for arrays of counters indexed
// by Reason.
const NumReasons = int(numReasons)

// String returns the reason in snake case, the form used in metric labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}
