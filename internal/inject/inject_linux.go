package inject

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender writes IP packets to one interface, addressed to one link-layer
// destination.
type Sender struct {
	fd     int
	v4, v6 unix.RawSockaddrLinklayer
}

// New opens a Sender on iface, whose packets go to dst (the receiving
// end's hardware address; all zero on loopback). It must be called in
// iface's network namespace.
func New(iface string, dst net.HardwareAddr) (*Sender, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	s := &Sender{fd: fd}
	for _, a := range []struct {
		sa    *unix.RawSockaddrLinklayer
		proto uint16
	}{{&s.v4, unix.ETH_P_IP}, {&s.v6, unix.ETH_P_IPV6}} {
		*a.sa = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(a.proto), Ifindex: int32(ifi.Index), Halen: uint8(len(dst))}
		copy(a.sa.Addr[:], dst)
	}
	return s, nil
}

func (s *Sender) addr(ip []byte) *unix.RawSockaddrLinklayer {
	if len(ip) > 0 && ip[0]>>4 == 6 {
		return &s.v6
	}
	return &s.v4
}

// Send writes one packet.
func (s *Sender) Send(ip []byte) error {
	if len(ip) == 0 {
		return nil
	}
	sa := s.addr(ip)
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&ip[0])), uintptr(len(ip)), 0,
		uintptr(unsafe.Pointer(sa)), unsafe.Sizeof(*sa))
	runtime.KeepAlive(ip)
	if errno != 0 {
		return errno
	}
	return nil
}

// batch is how many packets one sendmmsg(2) call writes.
const batch = 64

// SendAll writes the packets in order, batch at a time with sendmmsg(2),
// paced to rate packets per second unless rate is 0. A full device queue
// (ENOBUFS) makes it try again.
func (s *Sender) SendAll(packets [][]byte, rate float64) error {
	var (
		iovs [batch]unix.Iovec
		msgs [batch]unix.Mmsghdr
	)
	for i := range msgs {
		msgs[i].Hdr.Namelen = uint32(unsafe.Sizeof(s.v4))
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var tick time.Duration
	if rate > 0 {
		tick = time.Duration(float64(batch) / rate * float64(time.Second))
	}
	next := time.Now()
	for len(packets) > 0 {
		n := min(batch, len(packets))
		for i, p := range packets[:n] {
			iovs[i].Base = &p[0]
			iovs[i].SetLen(len(p))
			msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(s.addr(p)))
		}
		if tick > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(tick)
		}
		for sent := 0; sent < n; {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(n-sent), 0, 0, 0)
			switch {
			case errno == unix.ENOBUFS || errno == unix.EAGAIN || errno == unix.EINTR:
				continue
			case errno != 0:
				return fmt.Errorf("sendmmsg: %w", errno)
			}
			sent += int(r)
		}
		runtime.KeepAlive(packets)
		packets = packets[n:]
	}
	return nil
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// OnOneCPU runs fn with the calling thread, which must be locked to its
// goroutine, kept on one CPU: the packets fn sends go through the
// receiving end's stack in the order sent.
func OnOneCPU(fn func() error) error {
	var was, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return err
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return err
	}
	defer unix.SchedSetaffinity(0, &was)
	return fn()
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// Burst writes packets to iface, addressed to dst, in order and paced to
// rate packets per second unless rate is 0, from the calling thread (which
// must be locked to its goroutine, as netnstest.NS.Do's is) kept on one
// CPU.
func Burst(iface string, dst net.HardwareAddr, packets [][]byte, rate float64) error {
	return OnOneCPU(func() error {
		s, err := New(iface, dst)
		if err != nil {
			return err
		}
		defer s.Close()
		return s.SendAll(packets, rate)
	})
}
