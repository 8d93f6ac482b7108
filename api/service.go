package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/toad-project/toad/correlate"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// deadlineMargin is how long before the caller's deadline a waiting Lookup
// gives up, so that the caller gets NOT_FOUND rather than its own timeout.
const deadlineMargin = 5 * time.Millisecond

// missedCheck is how often a quiet Watch stream checks whether its
// subscription lost events, so that a loss is reported even when no later
// event comes along to carry the news.
const missedCheck = time.Second

type service struct {
	toadv1.UnimplementedLookupServiceServer

	table    *correlate.Table
	cfg      *Config
	stopping context.Context // done when Watch streams must end
	serving  *atomic.Bool
	watchers chan struct{} // a token per Watch stream being served
	log      *slog.Logger
}

func (s *service) Lookup(ctx context.Context, req *toadv1.LookupRequest) (*toadv1.LookupResponse, error) {
	k, err := parseKey("", req.GetPeer(), req.GetLocal())
	if err != nil {
		return nil, err
	}
	wait, err := s.wait(ctx, req.GetWait())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	e, err := s.table.Lookup(ctx, k, wait)
	if err != nil {
		if time.Since(start) < wait {
			wait = 0 // answered before its wait ran out: the capture had caught up
		}
		return nil, lookupError(err, req.GetPeer(), req.GetLocal(), wait)
	}
	return &toadv1.LookupResponse{Connection: newConnection(req.GetPeer(), req.GetLocal(), &e)}, nil
}

// wait returns how long a Lookup may wait: what the caller asked, capped by
// the server's bound and by the caller's own deadline.
func (s *service) wait(ctx context.Context, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidArgument("wait", fmt.Sprintf("wait: %v", err))
	}
	w := d.AsDuration()
	if w < 0 {
		return 0, invalidArgument("wait", fmt.Sprintf("wait %v is negative: want 0 to answer at once, or how long to wait for the handshake", w))
	}
	w = max(0, min(w, s.cfg.MaxWait)) // NoWait is negative
	if dl, ok := ctx.Deadline(); ok && w > 0 {
		w = max(0, min(w, time.Until(dl)-deadlineMargin))
	}
	return w, nil
}

func lookupError(err error, peer, local string, wait time.Duration) error {
	switch {
	case errors.Is(err, correlate.ErrClosed):
		return status.Error(codes.Unavailable, "toad is shutting down")
	case errors.Is(err, correlate.ErrNotFound):
		msg := fmt.Sprintf("toad has no connection from %s to %s", peer, local)
		if wait > 0 {
			msg += fmt.Sprintf(" (waited %v)", wait)
		}
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "lookup: %v", err)
}

// batchItem holds the messages of one result of a batch, so that a batch
// allocates them all at once, and where the client's text lies in the
// batch's text.
type batchItem struct {
	result     toadv1.BatchLookupResult
	conn       toadv1.Connection
	ts         timestamppb.Timestamp
	start, end int32
	hasPort    bool
}

// clientTextLen is the room a batch makes for each client's text at first:
// an IPv4 client with its port.
const clientTextLen = len("255.255.255.255:65535")

func (s *service) BatchLookup(ctx context.Context, req *toadv1.BatchLookupRequest) (*toadv1.BatchLookupResponse, error) {
	keys := req.GetKeys()
	if len(keys) > s.cfg.MaxBatch {
		return nil, status.Errorf(codes.ResourceExhausted, "%d keys in one batch; this server takes at most %d: split the batch", len(keys), s.cfg.MaxBatch)
	}
	items := make([]batchItem, len(keys))
	resp := &toadv1.BatchLookupResponse{Results: make([]*toadv1.BatchLookupResult, len(keys))}
	// The clients are written once into one buffer, which becomes one
	// string that the results share.
	text := make([]byte, 0, len(keys)*clientTextLen)
	// A batch usually asks about connections to one local address: it is
	// parsed once for as long as it repeats.
	var (
		local     string
		localAddr netip.AddrPort
	)
	for i, key := range keys {
		it := &items[i]
		resp.Results[i] = &it.result
		p, err := parseAddr("peer", key.GetPeer())
		if err == nil && (key.GetLocal() != local || !localAddr.IsValid()) {
			local = key.GetLocal()
			localAddr, err = parseAddr("local", local)
		}
		if err != nil {
			_, err = parseKey("keys["+strconv.Itoa(i)+"].", key.GetPeer(), key.GetLocal())
			return nil, err
		}
		e, err := s.table.Lookup(ctx, correlate.KeyOf(p, localAddr), 0)
		if err != nil {
			if errors.Is(err, correlate.ErrNotFound) {
				continue
			}
			return nil, lookupError(err, key.GetPeer(), key.GetLocal(), 0)
		}
		it.result.Found = true
		it.result.Connection = &it.conn
		fillConnection(&it.conn, &it.ts, "", "", &e) // the caller has the keys
		it.start = int32(len(text))
		text = appendClient(text, &e.Client)
		it.end, it.hasPort = int32(len(text)), e.Client.HasPort
	}
	all := string(text)
	for i := range items {
		if it := &items[i]; it.result.Found {
			setClient(&it.conn, all[it.start:it.end], it.hasPort)
		}
	}
	return resp, nil
}

