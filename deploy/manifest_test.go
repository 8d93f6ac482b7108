package deploy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const (
	manifestDir   = "kubernetes"
	kustomization = "kustomization.yaml"
	toadImageRepo = "ghcr.io/toad-project/toad"
)

// settings are the flags of toad serve that the manifests may set, each also
// read from the environment variable TOAD_<NAME>, with the defaults the
// checks need.
var settings = map[string]string{
	"interface":       "",
	"socket":          "/run/toad/toad.sock",
	"socket-group":    "",
	"listen":          "",
	"allow-remote":    "",
	"health-listen":   ":50052",
	"metrics-listen":  "127.0.0.1:9470",
	"trusted-proxies": "",
	"dialects":        "",
	"state-dir":       "",
	"fsync":           "",
	"log-format":      "",
	"log-level":       "",

	"preload-socket":       "/run/toad/preload.sock",
	"preload-socket-mode":  "",
	"preload-socket-group": "",
	"preload-shared-slots": "",
	"preload-library-dir":  "",
}

func envName(flag string) string {
	return "TOAD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// documentation are the address ranges reserved for documentation (RFC 5737,
// RFC 3849): the only ones an example may name.
var documentation = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// workload is the pod template of a Deployment or a DaemonSet.
type workload struct {
	name string // file: Kind/name
	kind string
	tmpl corev1.PodTemplateSpec
}

// manifests is every object decoded from deploy/kubernetes.
type manifests struct {
	workloads  []workload
	namespaces []*corev1.Namespace
	files      []string // the manifest files, kustomization.yaml excluded
	kust       *kustomizationFile
}

type kustomizationFile struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeDocument decodes one YAML document strictly into its Kubernetes API
// type: unknown and duplicated fields are errors. It returns nil for a
// document that holds only comments.
func decodeDocument(doc []byte) (any, error) {
	var probe map[string]any
	if err := yaml.Unmarshal(doc, &probe); err != nil {
		return nil, err
	}
	if len(probe) == 0 {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "apps/v1 DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	default:
		return nil, fmt.Errorf("%s %s: not a kind these checks know; add it to decodeDocument", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// decodeManifests decodes every file of deploy/kubernetes, given as name to
// content.
func decodeManifests(files map[string][]byte) (*manifests, []error) {
	var (
		m    manifests
		errs []error
	)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		src := files[name]
		if name == kustomization {
			var k kustomizationFile
			if err := yaml.UnmarshalStrict(src, &k); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			m.kust = &k
			continue
		}
		m.files = append(m.files, name)
		for i, doc := range documentSeparator.Split(string(src), -1) {
			obj, err := decodeDocument([]byte(doc))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s, document %d: %w", name, i+1, err))
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.workloads = append(m.workloads, workload{name + ": Deployment/" + o.Name, "Deployment", o.Spec.Template})
			case *appsv1.DaemonSet:
				m.workloads = append(m.workloads, workload{name + ": DaemonSet/" + o.Name, "DaemonSet", o.Spec.Template})
			case *corev1.Namespace:
				m.namespaces = append(m.namespaces, o)
			}
		}
	}
	return &m, errs
}

func readManifests(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no manifests in %s", manifestDir)
	}
	files := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

// checkManifests decodes the manifests and returns every broken invariant.
func checkManifests(files map[string][]byte, img imageUser) []error {
	m, errs := decodeManifests(files)
	if len(m.workloads) == 0 {
		errs = append(errs, errors.New("no Deployment or DaemonSet"))
	}
	kinds := map[string]bool{}
	images := map[string]bool{}
	for _, w := range m.workloads {
		kinds[w.kind] = true
		for _, err := range checkWorkload(w, img) {
			errs = append(errs, fmt.Errorf("%s: %w", w.name, err))
		}
		for _, c := range allContainers(&w.tmpl.Spec) {
			if repo, _, _ := imageRef(c.Image); repo == toadImageRepo {
				images[c.Image] = true
			}
		}
	}
	for _, kind := range []string{"Deployment", "DaemonSet"} {
		if !kinds[kind] {
			errs = append(errs, fmt.Errorf("no %s: want the sidecar Deployment and the DaemonSet", kind))
		}
	}
	if len(images) > 1 {
		errs = append(errs, fmt.Errorf("the manifests run different toad images %v: use one", slices.Sorted(mapKeys(images))))
	}
	for _, ns := range m.namespaces {
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			errs = append(errs, fmt.Errorf("namespace %s: pod-security.kubernetes.io/enforce is %q: NET_RAW needs \"privileged\"", ns.Name, got))
		}
	}
	errs = append(errs, checkKustomization(m, images)...)
	return errs
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func checkKustomization(m *manifests, images map[string]bool) []error {
	k := m.kust
	if k == nil {
		return []error{errors.New("no kustomization.yaml")}
	}
	var errs []error
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		errs = append(errs, fmt.Errorf("kustomization.yaml: %s %s: want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind))
	}
	for _, f := range m.files {
		if !slices.Contains(k.Resources, f) {
			errs = append(errs, fmt.Errorf("kustomization.yaml: %s is not listed in resources", f))
		}
	}
	for _, r := range k.Resources {
		if !slices.Contains(m.files, r) {
			errs = append(errs, fmt.Errorf("kustomization.yaml: resource %s does not exist", r))
		}
	}
	if len(m.namespaces) > 0 && k.Namespace != m.namespaces[0].Name {
		errs = append(errs, fmt.Errorf("kustomization.yaml: namespace %q, but the manifests create %q", k.Namespace, m.namespaces[0].Name))
	}
	for _, im := range k.Images {
		if im.Name != toadImageRepo {
			continue
		}
		ref := toadImageRepo + ":" + im.NewTag
		if im.Digest != "" {
			ref += "@" + im.Digest
		}
		if err := checkImagePinned(ref); err != nil {
			errs = append(errs, fmt.Errorf("kustomization.yaml: %w", err))
		}
		if im.NewName == "" && !images[ref] {
			errs = append(errs, fmt.Errorf("kustomization.yaml pins %s, the manifests run %v: keep them equal", ref, slices.Sorted(mapKeys(images))))
		}
	}
	return errs
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// setting resolves a toad serve setting the way the daemon does: the flag,
// else the environment variable, else the default.
func setting(c *corev1.Container, name string) (string, error) {
	flag := "--" + name
	for i, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, nil
		}
		if a == flag && i+1 < len(c.Args) {
			return c.Args[i+1], nil
		}
	}
	for _, e := range c.Env {
		if e.Name != envName(name) {
			continue
		}
		if e.ValueFrom != nil {
			return "", fmt.Errorf("%s uses valueFrom: give a literal value", e.Name)
		}
		return e.Value, nil
	}
	return settings[name], nil
}

// listener resolves a listen-address setting into its host and port.
func listener(c *corev1.Container, name string) (host string, port int32, err error) {
	v, err := setting(c, name)
	if err != nil {
		return "", 0, err
	}
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, fmt.Errorf("--%s %q: %w", name, v, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("--%s %q: port must be 1-65535", name, v)
	}
	return host, int32(n), nil
}

// kubeletReachable reports whether the kubelet, which dials the pod IP, can
// reach a listener bound to host.
func kubeletReachable(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// mountFor returns the mount of c that holds file: the one with the longest
// mount path that contains it.
func mountFor(c *corev1.Container, file string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	return best
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// checkWorkload checks one pod template that runs toad.
func checkWorkload(w workload, img imageUser) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	spec := &w.tmpl.Spec

	var toad *corev1.Container
	toadIsInit := false
	for i, c := range allContainers(spec) {
		if repo, _, _ := imageRef(c.Image); repo == toadImageRepo {
			if toad != nil {
				bad("more than one container runs %s", toadImageRepo)
			}
			toad, toadIsInit = c, i < len(spec.InitContainers)
		}
	}
	if toad == nil {
		bad("no container runs %s", toadImageRepo)
		return errs
	}
	for _, c := range allContainers(spec) {
		checkContainer(spec, c, c == toad, bad)
	}

	// The capability: non-root through the file capability, or root.
	checkPrivilege(spec, toad, img, bad)

	// toad serve, configured through settings it knows.
	if len(toad.Command) != 0 {
		bad("toad sets command %q: keep the image's ENTRYPOINT /toad", toad.Command)
	}
	if len(toad.Args) == 0 || toad.Args[0] != "serve" {
		bad("toad args %q: want serve first", toad.Args)
	}
	for _, e := range toad.Env {
		if name, ok := strings.CutPrefix(e.Name, "TOAD_"); ok {
			if _, known := settings[strings.ReplaceAll(strings.ToLower(name), "_", "-")]; !known {
				bad("toad env %s is not a setting of toad serve", e.Name)
			}
		}
	}
	if f, err := setting(toad, "log-format"); err != nil {
		bad("%v", err)
	} else if f != "" && f != "text" && f != "json" {
		bad("TOAD_LOG_FORMAT %q: want text or json", f)
	}
	checkTrustedProxies(toad, bad)

	// Probes: gRPC health on --health-listen, HTTP on --metrics-listen, both
	// on an address the kubelet can reach.
	checkProbes(toad, bad)

	// The socket and the state directory on volumes.
	socket, err := setting(toad, "socket")
	if err != nil {
		bad("%v", err)
	}
	stateDir, err := setting(toad, "state-dir")
	if err != nil {
		bad("%v", err)
	}
	socketVol := checkFileVolume(spec, toad, "TOAD_SOCKET", socket, bad)
	snapVol := checkFileVolume(spec, toad, "TOAD_STATE_DIR", stateDir, bad)

	switch w.kind {
	case "Deployment":
		// A native sidecar: a restartable init container.
		if !toadIsInit {
			bad("toad is not an init container: run it as a native sidecar in initContainers")
		} else if toad.RestartPolicy == nil || *toad.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			bad("toad in initContainers needs restartPolicy: Always to run as a sidecar; without it the pod waits for it to exit")
		}
		if socketVol != nil && socketVol.EmptyDir == nil {
			bad("socket volume %s: want an emptyDir shared by the pod's containers", socketVol.Name)
		}
		if snapVol != nil && snapVol.EmptyDir == nil {
			bad("state volume %s: want an emptyDir, which outlives container restarts", snapVol.Name)
		}
		if len(spec.Containers) == 0 {
			bad("no application container beside the toad sidecar")
		}
		for i := range spec.Containers {
			if app := &spec.Containers[i]; envValue(app, "LD_PRELOAD") != "" {
				checkPreloadClient(spec, toad, app, bad)
			} else {
				checkSocketClient(toad, app, socket, bad)
			}
		}
	case "DaemonSet":
		if toadIsInit {
			bad("toad is an init container in a DaemonSet: run it in containers")
		}
		if !spec.HostNetwork {
			bad("hostNetwork is false: the DaemonSet serves hostNetwork workloads and must capture in the node's network namespace")
		}
		if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			bad("dnsPolicy %q: want ClusterFirstWithHostNet with hostNetwork", spec.DNSPolicy)
		}
		if len(spec.Tolerations) == 0 {
			bad("no tolerations: toad would miss tainted nodes that run hostNetwork workloads")
		}
		// The node's loopback is every hostNetwork pod's and every node
		// process's: lookups on TCP there would answer any of them.
		if l, err := setting(toad, "listen"); err != nil {
			bad("%v", err)
		} else if l != "" {
			bad("TOAD_LISTEN %s with hostNetwork: any process of the node could ask; serve the socket alone, with TOAD_SOCKET_GROUP for clients that are not root", l)
		}
		if g, err := setting(toad, "socket-group"); err != nil {
			bad("%v", err)
		} else if g == "" && socket != "" {
			bad("TOAD_SOCKET_GROUP is not set: the socket in the root-owned hostPath would admit root alone")
		}
		for _, v := range []*corev1.Volume{socketVol, snapVol} {
			if v == nil {
				continue
			}
			if v.HostPath == nil {
				bad("volume %s: want a hostPath, shared with the node", v.Name)
				continue
			}
			m := mountByName(toad, v.Name)
			if m != nil && v.HostPath.Path != m.MountPath {
				bad("volume %s: hostPath %s mounted at %s: keep the node path and the container path equal", v.Name, v.HostPath.Path, m.MountPath)
			}
		}
		if socketVol != nil && socketVol.HostPath != nil && socketVol.HostPath.Path != "/run/toad" {
			bad("socket hostPath %s: want /run/toad", socketVol.HostPath.Path)
		}
		if snapVol != nil && snapVol.HostPath != nil && snapVol.HostPath.Path != "/var/lib/toad" {
			bad("state hostPath %s: want /var/lib/toad", snapVol.HostPath.Path)
		}
	default:
		bad("kind %s: want Deployment or DaemonSet", w.kind)
	}
	return errs
}

func mountByName(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// checkContainer checks what every container of the pod needs.
func checkContainer(spec *corev1.PodSpec, c *corev1.Container, isToad bool, bad func(string, ...any)) {
	if err := checkImagePinned(c.Image); err != nil {
		bad("container %s: %v", c.Name, err)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		limit, ok := c.Resources.Limits[res]
		if !ok || limit.Sign() <= 0 {
			bad("container %s: no %s limit", c.Name, res)
			continue
		}
		req, ok := c.Resources.Requests[res]
		if !ok || req.Sign() <= 0 {
			bad("container %s: no %s request", c.Name, res)
			continue
		}
		if req.Cmp(limit) > 0 {
			bad("container %s: %s request %s above its limit %s", c.Name, res, req.String(), limit.String())
		}
	}
	seccomp := corev1.SeccompProfileType("")
	if spec.SecurityContext != nil && spec.SecurityContext.SeccompProfile != nil {
		seccomp = spec.SecurityContext.SeccompProfile.Type
	}
	sc := c.SecurityContext
	if sc == nil {
		bad("container %s: no securityContext", c.Name)
		return
	}
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile.Type
	}
	if seccomp != corev1.SeccompProfileTypeRuntimeDefault && seccomp != corev1.SeccompProfileTypeLocalhost {
		bad("container %s: seccomp profile %q: want RuntimeDefault", c.Name, seccomp)
	}
	if sc.Privileged != nil && *sc.Privileged {
		bad("container %s: privileged", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("container %s: want readOnlyRootFilesystem: true", c.Name)
	}
	var add, drop []corev1.Capability
	if sc.Capabilities != nil {
		add, drop = sc.Capabilities.Add, sc.Capabilities.Drop
	}
	if !slices.Equal(drop, []corev1.Capability{"ALL"}) {
		bad("container %s: capabilities drop %v: want [ALL]", c.Name, drop)
	}
	want := []corev1.Capability(nil)
	if isToad {
		want = []corev1.Capability{"NET_RAW"}
	}
	if !slices.Equal(add, want) {
		bad("container %s: capabilities add %v: want %v", c.Name, add, want)
	}
	if !isToad {
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("container %s: want allowPrivilegeEscalation: false", c.Name)
		}
		if nonRoot := effectiveNonRoot(spec, c); nonRoot == nil || !*nonRoot {
			bad("container %s: want runAsNonRoot: true", c.Name)
		}
	}
}

func effectiveNonRoot(spec *corev1.PodSpec, c *corev1.Container) *bool {
	var v *bool
	if spec.SecurityContext != nil {
		v = spec.SecurityContext.RunAsNonRoot
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		v = c.SecurityContext.RunAsNonRoot
	}
	return v
}

// checkPrivilege checks that toad's user and allowPrivilegeEscalation make
// one of the two working ways to hold CAP_NET_RAW:
//   - a non-root user gets it from the file capability on /toad, which
//     no_new_privs (allowPrivilegeEscalation: false) would ignore;
//   - uid 0 gets it from the container's capability set, and needs no
//     escalation.
func checkPrivilege(spec *corev1.PodSpec, toad *corev1.Container, img imageUser, bad func(string, ...any)) {
	uid := img.uid
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil {
		uid = *spec.SecurityContext.RunAsUser
	}
	sc := toad.SecurityContext
	if sc == nil {
		return // reported by checkContainer
	}
	if sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	if uid < 0 {
		bad("toad: cannot tell which user it runs as: set runAsUser")
		return
	}
	ape := sc.AllowPrivilegeEscalation
	nonRoot := effectiveNonRoot(spec, toad)
	if uid == 0 {
		if ape == nil || *ape {
			bad("toad runs as uid 0, which holds NET_RAW from its capability set: set allowPrivilegeEscalation: false")
		}
		if nonRoot != nil && *nonRoot {
			bad("toad runs as uid 0 with runAsNonRoot: true: the kubelet refuses to start it")
		}
		return
	}
	if ape == nil || !*ape {
		bad("toad runs as uid %d and gets NET_RAW from the file capability on /toad, which needs allowPrivilegeEscalation: true (no_new_privs ignores file capabilities)", uid)
	}
	if nonRoot == nil || !*nonRoot {
		bad("toad runs as uid %d: say so with runAsNonRoot: true", uid)
	}
}

func checkTrustedProxies(toad *corev1.Container, bad func(string, ...any)) {
	v, err := setting(toad, "trusted-proxies")
	if err != nil {
		bad("%v", err)
		return
	}
	if v == "" {
		bad("TOAD_TRUSTED_PROXIES is not set: an example must show it")
		return
	}
	for s := range strings.SplitSeq(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			bad("TOAD_TRUSTED_PROXIES: %v", err)
			continue
		}
		inDoc := slices.ContainsFunc(documentation, func(d netip.Prefix) bool {
			return d.Contains(p.Addr()) && p.Bits() >= d.Bits()
		})
		if !inDoc {
			bad("TOAD_TRUSTED_PROXIES: %s is not a documentation range: examples name only %v", p, documentation)
		}
	}
}

