package check

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate components/monitoring/prometheusrule.yaml from deploy/prometheus/leaseguard-rules.yml")

const (
	kubeDir       = ".."
	rulesFile     = "../../prometheus/leaseguard-rules.yml"
	ruleManifest  = "../components/monitoring/prometheusrule.yaml"
	dashboardFile = "../../grafana/leaseguard.json"
)

// overlays are the directories a user applies; "." is the base as
// deploy/kubernetes applies it.
var overlays = []string{".", "overlays/single-node", "overlays/external-nats", "overlays/kafka"}

// render runs kubectl kustomize on one directory under deploy/kubernetes.
func render(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not installed: it renders the kustomizations (kubectl kustomize)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(kubeDir, dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// rendered is one overlay's objects by kind.
type rendered struct {
	deployment   *appsv1.Deployment
	service      *corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	pvcs         map[string]*corev1.PersistentVolumeClaim
	pdb          *policyv1.PodDisruptionBudget
	netpol       *networkingv1.NetworkPolicy
	monitor      *ServiceMonitor
	rule         *PrometheusRule
	dashboardMap *corev1.ConfigMap
}

func load(t *testing.T, dir string) rendered {
	t.Helper()
	objs, err := Decode(render(t, dir))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	r := rendered{configMaps: map[string]*corev1.ConfigMap{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			r.deployment = v
		case *corev1.Service:
			r.service = v
		case *corev1.ConfigMap:
			r.configMaps[v.Name] = v
			if v.Labels["grafana_dashboard"] != "" {
				r.dashboardMap = v
			}
		case *corev1.PersistentVolumeClaim:
			r.pvcs[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			r.pdb = v
		case *networkingv1.NetworkPolicy:
			r.netpol = v
		case *ServiceMonitor:
			r.monitor = v
		case *PrometheusRule:
			r.rule = v
		default:
			t.Errorf("%s: unexpected %s %s (%T)", dir, o.Kind, o.Name, o.Obj)
		}
	}
	if r.deployment == nil || r.service == nil || r.configMaps["leaseguard-config"] == nil {
		t.Fatalf("%s: no Deployment, Service or ConfigMap leaseguard-config", dir)
	}
	return r
}

// TestOverlaysDecodeStrictly renders every overlay and checks what every
// one of them must hold.
func TestOverlaysDecodeStrictly(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			r := load(t, dir)
			checkPod(t, r)
			if dir == "." {
				return
			}
			checkMonitoring(t, r)
			checkNetworkPolicy(t, r)
			checkDashboard(t, r)
		})
	}
}

// checkPod: the hardening and probes of the base survive every overlay,
// and every volume is well formed (a patch that adds a source without
// removing the old one leaves two).
func checkPod(t *testing.T, r rendered) {
	t.Helper()
	spec := r.deployment.Spec.Template.Spec
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext: %+v", sc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container: runAsNonRoot is not true")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container: readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container: allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("container capabilities: %+v", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container: seccomp profile is not RuntimeDefault")
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := "/livez"
		if name == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe is not GET %s on the metrics port: %+v", name, want, p)
		}
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if n := countSources(v.VolumeSource); n != 1 {
			t.Errorf("volume %s has %d sources", v.Name, n)
		}
		if v.PersistentVolumeClaim != nil && r.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
			t.Errorf("volume %s claims %s, which is not rendered", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("mount %s names no volume", m.Name)
		}
	}
	sel := labels.SelectorFromSet(r.service.Spec.Selector)
	if !sel.Matches(labels.Set(r.deployment.Spec.Template.Labels)) {
		t.Error("the Service does not select the pods")
	}
	for _, p := range r.service.Spec.Ports {
		if containerPort(c, p.TargetPort.String()) == 0 {
			t.Errorf("Service port %s targets %s, no container port", p.Name, p.TargetPort.String())
		}
	}
}

// countSources counts the non-nil fields of a VolumeSource.
func countSources(s corev1.VolumeSource) int {
	n := 0
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		if !v.Field(i).IsNil() {
			n++
		}
	}
	return n
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name || fmt.Sprint(p.ContainerPort) == name {
			return p.ContainerPort
		}
	}
	return 0
}

