package replaycmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// tsharkFields are what tshark extracts of every packet: the fields of a
// decode.Record. The TCP options come raw, as hex; tshark knows no TOA
// dialect, so the TOAs are read from them in Go, as a script reading
// tshark's output would.
var tsharkFields = []string{
	"frame.time_epoch",
	"ip.src", "ipv6.src", "tcp.srcport",
	"ip.dst", "ipv6.dst", "tcp.dstport",
	"tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.options",
}

// TsharkArgs returns tshark's arguments for reading path: no name
// resolution, the first occurrence of each field (an ICMP error quotes
// another header), and TCP's sequence analysis, reassembly and relative
// numbers off, which only slow it down here.
func TsharkArgs(path string) []string {
	args := []string{"-n", "-r", path,
		"-o", "tcp.analyze_sequence_numbers:FALSE",
		"-o", "tcp.desegment_tcp_streams:FALSE",
		"-o", "tcp.calculate_timestamps:FALSE",
		"-o", "tcp.relative_sequence_numbers:FALSE",
		"-T", "fields", "-E", "occurrence=f", "-E", "separator=/t",
	}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	return args
}

// tsharkRun is what the process took.
type tsharkRun struct {
	cpu    time.Duration // user and system time
	maxRSS int64         // bytes
}

// replayTshark has tshark at bin extract the fields of every packet and
// reads its output as it comes.
func replayTshark(ctx context.Context, bin string, c *Capture, run *tsharkRun) (int, func() Mappings, error) {
	cmd := exec.CommandContext(ctx, bin, TsharkArgs(c.Path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start tshark: %w", err)
	}
	found := make(firstTOA, c.Mix.Conns) // sized, as toad's table is
	n, perr := readTshark(out, found)
	if perr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	if cmd.ProcessState != nil {
		run.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		run.maxRSS = maxRSS(cmd.ProcessState)
	}
	if werr != nil {
		return n, nil, fmt.Errorf("tshark: %w: %s", werr, bytes.TrimSpace(stderr.Bytes()))
	}
	if perr != nil {
		return n, nil, fmt.Errorf("read tshark's output: %w", perr)
	}
	return n, found.mappings, nil
}

// readTshark parses tshark's lines into records and keeps their first
// TOAs in found. It returns the lines read.
func readTshark(r io.Reader, found firstTOA) (int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	set := toa.DefaultSet()
	var (
		f    [12][]byte
		rec  decode.Record
		opts [60]byte
	)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		n++
		line = bytes.TrimSuffix(line, []byte{'\n'})
		i := 0
		for ; i < len(f)-1; i++ {
			j := bytes.IndexByte(line, '\t')
			if j < 0 {
				break
			}
			f[i], line = line[:j], line[j+1:]
		}
		if f[i] = line; i != len(f)-1 {
			return n, fmt.Errorf("line %d: %d fields, want %d", n, i+1, len(f))
		}
		if len(f[3]) == 0 { // not TCP
			continue
		}
		if parseTshark(&f, &rec, set, opts[:]) != nil {
			continue // a header cut short: tshark printed what it could
		}
		if rec.TOACount > 0 {
			found.observe(rec.Peer, rec.Local, rec.TOA)
		}
	}
}

// parseTshark fills r from the fields of one line; buf is room for the
// options.
func parseTshark(f *[12][]byte, r *decode.Record, set *toa.Set, buf []byte) error {
	*r = decode.Record{}
	sec, frac, _ := bytes.Cut(f[0], []byte{'.'})
	s, err1 := strconv.ParseInt(string(sec), 10, 64)
	ns, err2 := strconv.ParseInt(string(frac), 10, 64)
	for range 9 - len(frac) {
		ns *= 10
	}
	src, err3 := parseIP(f[1], f[2])
	sp, err4 := strconv.ParseUint(string(f[3]), 10, 16)
	dst, err5 := parseIP(f[4], f[5])
	dp, err6 := strconv.ParseUint(string(f[6]), 10, 16)
	flags, err7 := strconv.ParseUint(string(f[7]), 0, 16)
	seq, err8 := strconv.ParseUint(string(f[8]), 10, 32)
	ack, err9 := strconv.ParseUint(string(f[9]), 10, 32)
	plen, err10 := strconv.ParseUint(string(f[10]), 10, 32)
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10); err != nil {
		return err
	}
	r.Time = time.Unix(s, ns)
	r.Peer, r.Local = netip.AddrPortFrom(src, uint16(sp)), netip.AddrPortFrom(dst, uint16(dp))
	r.Flags, r.Seq, r.Ack, r.PayloadLen = decode.Flags(flags), uint32(seq), uint32(ack), uint32(plen)
	if len(f[11]) == 0 {
		return nil
	}
	if len(f[11]) > 2*len(buf) {
		return fmt.Errorf("tcp.options %q longer than a TCP header holds", f[11])
	}
	n, err := hex.Decode(buf, f[11])
	if err != nil {
		return fmt.Errorf("tcp.options: %w", err)
	}
	found, err := set.Parse(buf[:n], toa.SegmentOf(r.Flags&decode.SYN != 0, r.Flags&decode.ACK != 0, int(r.PayloadLen)))
	if err == nil {
		r.TOA, r.TOACount = found.First, found.Count
	}
	return nil
}

func parseIP(v4, v6 []byte) (netip.Addr, error) {
	if len(v4) > 0 {
		return netip.ParseAddr(string(v4))
	}
	return netip.ParseAddr(string(v6))
}
