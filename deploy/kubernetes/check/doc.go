// Package check holds the tests of the Kubernetes manifests in
// deploy/kubernetes: every overlay rendered with kubectl kustomize and
// decoded strictly into the typed Kubernetes API objects. It is its own
// module so that k8s.io/api stays out of leaseguard's go.mod; make test
// runs it.
package check
