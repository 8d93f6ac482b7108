package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/testbed"
	"github.com/toad-project/toad/toa"
)

// preloadBed is the testbed of unmodified programs: one client, the
// proxy, an attacker, and the origin where toad runs with its preload
// socket beside the program under test.
//
//	client   eth0 ---- cli0 ─┬─ proxy  org0 ---- eth0  origin
//	attacker eth0 ---- atk0 ─┘
//
// Addresses as in bed.
type preloadBed struct {
	client, proxy, origin, attack *netnstest.NS

	bin, lib string // the toad command, the preload library
	dir      string // toad's sockets; the programs' files
	run      string // the preload socket's directory, group nogroup
	toad     *testbed.Toad
	api      *client.Client

	nextPort uint16 // the next range of proxy ports
	portSpan uint16 // how many each proxy gets
	nextDev  int
	nginxDir string // the last nginx's configuration and access log
}

// The group the programs' workers run as (nginx's workers, started by
// root, become nobody:nogroup), and so the preload socket's.
const workerGroup = "nogroup"

func newPreloadBed(t testing.TB) *preloadBed {
	t.Helper()
	privtest.Require(t, "ip", "make", "cc")
	b := &preloadBed{
		client:   netnstest.New(t, "pl-c"),
		proxy:    netnstest.New(t, "pl-p"),
		origin:   netnstest.New(t, "pl-o"),
		attack:   netnstest.New(t, "pl-a"),
		nextPort: 20000,
		portSpan: 2000,
	}
	linkClient(t, b.client, b.proxy, 0)
	testbed.LinkOrigin(t, b.proxy, b.origin, originToAttacker)
	linkAttacker(t, b.attack, b.proxy)

	b.bin = testbed.BuildToad(t)
	b.lib = testbed.BuildPreload(t)
	dir, err := os.MkdirTemp("", "toad-preload-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The programs' workers (nobody) read their files here and load the
	// library from here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, filepath.Base(b.lib))
	so, err := os.ReadFile(b.lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, so, 0o644); err != nil {
		t.Fatal(err)
	}
	b.lib, b.dir, b.run = lib, dir, filepath.Join(dir, "run")
	// The socket's directory lets the workers' group in.
	g, err := user.LookupGroup(workerGroup)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Mkdir(b.run, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(b.run, 0, gid); err != nil {
		t.Fatal(err)
	}
	b.startToad(t)
	b.api = apitest.Client(t, filepath.Join(dir, "toad.sock"), client.WithWait(0))
	return b
}

// startToad starts toad with its preload socket, group nogroup.
func (b *preloadBed) startToad(t testing.TB) {
	t.Helper()
	b.toad = testbed.StartToad(t, b.origin, b.bin, "serve",
		"--interface", "eth0",
		"--socket", filepath.Join(b.dir, "toad.sock"),
		"--preload-socket", b.preloadSocket(),
		"--preload-socket-group", workerGroup,
		"--health-listen", "",
		"--metrics-listen", "",
		"--trusted-proxies", trusted,
		"--dialects", dialects,
		"--drain", "0s")
}

func (b *preloadBed) preloadSocket() string { return filepath.Join(b.run, "preload.sock") }

// env is the environment of a program run with the library, or without.
// The library may wait for toad as long as a test may: on a loaded
// machine, an answer later than the default 20 ms would make it use the
// kernel's address for that call and, for a second, the next ones.
func (b *preloadBed) env(preload bool) []string {
	if !preload {
		return nil
	}
	return append(b.defaultEnv(), "TOAD_PRELOAD_WAIT=30s")
}

// defaultEnv is the environment of a program run with the library and
// its default settings.
func (b *preloadBed) defaultEnv() []string {
	return []string{"LD_PRELOAD=" + b.lib, "TOAD_PRELOAD_SOCKET=" + b.preloadSocket()}
}

// proxyTo runs a FULLNAT proxy to origin until t ends, fresh proxy ports
// each time, so that no 4-tuple of an earlier run comes back: 200/8 for
// IPv4 clients, 254/20 for IPv6 ones (FNAT64 to an IPv4 origin), in the
// segments placement says.
func (b *preloadBed) proxyTo(t testing.TB, origin netip.AddrPort, placement fullnat.Placement) {
	t.Helper()
	b.nextDev++
	cfg := fullnat.Config{
		VIPs:       []netip.AddrPort{vip4, vip6},
		Origin:     origin,
		ProxyAddr4: proxyAddr4,
		ProxyAddr6: proxyAddr6,
		TOA4:       fullnat.Option{Dialect: toa.Kind200V4},
		TOA6:       fullnat.Option{Dialect: toa.Kind254V6},
		Placement:  placement,
		Device:     fmt.Sprintf("toadpl%d", b.nextDev),
		PortMin:    b.nextPort,
		PortMax:    b.nextPort + b.portSpan - 1,
	}
	b.nextPort += b.portSpan
	testbed.Proxy(t, b.proxy, cfg)
}

// dial connects from ns's address from to to.
func dial(ns *netnstest.NS, from netip.Addr, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: connTimeout}
		c, err = d.Dial("tcp", to.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %v from %v: %w", to, from, err)
	}
	c.SetDeadline(time.Now().Add(connTimeout))
	return c, nil
}

// exchange writes req and reads until the server closes the connection.
func exchange(c net.Conn, req string) (string, error) {
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// program is an unmodified server under test, and how to learn from it
// the peer it saw for one connection.
type program struct {
	name     string
	commands []string // what it needs on PATH
	port     uint16
	// start runs it in the origin namespace, with the library or not.
	start func(t testing.TB, b *preloadBed, env []string) *testbed.Program
	// ask runs one conversation on c, the n-th of the run, and returns
	// the peer the program reported, as it writes it.
	ask func(p *testbed.Program, c net.Conn, n int) (string, error)
	// want is how the program writes peer.
	want func(peer netip.AddrPort) string
	// exitReports is true for a program that exits on SIGTERM through
	// exit(), where the library reports its last counters.
	exitReports bool
}

func (pg *program) addr() netip.AddrPort { return netip.AddrPortFrom(origin4.Addr(), pg.port) }

// startNginx runs nginx listening on listen.
func startNginx(t testing.TB, b *preloadBed, env []string, listen string) *testbed.Program {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	b.nginxDir = dir
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, listen)), 0o644); err != nil {
		t.Fatal(err)
	}
	return testbed.StartProgram(t, b.origin, "nginx", env, "start worker process",
		"nginx", "-e", "stderr", "-c", conf)
}

