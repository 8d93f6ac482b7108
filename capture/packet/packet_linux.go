package packet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Conn is a cooked AF_PACKET socket with a TPACKET_V2 receive ring.
type Conn struct {
	f    *os.File
	rc   syscall.RawConn
	addr atomic.Pointer[Addr] // set by Bind
	// Receive blocks in poll(2) on the socket and efd, an eventfd that
	// Close writes to (see open for the other mode).
	pollMode bool
	fd       int
	efd      int

	ring      []byte
	frameSize int
	perBlock  int // frames per block
	blockSize int
	frames    int
	next      int // the next frame Receive reads; Receive's alone

	received atomic.Uint64 // packets Receive has handed over
	wakeups  atomic.Uint64 // times Receive looked at the ring
	waiters  atomic.Int32  // goroutines in Wait
	wakeMu   sync.Mutex
	wake     chan struct{} // closed and replaced when received rises with waiters

	statsMu   sync.Mutex
	packets   uint64 // the kernel's counters, summed: it clears them on each read
	drops     uint64
	final     bool // the counters were read for the last time, by Close
	kstats    unix.TpacketStats
	kstatsLen uint32

	mu      sync.Mutex
	closing bool
	parked  *os.File  // the socket's duplicate park waits on, closed by Close
	onPark  func()    // for tests: called as park begins to wait
	active  int       // Receive calls running, which use the ring
	idle    sync.Cond // signaled when active falls to 0
	stopped chan struct{}
	stopErr error // why Receive stopped, set before stopped is closed
	stopMu  sync.Once
}

// Open opens a cooked packet socket with a receive ring sized by cfg. The
// socket is bound to no protocol and receives nothing until Bind. A
// process without CAP_NET_RAW gets an error wrapping os.ErrPermission.
func Open(cfg Config) (*Conn, error) { return open(cfg, true) }

// open opens the socket. Receive needs pollMode; without it the socket is
// non-blocking and joins the runtime's poller instead, which only the
// receive-path benchmark uses, for comparison.
func open(cfg Config, pollMode bool) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	flags := unix.SOCK_DGRAM | unix.SOCK_CLOEXEC
	if !pollMode {
		flags |= unix.SOCK_NONBLOCK
	}
	// Protocol 0: nothing is delivered before Bind names one, so the
	// filter can be attached first.
	fd, err := unix.Socket(unix.AF_PACKET, flags, 0)
	if err != nil {
		return nil, opError(opOpen, nil, os.NewSyscallError("socket", err))
	}
	c := &Conn{pollMode: pollMode, fd: fd, efd: -1, frameSize: frameSize(cfg.SnapLen), blockSize: cfg.BlockSize, wake: make(chan struct{}), stopped: make(chan struct{})}
	c.idle.L = &c.mu
	if err := c.mapRing(fd, cfg); err != nil {
		unix.Close(fd)
		return nil, opError(opOpen, nil, err)
	}
	if pollMode {
		if c.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			unix.Close(fd)
			unix.Munmap(c.ring)
			return nil, opError(opOpen, nil, os.NewSyscallError("eventfd", err))
		}
	}
	// A blocking descriptor stays out of the runtime's poller, which would
	// otherwise be woken for every frame with nobody waiting.
	c.f = os.NewFile(uintptr(fd), "packet")
	// Made non-blocking after NewFile, so that the socket stays out of the
	// runtime's poller and only park's duplicates join it.
	if err := unix.SetNonblock(fd, true); err != nil {
		c.f.Close()
		unix.Close(c.efd)
		unix.Munmap(c.ring)
		return nil, opError(opOpen, nil, os.NewSyscallError("fcntl O_NONBLOCK", err))
	}
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		unix.Munmap(c.ring)
		return nil, opError(opOpen, nil, err)
	}
	return c, nil
}

// mapRing sets up the TPACKET_V2 ring of fd and maps it.
func (c *Conn) mapRing(fd int, cfg Config) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return os.NewSyscallError("setsockopt PACKET_VERSION", err)
	}
	c.perBlock = c.blockSize / c.frameSize
	blocks := cfg.RingSize / c.blockSize
	c.frames = blocks * c.perBlock
	req := unix.TpacketReq{
		Block_size: uint32(c.blockSize),
		Block_nr:   uint32(blocks),
		Frame_size: uint32(c.frameSize),
		Frame_nr:   uint32(c.frames),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("%w (a ring of %d blocks of %d bytes, %d frames of %d)",
			os.NewSyscallError("setsockopt PACKET_RX_RING", err), blocks, c.blockSize, c.frames, c.frameSize)
	}
	ring, err := unix.Mmap(fd, 0, blocks*c.blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	c.ring = ring
	return nil
}