func checkMonitoring(t *testing.T, r rendered) {
	t.Helper()
	if r.monitor == nil || r.rule == nil {
		t.Fatal("no ServiceMonitor or PrometheusRule")
	}
	sel := labels.SelectorFromSet(r.monitor.Spec.Selector.MatchLabels)
	if !sel.Matches(labels.Set(r.service.Labels)) {
		t.Errorf("the ServiceMonitor selects %v, the Service has labels %v", sel, r.service.Labels)
	}
	for _, e := range r.monitor.Spec.Endpoints {
		found := false
		for _, p := range r.service.Spec.Ports {
			found = found || p.Name == e.Port
		}
		if !found || e.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %+v: no such Service port, or not /metrics", e)
		}
	}
}

// checkNetworkPolicy: default deny both ways for the pods, then the ports
// leaseguard needs for what the overlay configures.
func checkNetworkPolicy(t *testing.T, r rendered) {
	t.Helper()
	np := r.netpol
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(r.deployment.Spec.Template.Labels)) {
		t.Error("the NetworkPolicy does not select the pods")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v", np.Spec.PolicyTypes)
	}
	in := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			in[p.Port.String()] = true
		}
	}
	out := map[string]bool{}
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			out[p.Port.String()+"/"+string(*p.Protocol)] = true
		}
	}
	cfg := r.configMaps["leaseguard-config"].Data
	wantOut := []string{"53/UDP", "53/TCP", "5432/TCP", "8200/TCP"}
	if cfg["LEASEGUARD_NATS_URL"] != "" {
		wantOut = append(wantOut, "4222/TCP")
	}
	if cfg["LEASEGUARD_KAFKA_BROKERS"] != "" {
		wantOut = append(wantOut, "9092/TCP", "9093/TCP")
	}
	for _, p := range wantOut {
		if !out[p] {
			t.Errorf("egress to %s is not allowed (have %v)", p, out)
		}
	}
	wantIn := []string{"metrics", "8443"}
	if cfg["LEASEGUARD_AUDIT_SOCKET_ADDR"] != "" {
		wantIn = append(wantIn, "audit")
	}
	for _, p := range wantIn {
		if !in[p] {
			t.Errorf("ingress to %s is not allowed (have %v)", p, in)
		}
	}
	c := r.deployment.Spec.Template.Spec.Containers[0]
	for p := range in {
		if p != "8443" && containerPort(c, p) == 0 {
			t.Errorf("ingress port %s is no container port", p)
		}
	}
}

func checkDashboard(t *testing.T, r rendered) {
	t.Helper()
	if r.dashboardMap == nil {
		t.Fatal("no ConfigMap labelled grafana_dashboard")
	}
	if r.dashboardMap.Labels["grafana_dashboard"] != "1" {
		t.Errorf("grafana_dashboard label %q, want \"1\"", r.dashboardMap.Labels["grafana_dashboard"])
	}
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	got := r.dashboardMap.Data["leaseguard.json"]
	if got != string(want) {
		t.Error("the dashboard ConfigMap's leaseguard.json is not deploy/grafana/leaseguard.json")
	}
	if !json.Valid([]byte(got)) {
		t.Error("the dashboard is not JSON")
	}
}

// TestOverlayShapes checks what sets the overlays apart.
func TestOverlayShapes(t *testing.T) {
	t.Run("single-node", func(t *testing.T) {
		r := load(t, "overlays/single-node")
		d := r.deployment.Spec
		if d.Replicas == nil || *d.Replicas != 1 {
			t.Errorf("replicas %v, want 1", d.Replicas)
		}
		if d.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Strategy.RollingUpdate != nil {
			t.Errorf("strategy %+v, want Recreate", d.Strategy)
		}
		if nats, ok := r.configMaps["leaseguard-config"].Data["LEASEGUARD_NATS_URL"]; !ok || nats != "" {
			t.Errorf("LEASEGUARD_NATS_URL %q (set: %v), want present and empty: the embedded JetStream", nats, ok)
		}
		if r.pdb != nil {
			t.Error("a PodDisruptionBudget on one replica blocks every node drain")
		}
		dataDir := ""
		c := r.deployment.Spec.Template.Spec.Containers[0]
		for _, e := range c.Env {
			if e.Name == "LEASEGUARD_DATA_DIR" {
				dataDir = e.Value
			}
		}
		var claim string
		for _, m := range c.VolumeMounts {
			if m.MountPath != dataDir {
				continue
			}
			for _, v := range r.deployment.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.PersistentVolumeClaim != nil {
					claim = v.PersistentVolumeClaim.ClaimName
				}
			}
		}
		if dataDir == "" || claim == "" || r.pvcs[claim] == nil {
			t.Errorf("LEASEGUARD_DATA_DIR %q is not on a rendered PersistentVolumeClaim (%q)", dataDir, claim)
		}
	})
	for _, dir := range []string{"overlays/external-nats", "overlays/kafka"} {
		t.Run(dir, func(t *testing.T) {
			r := load(t, dir)
			if r.deployment.Spec.Replicas == nil || *r.deployment.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want 2 or more", r.deployment.Spec.Replicas)
			}
			if r.configMaps["leaseguard-config"].Data["LEASEGUARD_NATS_URL"] == "" {
				t.Error("several replicas need a shared NATS cluster: LEASEGUARD_NATS_URL is empty")
			}
			if r.pdb == nil {
				t.Fatal("no PodDisruptionBudget")
			}
			if !labels.SelectorFromSet(r.pdb.Spec.Selector.MatchLabels).Matches(labels.Set(r.deployment.Spec.Template.Labels)) {
				t.Error("the PodDisruptionBudget does not select the pods")
			}
			if dir == "overlays/kafka" && r.configMaps["leaseguard-config"].Data["LEASEGUARD_KAFKA_BROKERS"] == "" {
				t.Error("the kafka overlay sets no LEASEGUARD_KAFKA_BROKERS")
			}
		})
	}
}