var (
	nginx = &program{
		name: "nginx", commands: []string{"nginx"}, port: 8081, exitReports: true,
		start: func(t testing.TB, b *preloadBed, env []string) *testbed.Program {
			return startNginx(t, b, env, "192.0.2.20:8081")
		},
		// The body is $remote_addr:$remote_port; so is the access log,
		// which accessLog reads.
		ask: func(_ *testbed.Program, c net.Conn, _ int) (string, error) {
			out, err := exchange(c, "GET / HTTP/1.0\r\n\r\n")
			if err != nil {
				return "", err
			}
			_, body, ok := strings.Cut(out, "\r\n\r\n")
			if !ok {
				return "", fmt.Errorf("no HTTP response: %q", out)
			}
			return strings.TrimSpace(body), nil
		},
		want: func(p netip.AddrPort) string { return p.Addr().String() + ":" + fmt.Sprint(p.Port()) },
	}
	python = &program{
		name: "python3 -m http.server", commands: []string{"python3"}, port: 8082,
		start: func(t testing.TB, b *preloadBed, env []string) *testbed.Program {
			return testbed.StartProgram(t, b.origin, "python3", env, "Serving HTTP on",
				"python3", "-u", "-m", "http.server", "--bind", "192.0.2.20", "--directory", t.TempDir(), "8082")
		},
		// Its log line: 203.0.113.2 - - [date] "GET /n HTTP/1.0" 404 -.
		ask: func(p *testbed.Program, c net.Conn, n int) (string, error) {
			if _, err := exchange(c, fmt.Sprintf("GET /conn-%d HTTP/1.0\r\n\r\n", n)); err != nil {
				return "", err
			}
			i, err := p.WaitLine(0, fmt.Sprintf(`"GET /conn-%d HTTP/1.0"`, n))
			if err != nil {
				return "", err
			}
			line := p.Lines()[i]
			addr, _, ok := strings.Cut(line, " - - ")
			if !ok {
				return "", fmt.Errorf("log line %q", line)
			}
			return addr, nil
		},
		want: func(p netip.AddrPort) string { return p.Addr().String() },
	}
	node = &program{
		name: "node net", commands: []string{"node"}, port: 8083,
		start: func(t testing.TB, b *preloadBed, env []string) *testbed.Program {
			return testbed.StartProgram(t, b.origin, "node", env, "listening",
				"node", "-e", `const net = require('net');
net.createServer(c => c.end(c.remoteAddress + ' ' + c.remotePort + '\n'))
  .listen(8083, '192.0.2.20', 511, () => console.log('listening'));`)
		},
		ask: func(_ *testbed.Program, c net.Conn, _ int) (string, error) {
			out, err := exchange(c, "")
			return strings.TrimSpace(out), err
		},
		want: func(p netip.AddrPort) string { return p.Addr().String() + " " + fmt.Sprint(p.Port()) },
	}
	java = &program{
		name: "java", commands: []string{"java"}, port: 8084,
		start: func(t testing.TB, b *preloadBed, env []string) *testbed.Program {
			dir := t.TempDir()
			src := filepath.Join(dir, "Server.java")
			if err := os.WriteFile(src, []byte(javaServer), 0o644); err != nil {
				t.Fatal(err)
			}
			return testbed.StartProgram(t, b.origin, "java", env, "listening",
				"java", "-XX:TieredStopAtLevel=1", src, "192.0.2.20", "8084")
		},
		ask: func(_ *testbed.Program, c net.Conn, _ int) (string, error) {
			out, err := exchange(c, "")
			return strings.TrimSpace(out), err
		},
		want: func(p netip.AddrPort) string { return "/" + p.Addr().String() + ":" + fmt.Sprint(p.Port()) },
	}
	redis = &program{
		name: "redis-server", commands: []string{"redis-server"}, port: 8085, exitReports: true,
		start: func(t testing.TB, b *preloadBed, env []string) *testbed.Program {
			return testbed.StartProgram(t, b.origin, "redis-server", env, "Ready to accept connections",
				"redis-server", "--port", "8085", "--bind", "192.0.2.20", "--save", "", "--appendonly", "no",
				"--protected-mode", "no", "--dir", t.TempDir())
		},
		// CLIENT INFO: the CLIENT LIST line of the connection asking.
		ask: func(_ *testbed.Program, c net.Conn, _ int) (string, error) {
			defer c.Close()
			if _, err := io.WriteString(c, "CLIENT INFO\r\n"); err != nil {
				return "", err
			}
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil { // $<length>
				return "", err
			}
			line, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			m := regexp.MustCompile(`(?:^| )addr=(\S+)`).FindStringSubmatch(line)
			if m == nil {
				return "", fmt.Errorf("CLIENT INFO: %q", line)
			}
			return m[1], nil
		},
		want: func(p netip.AddrPort) string { return p.Addr().String() + ":" + fmt.Sprint(p.Port()) },
	}
)

