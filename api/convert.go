package api

import (
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/internal/counter"
	"github.com/toad-project/toad/journal"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// parseAddr parses one address of a connection as a socket API prints it.
// field names it in the error, which is an INVALID_ARGUMENT status.
func parseAddr(field, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return ap, invalidArgument(field, fmt.Sprintf("%s %q is not the address of a connection: want ip:port as a socket prints it, for example 198.51.100.10:40001 or [2001:db8::1]:443", field, s))
	}
	return ap, nil
}

// parseKey parses a connection's peer and local addresses; prefix goes
// before the field names in errors ("keys[3].").
func parseKey(prefix, peer, local string) (correlate.Key, error) {
	p, err := parseAddr(prefix+"peer", peer)
	if err != nil {
		return correlate.Key{}, err
	}
	l, err := parseAddr(prefix+"local", local)
	if err != nil {
		return correlate.Key{}, err
	}
	return correlate.KeyOf(p, l), nil
}

// invalidArgument returns an INVALID_ARGUMENT status whose message is msg
// and whose details name the field, for clients that read them.
func invalidArgument(field, msg string) error {
	st := status.New(codes.InvalidArgument, msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// fillConnection writes e into c, all but the client's text (setClient's),
// with ts as its first-seen time; peer and local are the connection's
// addresses as the caller wants them shown. Taking the messages from the
// caller lets a batch allocate them together.
func fillConnection(c *toadv1.Connection, ts *timestamppb.Timestamp, peer, local string, e *correlate.Entry) {
	c.Peer, c.Local = peer, local
	if cl := &e.Client; cl.HasPort {
		c.ClientPort = uint32(cl.Port)
	}
	c.Dialect = dialectText(e.Client.Dialect)
	if !e.FirstSeen.IsZero() {
		ts.Seconds, ts.Nanos = e.FirstSeen.Unix(), int32(e.FirstSeen.Nanosecond())
		c.FirstSeen = ts
	}
	c.State = connectionState(e.State)
}

// setClient sets c's client and client_ip from text, the client as
// toa.Client.String writes it; hasPort is the client's HasPort.
func setClient(c *toadv1.Connection, text string, hasPort bool) {
	c.Client, c.ClientIp = text, text
	if hasPort {
		c.ClientIp = strings.TrimSuffix(strings.TrimPrefix(text[:strings.LastIndexByte(text, ':')], "["), "]")
	}
}

// appendClient appends c as toa.Client.String writes it.
func appendClient(b []byte, c *toa.Client) []byte {
	switch {
	case c.IsZero():
		return b
	case !c.HasPort:
		return c.Addr.AppendTo(b)
	}
	return netip.AddrPortFrom(c.Addr, c.Port).AppendTo(b)
}

func newConnection(peer, local string, e *correlate.Entry) *toadv1.Connection {
	c := new(toadv1.Connection)
	fillConnection(c, new(timestamppb.Timestamp), peer, local, e)
	setClient(c, e.Client.String(), e.Client.HasPort)
	return c
}

func connectionState(s correlate.State) toadv1.ConnectionState {
	switch s {
	case correlate.StateOpen:
		return toadv1.ConnectionState_CONNECTION_STATE_OPEN
	case correlate.StateClosing:
		return toadv1.ConnectionState_CONNECTION_STATE_CLOSING
	}
	return toadv1.ConnectionState_CONNECTION_STATE_UNSPECIFIED
}

// dialectNames holds the text of the built-in dialects, so that answering
// does not format them again and again.
var dialectNames = func() []dialectName {
	names := make([]dialectName, len(toa.Builtin))
	for i, in := range toa.Builtin {
		names[i] = dialectName{in.Dialect, in.Dialect.String()}
	}
	return names
}()

type dialectName struct {
	d    toa.Dialect
	text string
}

func dialectText(d toa.Dialect) string {
	for i := range dialectNames {
		if dialectNames[i].d == d {
			return dialectNames[i].text
		}
	}
	return d.String()
}

// journalStatsFields and tableStatsFields are the JournalStats fields of
// journal.Counters and the TableStats fields of correlate.Counters, in
// their order; tests check that every counter has its field and every
// field its counter.
var (
	journalStatsFields = statsFields(&toadv1.JournalStats{}, journal.Counters)
	tableStatsFields   = statsFields(&toadv1.TableStats{}, correlate.Counters)
)

// statsFields returns the field of msg each counter names, in their
// order: nil for a counter msg has no field of (a test says which).
func statsFields[S any](msg protoreflect.ProtoMessage, counters []counter.Desc[S]) []protoreflect.FieldDescriptor {
	fields := msg.ProtoReflect().Descriptor().Fields()
	fds := make([]protoreflect.FieldDescriptor, len(counters))
	for i, c := range counters {
		fds[i] = fields.ByName(protoreflect.Name(c.Name))
	}
	return fds
}

// setStats sets each field of m in fds, statsFields' answer for counters,
// to its counter's value in st; a bool field is true for a counter not 0.
func setStats[S any](m protoreflect.Message, fds []protoreflect.FieldDescriptor, counters []counter.Desc[S], st *S) {
	for i, c := range counters {
		switch fd := fds[i]; {
		case fd == nil:
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(c.Value(st) != 0))
		default:
			m.Set(fd, protoreflect.ValueOfUint64(c.Value(st)))
		}
	}
}

func journalStats(st journal.Stats) *toadv1.JournalStats {
	js := &toadv1.JournalStats{}
	setStats(js.ProtoReflect(), journalStatsFields, journal.Counters, &st)
	return js
}

func tableStats(st correlate.Stats) *toadv1.TableStats {
	ts := &toadv1.TableStats{AllTrusted: st.AllTrusted}
	setStats(ts.ProtoReflect(), tableStatsFields, correlate.Counters, &st)
	return ts
}