func checkProbes(toad *corev1.Container, bad func(string, ...any)) {
	healthHost, healthPort, err := listener(toad, "health-listen")
	if err != nil {
		bad("%v", err)
		return
	}
	metricsHost, metricsPort, err := listener(toad, "metrics-listen")
	if err != nil {
		bad("%v", err)
		return
	}
	for _, cp := range toad.Ports {
		switch {
		case cp.Name == "health" && cp.ContainerPort != healthPort:
			bad("toad port health is %d, but --health-listen is port %d", cp.ContainerPort, healthPort)
		case cp.Name == "metrics" && cp.ContainerPort != metricsPort:
			bad("toad port metrics is %d, but --metrics-listen is port %d", cp.ContainerPort, metricsPort)
		case cp.ContainerPort != healthPort && cp.ContainerPort != metricsPort:
			bad("toad declares port %d, on which it does not listen for the kubelet", cp.ContainerPort)
		}
	}
	if toad.StartupProbe == nil || toad.StartupProbe.GRPC == nil {
		bad("toad needs a gRPC startupProbe: it reports SERVING once the capture ring is attached")
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{
		{"startupProbe", toad.StartupProbe},
		{"readinessProbe", toad.ReadinessProbe},
		{"livenessProbe", toad.LivenessProbe},
	}
	for _, p := range probes {
		switch {
		case p.probe == nil:
			bad("toad has no %s", p.name)
		case p.probe.GRPC != nil:
			if p.probe.GRPC.Port != healthPort {
				bad("toad %s: gRPC port %d, but --health-listen is port %d", p.name, p.probe.GRPC.Port, healthPort)
			} else if !kubeletReachable(healthHost) {
				bad("toad %s: --health-listen binds %s, which the kubelet (dialling the pod IP) cannot reach; listen on \":%d\"", p.name, healthHost, healthPort)
			}
			if s := p.probe.GRPC.Service; s != nil && *s != "" {
				bad("toad %s: gRPC service %q: toad reports the serving status under \"\"", p.name, *s)
			}
		case p.probe.HTTPGet != nil:
			port, ok := containerPort(toad, p.probe.HTTPGet.Port)
			switch {
			case !ok:
				bad("toad %s: no container port named %s", p.name, p.probe.HTTPGet.Port.StrVal)
			case port != metricsPort:
				bad("toad %s: HTTP port %d, but /healthz and /readyz are on --metrics-listen port %d", p.name, port, metricsPort)
			case !kubeletReachable(metricsHost):
				bad("toad %s: --metrics-listen binds %s, which the kubelet (dialling the pod IP) cannot reach", p.name, metricsHost)
			}
			if path := p.probe.HTTPGet.Path; path != "/healthz" && path != "/readyz" {
				bad("toad %s: HTTP path %q: want /healthz or /readyz", p.name, path)
			}
		default:
			bad("toad %s: want a gRPC or HTTP probe (the image has no shell for exec)", p.name)
		}
	}
}

// checkFileVolume checks that the file a setting names lies on a writable
// volume of toad's, and returns the volume.
func checkFileVolume(spec *corev1.PodSpec, toad *corev1.Container, env, file string, bad func(string, ...any)) *corev1.Volume {
	if file == "" {
		bad("%s is not set", env)
		return nil
	}
	if !path.IsAbs(file) || path.Clean(file) != file {
		bad("%s %q: want a clean absolute path", env, file)
		return nil
	}
	m := mountFor(toad, file)
	if m == nil {
		bad("%s %s: toad mounts no volume there, and its root filesystem is read-only", env, file)
		return nil
	}
	if m.ReadOnly {
		bad("%s %s: volume %s is mounted read-only in toad", env, file, m.Name)
	}
	v := volume(spec, m.Name)
	if v == nil {
		bad("toad mounts volume %s, which the pod does not define", m.Name)
	}
	return v
}

// checkSocketClient checks that an application container reaches the socket:
// the same volume at the same path, and TOAD_SOCKET naming it.
func checkSocketClient(toad, app *corev1.Container, socket string, bad func(string, ...any)) {
	tm := mountFor(toad, socket)
	if tm == nil {
		return // reported by checkFileVolume
	}
	am := mountByName(app, tm.Name)
	switch {
	case am == nil:
		bad("container %s does not mount the socket volume %s", app.Name, tm.Name)
	case am.MountPath != tm.MountPath:
		bad("container %s mounts the socket volume at %s, toad at %s: use the same path", app.Name, am.MountPath, tm.MountPath)
	}
	got := ""
	for _, e := range app.Env {
		if e.Name == "TOAD_SOCKET" {
			got = e.Value
		}
	}
	if got != socket {
		bad("container %s: TOAD_SOCKET %q, but toad listens on %q", app.Name, got, socket)
	}
}

func TestManifests(t *testing.T) {
	img, _ := loadImage(t) // the Dockerfile's own problems are TestDockerfile's
	for _, err := range checkManifests(readManifests(t), img) {
		t.Error(err)
	}
}

// TestManifestChecksFail breaks the real manifests one way at a time and
// expects checkManifests to say so.
func TestManifestChecksFail(t *testing.T) {
	img, _ := loadImage(t)
	orig := readManifests(t)
	tests := []struct {
		name, file string
		old, new   string
		want       string // a substring of one of the errors
	}{
		{"unknown field", "sidecar.yaml", "readinessProbe:", "readynessProbe:", `unknown field "readynessProbe"`},
		{"duplicate field", "sidecar.yaml", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `"replicas" already set`},
		{"unknown kind", "namespace.yaml", "kind: Namespace", "kind: Namespaces", "not a kind these checks know"},
		{"non-root without escalation", "sidecar.yaml", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation: false", "needs allowPrivilegeEscalation: true"},
		{"root with escalation", "daemonset.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "set allowPrivilegeEscalation: false"},
		{"non-root daemonset", "daemonset.yaml", "runAsUser: 0", "runAsUser: 65532", "needs allowPrivilegeEscalation: true"},
		{"root but runAsNonRoot", "daemonset.yaml", "runAsNonRoot: false", "runAsNonRoot: true", "the kubelet refuses"},
		{"extra capability", "sidecar.yaml", `add: ["NET_RAW"]`, `add: ["NET_RAW", "NET_ADMIN"]`, "capabilities add [NET_RAW NET_ADMIN]: want [NET_RAW]"},
		{"no drop", "daemonset.yaml", `drop: ["ALL"]`, `drop: ["NET_ADMIN"]`, "drop [NET_ADMIN]: want [ALL]"},
		{"app capability", "sidecar.yaml", "          capabilities:\n              drop: [\"ALL\"]\n          volumeMounts:", "          capabilities:\n              drop: [\"ALL\"]\n              add: [\"NET_RAW\"]\n          volumeMounts:", "container app: capabilities add [NET_RAW]: want []"},
		{"not a sidecar", "sidecar.yaml", "          restartPolicy: Always\n", "", "needs restartPolicy: Always"},
		{"startup port", "sidecar.yaml", "startupProbe:\n            grpc:\n              port: 50052", "startupProbe:\n            grpc:\n              port: 50053", "startupProbe: gRPC port 50053, but --health-listen is port 50052"},
		{"health port moved", "daemonset.yaml", `value: ":50052"`, `value: ":50060"`, "readinessProbe: gRPC port 50052, but --health-listen is port 50060"},
		{"health on loopback", "sidecar.yaml", `value: ":50052"`, `value: "127.0.0.1:50052"`, "cannot reach"},
		{"metrics on loopback", "sidecar.yaml", `value: ":9470"`, `value: "127.0.0.1:9470"`, "livenessProbe: --metrics-listen binds 127.0.0.1"},
		{"liveness port", "sidecar.yaml", "              port: metrics", "              port: health", "livenessProbe: HTTP port 50052"},
		{"no startup probe", "daemonset.yaml", "          startupProbe:\n            grpc:\n              port: 50052\n            periodSeconds: 1\n            failureThreshold: 60\n", "", "needs a gRPC startupProbe"},
		{"app socket path", "sidecar.yaml", "            - name: TOAD_SOCKET\n              value: /run/toad/toad.sock\n          ports:", "            - name: TOAD_SOCKET\n              value: /run/toad/app.sock\n          ports:", `TOAD_SOCKET "/run/toad/app.sock", but toad listens on "/run/toad/toad.sock"`},
		{"app mount path", "sidecar.yaml", "              mountPath: /run/toad\n              readOnly: true", "              mountPath: /var/run/toad\n              readOnly: true", "mounts the socket volume at /var/run/toad"},
		{"socket off volume", "sidecar.yaml", "value: /run/toad/toad.sock", "value: /tmp/toad.sock", "TOAD_SOCKET /tmp/toad.sock: toad mounts no volume there"},
		{"state off volume", "sidecar.yaml", "value: /var/lib/toad/state", "value: /tmp/state", "TOAD_STATE_DIR /tmp/state: toad mounts no volume there"},
		{"state unset", "daemonset.yaml", "            - name: TOAD_STATE_DIR\n              value: /var/lib/toad/state\n", "", "TOAD_STATE_DIR is not set"},
		{"state read-only", "daemonset.yaml", "              mountPath: /var/lib/toad\n", "              mountPath: /var/lib/toad\n              readOnly: true\n", "mounted read-only"},
		{"no limits", "sidecar.yaml", "            limits:\n              cpu: \"1\"\n              memory: 256Mi\n          securityContext:\n            runAsUser: 10001", "          securityContext:\n            runAsUser: 10001", "container app: no cpu limit"},
		{"request above limit", "daemonset.yaml", "memory: 128Mi", "memory: 1Gi", "memory request 1Gi above its limit 512Mi"},
		{"latest image", "daemonset.yaml", "ghcr.io/toad-project/toad:0.1.0", "ghcr.io/toad-project/toad:latest", "uses :latest"},
		{"images differ", "daemonset.yaml", "ghcr.io/toad-project/toad:0.1.0", "ghcr.io/toad-project/toad:0.2.0", "different toad images"},
		{"writable root", "daemonset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "want readOnlyRootFilesystem: true"},
		{"unconfined", "daemonset.yaml", "type: RuntimeDefault", "type: Unconfined", `seccomp profile "Unconfined"`},
		{"env typo", "sidecar.yaml", "name: TOAD_TRUSTED_PROXIES", "name: TOAD_TRUSTED_PROXY", "TOAD_TRUSTED_PROXY is not a setting"},
		{"TCP on the node", "daemonset.yaml", "            - name: TOAD_SOCKET_GROUP\n", "            - name: TOAD_LISTEN\n              value: 127.0.0.1:50051\n            - name: TOAD_SOCKET_GROUP\n", "TOAD_LISTEN 127.0.0.1:50051 with hostNetwork"},
		{"socket of root alone", "daemonset.yaml", "            - name: TOAD_SOCKET_GROUP\n              value: \"65532\"\n", "", "TOAD_SOCKET_GROUP is not set"},
		{"real addresses", "sidecar.yaml", `"192.0.2.0/24,`, `"10.0.0.0/8,`, "10.0.0.0/8 is not a documentation range"},
		{"no host network", "daemonset.yaml", "hostNetwork: true", "hostNetwork: false", "hostNetwork is false"},
		{"dns policy", "daemonset.yaml", "dnsPolicy: ClusterFirstWithHostNet", "dnsPolicy: ClusterFirst", `dnsPolicy "ClusterFirst"`},
		{"socket host path", "daemonset.yaml", "path: /run/toad\n", "path: /var/run/toad\n", "hostPath /var/run/toad mounted at /run/toad"},
		{"preload: no library dir", "sidecar-preload.yaml", "            - name: TOAD_PRELOAD_LIBRARY_DIR\n              value: /opt/toad\n", "", "toad copies no library"},
		{"preload: library dir off volume", "sidecar-preload.yaml", "              value: /opt/toad\n", "              value: /opt/lib\n", "toad mounts no volume there"},
		{"preload: library not on the volume", "sidecar-preload.yaml", "value: /opt/toad/libtoad_preload.so", "value: /usr/lib/libtoad_preload.so", "not on the volume toad copies the library into"},
		{"preload: unknown library", "sidecar-preload.yaml", "value: /opt/toad/libtoad_preload.so", "value: /opt/toad/libhook.so", "want one of"},
		{"preload: socket path", "sidecar-preload.yaml", "            - name: TOAD_PRELOAD_SOCKET\n              value: /run/toad/preload.sock\n          ports:", "            - name: TOAD_PRELOAD_SOCKET\n              value: /run/toad/other.sock\n          ports:", "the library asks /run/toad/other.sock, but toad listens on /run/toad/preload.sock"},
		{"preload: no socket mount", "sidecar-preload.yaml", "            - name: toad-run\n              mountPath: /run/toad\n              readOnly: true\n", "", "does not mount the preload socket's volume"},
		{"preload: group", "sidecar-preload.yaml", "        fsGroup: 65532\n", "", "not in group 65532 of the preload socket"},
		{"preload: lib volume not emptyDir", "sidecar-preload.yaml", "        - name: toad-lib\n          emptyDir:\n            sizeLimit: 16Mi", "        - name: toad-lib\n          hostPath:\n            path: /opt/toad", "want an emptyDir that toad fills"},
		{"preload: no socket", "sidecar-preload.yaml", "              value: /run/toad/preload.sock\n            # Copy", "              value: \"\"\n            # Copy", "toad serves no preload socket"},
		{"not listed", kustomization, "  - sidecar.yaml\n", "", "sidecar.yaml is not listed"},
		{"kustomize tag", kustomization, "newTag: 0.1.0", "newTag: 0.2.0", "kustomization.yaml pins ghcr.io/toad-project/toad:0.2.0"},
		{"namespace level", "namespace.yaml", "enforce: privileged", "enforce: baseline", `enforce is "baseline"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mutated, ok := replaceOutsideComments(string(orig[tt.file]), tt.old, tt.new)
			if !ok {
				t.Fatalf("%s no longer contains %q outside comments: update this test", tt.file, tt.old)
			}
			files := make(map[string][]byte, len(orig))
			for k, v := range orig {
				files[k] = v
			}
			files[tt.file] = []byte(mutated)
			errs := checkManifests(files, img)
			wantError(t, errs, tt.want)
		})
	}
}

// replaceOutsideComments replaces the first occurrence of old that does not
// start on a comment line.
func replaceOutsideComments(src, old, new string) (string, bool) {
	for from := 0; ; {
		i := strings.Index(src[from:], old)
		if i < 0 {
			return src, false
		}
		i += from
		lineStart := strings.LastIndexByte(src[:i], '\n') + 1
		if !strings.HasPrefix(strings.TrimSpace(src[lineStart:i+len(old)]), "#") {
			return src[:i] + new + src[i+len(old):], true
		}
		from = i + len(old)
	}
}

// podSecurity evaluates a pod template against a Pod Security Standards
// level with the admission plugin's own checks, after the defaulting the API
// server applies first: with hostNetwork, container ports are host ports.
func podSecurity(t *testing.T, tmpl *corev1.PodTemplateSpec, level psaapi.Level) policy.AggregateCheckResult {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl = tmpl.DeepCopy()
	if tmpl.Spec.HostNetwork {
		for _, c := range allContainers(&tmpl.Spec) {
			for i := range c.Ports {
				if c.Ports[i].HostPort == 0 {
					c.Ports[i].HostPort = c.Ports[i].ContainerPort
				}
			}
		}
	}
	lv := psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}
	return policy.AggregateCheckResults(eval.EvaluatePod(lv, &tmpl.ObjectMeta, &tmpl.Spec))
}

// TestPodSecurity pins what deploy/README.md says: NET_RAW keeps toad out of
// Pod Security "baseline", for the sidecar nothing else does, and the
// application beside it meets "restricted".
func TestPodSecurity(t *testing.T) {
	m, errs := decodeManifests(readManifests(t))
	for _, err := range errs {
		t.Fatal(err)
	}
	want := map[string][]string{
		"Deployment": {"non-default capabilities"},
		"DaemonSet":  {"host namespaces", "hostPath volumes", "hostPort", "non-default capabilities"},
	}
	for _, w := range m.workloads {
		t.Run(w.name, func(t *testing.T) {
			if got := podSecurity(t, &w.tmpl, psaapi.LevelPrivileged); !got.Allowed {
				t.Errorf("privileged: got forbidden (%s), want allowed", got.ForbiddenDetail())
			}
			got := podSecurity(t, &w.tmpl, psaapi.LevelBaseline)
			if reasons := slices.Sorted(slices.Values(got.ForbiddenReasons)); !slices.Equal(reasons, want[w.kind]) {
				t.Errorf("baseline: got forbidden reasons %q (%s), want %q", reasons, got.ForbiddenDetail(), want[w.kind])
			}
			if !strings.Contains(got.ForbiddenDetail(), `"NET_RAW"`) {
				t.Errorf("baseline: got %s, want NET_RAW named", got.ForbiddenDetail())
			}
			if w.kind != "Deployment" {
				return
			}
			app := w.tmpl.DeepCopy()
			app.Spec.InitContainers = slices.DeleteFunc(app.Spec.InitContainers, func(c corev1.Container) bool {
				repo, _, _ := imageRef(c.Image)
				return repo == toadImageRepo
			})
			if got := podSecurity(t, app, psaapi.LevelRestricted); !got.Allowed {
				t.Errorf("restricted, without toad: got forbidden (%s), want allowed", got.ForbiddenDetail())
			}
		})
	}
}