// nginxConf runs nginx in the foreground with its master and two workers
// (nobody:nogroup), everything under the directory %[1]s.
const nginxConf = `daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
	log_format peer '$remote_addr:$remote_port';
	access_log %[1]s/access.log peer;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s backlog=1024;
		location / { return 200 "$remote_addr:$remote_port\n"; }
	}
}
`

// javaServer writes getRemoteSocketAddress() to each connection. The
// ServerSocket is dual-stack (an AF_INET6 socket), Java's default.
const javaServer = `import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

public class Server {
    public static void main(String[] args) throws IOException {
        ServerSocket ss = new ServerSocket();
        ss.bind(new InetSocketAddress(args[0], Integer.parseInt(args[1])), 1024);
        System.out.println("listening");
        while (true) {
            Socket c = ss.accept();
            new Thread(() -> {
                try (c) {
                    c.getOutputStream().write((c.getRemoteSocketAddress() + "\n").getBytes(StandardCharsets.US_ASCII));
                } catch (IOException e) {
                    e.printStackTrace();
                }
            }).start();
        }
    }
}
`

// accessLog reads the last nginx's access log, once it has exited.
func (b *preloadBed) accessLog(t testing.TB) []string {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(b.nginxDir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(log))
}

// conns runs n conversations with pg, at most par at once, from the
// client's address of to's family, and returns what the program said
// for each and who each client was.
func (b *preloadBed) conns(t testing.TB, p *testbed.Program, pg *program, ns *netnstest.NS, from netip.Addr, to netip.AddrPort, n, par int) (said []string, peers []netip.AddrPort) {
	t.Helper()
	said, peers = make([]string, n), make([]netip.AddrPort, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, par)
	)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dial(ns, from, to)
			if err == nil {
				peers[i] = addrPort(c.LocalAddr())
				said[i], err = pg.ask(p, c, i)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d conversations failed; the first: %v", len(errs), n, errs[0])
	}
	return said, peers
}