// control runs fn on the descriptor; it fails once the socket is closed.
func (c *Conn) control(op string, fn func(fd int) error) error {
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		if c.isClosing() {
			err = net.ErrClosed
		}
		return opError(op, c.addr.Load(), err)
	}
	return opError(op, c.addr.Load(), ferr)
}

// SetBPF attaches a classic BPF program, replacing any earlier one. Attach
// it before Bind so that it sees every packet. A nil program attaches one
// that rejects everything.
func (c *Conn) SetBPF(prog []bpf.RawInstruction) error {
	if len(prog) == 0 {
		prog = []bpf.RawInstruction{{Op: 0x06}} // ret #0
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return c.control(opSetsockopt, func(fd int) error {
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog))
	})
}

// SetIgnoreOutgoing makes the socket skip the packets the host sends
// (PACKET_IGNORE_OUTGOING, Linux 4.20).
func (c *Conn) SetIgnoreOutgoing() error {
	return c.control(opSetsockopt, func(fd int) error {
		return os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1))
	})
}

// Bind starts reception of every protocol on ifi, or on every interface
// when ifi is nil. Whatever filter is attached applies from the first
// packet.
func (c *Conn) Bind(ifi *net.Interface) error {
	a := &Addr{}
	idx := 0
	if ifi != nil {
		a.Interface, idx = ifi.Name, ifi.Index
	}
	c.addr.Store(a)
	return c.control(opBind, func(fd int) error {
		return os.NewSyscallError("bind", unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}))
	})
}

// JoinFanout makes the bound socket share its traffic with the other
// members of fanout group id by flow hash (PACKET_FANOUT_HASH), so that
// one flow's packets all reach the same member, in order.
func (c *Conn) JoinFanout(id uint16) error {
	return c.control(opSetsockopt, func(fd int) error {
		return os.NewSyscallError("setsockopt PACKET_FANOUT",
			unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(id)|unix.PACKET_FANOUT_HASH<<16))
	})
}

// SyscallConn returns the socket's raw connection, for options this
// package does not set. Reading through it competes with Receive.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// LocalAddr returns the interface the socket is bound to, nil before Bind.
func (c *Conn) LocalAddr() net.Addr {
	if a := c.addr.Load(); a != nil {
		return a
	}
	return nil
}

// Stats returns the socket's counters since Open. The kernel clears its
// own each time they are read; the Conn adds them up. After Close they
// stay as Close last read them.
func (c *Conn) Stats() (Stats, error) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	var err error
	if !c.final {
		err = c.readStatsLocked()
	}
	return Stats{Packets: c.packets, Drops: c.drops, Received: c.received.Load(), Wakeups: c.wakeups.Load()}, err
}

// readStatsLocked adds the kernel's counters, which it clears as it hands
// them over, to the Conn's. c.statsMu is held: Close cannot close the
// descriptor meanwhile, so it is used directly, and the call allocates
// nothing (a lookup's barrier makes it).
func (c *Conn) readStatsLocked() error {
	c.kstatsLen = uint32(unsafe.Sizeof(c.kstats))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(c.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&c.kstats)), uintptr(unsafe.Pointer(&c.kstatsLen)), 0)
	if errno != 0 {
		return opError(opGetsockopt, c.addr.Load(), os.NewSyscallError("getsockopt PACKET_STATISTICS", errno))
	}
	c.packets += uint64(c.kstats.Packets)
	c.drops += uint64(c.kstats.Drops)
	return nil
}

// Mark returns how many packets the kernel has put in the ring so far.
// The kernel counts a packet when it gives it a frame, before it writes
// the frame, and the one that carried a segment the host has since
// processed (TCP has accepted its connection, say) has been given its
// frame before that, on the way up the stack: once Receive has handed
// over Mark packets (see Wait), it has handed over that one.
func (c *Conn) Mark() (Mark, error) {
	st, err := c.Stats()
	return Mark(st.Packets - st.Drops), err
}

