package packet

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/internal/inject"
)

// The receive paths a capture could take, measured side by side on the
// same link, the same traffic and the same filter by BenchmarkReceive:
//
//   - v2: this package, a TPACKET_V2 frame ring; the kernel wakes the
//     reader, asleep in poll(2), for each frame it fills, and the reader
//     reads frames in place.
//   - v2-netpoll: the same ring, the reader asleep in the Go runtime's
//     poller (a non-blocking socket read through syscall.RawConn).
//   - v3: a TPACKET_V3 block ring; the kernel hands a block over when it
//     fills or when its timeout (here the shortest, 1 ms, rounded up to
//     the kernel's timer tick) fires.
//   - recvmmsg: a plain packet socket; the reader copies up to 64 packets
//     per recvmmsg(2) call out of the socket's queue.
//
// All but v2 wait for packets in the Go runtime's poller; none has a
// timeout.

// rxPath is a receive path under measurement.
type rxPath interface {
	receive(fn func(data []byte)) error
	counters() (packets, drops uint64)
	// wakeups is how many times the reader woke to read.
	wakeups() uint64
	close()
}

var rxPaths = []struct {
	name string
	open func(ifi *net.Interface, prog []bpf.RawInstruction) (rxPath, error)
}{
	{"v2", openV2(true)},
	{"v2-netpoll", openV2(false)},
	{"v3", openV3},
	{"recvmmsg", openMmsg(benchRing)},
	// A plain socket's queue is charged to its receive buffer, which a
	// process with CAP_NET_RAW alone can raise only up to
	// net.core.rmem_max: 212992 bytes unless the host was tuned.
	{"recvmmsg-208k", openMmsg(212992)},
}

// benchRing is the ring size (and the plain socket's receive buffer) of
// every path: toad's default.
const benchRing = DefaultRingSize

type v2Path struct{ c *Conn }

func openV2(pollMode bool) func(*net.Interface, []bpf.RawInstruction) (rxPath, error) {
	return func(ifi *net.Interface, prog []bpf.RawInstruction) (rxPath, error) {
		return openV2Mode(ifi, prog, pollMode)
	}
}

func openV2Mode(ifi *net.Interface, prog []bpf.RawInstruction, pollMode bool) (rxPath, error) {
	c, err := open(Config{RingSize: benchRing}, pollMode)
	if err != nil {
		return nil, err
	}
	if err := c.SetBPF(prog); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Bind(ifi); err != nil {
		c.Close()
		return nil, err
	}
	return v2Path{c}, nil
}

func (p v2Path) receive(fn func([]byte)) error {
	fn2 := func(data []byte, _ time.Time) { fn(data) }
	if p.c.pollMode {
		return p.c.Receive(fn2)
	}
	return receiveNetpoll(p.c, fn2)
}

// receiveNetpoll is Receive with the runtime's poller in place of poll(2)
// on a dedicated thread: the socket is non-blocking, the reader sleeps
// as a parked goroutine, and Close wakes it by closing the file.
func receiveNetpoll(c *Conn, fn func([]byte, time.Time)) error {
	return c.rc.Read(func(fd uintptr) bool {
		c.wakeups.Add(1)
		c.drain(fn)
		// The wakeup may come from an error rather than a frame, and the
		// edge-triggered poller would not report it again.
		e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		return err != nil || e != 0
	})
}

func (p v2Path) counters() (uint64, uint64) {
	st, _ := p.c.Stats()
	return st.Packets, st.Drops
}

func (p v2Path) close() { p.c.Close() }

func (p v2Path) wakeups() uint64 {
	st, _ := p.c.Stats()
	return st.Wakeups
}

// rawSocket opens a non-blocking cooked packet socket bound to no
// protocol, runs setup on it, attaches prog and binds it to ifi.
func rawSocket(ifi *net.Interface, prog []bpf.RawInstruction, setup func(fd int) error) (*os.File, syscall.RawConn, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := setup(fd); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

// kernelCounters reads and sums PACKET_STATISTICS.
type kernelCounters struct {
	mu             sync.Mutex
	packets, drops uint64
}

func (k *kernelCounters) read(rc syscall.RawConn) (uint64, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			k.packets += uint64(st.Packets)
			k.drops += uint64(st.Drops)
		}
	})
	return k.packets, k.drops
}

type v3Path struct {
	f          *os.File
	rc         syscall.RawConn
	ring       []byte
	block, nbk int
	k          kernelCounters
	woke       atomic.Uint64
}

func (p *v3Path) wakeups() uint64 { return p.woke.Load() }