// TestPrometheusRuleMatchesRulesFile: the PrometheusRule's groups are the
// rule file's, so Prometheus with and without the operator alerts alike.
// With -update it writes the manifest from the rule file.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(src, &file); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if *update {
		writeRuleManifest(t, file.Groups)
	}
	b, err := os.ReadFile(ruleManifest)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%s holds %d objects", ruleManifest, len(objs))
	}
	rule, ok := objs[0].Obj.(*PrometheusRule)
	if !ok {
		t.Fatalf("%s holds a %s", ruleManifest, objs[0].Kind)
	}
	if len(file.Groups) == 0 {
		t.Fatal("no groups in the rule file")
	}
	if !reflect.DeepEqual(rule.Spec.Groups, file.Groups) {
		t.Errorf("%s differs from %s; regenerate: go test -run TestPrometheusRuleMatchesRulesFile -update", ruleManifest, rulesFile)
	}
}

func writeRuleManifest(t *testing.T, groups []RuleGroup) {
	t.Helper()
	type manifest struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       map[string]any `json:"spec"`
	}
	m := manifest{
		APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule",
		Metadata: map[string]any{"name": "leaseguard", "labels": map[string]string{
			"app.kubernetes.io/name": "leaseguard", "app.kubernetes.io/component": "leaseguard"}},
		Spec: map[string]any{"groups": groups},
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	head := "# Generated from deploy/prometheus/leaseguard-rules.yml: do not edit; edit\n" +
		"# that file and run, in deploy/kubernetes/check,\n" +
		"#   go test -run TestPrometheusRuleMatchesRulesFile -update\n"
	if err := os.WriteFile(ruleManifest, append([]byte(head), b...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeIsStrict: the decoder refuses what the API server would, so
// the tests above can fail.
func TestDecodeIsStrict(t *testing.T) {
	deployment := func(spec string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n" + spec
	}
	good := "  selector:\n    matchLabels: {a: b}\n  template:\n    metadata:\n      labels: {a: b}\n    spec:\n      containers: [{name: c, image: i}]\n"
	if _, err := Decode([]byte(deployment(good))); err != nil {
		t.Fatalf("a valid Deployment: %v", err)
	}
	for name, doc := range map[string]string{
		"unknown field":         deployment(good + "  replica: 2\n"),
		"wrong type":            deployment(good + "  replicas: two\n"),
		"duplicate key":         deployment(good + "  replicas: 1\n  replicas: 2\n"),
		"unknown nested field":  strings.Replace(deployment(good), "image: i}", "image: i, readOnly: true}", 1),
		"unknown kind":          "apiVersion: v1\nkind: Pod2\nmetadata:\n  name: x\n",
		"ServiceMonitor field":  "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: x\nspec:\n  selector: {}\n  endpoints: [{port: m, path2: /metrics}]\n",
		"PrometheusRule type":   "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: x\nspec:\n  groups: [{name: g, rules: [{alert: A, expr: up, labels: [a]}]}]\n",
		"unknown metadata name": "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  nam: x\nspec:\n  groups: []\n",
	} {
		if _, err := Decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
