// Package deploy checks the container image recipe and the Kubernetes
// manifests that ship toad. It holds no code of its own: its tests decode
// every manifest strictly into the Kubernetes API types and assert the
// invariants that make the daemon work in a pod (capabilities, probes,
// volumes, resource limits, Pod Security level), parse the Dockerfile for the
// invariants of a static, non-root image, check that built binaries are
// static, and, as root, run the image's build commands and the two ways of
// granting CAP_NET_RAW on the running kernel.
//
// The package lives in its own module so that the main module does not
// depend on the Kubernetes API types.
package deploy