func openV3(ifi *net.Interface, prog []bpf.RawInstruction) (rxPath, error) {
	p := &v3Path{block: 64 << 10}
	p.nbk = benchRing / p.block
	var err error
	p.f, p.rc, err = rawSocket(ifi, prog, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			return err
		}
		req := unix.TpacketReq3{
			Block_size:     uint32(p.block),
			Block_nr:       uint32(p.nbk),
			Frame_size:     2048,
			Frame_nr:       uint32(p.nbk * p.block / 2048),
			Retire_blk_tov: 1, // ms, the shortest
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return err
		}
		p.ring, err = unix.Mmap(fd, 0, p.nbk*p.block, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *v3Path) receive(fn func([]byte)) error {
	next := 0
	return p.rc.Read(func(uintptr) bool {
		p.woke.Add(1)
		for {
			b := p.ring[next*p.block : (next+1)*p.block]
			desc := (*unix.TpacketBlockDesc)(unsafe.Pointer(&b[0]))
			hdr := (*unix.TpacketHdrV1)(unsafe.Pointer(&desc.Hdr[0]))
			if atomic.LoadUint32(&hdr.Block_status)&unix.TP_STATUS_USER == 0 {
				return false
			}
			off := int(hdr.Offset_to_first_pkt)
			for range hdr.Num_pkts {
				h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&b[off]))
				fn(b[off+int(h.Mac) : off+int(h.Mac)+int(h.Snaplen)])
				off += int(h.Next_offset)
			}
			atomic.StoreUint32(&hdr.Block_status, unix.TP_STATUS_KERNEL)
			next = (next + 1) % p.nbk
		}
	})
}

func (p *v3Path) counters() (uint64, uint64) { return p.k.read(p.rc) }

func (p *v3Path) close() {
	p.f.Close()
	unix.Munmap(p.ring)
}

type mmsgPath struct {
	f    *os.File
	rc   syscall.RawConn
	k    kernelCounters
	woke atomic.Uint64
}

func (p *mmsgPath) wakeups() uint64 { return p.woke.Load() }