// preloadStats returns toad's preload counters.
func (b *preloadBed) preloadStats(t testing.TB) map[string]uint64 {
	t.Helper()
	return getStats(t, b.api).GetCounters()
}

// TestUnmodifiedPrograms runs nginx, Python's http.server, a Node net
// server, a Java server and redis behind the FULLNAT proxy, each once
// without the preload library (it sees the proxy) and once with it (it
// sees the real client), then nginx through the harder cases.
func TestUnmodifiedPrograms(t *testing.T) {
	b := newPreloadBed(t)
	client4, client6 := clientAddrs(0)
	const perRun = 8

	for _, pg := range []*program{nginx, python, node, java, redis} {
		t.Run(pg.name, func(t *testing.T) {
			privtest.Require(t, pg.commands...)
			b.proxyTo(t, pg.addr(), fullnat.LVS)
			for _, preload := range []bool{false, true} {
				t.Run(fmt.Sprintf("preload=%v", preload), func(t *testing.T) {
					p := pg.start(t, b, b.env(preload))
					before := b.preloadStats(t)
					said, peers := b.conns(t, p, pg, b.client, client4, vip4, perRun, perRun)
					for i, got := range said {
						want := pg.want(netip.AddrPortFrom(proxyAddr4, 0))
						if preload {
							want = pg.want(peers[i])
						}
						if !samePeer(got, want, preload) {
							t.Errorf("connection %d from %v: %s said %q, want %q", i, peers[i], pg.name, got, want)
						}
					}
					if err := p.Stop(stopTimeout); err != nil && pg == nginx {
						t.Errorf("nginx: %v", err)
					}
					if pg == nginx {
						checkAccessLog(t, b.accessLog(t), said)
					}
					if !pg.exitReports {
						return
					}
					// The library reports its counters at exit.
					after := b.preloadStats(t)
					ok := after["preload_getname_toa_ok"] - before["preload_getname_toa_ok"]
					if preload && ok < perRun || !preload && ok != 0 {
						t.Errorf("preload_getname_toa_ok rose by %d over %d connections (preload %v)", ok, perRun, preload)
					}
				})
			}
		})
	}
	if t.Failed() {
		return
	}

	t.Run("IPv6 clients through FNAT64 to IPv4 nginx", func(t *testing.T) {
		privtest.Require(t, "nginx")
		// DPVS sends the TOA in the handshake's ACK and the first data
		// segments: toad learns it as accept returns. The proxy reaches
		// nginx over IPv4.
		b.proxyTo(t, nginx.addr(), fullnat.DPVS)
		t.Run("dual-stack listener", func(t *testing.T) {
			// nginx sizes a connection's address text by its listener's
			// family: on [::] it holds the IPv6 client.
			p := startNginx(t, b, b.env(true), "[::]:8081 ipv6only=off")
			said, peers := b.conns(t, p, nginx, b.client, client6, vip6, perRun, perRun)
			for i, got := range said {
				if want := nginx.want(peers[i]); got != want {
					t.Errorf("connection %d: nginx said %q, want %q", i, got, want)
				}
			}
		})
		t.Run("IPv4 listener, TOAD_PRELOAD_FAMILY=socket", func(t *testing.T) {
			// On an AF_INET listener nginx would close a connection given
			// an IPv6 peer: the library keeps the kernel's address, and
			// counts the mismatch.
			before := b.preloadStats(t)
			p := nginx.start(t, b, append(b.env(true), "TOAD_PRELOAD_FAMILY=socket"))
			said, _ := b.conns(t, p, nginx, b.client, client6, vip6, perRun, perRun)
			for i, got := range said {
				if !samePeer(got, nginx.want(netip.AddrPortFrom(proxyAddr4, 0)), false) {
					t.Errorf("connection %d: nginx said %q, want the proxy %v", i, got, proxyAddr4)
				}
			}
			if err := p.Stop(stopTimeout); err != nil {
				t.Errorf("nginx: %v", err)
			}
			after := b.preloadStats(t)
			if d := after["preload_getname_toa_mismatch"] - before["preload_getname_toa_mismatch"]; d < perRun {
				t.Errorf("preload_getname_toa_mismatch rose by %d over %d connections", d, perRun)
			}
		})
	})

	t.Run("forged TOAs from outside the trusted proxies", func(t *testing.T) {
		privtest.Require(t, "nginx")
		// The attacker's own FULLNAT proxy names client0 in a 200/8 TOA
		// of every segment it may; its address is not trusted.
		b.nextDev++
		testbed.Proxy(t, b.attack, attackersProxy(nginx.addr(), fmt.Sprintf("toadatk%d", b.nextDev)))
		p := nginx.start(t, b, b.env(true))
		said, _ := b.conns(t, p, nginx, b.attack, client4, attackerVIP, perRun, perRun)
		for i, got := range said {
			if !samePeer(got, nginx.want(netip.AddrPortFrom(attackerProxy, 0)), false) {
				t.Errorf("forged connection %d: nginx said %q, want the attacker's proxy %v", i, got, attackerProxy)
			}
		}
	})

	t.Run("hundreds of concurrent connections, descriptors reused", func(t *testing.T) {
		privtest.Require(t, "nginx")
		b.proxyTo(t, nginx.addr(), fullnat.LVS)
		p := nginx.start(t, b, b.env(true))
		// Two waves: the second's connections get the descriptors the
		// first's closed.
		for wave := range 2 {
			said, peers := b.conns(t, p, nginx, b.client, client4, vip4, 300, 300)
			for i, got := range said {
				if want := nginx.want(peers[i]); got != want {
					t.Errorf("wave %d, connection %d: nginx said %q, want %q", wave, i, got, want)
				}
			}
		}
	})

	t.Run("toad stopped mid-run", func(t *testing.T) {
		privtest.Require(t, "nginx")
		b.proxyTo(t, nginx.addr(), fullnat.LVS)
		p := nginx.start(t, b, b.env(true))
		said, peers := b.conns(t, p, nginx, b.client, client4, vip4, perRun, perRun)
		for i, got := range said {
			if want := nginx.want(peers[i]); got != want {
				t.Errorf("before the stop, connection %d: nginx said %q, want %q", i, got, want)
			}
		}
		if err := b.toad.Stop(stopTimeout); err != nil {
			t.Fatalf("stop toad: %v", err)
		}
		// nginx keeps serving, with the proxy's addresses, and its
		// library tries toad again at most once per interval.
		start := time.Now()
		said, _ = b.conns(t, p, nginx, b.client, client4, vip4, 100, 20)
		took := time.Since(start)
		for i, got := range said {
			if !samePeer(got, nginx.want(netip.AddrPortFrom(proxyAddr4, 0)), false) {
				t.Errorf("after the stop, connection %d: nginx said %q, want the proxy %v", i, got, proxyAddr4)
			}
		}
		t.Logf("100 connections with toad stopped in %v", took.Round(time.Millisecond))
		b.startToad(t) // for whatever runs next
	})
}

// samePeer compares what a program said with want; without the library
// the proxy's port is whatever it chose, so only its address counts.
func samePeer(got, want string, exact bool) bool {
	if exact {
		return got == want
	}
	cut := func(s string) string {
		if i := strings.LastIndexAny(s, ": "); i > 0 && !strings.HasSuffix(s, "]") && strings.Count(s, ":") <= 1 {
			return s[:i]
		}
		return s
	}
	return cut(got) == cut(want)
}

// checkAccessLog compares nginx's access log with what it said.
func checkAccessLog(t testing.TB, log, said []string) {
	t.Helper()
	want := map[string]int{}
	for _, s := range said {
		want[s]++
	}
	for _, l := range log {
		want[l]--
	}
	for k, v := range want {
		if v != 0 {
			t.Errorf("access log: %q %+d times against the responses (log %q)", k, -v, log)
		}
	}
}
