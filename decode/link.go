package decode

import (
	"fmt"
	"strconv"
)

// LinkType is a link-layer header type, numbered as in pcap's LINKTYPE_*
// registry so that capture files map onto it directly.
type LinkType uint16

// Link types Decode understands.
const (
	// LinkEthernet is Ethernet II, with any number of 802.1Q, 802.1ad or
	// 0x9100 VLAN tags.
	LinkEthernet LinkType = 1
	// LinkRaw is a bare IP packet whose version nibble says v4 or v6: pcap's
	// LINKTYPE_RAW, and what a cooked (SOCK_DGRAM) AF_PACKET socket delivers.
	LinkRaw LinkType = 101
	// LinkLinuxSLL is Linux cooked capture v1, what capturing on "any" gives.
	LinkLinuxSLL LinkType = 113
	// LinkIPv4 and LinkIPv6 are raw IP of one version.
	LinkIPv4 LinkType = 228
	LinkIPv6 LinkType = 229
	// LinkLinuxSLL2 is Linux cooked capture v2.
	LinkLinuxSLL2 LinkType = 276
)

// Links lists the supported link types.
var Links = []LinkType{LinkEthernet, LinkRaw, LinkLinuxSLL, LinkIPv4, LinkIPv6, LinkLinuxSLL2}

func (l LinkType) String() string {
	switch l {
	case LinkEthernet:
		return "ethernet"
	case LinkRaw:
		return "raw"
	case LinkLinuxSLL:
		return "linux_sll"
	case LinkIPv4:
		return "ipv4"
	case LinkIPv6:
		return "ipv6"
	case LinkLinuxSLL2:
		return "linux_sll2"
	}
	return "linktype(" + strconv.Itoa(int(l)) + ")"
}

// CheckLink returns an error naming l when Decode does not support it.
func CheckLink(l LinkType) error {
	for _, s := range Links {
		if s == l {
			return nil
		}
	}
	return fmt.Errorf("link type %d is not supported (supported: Ethernet 1, raw IP 101/228/229, Linux cooked SLL 113 and SLL2 276)", uint16(l))
}
