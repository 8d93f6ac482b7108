package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/journal"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

func run(ctx context.Context, cfg Config, stdout io.Writer) error {
	c, err := client.New(cfg.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	svc := c.Service()
	switch cfg.Command {
	case "lookup":
		return lookup(ctx, cfg, svc, stdout)
	case "watch":
		return watch(ctx, cfg, svc, stdout)
	case "stats":
		return stats(ctx, cfg, svc, stdout)
	}
	return fmt.Errorf("unknown command %q", cfg.Command)
}

// connJSON is a connection as toactl prints it in JSON: the fields of
// `toad replay --json`, and a few more.
type connJSON struct {
	Event      string `json:"event,omitempty"`
	Peer       string `json:"peer"`
	Local      string `json:"local"`
	Client     string `json:"client"`
	ClientIP   string `json:"client_ip"`
	ClientPort uint32 `json:"client_port,omitempty"`
	Dialect    string `json:"dialect"`
	State      string `json:"state"`
	FirstSeen  string `json:"first_seen,omitempty"`
}

func toJSON(event string, c *toadv1.Connection) connJSON {
	j := connJSON{
		Event: event, Peer: c.GetPeer(), Local: c.GetLocal(), Client: c.GetClient(),
		ClientIP: c.GetClientIp(), ClientPort: c.GetClientPort(), Dialect: c.GetDialect(),
		State: stateName(c.GetState()),
	}
	if c.GetFirstSeen() != nil {
		j.FirstSeen = c.GetFirstSeen().AsTime().Format(time.RFC3339Nano)
	}
	return j
}

func stateName(s toadv1.ConnectionState) string {
	switch s {
	case toadv1.ConnectionState_CONNECTION_STATE_OPEN:
		return "open"
	case toadv1.ConnectionState_CONNECTION_STATE_CLOSING:
		return "closing"
	}
	return "unknown"
}

func lookup(ctx context.Context, cfg Config, svc toadv1.LookupServiceClient, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+cfg.Wait)
	defer cancel()
	req := &toadv1.LookupRequest{Peer: cfg.Args[0], Local: cfg.Args[1]}
	if cfg.Wait > 0 {
		req.Wait = durationpb.New(cfg.Wait)
	}
	resp, err := svc.Lookup(ctx, req)
	if err != nil {
		return callError(err, cfg.Addr)
	}
	c := resp.GetConnection()
	if cfg.JSON {
		return json.NewEncoder(w).Encode(toJSON("", c))
	}
	first := ""
	if c.GetFirstSeen() != nil {
		first = ", first seen " + c.GetFirstSeen().AsTime().Format(time.RFC3339Nano)
	}
	_, err = fmt.Fprintf(w, "%s (dialect %s, %s%s)\n", c.GetClient(), c.GetDialect(), stateName(c.GetState()), first)
	return err
}

func watch(ctx context.Context, cfg Config, svc toadv1.LookupServiceClient, w io.Writer) error {
	stream, err := svc.Watch(ctx, &toadv1.WatchRequest{LocalPort: uint32(cfg.Port)})
	if err != nil {
		return callError(err, cfg.Addr)
	}
	enc := json.NewEncoder(w)
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of a watch
			}
			return callError(err, cfg.Addr)
		}
		var event string
		switch ev.GetType() {
		case toadv1.EventType_EVENT_TYPE_OPEN:
			event = "open"
		case toadv1.EventType_EVENT_TYPE_CLOSE:
			event = "close"
		case toadv1.EventType_EVENT_TYPE_MISSED:
			if cfg.JSON {
				err = enc.Encode(struct {
					Event  string `json:"event"`
					Missed uint64 `json:"missed"`
				}{"missed", ev.GetMissed()})
			} else {
				_, err = fmt.Fprintf(w, "missed %d events: reading too slowly\n", ev.GetMissed())
			}
			if err != nil {
				return err
			}
			continue
		default:
			continue
		}
		c := ev.GetConnection()
		if cfg.JSON {
			err = enc.Encode(toJSON(event, c))
		} else {
			_, err = fmt.Fprintf(w, "%-5s %s > %s client %s (%s)\n", event, c.GetPeer(), c.GetLocal(), c.GetClient(), c.GetDialect())
		}
		if err != nil {
			return err
		}
	}
}

func stats(ctx context.Context, cfg Config, svc toadv1.LookupServiceClient, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	resp, err := svc.GetStats(ctx, &toadv1.GetStatsRequest{})
	if err != nil {
		return callError(err, cfg.Addr)
	}
	t := resp.GetTable()
	type field struct {
		name string
		v    any // uint64, or bool for the journal's failing
	}
	m := t.ProtoReflect()
	table := make([]field, 0, len(correlate.Counters))
	for _, c := range correlate.Counters {
		if fd := m.Descriptor().Fields().ByName(protoreflect.Name(c.Name)); fd != nil {
			table = append(table, field{c.Name, m.Get(fd).Uint()})
		}
	}
	// The journal's counters, in journal.Counters' order: failing is a
	// bool, the others numbers.
	var journalFields []field
	if j := resp.GetJournal(); j != nil {
		jm := j.ProtoReflect()
		for _, c := range journal.Counters {
			if fd := jm.Descriptor().Fields().ByName(protoreflect.Name(c.Name)); fd != nil {
				journalFields = append(journalFields, field{c.Name, jm.Get(fd).Interface()})
			}
		}
	}
	if cfg.JSON {
		tm := make(map[string]any, len(table)+1)
		for _, f := range table {
			tm[f.name] = f.v
		}
		tm["all_trusted"] = t.GetAllTrusted()
		counters := resp.GetCounters()
		if counters == nil {
			counters = map[string]uint64{}
		}
		out := map[string]any{"serving": resp.GetServing(), "table": tm, "counters": counters}
		if resp.GetJournal() != nil {
			jm := make(map[string]any, len(journalFields))
			for _, f := range journalFields {
				jm[f.name] = f.v
			}
			out["journal"] = jm
		}
		return json.NewEncoder(w).Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "serving\t%v\n", resp.GetServing())
	fmt.Fprintf(tw, "all_trusted\t%v\n", t.GetAllTrusted())
	for _, f := range table {
		fmt.Fprintf(tw, "%s\t%d\n", f.name, f.v)
	}
	for _, f := range journalFields {
		fmt.Fprintf(tw, "journal_%s\t%v\n", f.name, f.v)
	}
	names := make([]string, 0, len(resp.GetCounters()))
	for n := range resp.GetCounters() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%d\n", n, resp.GetCounters()[n])
	}
	return tw.Flush()
}

// callError turns a failed call into a message for the operator.
func callError(err error, addr string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		if msg := st.Message(); strings.HasPrefix(msg, "toad is shutting down") {
			return fmt.Errorf("toad at %s is shutting down", addr)
		}
		return fmt.Errorf("cannot reach toad at %s: %s (is toad serve running? is --addr right?)", addr, st.Message())
	case codes.NotFound, codes.InvalidArgument, codes.ResourceExhausted:
		return errors.New(st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("toad at %s did not answer in time", addr)
	}
	return fmt.Errorf("%s: %s", strings.ToLower(st.Code().String()), st.Message())
}