// openMmsg opens a plain socket whose receive buffer is rcvbuf bytes
// (SO_RCVBUFFORCE: the figure asked for, whatever rmem_max says).
func openMmsg(rcvbuf int) func(*net.Interface, []bpf.RawInstruction) (rxPath, error) {
	return func(ifi *net.Interface, prog []bpf.RawInstruction) (rxPath, error) {
		p := &mmsgPath{}
		var err error
		p.f, p.rc, err = rawSocket(ifi, prog, func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf/2) // the kernel doubles it
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

const mmsgBatch = 64

func (p *mmsgPath) receive(fn func([]byte)) error {
	bufs := make([][DefaultSnapLen]byte, mmsgBatch)
	iovs := make([]unix.Iovec, mmsgBatch)
	msgs := make([]unix.Mmsghdr, mmsgBatch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(DefaultSnapLen)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	return p.rc.Read(func(fd uintptr) bool {
		p.woke.Add(1)
		for {
			n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), mmsgBatch, unix.MSG_DONTWAIT, 0, 0)
			if errno != 0 {
				return false // EAGAIN: wait; the benchmark sees no other error
			}
			for i := range int(n) {
				fn(bufs[i][:msgs[i].Len])
			}
			if n < mmsgBatch {
				return false
			}
		}
	})
}

func (p *mmsgPath) counters() (uint64, uint64) { return p.k.read(p.rc) }
func (p *mmsgPath) close()                     { p.f.Close() }

// BenchmarkReceive measures each receive path on a veth link, a sender in
// another namespace writing UDP packets that carry their send time, the
// reader doing nothing with them but taking that time:
//
//   - one: a packet every 200 µs, so that the reader sleeps between them,
//     as on a server whose connections come one by one: latency from send
//     to hand-over (p50, p99) and CPU per packet.
//   - rate=50: a packet every 20 ms, a quiet link, where the reader parks
//     between packets: the same figures.
//   - rate=N: N packets a second, sent in bursts every millisecond: the
//     same figures at a steady load.
//   - burst: as fast as the sender can, in one go: packets per second
//     reaching the reader, and the share the kernel dropped.
//
// "cpu-ns/pkt" is the reader's process's CPU time (getrusage) per packet
// handed over: the reader's work and its wakeups. The kernel's work on
// the receive path runs in the sender's context (softirq on the sender's
// CPU: the filter, the copy into a ring or the queueing of a buffer), so
// "all-cpu-ns/pkt" adds the sender process's CPU time: the one to compare
// for the whole, the sender's own part being the same on every path.
//
//	go test -run '^$' -bench BenchmarkReceive -benchtime 2000x ./capture/packet/
func BenchmarkReceive(b *testing.B) {
	l := newLink(b)
	ifi, err := interfaceIn(l, "veth-r")
	if err != nil {
		b.Fatal(err)
	}
	prog, err := bpf.Assemble(onlyProto(unix.IPPROTO_UDP))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		rate  int // packets per second; 0 one at a time, -1 as fast as possible
		burst int
	}{{"one", 0, 1}, {"rate=50", 50, 1}, {"rate=10k", 10_000, 10}, {"rate=100k", 100_000, 100}, {"burst", -1, 0}} {
		b.Run(c.name, func(b *testing.B) {
			for _, p := range rxPaths {
				b.Run(p.name, func(b *testing.B) {
					var rx rxPath
					err := l.recv.Do(func() (err error) {
						rx, err = p.open(ifi, prog)
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
					defer rx.close()
					benchPath(b, l, rx, c.rate, c.burst)
				})
			}
		})
	}
}

func interfaceIn(l *link, name string) (ifi *net.Interface, err error) {
	err = l.recv.Do(func() error {
		ifi, err = net.InterfaceByName(name)
		return err
	})
	return ifi, err
}

// benchPath has a sender process write b.N packets to rx's link at rate
// (0: one every 200 µs; -1: as fast as it can) and reports what rx
// measured. The sender is a process of its own so that this process's CPU
// time is the reader's alone, as it would be toad's.
func benchPath(b *testing.B, l *link, rx rxPath, rate, burst int) {
	var (
		got     atomic.Int64
		lat     = make([]time.Duration, 0, b.N)
		latMu   sync.Mutex
		handed  = make(chan struct{}, 1)
		stopped = make(chan error, 1)
	)
	go func() {
		stopped <- rx.receive(func(data []byte) {
			if len(data) < 36 {
				return
			}
			d := monotonic() - time.Duration(binary.BigEndian.Uint64(data[28:]))
			latMu.Lock()
			lat = append(lat, d)
			latMu.Unlock()
			got.Add(1)
			select {
			case handed <- struct{}{}:
			default:
			}
		})
	}()
	cmd := exec.Command("ip", "netns", "exec", l.send.Name, os.Args[0], "-test.run=^TestSenderProcess$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("PACKET_BENCH_SENDER=%d,%d,%d", b.N, rate, burst))
	cmd.Stderr = os.Stderr
	cpu0 := processCPU()
	start := time.Now()
	b.ResetTimer()
	if out, err := cmd.Output(); err != nil {
		b.Fatalf("sender: %v\n%s", err, out)
	}
	// Everything sent has passed the socket once the marker has.
	l.settle(b)
	packets, drops := rx.counters()
	for got.Load() < int64(packets-drops) {
		select {
		case <-handed:
		case err := <-stopped:
			b.Fatalf("receive stopped: %v", err)
		case <-time.After(deadline):
			b.Fatalf("%d of %d packets handed over", got.Load(), packets-drops)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU() - cpu0
	sender := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	n := got.Load()
	latMu.Lock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
	}
	latMu.Unlock()
	if n > 0 {
		b.ReportMetric(float64(cpu)/float64(n), "cpu-ns/pkt")
		b.ReportMetric(float64(cpu+sender)/float64(n), "all-cpu-ns/pkt")
	}
	b.ReportMetric(float64(drops)/float64(max(packets, 1)), "drops/pkt")
	b.ReportMetric(float64(rx.wakeups())/float64(max(n, 1)), "wakeups/pkt")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "pkts/s")
}

// TestSenderProcess is BenchmarkReceive's sender, run in a process of its
// own inside the sending namespace; as a test it does nothing.
func TestSenderProcess(t *testing.T) {
	spec := os.Getenv("PACKET_BENCH_SENDER")
	if spec == "" {
		return
	}
	var n, rate, burst int
	if _, err := fmt.Sscanf(spec, "%d,%d,%d", &n, &rate, &burst); err != nil {
		t.Fatal(err)
	}
	if err := sendPaced(n, rate, burst); err != nil {
		t.Fatal(err)
	}
}

// sendPaced writes n timestamped UDP packets to veth-s: one every 200 µs
// (rate 0), as fast as it can (rate -1), or rate a second in bursts.
func sendPaced(n, rate, burst int) error {
	runtime.LockOSThread()
	s, err := inject.New("veth-s", macB)
	if err != nil {
		return err
	}
	defer s.Close()
	pkt := udp(0, unix.IPPROTO_UDP)
	pkt = append(pkt[:28], make([]byte, 8)...)
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[24:], uint16(len(pkt)-20))
	fixChecksum(pkt)
	send := func() error {
		binary.BigEndian.PutUint64(pkt[28:], uint64(monotonic()))
		return s.Send(pkt)
	}
	switch {
	case rate == 0:
		for range n {
			if err := send(); err != nil {
				return err
			}
			pause(200 * time.Microsecond)
		}
	case rate < 0:
		for range n {
			if err := send(); err != nil {
				return err
			}
		}
	default:
		tick := time.Second * time.Duration(burst) / time.Duration(rate)
		next := time.Now()
		for i := 0; i < n; i += burst {
			if d := time.Until(next); d > 0 {
				pause(d)
			}
			next = next.Add(tick)
			for range min(burst, n-i) {
				if err := send(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// monotonic is CLOCK_MONOTONIC, which the sender and the reader share.
func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// pause sleeps in the kernel without telling the Go runtime: the sender
// has one thread and nothing else to do.
func pause(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// fixChecksum sets the checksum of the IPv4 header (of 20 bytes) p
// starts with.
func fixChecksum(p []byte) {
	p[10], p[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
}

func processCPU() time.Duration { return rusage(unix.RUSAGE_SELF) }

func rusage(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		panic(fmt.Sprintf("getrusage: %v", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
