package e2e_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/testbed"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// kills is how many times TestCrash's loop kills toad under load; the
// default keeps CI short, -kills 50 is the long run.
var kills = flag.Int("kills", 3, "SIGKILLs of toad in TestCrash's loop under load")

// TestCrash kills toad with SIGKILL, as an OOM kill or a failed liveness
// probe does, while connections are open, others are in their handshake
// and new ones keep coming, and restarts it on the same state directory.
// The proxy sends the TOA with the handshake's last ACK and the first data
// only, so that after the kill no segment of an open connection tells
// toad who its client is: only the journal can.
//
// A change is durable once the journal has written a group that began
// after it: two more groups than GetStats reported after the change (the
// group being written at that moment may have passed the change's shard).
// After every restart: every connection whose TOA was durable before the
// kill resolves to its true client, open; every connection closed durably
// before the kill is answered closing or not at all, never open; every
// connection of the load gets its true client, or, when its handshake
// overlapped toad's absence, not found; never another client.
func TestCrash(t *testing.T) {
	b := newBed(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	cfg := dpvsProxy("toadp-crash")
	cfg.PortMin, cfg.PortMax = 1024, 65535
	testbed.Proxy(t, b.proxy, cfg)
	answers := watchAnswers(t, b.srv4)
	waiting := apitest.Client(t, b.socket(), client.WithWait(lookupWait),
		client.WithDialOptions(grpc.WithDefaultCallOptions(grpc.WaitForReady(true))))
	ld := startLoad(b)
	t.Cleanup(func() { ld.halt() })
	var downs []downtime

	// kill kills toad at a random moment of the load, once everything
	// the test asked for is durable, and starts it again.
	// (No subtests: the restarted toad must outlive each phase.)
	kill := func() {
		t.Helper()
		b.waitDurable(t, ld)
		ld.await(t, rng.IntN(20))
		d := downtime{killed: time.Now()}
		if err := b.toad.Kill(); err != nil {
			t.Fatal(err)
		}
		b.toad = testbed.StartToad(t, b.origin, b.bin, b.args...)
		d.back = time.Now()
		downs = append(downs, d)
	}

	live := map[netip.AddrPort]answer{}   // durable and open, by client
	closed := map[netip.AddrPort]answer{} // durably closed, by client
	var held []*conn                      // the open ones
	t.Cleanup(func() { closeAll(held) })
	// hold opens n connections per client and checks their answers.
	hold := func(n int) {
		t.Helper()
		cs, err := dialAll(b.clientDialers(vip4, n))
		held = append(held, cs...) // closed when TestCrash ends, not the subtest
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			a := answers.wait(t, c.local)
			if a.said != c.local || a.err != nil {
				t.Errorf("client %v: RemoteAddr said %v, lookup error %v; want its own address", c.local, a.said, a.err)
			}
			live[c.local] = a
		}
	}
	// verify checks what the restarted toad answers for the connections
	// durable before the kill.
	verify := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
		defer cancel()
		wrong := &mistakes{t: t}
		report := wrong.report
		for cl, a := range live {
			got, err := b.api.Lookup(ctx, a.peer, a.local)
			if err != nil || got.Client != cl || got.State != toadv1.ConnectionState_CONNECTION_STATE_OPEN {
				report("open connection of %v (%v > %v): %v %v, %v; want it open", cl, a.peer, a.local, got.Client, got.State, err)
			}
		}
		for cl, a := range closed {
			got, err := b.api.Lookup(ctx, a.peer, a.local)
			switch {
			case errors.Is(err, client.ErrNotFound): // its linger ended
			case err != nil || got.Client != cl || got.State != toadv1.ConnectionState_CONNECTION_STATE_CLOSING:
				report("closed connection of %v (%v > %v): %v %v, %v; want it closing, or not found", cl, a.peer, a.local, got.Client, got.State, err)
			}
		}
		wrong.summary(len(live)+len(closed), "durable connections wrong after the restart")
	}

	// SIGKILL with 300 connections open.
	hold(perClient)
	kill()
	verify()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d connections open across the kill resolved to their clients", len(live))

	// Kills under load.
	for k := range *kills {
		hold(10)
		// Close a third of the held connections. Each client's
		// FIN reached the origin, which answered with its own: a lookup
		// of an unknown connection, answered once toad's capture has
		// caught up with the call, shows toad has seen them all.
		n := len(held) / 3
		for _, c := range held[:n] {
			closeAndWait(t, c)
		}
		if _, err := waiting.Lookup(context.Background(), netip.AddrPortFrom(proxyAddr4, 1), origin4); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("kill %d: lookup of an unknown connection: %v, want not found", k, err)
		}
		for _, c := range held[:n] {
			a := live[c.local]
			got, err := b.api.Lookup(context.Background(), a.peer, a.local)
			if err != nil || got.State != toadv1.ConnectionState_CONNECTION_STATE_CLOSING {
				t.Fatalf("kill %d: connection of %v closed, toad says %v, %v; want closing", k, c.local, got.State, err)
			}
			closed[c.local] = a
			delete(live, c.local)
		}
		held = held[n:]
		kill()
		verify()
		if t.Failed() {
			t.Fatalf("kill %d: wrong answers after the restart", k)
		}
	}
	t.Logf("%d more kills: %d connections open and %d closed across them, all as they were", *kills, len(live), len(closed))

	res := ld.halt()
	found, notFound, overlapping := 0, 0, 0
	for _, r := range res {
		overlaps := false
		for _, d := range downs {
			if r.start.Before(d.back) && r.end.After(d.killed) {
				overlaps = true
			}
		}
		if overlaps {
			overlapping++
		}
		switch {
		case r.err != nil:
			t.Errorf("load: %v", r.err)
		case r.reply == r.local:
			found++
		case r.reply.Addr() == proxyAddr4 && overlaps:
			notFound++
		case r.reply.Addr() == proxyAddr4:
			t.Errorf("load: client %v, from %v to %v, was not found, and toad was running throughout", r.local, r.start.Format(time.StampMicro), r.end.Format(time.StampMicro))
		default:
			t.Errorf("load: client %v was told it is %v", r.local, r.reply)
		}
	}
	if overlapping == 0 && len(downs) > 0 {
		t.Errorf("no connection of the load overlapped a kill: the handshakes in the gap were not tested")
	}
	t.Logf("load: %d connections, %d with their handshake during a kill; %d resolved, %d not found (all during a kill)",
		len(res), overlapping, found, notFound)
}