// Wait waits until Receive has handed over m packets. It returns early
// with ctx's error, or with the error that stopped Receive.
func (c *Conn) Wait(ctx context.Context, m Mark) error {
	if c.received.Load() >= uint64(m) {
		return nil
	}
	c.waiters.Add(1)
	defer c.waiters.Add(-1)
	for {
		c.wakeMu.Lock()
		ch := c.wake
		c.wakeMu.Unlock()
		if c.received.Load() >= uint64(m) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stopped:
			if c.received.Load() >= uint64(m) {
				return nil
			}
			return c.stopErr
		}
	}
}

// Sync waits until Receive has handed over every packet the kernel put in
// the ring before the call: Mark, then Wait.
func (c *Conn) Sync(ctx context.Context) error {
	m, err := c.Mark()
	if err != nil {
		return err
	}
	return c.Wait(ctx, m)
}

// Receive calls fn with each packet the ring receives, in the order the
// kernel filled its frames, until the socket is closed or fails: it
// returns an error wrapping net.ErrClosed after Close, or the socket's
// error (ENETDOWN when the interface went down or away). data starts at
// the network header and is valid only during the call; ts is the time
// the kernel received the packet. With no packet to hand over it sleeps,
// with no timeout, until the kernel writes a frame. Only one goroutine may
// call Receive.
func (c *Conn) Receive(fn func(data []byte, ts time.Time)) error {
	if !c.enter() {
		return opError(opRead, c.addr.Load(), net.ErrClosed)
	}
	defer c.exit()
	return c.receivePoll(fn)
}

// receivePoll is Receive: it drains the ring, then sleeps in poll(2)
// until the kernel fills a frame, reports an error, or Close writes to
// the eventfd.
func (c *Conn) receivePoll(fn func([]byte, time.Time)) error {
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.efd), Events: unix.POLLIN}}
	var err error
	var yielded time.Time
	quiet := int(parkAfter / time.Millisecond) // poll(2)'s timeout; -1 once park cannot work
	for {
		c.wakeups.Add(1)
		c.drain(fn)
		fds[0].Revents, fds[1].Revents = 0, 0
		// A goroutine that goes from poll(2) to poll(2) is never
		// rescheduled, and the runtime's monitor takes it for one running
		// for 10 ms on end: it takes its scheduler slot back, then polls
		// every 20 µs for a millisecond, over and over: on a server
		// answering lookups, half the process's wakeups. A yield now and
		// then shows it is not; one at every sleep would cost a handoff
		// between threads each.
		if now := time.Now(); now.Sub(yielded) >= yieldEvery {
			runtime.Gosched()
			yielded = now
		}
		var n int
		if n, err = unix.Poll(fds, quiet); err != nil && err != unix.EINTR {
			err = os.NewSyscallError("poll", err)
			break
		}
		if n == 0 && err == nil {
			sockErr, perr := c.park(fn)
			if sockErr != nil {
				err = sockErr
				break
			}
			if errors.Is(perr, net.ErrClosed) {
				err = perr
				break
			} else if perr != nil {
				quiet = -1 // the runtime's poller cannot watch the socket: poll(2) alone
			}
			continue
		}
		if fds[1].Revents != 0 {
			err = net.ErrClosed
			break
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			e, gerr := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if gerr != nil {
				err = os.NewSyscallError("getsockopt SO_ERROR", gerr)
				break
			}
			if e != 0 {
				err = unix.Errno(e)
				break
			}
		}
	}
	if c.isClosing() {
		err = net.ErrClosed
	}
	err = opError(opRead, c.addr.Load(), err)
	c.stop(err)
	return err
}

// parkAfter is how long Receive waits in poll(2) before it parks; a parked
// Receive goes back to poll(2) when two packets come within it.
const parkAfter = 5 * time.Millisecond

