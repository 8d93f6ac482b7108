package fullnat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// txQueueLen is the device's queue toward the proxy, in packets; the
// kernel's default for TUN (500) drops bursts of new connections.
const txQueueLen = 4096

// New creates the TUN device, routes the VIPs and the proxy's origin-side
// address to it, and returns a Forwarder ready to Run. The device and the
// routes are made in the network namespace of the calling OS thread (lock
// the thread into a namespace first to use another); they vanish when the
// Forwarder is closed.
//
// The namespace must forward IP (net.ipv4.ip_forward=1, and
// net.ipv6.conf.all.forwarding=1 for IPv6) unless clients and origin both
// run in it.
func New(cfg Config) (*Forwarder, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	dev, name, index, err := openTUN(cfg.Device, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("fullnat: %w", err)
	}
	var addrs []netip.Addr
	for _, v := range cfg.VIPs {
		addrs = append(addrs, v.Addr())
	}
	addrs = append(addrs, cfg.proxyAddr())
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range slices.Compact(addrs) {
		if err := addRoute(index, netip.PrefixFrom(a, a.BitLen())); err != nil {
			dev.Close()
			return nil, fmt.Errorf("fullnat: route %v to %s: %w", a, name, err)
		}
	}
	return newForwarder(cfg, dev, name), nil
}

// openTUN creates a TUN device (IP packets, no packet information header)
// and brings it up.
func openTUN(name string, mtu int) (_ *os.File, _ string, index int, _ error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", 0, fmt.Errorf("open /dev/net/tun: %w (needs CAP_NET_ADMIN)", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", 0, fmt.Errorf("device name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, "", 0, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	// Only now may the descriptor join Go's poller: a TUN descriptor not
	// yet attached to a device polls as an error, which the poller would
	// remember. Being non-blocking, it is pollable, so Close interrupts
	// Read.
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	defer func() {
		if index == 0 {
			f.Close()
		}
	}()
	name = ifr.Name()

	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "", 0, fmt.Errorf("configure %s: %w", name, err)
	}
	defer unix.Close(s)
	set := func(req uint, what string, v uint32) error {
		r, _ := unix.NewIfreq(name)
		r.SetUint32(v)
		if err := unix.IoctlIfreq(s, req, r); err != nil {
			return fmt.Errorf("set %s of %s: %w", what, name, err)
		}
		return nil
	}
	if err := set(unix.SIOCSIFMTU, "MTU", uint32(mtu)); err != nil {
		return nil, "", 0, err
	}
	if err := set(unix.SIOCSIFTXQLEN, "queue length", txQueueLen); err != nil {
		return nil, "", 0, err
	}
	r, _ := unix.NewIfreq(name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, r); err != nil {
		return nil, "", 0, fmt.Errorf("read flags of %s: %w", name, err)
	}
	if err := set(unix.SIOCSIFFLAGS, "flags", uint32(r.Uint16()|unix.IFF_UP)); err != nil {
		return nil, "", 0, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, r); err != nil {
		return nil, "", 0, fmt.Errorf("read index of %s: %w", name, err)
	}
	return f, name, int(r.Uint32()), nil
}

// addRoute adds a route to p through the device with the given index, in
// the main table, over rtnetlink.
func addRoute(index int, p netip.Prefix) error {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer unix.Close(s)
	if err := unix.Bind(s, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	family := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		family = unix.AF_INET6
	}
	b := make([]byte, unix.SizeofNlMsghdr, 128)
	b = append(b, family, uint8(p.Bits()), 0, 0, // family, dst_len, src_len, tos
		unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST,
		0, 0, 0, 0) // flags
	b = appendAttr(b, unix.RTA_DST, p.Addr().AsSlice())
	b = appendAttr(b, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(index)))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.RTM_NEWROUTE)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	ne.PutUint32(b[8:], 1) // sequence
	if err := unix.Sendto(s, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(s, buf, 0)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	// The answer is one NLMSG_ERROR message: its header, then the error
	// number (0 for success), then the request's header.
	if n < unix.SizeofNlMsghdr+4 || ne.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return errors.New("rtnetlink: no acknowledgement")
	}
	if e := int32(ne.Uint32(buf[unix.SizeofNlMsghdr:])); e != 0 {
		err := unix.Errno(-e)
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w: remove the existing route or address first", err)
		}
		return err
	}
	return nil
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