// downtime is one kill: from the SIGKILL to the restarted toad serving.
type downtime struct{ killed, back time.Time }

// waitDurable waits until everything toad took in before the call is on
// disk: two more journal groups than reported now. The load makes the
// changes that fill them.
func (b *bed) waitDurable(t testing.TB, ld *load) {
	t.Helper()
	groups := func() uint64 {
		j := b.stats(t).GetJournal()
		if j == nil {
			t.Fatal("GetStats reports no journal: toad keeps no state directory")
		}
		return j.GetGroups()
	}
	g := groups()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	for groups() < g+2 {
		select {
		case <-ld.tick:
		case <-deadline.C:
			t.Fatalf("the journal wrote %d groups in %v, want 2", groups()-g, collectTimeout)
		}
	}
}

// answerLog holds the origin's answers by the client's address.
type answerLog struct {
	mu   sync.Mutex
	by   map[netip.AddrPort]answer
	more chan struct{}
}

// watchAnswers takes every answer of o from now on.
func watchAnswers(t testing.TB, o *origin) *answerLog {
	l := &answerLog{by: map[netip.AddrPort]answer{}, more: make(chan struct{}, 1)}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case a := <-o.answers:
				l.mu.Lock()
				l.by[a.claimed] = a
				l.mu.Unlock()
				select {
				case l.more <- struct{}{}:
				default:
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return l
}

// wait returns the answer to client's connection, waiting for it.
func (l *answerLog) wait(t testing.TB, client netip.AddrPort) answer {
	t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		a, ok := l.by[client]
		l.mu.Unlock()
		if ok {
			return a
		}
		select {
		case <-l.more:
		case <-deadline.C:
			t.Fatalf("the origin never answered the connection of %v", client)
		}
	}
}

// load opens connections one after the other from every client
// namespace, each through its first round trip, and closes them.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	tick chan struct{} // signaled when a connection completes

	mu   sync.Mutex
	res  []loadResult
	once sync.Once
}

type loadResult struct {
	local, reply netip.AddrPort
	start, end   time.Time
	err          error
}

func startLoad(b *bed) *load {
	ld := &load{stop: make(chan struct{}), tick: make(chan struct{}, 1)}
	for _, d := range b.clientDialers(vip4, 1) {
		ld.wg.Go(func() {
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				r := loadResult{start: time.Now()}
				c, err := d.open()
				r.end, r.err = time.Now(), err
				if c != nil {
					r.local, r.reply = c.local, c.reply
					c.Close()
				}
				ld.mu.Lock()
				ld.res = append(ld.res, r)
				ld.mu.Unlock()
				select {
				case ld.tick <- struct{}{}:
				default:
				}
			}
		})
	}
	return ld
}

// await waits until n more connections of the load have completed.
func (ld *load) await(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	ld.mu.Lock()
	want := len(ld.res) + n
	ld.mu.Unlock()
	for {
		ld.mu.Lock()
		got := len(ld.res)
		ld.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-ld.tick:
		case <-deadline.C:
			t.Fatalf("the load completed %d connections in %v, want %d", got+n-want, collectTimeout, n)
		}
	}
}

// halt stops the load and returns what it did.
func (ld *load) halt() []loadResult {
	ld.once.Do(func() { close(ld.stop) })
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.res
}

// closeAndWait closes c from the client's side and waits for the origin's
// FIN in return: the origin has read the client's FIN, so a lookup from
// now on, whose wait lets toad's capture catch up with it, finds it.
func closeAndWait(t testing.TB, c *conn) {
	t.Helper()
	c.Conn.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(collectTimeout))
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			t.Errorf("client %v: read %q after closing, want the origin's FIN", c.local, buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("client %v: waiting for the origin's FIN: %v", c.local, err)
		}
	}
	c.Close()
}