// park receives while the socket is quiet: it waits in the runtime's
// poller, holding no thread, and hands over what each wakeup finds, until
// two wakeups come within parkAfter (the traffic is steady again), the
// socket reports an error (sockErr, which reading it cleared), or Close
// (err wraps net.ErrClosed). Another err says the poller cannot watch the
// socket.
//
// A thread blocked in poll(2) holds its scheduler slot, which the
// runtime's monitor takes back after 10 ms; the packet that ends such a
// wait wakes the monitor, which then polls every 20 µs for a millisecond
// and more: about a millisecond of CPU for each packet of a quiet link.
// Steady traffic is cheaper in poll(2), whose thread the runtime does not
// hand between others at each packet. A duplicate of the socket joins the
// poller for the quiet spell alone: joined for good, the poller would be
// woken by every frame while Receive is busy. Close ends the wait by
// closing it.
func (c *Conn) park(fn func([]byte, time.Time)) (sockErr, err error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, net.ErrClosed
	}
	dup, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		c.mu.Unlock()
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	f := os.NewFile(uintptr(dup), "packet")
	c.parked = f
	onPark := c.onPark
	c.mu.Unlock()
	if onPark != nil {
		onPark()
	}
	rc, err := f.SyscallConn()
	if err == nil {
		var last time.Time
		err = rc.Read(func(fd uintptr) bool {
			c.wakeups.Add(1)
			c.drain(fn)
			// The poller is edge-triggered: an error wakes park once.
			switch e, gerr := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); {
			case gerr != nil:
				sockErr = os.NewSyscallError("getsockopt SO_ERROR", gerr)
				return true
			case e != 0:
				sockErr = unix.Errno(e)
				return true
			}
			now := time.Now()
			steady := now.Sub(last) < parkAfter
			last = now
			return steady
		})
	}
	c.mu.Lock()
	c.parked = nil
	c.mu.Unlock()
	f.Close()
	if errors.Is(err, os.ErrClosed) {
		return sockErr, net.ErrClosed
	}
	return sockErr, err
}

// yieldEvery is how often Receive yields, at most: within the 10 ms after
// which the runtime's monitor takes a goroutine for one that never yields.
const yieldEvery = 5 * time.Millisecond

// drain hands over every frame the kernel has filled, in order, and
// returns each to the kernel after fn.
func (c *Conn) drain(fn func([]byte, time.Time)) {
	for {
		off := (c.next/c.perBlock)*c.blockSize + (c.next%c.perBlock)*c.frameSize
		hdr := (*unix.Tpacket2Hdr)(unsafe.Pointer(&c.ring[off]))
		if atomic.LoadUint32(&hdr.Status)&unix.TP_STATUS_USER == 0 {
			return
		}
		start, end := int(hdr.Mac), int(hdr.Mac)+int(hdr.Snaplen)
		if start <= end && end <= c.frameSize {
			fn(c.ring[off+start:off+end:off+end], time.Unix(int64(hdr.Sec), int64(hdr.Nsec)))
		}
		atomic.StoreUint32(&hdr.Status, unix.TP_STATUS_KERNEL)
		if c.next++; c.next == c.frames {
			c.next = 0
		}
		c.received.Add(1)
		if c.waiters.Load() != 0 {
			c.wakeMu.Lock()
			close(c.wake)
			c.wake = make(chan struct{})
			c.wakeMu.Unlock()
		}
	}
}

// stop records why Receive ended and releases Wait.
func (c *Conn) stop(err error) {
	c.stopMu.Do(func() {
		c.stopErr = err
		close(c.stopped)
	})
}

func (c *Conn) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.active++
	return true
}

func (c *Conn) exit() {
	c.mu.Lock()
	if c.active--; c.active == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

func (c *Conn) waitIdle() {
	c.mu.Lock()
	for c.active > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// Close reads the kernel's counters one last time, ends Receive, closes
// the socket and unmaps the ring.
// Close is idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	parked := c.parked
	c.mu.Unlock()
	if parked != nil {
		parked.Close() // ends park's wait
	}

	c.statsMu.Lock()
	if !c.final {
		c.readStatsLocked()
		c.final = true
	}
	c.statsMu.Unlock()

	// Receive leaves poll(2) when the eventfd is written, or the runtime's
	// poller when the file closes; the descriptor is closed once Receive
	// no longer uses it.
	var err error
	if c.pollMode {
		one := [8]byte{1}
		unix.Write(c.efd, one[:])
		c.waitIdle()
		err = c.f.Close()
	} else {
		err = c.f.Close()
		c.waitIdle()
	}
	if c.efd >= 0 {
		unix.Close(c.efd)
	}
	c.stop(opError(opRead, c.addr.Load(), net.ErrClosed))
	if merr := unix.Munmap(c.ring); err == nil && merr != nil {
		err = os.NewSyscallError("munmap", merr)
	}
	return opError(opClose, c.addr.Load(), err)
}

// htons returns v in network byte order, as sockaddr_ll wants it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
