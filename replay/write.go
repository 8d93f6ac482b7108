package replay

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/toad-project/toad/lifetime"
)

// Format is how Run writes connections.
type Format uint8

// Formats.
const (
	// Table is a table for people: one line per connection, columns
	// aligned, times in UTC with nanoseconds.
	Table Format = iota
	// JSON is JSON Lines: one object per connection.
	JSON
)

func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "table"
}

// timeLayout is RFC 3339 with nanoseconds, always nine digits so that the
// times line up and sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// writer writes connections as they come, buffered.
type writer interface {
	// write writes c, and returns the error of the buffered writes so
	// far.
	write(c *lifetime.Conn) error
	// finish writes what ends the output, when complete, and flushes
	// what is buffered.
	finish(complete bool) error
}

// newWriter returns a writer of f to w; a table with no rows says none
// instead.
func newWriter(f Format, w io.Writer, none string) writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	if f == JSON {
		return &jsonWriter{w: bw}
	}
	return &tableWriter{w: bw, none: none}
}

// jsonWriter writes JSON Lines. Every value it writes is an address, a
// dialect, a time or a word, which need no escaping.
type jsonWriter struct {
	w   *bufio.Writer
	buf []byte
}

// appendConnJSON appends c's JSON object and a newline to b.
func appendConnJSON(b []byte, c *lifetime.Conn) []byte {
	b = append(b, `{"peer":"`...)
	b = c.Peer.AppendTo(b)
	b = append(b, `","local":"`...)
	b = c.Local.AppendTo(b)
	b = append(b, `","client":`...)
	if c.HasTOA() {
		b = append(b, '"')
		b = appendClient(b, c)
		b = append(b, `","client_ip":"`...)
		b = c.Client.Addr.AppendTo(b)
		b = append(b, '"')
		if c.Client.HasPort {
			b = append(b, `,"client_port":`...)
			b = strconv.AppendUint(b, uint64(c.Client.Port), 10)
		}
		b = append(b, `,"dialect":"`...)
		b = append(b, c.Client.Dialect.String()...)
		b = append(b, '"')
	} else {
		b = append(b, `null,"client_ip":null,"dialect":null`...)
	}
	b = append(b, `,"opened":`...)
	b = appendTimeJSON(b, c.Opened)
	b = append(b, `,"first_toa":`...)
	b = appendTimeJSON(b, c.FirstTOA)
	b = append(b, `,"closed":`...)
	b = appendTimeJSON(b, c.Closed)
	b = append(b, `,"state":"`...)
	b = append(b, c.End.String()...)
	b = append(b, '"')
	if c.Conflicts > 0 {
		b = append(b, `,"conflicts":`...)
		b = strconv.AppendUint(b, uint64(c.Conflicts), 10)
	}
	return append(b, "}\n"...)
}

// appendClient appends the client as an address and port, or an address
// alone for dialects that carry no port.
func appendClient(b []byte, c *lifetime.Conn) []byte {
	if c.Client.HasPort {
		return netip.AddrPortFrom(c.Client.Addr, c.Client.Port).AppendTo(b)
	}
	return c.Client.Addr.AppendTo(b)
}

func appendTimeJSON(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

func (j *jsonWriter) write(c *lifetime.Conn) error {
	j.buf = appendConnJSON(j.buf[:0], c)
	_, err := j.w.Write(j.buf) // a failure sticks in the bufio.Writer
	return err
}

func (j *jsonWriter) finish(bool) error { return j.w.Flush() }

// tableWriter writes a table whose columns fit the first rows, held back
// until tableLead of them have come, and widen after that when a value
// needs it: streamed, in bounded memory, and aligned for any capture whose
// addresses are alike.
type tableWriter struct {
	w      *bufio.Writer
	widths [numCols]int
	held   [][numCols]string // the first rows, until the widths are set
	rows   int
	buf    []byte
	none   string // what an empty table says
}

const (
	numCols   = 7
	tableLead = 256
)

var tableHead = [numCols]string{"PEER", "LOCAL", "CLIENT", "DIALECT", "STATE", "OPENED", "CLOSED"}

func (t *tableWriter) write(c *lifetime.Conn) error {
	var row [numCols]string
	row[0], row[1] = c.Peer.String(), c.Local.String()
	row[2], row[3] = "-", "-"
	if c.HasTOA() {
		row[2], row[3] = string(appendClient(nil, c)), c.Client.Dialect.String()
	}
	row[4], row[5], row[6] = c.End.String(), c.Opened.UTC().Format(timeLayout), "-"
	if !c.Closed.IsZero() {
		row[6] = c.Closed.UTC().Format(timeLayout)
	}
	t.rows++
	if t.held != nil || t.rows == 1 {
		t.held = append(t.held, row)
		if len(t.held) == tableLead {
			t.flushHeld()
		}
		return nil
	}
	return t.line(&row)
}

// flushHeld sets the widths from the header and the rows held, and
// writes them.
func (t *tableWriter) flushHeld() {
	t.fit(&tableHead)
	for i := range t.held {
		t.fit(&t.held[i])
	}
	t.line(&tableHead)
	for i := range t.held {
		t.line(&t.held[i])
	}
	t.held = nil
}

func (t *tableWriter) fit(row *[numCols]string) {
	for i, v := range row {
		t.widths[i] = max(t.widths[i], len(v))
	}
}

// line writes a row, two spaces between columns, no trailing space.
func (t *tableWriter) line(row *[numCols]string) error {
	t.fit(row)
	b := t.buf[:0]
	for i, v := range row {
		b = append(b, v...)
		for n := t.widths[i] - len(v) + 2; i < numCols-1 && n > 0; n-- {
			b = append(b, ' ')
		}
	}
	t.buf = append(b, '\n')
	_, err := t.w.Write(t.buf)
	return err
}

func (t *tableWriter) finish(complete bool) error {
	if t.rows == 0 && complete {
		fmt.Fprintln(t.w, t.none)
	} else if t.held != nil {
		t.flushHeld()
	}
	return t.w.Flush()
}
