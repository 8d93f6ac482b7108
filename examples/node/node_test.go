package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/syncbuf"
)

// requireNode returns the path of node, installing the example's locked
// dependencies first when they are missing. Without node or npm the test
// skips, or fails under CI.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = exec.LookPath("npm")
	}
	if err != nil {
		if privtest.InCI() {
			t.Fatalf("the Node.js client test must run under CI: %v (Debian: apt-get install nodejs npm)", err)
		}
		t.Skipf("needs node and npm: %v", err)
	}
	if _, err := os.Stat("node_modules/@grpc/grpc-js"); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	return node
}

// buildToad builds the toad command into a temporary directory.
func buildToad(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "toad")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/toad-project/toad/cmd/toad")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServe runs toad serve on a capture and returns once it serves, with
// its unix socket and TCP address. It is stopped with SIGINT when the test
// ends, and must exit cleanly.
func startServe(t *testing.T, toad, capFile string, args ...string) (sock, tcp string) {
	t.Helper()
	dir := t.TempDir()
	sock = filepath.Join(dir, "toad.sock")
	cmd := exec.Command(toad, append([]string{"serve", "--pcap", capFile, "--socket", sock, "--listen", "127.0.0.1:0", "--health-listen", "", "--metrics-listen", "", "--drain", "0s"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var log syncbuf.Buffer
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signaled := false
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if strings.Contains(line, "msg=listening network=tcp") {
				for f := range strings.FieldsSeq(line) {
					if a, ok := strings.CutPrefix(f, "addr="); ok {
						tcp = a
					}
				}
			}
			if strings.Contains(line, "msg=serving") && !signaled {
				signaled = true
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("toad serve exited before serving: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("toad serve did not start serving\n%s", log.String())
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("toad serve after SIGINT: %v\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("toad serve did not stop on SIGINT\n%s", log.String())
		}
	})
	return sock, tcp
}

// answer is one line of lookup.js's output.
type answer struct {
	Peer       string `json:"peer"`
	Local      string `json:"local"`
	Client     string `json:"client,omitempty"`
	ClientIP   string `json:"client_ip,omitempty"`
	ClientPort uint16 `json:"client_port,omitempty"`
	Dialect    string `json:"dialect,omitempty"`
	State      string `json:"state,omitempty"`
	Error      string `json:"error,omitempty"`
}

func runNode(t *testing.T, node string, args ...string) []answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, append([]string{"lookup.js"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node lookup.js: %v\n%s", err, stderr.String())
	}
	var out []answer
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var a answer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("lookup.js printed %q: %v", sc.Text(), err)
		}
		out = append(out, a)
	}
	return out
}

// TestNodeClient replays a generated capture in toad serve and has the
// Node.js client resolve every connection in it, over the unix socket one
// by one and over TCP in a batch: the trusted TOA's client for each, and
// NOT_FOUND for connections without one or from outside the trusted
// proxies.
func TestNodeClient(t *testing.T) {
	node := requireNode(t)
	capFile := filepath.Join(t.TempDir(), "sample.pcapng")
	truth, err := gen.WriteFile(capFile, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	trusted := make([]string, len(gen.Trusted))
	for i, p := range gen.Trusted {
		trusted[i] = p.String()
	}
	sock, tcp := startServe(t, buildToad(t), capFile, "--trusted-proxies", strings.Join(trusted, ","))

	var pairs []string
	var want []answer
	add := func(peer, local string, c gen.Conn) {
		pairs = append(pairs, peer, local)
		a := answer{Peer: peer, Local: local}
		if !c.Resolvable() {
			a.Error = "NOT_FOUND"
		} else {
			a.Client, a.ClientIP, a.Dialect = c.Client.String(), c.Client.Addr.String(), c.Client.Dialect.String()
			if c.Client.HasPort {
				a.ClientPort = c.Client.Port
			}
			a.State = "CONNECTION_STATE_OPEN"
			if c.Closed {
				a.State = "CONNECTION_STATE_CLOSING"
			}
		}
		want = append(want, a)
	}
	for _, c := range truth.Conns {
		add(c.Peer.String(), c.Local.String(), c)
		if c.Peer.Addr().Is4() { // as a dual-stack listener reports it
			add(fmt.Sprintf("[::ffff:%s]:%d", c.Peer.Addr(), c.Peer.Port()), fmt.Sprintf("[::ffff:%s]:%d", c.Local.Addr(), c.Local.Port()), c)
		}
	}
	add("198.51.100.250:1", "192.0.2.20:8080", gen.Conn{})

	for _, run := range []struct {
		name string
		args []string
	}{
		{"unix, one by one", []string{"--addr", "unix://" + sock, "--wait", "50"}},
		{"tcp, batch", []string{"--addr", tcp, "--batch"}},
	} {
		got := runNode(t, node, append(run.args, pairs...)...)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: answers (-want +got):\n%s", run.name, diff)
		}
	}
}