func (s *service) Watch(req *toadv1.WatchRequest, stream toadv1.LookupService_WatchServer) error {
	port := req.GetLocalPort()
	if port > 65535 {
		return invalidArgument("local_port", fmt.Sprintf("local_port %d is not a port: want 1-65535, or 0 for every port", port))
	}
	select {
	case s.watchers <- struct{}{}:
		defer func() { <-s.watchers }()
	default:
		return status.Errorf(codes.ResourceExhausted, "this server already serves its maximum of %d watchers", cap(s.watchers))
	}
	sub := s.table.Subscribe(s.cfg.WatchBuffer)
	defer sub.Close()
	ctx := stream.Context()
	send, stop := s.watchSender(ctx, stream)
	defer stop()
	// The headers tell the caller that events from now on reach it.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	tick := time.NewTicker(missedCheck)
	defer tick.Stop()
	var reported uint64
	reportMissed := func() error {
		m := sub.Missed()
		if m <= reported {
			return nil
		}
		n := m - reported
		reported = m
		return send(&toadv1.WatchResponse{Type: toadv1.EventType_EVENT_TYPE_MISSED, Missed: n})
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopping.Done():
			return status.Error(codes.Unavailable, "toad is shutting down")
		case <-tick.C:
			if err := reportMissed(); err != nil {
				return err
			}
		case ev, ok := <-sub.Events():
			if !ok {
				return status.Error(codes.Unavailable, "toad is shutting down: the connection table closed")
			}
			if err := reportMissed(); err != nil {
				return err
			}
			if port != 0 && uint32(ev.Entry.Key.Local().Port()) != port {
				continue
			}
			typ := toadv1.EventType_EVENT_TYPE_OPEN
			if ev.Type == correlate.EventClose {
				typ = toadv1.EventType_EVENT_TYPE_CLOSE
			}
			k := ev.Entry.Key
			err := send(&toadv1.WatchResponse{
				Type:       typ,
				Connection: newConnection(k.Peer().String(), k.Local().String(), &ev.Entry),
			})
			if err != nil {
				return err
			}
		}
	}
}

// watchSender returns a send for a Watch stream that does not block for
// good: when the client has not taken an event for WatchSendTimeout, or
// for flushGrace once the server is shutting down, its connection is
// closed, which ends the send, the stream and whatever else the client
// left there. stop releases the timers.
func (s *service) watchSender(ctx context.Context, stream toadv1.LookupService_WatchServer) (send func(*toadv1.WatchResponse) error, stop func()) {
	var sending, cut atomic.Bool
	t := time.AfterFunc(time.Hour, func() {
		if sending.Load() {
			cut.Store(true) // before the send can return
			closeConn(ctx)
		}
	})
	t.Stop()
	stopWatch := context.AfterFunc(s.stopping, func() {
		if sending.Load() {
			t.Reset(flushGrace)
		}
	})
	send = func(m *toadv1.WatchResponse) error {
		sending.Store(true)
		t.Reset(s.cfg.WatchSendTimeout)
		err := stream.Send(m)
		sending.Store(false)
		t.Stop()
		if cut.Load() {
			addr := ""
			if p, ok := peer.FromContext(ctx); ok {
				addr = p.Addr.String()
			}
			if s.stopping.Err() != nil {
				s.log.Info("shutting down: closed the connection of a watcher that does not read", "peer", addr)
				return status.Error(codes.Unavailable, "toad is shutting down")
			}
			s.log.Warn("watcher stopped reading: its connection was closed", "peer", addr, "timeout", s.cfg.WatchSendTimeout)
			return status.Errorf(codes.ResourceExhausted, "the watcher took no event for %v: its connection was closed", s.cfg.WatchSendTimeout)
		}
		return err
	}
	return send, func() { stopWatch(); t.Stop() }
}

func (s *service) GetStats(context.Context, *toadv1.GetStatsRequest) (*toadv1.GetStatsResponse, error) {
	resp := &toadv1.GetStatsResponse{
		Table:   tableStats(s.table.Stats()),
		Serving: s.serving.Load(),
	}
	if s.cfg.Counters != nil {
		resp.Counters = s.cfg.Counters()
	}
	if s.cfg.Journal != nil {
		if st, ok := s.cfg.Journal(); ok {
			resp.Journal = journalStats(st)
		}
	}
	return resp, nil
}
