// Package kubernetes holds the tests of the kustomize base in
// deploy/kubernetes: the base, and the example overlay with the
// streams-metric component, rendered in-process with kustomize's own
// library (what `kubectl apply -k` runs) and decoded strictly into the
// Kubernetes API's Go types (an unknown or misspelt field fails), then held
// to the rules that tie the gateway, the pod's lifecycle, the image and the
// service's settings together (deploy/README.md, "Settings that must agree").
package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/orderstream/orderstream/deploy/image"
	"github.com/orderstream/orderstream/deploy/layers"
)

// rendered is one kustomization's output, decoded.
type rendered struct {
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	PDB        *policyv1.PodDisruptionBudget
	HPA        *autoscalingv2.HorizontalPodAutoscaler
	ConfigMap  *corev1.ConfigMap
	Route      *gatewayv1.HTTPRoute
}

// strict decodes JSON into v, failing on any field v's type lacks.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// decodeInto decodes one rendered object into the field of r its kind
// names; a kind the base should not make is an error.
func (r *rendered) decode(y []byte) error {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	var meta struct{ APIVersion, Kind string }
	if err := json.Unmarshal(j, &meta); err != nil {
		return err
	}
	var dst any
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		r.Deployment = &appsv1.Deployment{}
		dst = r.Deployment
	case "v1 Service":
		r.Service = &corev1.Service{}
		dst = r.Service
	case "policy/v1 PodDisruptionBudget":
		r.PDB = &policyv1.PodDisruptionBudget{}
		dst = r.PDB
	case "autoscaling/v2 HorizontalPodAutoscaler":
		r.HPA = &autoscalingv2.HorizontalPodAutoscaler{}
		dst = r.HPA
	case "v1 ConfigMap":
		r.ConfigMap = &corev1.ConfigMap{}
		dst = r.ConfigMap
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		r.Route = &gatewayv1.HTTPRoute{}
		dst = r.Route
	default:
		return fmt.Errorf("unexpected %s %s", meta.APIVersion, meta.Kind)
	}
	if err := strict(j, dst); err != nil {
		return fmt.Errorf("%s: %w", meta.Kind, err)
	}
	return nil
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var r rendered
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.decode(y); err != nil {
			t.Fatalf("%s: %v\n%s", dir, err, y)
		}
	}
	if r.Deployment == nil || r.Service == nil || r.PDB == nil || r.HPA == nil || r.ConfigMap == nil || r.Route == nil {
		t.Fatalf("%s renders %+v: want a Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler, ConfigMap and HTTPRoute", dir, r)
	}
	return r
}

// TestStrictDecoding: the decoder refuses what the API server would drop
// or refuse, so the checks below can trust what they read.
func TestStrictDecoding(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n",
		"apiVersion: v1\nkind: Service\nspec:\n  ports: [{port: 80, appProtocl: http}]\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec:\n  rules: [{timeout: {request: 0s}}]\n",
		"apiVersion: apps/v1\nkind: StatefulSet\n",
	} {
		var r rendered
		if err := r.decode([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

func TestBase(t *testing.T) {
	r := render(t, "base")
	checkRules(t, r)
	hpaMetrics(t, r, false)
	if c := r.Deployment.Spec.Template.Spec.Containers[0]; c.Image != "orderstream" {
		t.Errorf("base image %q: the placeholder an overlay sets (kustomize edit set image orderstream=...)", c.Image)
	}
}

func TestExampleOverlay(t *testing.T) {
	r := render(t, "example")
	checkRules(t, r)
	hpaMetrics(t, r, true)
	if c := r.Deployment.Spec.Template.Spec.Containers[0]; c.Image != "registry.example/orderstream:v1.2.3" {
		t.Errorf("image %q: the overlay's", c.Image)
	}
	if r.ConfigMap.Data["REDIS_CLUSTER"] != "true" || r.ConfigMap.Data["METRICS"] != "true" || r.ConfigMap.Data["HEARTBEAT_INTERVAL"] == "" {
		t.Errorf("merged settings %v: the overlay's REDIS_CLUSTER, the component's METRICS, the base's others", r.ConfigMap.Data)
	}
	if p := r.Route.Spec.ParentRefs; len(p) != 1 || p[0].Name != "public" || len(r.Route.Spec.Hostnames) != 1 {
		t.Errorf("route parents %v hostnames %v", p, r.Route.Spec.Hostnames)
	}
	for _, o := range []string{r.Deployment.Namespace, r.Service.Namespace, r.HPA.Namespace, r.Route.Namespace, r.ConfigMap.Namespace} {
		if o != "orderstream" {
			t.Errorf("namespace %q", o)
		}
	}
}

func duration(t *testing.T, cm *corev1.ConfigMap, key string) time.Duration {
	t.Helper()
	v, ok := cm.Data[key]
	if !ok {
		t.Fatalf("the ConfigMap has no %s", key)
	}
	d, err := layers.Duration(v)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return d
}

// checkRules: every rule of the table, on one rendering.
func checkRules(t *testing.T, r rendered) {
	t.Helper()
	grace, err := layers.ShutdownGrace()
	if err != nil {
		t.Fatal(err)
	}
	d := r.Deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	cm := r.ConfigMap
	heartbeat := duration(t, cm, "HEARTBEAT_INTERVAL")
	drain := duration(t, cm, "SHUTDOWN_DRAIN")

	// The settings reach the container, and the generated name matches.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("envFrom %v, the ConfigMap is %s", c.EnvFrom, cm.Name)
	}

	// Ports: the image's, named for the Service and probes.
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != image.Port || c.Ports[0].Name != "http" {
		t.Errorf("container ports %v: want http on the image's %d", c.Ports, image.Port)
	}

	// Readiness on /healthz, quick to notice a drain's 503; no liveness.
	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz" || rp.HTTPGet.Port.String() != "http" {
		t.Fatalf("readiness probe %v: want GET /healthz on http", rp)
	}
	if notice := time.Duration(rp.PeriodSeconds*rp.FailureThreshold) * time.Second; notice > 5*time.Second || rp.TimeoutSeconds >= rp.PeriodSeconds {
		t.Errorf("a 503 takes the pod out after %v (period %d s x %d, timeout %d s): want within 5 s", notice, rp.PeriodSeconds, rp.FailureThreshold, rp.TimeoutSeconds)
	}
	if c.LivenessProbe != nil {
		t.Errorf("a liveness probe: a Redis outage fails /healthz everywhere, and restarts would cut every stream")
	}

	// preStop pause, then the drain, then the grace, inside the grace period.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep (the image has no shell for exec): %v", c.Lifecycle)
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop < 5*time.Second {
		t.Errorf("preStop %v: endpoint removal takes seconds to reach every proxy", preStop)
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if tgp := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; tgp <= preStop+drain+grace {
		t.Errorf("terminationGracePeriodSeconds %v: not above preStop %v + SHUTDOWN_DRAIN %v + the %v grace; the kubelet kills mid-drain", tgp, preStop, drain, grace)
	}

	// Heartbeat under the idle timeouts in front (60 s: an ALB's default,
	// ingress-nginx's proxy-read-timeout) with room for a late one.
	if 2*heartbeat > time.Minute {
		t.Errorf("HEARTBEAT_INTERVAL %v: want at most half of a 60 s idle timeout", heartbeat)
	}

	// Non-root as the image's user, read-only, nothing to escalate.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != image.UID || psc.RunAsGroup == nil || *psc.RunAsGroup != image.GID {
		t.Errorf("pod security context %+v: want runAsNonRoot as the image's %d:%d", psc, image.UID, image.GID)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context %+v: want a read-only root, no privilege escalation, every capability dropped", sc)
	}

	// Memory for MAX_STREAMS streams; the cap under the file limit.
	maxStreams, err := strconv.Atoi(cm.Data["MAX_STREAMS"])
	if err != nil || maxStreams <= 0 {
		t.Fatalf("MAX_STREAMS %q: want a cap (the memory below is sized for it)", cm.Data["MAX_STREAMS"])
	}
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	need := resource.NewQuantity(layers.MemoryFor(maxStreams), resource.BinarySI)
	if req.Cmp(*need) < 0 || lim.Cmp(req) < 0 {
		t.Errorf("memory request %s, limit %s: want at least %s for MAX_STREAMS %d, and a limit at least the request", req.String(), lim.String(), need.String(), maxStreams)
	}
	if cpu := c.Resources.Requests[corev1.ResourceCPU]; cpu.IsZero() {
		t.Errorf("no CPU request: the HPA's Utilization target is a share of it")
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("a CPU limit: throttling delays every stream at once")
	}
	// containerd 2's default hard limit, to which Go raises its soft limit.
	if maxStreams+layers.FDHeadroom > 524288 {
		t.Errorf("MAX_STREAMS %d over the usual open-file limit", maxStreams)
	}

	checkSecrets(t, c, cm)

	// Rollouts: surge first; no replicas field (the HPA owns it).
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %v: want maxUnavailable 0", ru)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("replicas %d: each apply would reset the HPA's count", *d.Spec.Replicas)
	}

	// Selectors: the Deployment's, the Service's and the PDB's all pick the pods.
	podLabels := labels.Set(d.Spec.Template.Labels)
	if d.Spec.Selector == nil || !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(podLabels) || len(d.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("deployment selector %v, pod labels %v", d.Spec.Selector, podLabels)
	}
	if len(r.Service.Spec.Selector) == 0 || !labels.SelectorFromSet(r.Service.Spec.Selector).Matches(podLabels) {
		t.Errorf("service selector %v does not pick pods %v", r.Service.Spec.Selector, podLabels)
	}
	if r.PDB.Spec.Selector == nil || !labels.SelectorFromSet(r.PDB.Spec.Selector.MatchLabels).Matches(podLabels) || r.PDB.Spec.MaxUnavailable == nil || r.PDB.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB %+v: want maxUnavailable 1 over the pods", r.PDB.Spec)
	}

	// The Service speaks HTTP/1.1 to the pods' named port.
	if p := r.Service.Spec.Ports; len(p) != 1 || p[0].TargetPort.String() != "http" || p[0].AppProtocol == nil || *p[0].AppProtocol != "http" {
		t.Errorf("service ports %+v: want targetPort http, appProtocol http (HTTP/1.1, not h2c)", p)
	}

	checkRoute(t, r)
	checkHPA(t, r, pod)
}

// checkSecrets: the Redis URL from a Secret, no secret in plain values.
func checkSecrets(t *testing.T, c corev1.Container, cm *corev1.ConfigMap) {
	t.Helper()
	var redis bool
	for _, e := range c.Env {
		if e.Name == "REDIS_URL" {
			redis = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.Value == ""
		}
		if strings.HasPrefix(e.Name, "AUTH_JWT_") && e.Value != "" {
			t.Errorf("%s as a plain value", e.Name)
		}
	}
	if !redis {
		t.Errorf("REDIS_URL is not read from a Secret: %v", c.Env)
	}
	for k := range cm.Data {
		if k == "REDIS_URL" || k == "AUTH_JWT_SECRET" || k == "AUTH_JWT_PUBLIC_KEY" {
			t.Errorf("%s in the ConfigMap: it belongs in a Secret", k)
		}
	}
}

// checkRoute: the route reaches the Service's port, streams have no
// request timeout, and nothing routes /metrics.
func checkRoute(t *testing.T, r rendered) {
	t.Helper()
	var streams bool
	for i, rule := range r.Route.Spec.Rules {
		for _, b := range rule.BackendRefs {
			if string(b.Name) != r.Service.Name || b.Port == nil || int32(*b.Port) != r.Service.Spec.Ports[0].Port {
				t.Errorf("rule %d routes to %s:%v, not the Service %s:%d", i, b.Name, b.Port, r.Service.Name, r.Service.Spec.Ports[0].Port)
			}
		}
		for _, m := range rule.Matches {
			if m.Path == nil || m.Path.Type == nil || m.Path.Value == nil {
				t.Errorf("rule %d: a match without a path", i)
				continue
			}
			v := *m.Path.Value
			if *m.Path.Type == gatewayv1.PathMatchPathPrefix && (v == "/" || strings.HasPrefix("/metrics", v)) || v == "/metrics" {
				t.Errorf("rule %d (%s %s) routes /metrics to the public", i, *m.Path.Type, v)
			}
			if *m.Path.Type == gatewayv1.PathMatchPathPrefix && v == "/orders" && m.Method != nil && *m.Method == gatewayv1.HTTPMethodGet {
				if rule.Timeouts == nil || rule.Timeouts.Request == nil || *rule.Timeouts.Request != "0s" {
					t.Errorf("the stream rule's request timeout is %v: a gateway would cut every stream at it (0s disables it)", rule.Timeouts)
				}
				streams = true
			}
		}
	}
	if !streams {
		t.Errorf("no rule for GET /orders (streams)")
	}
}

// checkHPA: on the Deployment, at least two pods, CPU always, scale-in one
// pod at a time, each gone before the next.
func checkHPA(t *testing.T, r rendered, pod corev1.PodSpec) {
	t.Helper()
	h := r.HPA.Spec
	if h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != r.Deployment.Name {
		t.Errorf("HPA scales %v", h.ScaleTargetRef)
	}
	if h.MinReplicas == nil || *h.MinReplicas < 2 || h.MaxReplicas < *h.MinReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2", h.MinReplicas, h.MaxReplicas)
	}
	if r.PDB.Spec.MaxUnavailable.IntValue() >= int(*h.MinReplicas) {
		t.Errorf("the PDB lets every pod go at once")
	}
	sd := h.Behavior.ScaleDown
	if sd == nil || len(sd.Policies) != 1 || sd.Policies[0].Type != autoscalingv2.PodsScalingPolicy || sd.Policies[0].Value != 1 ||
		int64(sd.Policies[0].PeriodSeconds) < *pod.TerminationGracePeriodSeconds {
		t.Errorf("scale-down %+v: want one pod per period of at least the grace period (%d s)", sd, *pod.TerminationGracePeriodSeconds)
	}
}

// hpaMetrics: CPU always; with the component, open streams per pod too,
// the metric prometheus-adapter serves, under MAX_STREAMS.
func hpaMetrics(t *testing.T, r rendered, streams bool) {
	t.Helper()
	var cpu, pods bool
	for _, m := range r.HPA.Spec.Metrics {
		switch m.Type {
		case autoscalingv2.ResourceMetricSourceType:
			cpu = m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil
		case autoscalingv2.PodsMetricSourceType:
			pods = true
			if m.Pods.Metric.Name != adapterMetric(t) {
				t.Errorf("HPA metric %s, prometheus-adapter serves %s", m.Pods.Metric.Name, adapterMetric(t))
			}
			maxStreams, _ := strconv.Atoi(r.ConfigMap.Data["MAX_STREAMS"])
			if v := m.Pods.Target.AverageValue; v == nil || v.Value()*3 > int64(maxStreams)*2 {
				t.Errorf("target %v streams per pod against MAX_STREAMS %d: want a third of room", v, maxStreams)
			}
			if r.ConfigMap.Data["METRICS"] != "true" {
				t.Errorf("scaling on a metric the pods do not export (METRICS=%q)", r.ConfigMap.Data["METRICS"])
			}
			if r.Deployment.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || r.Deployment.Spec.Template.Annotations["prometheus.io/port"] != strconv.Itoa(image.Port) {
				t.Errorf("pods not annotated for scraping on %d: %v", image.Port, r.Deployment.Spec.Template.Annotations)
			}
		}
	}
	if !cpu || pods != streams {
		t.Errorf("HPA on CPU %v, on streams %v; want CPU, and streams %v", cpu, pods, streams)
	}
}

// adapterMetric is the metric prometheus-adapter-values.yaml serves, read
// strictly; it must come from the service's gauge.
func adapterMetric(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("components/streams-metric/prometheus-adapter-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Rules struct {
			Default bool `json:"default"`
			Custom  []struct {
				SeriesQuery string `json:"seriesQuery"`
				Resources   struct {
					Overrides map[string]struct {
						Resource string `json:"resource"`
					} `json:"overrides"`
				} `json:"resources"`
				Name struct {
					As string `json:"as"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
			} `json:"custom"`
		} `json:"rules"`
	}
	if err := strict(j, &v); err != nil {
		t.Fatalf("prometheus-adapter-values.yaml: %v", err)
	}
	if len(v.Rules.Custom) != 1 {
		t.Fatalf("%d custom rules", len(v.Rules.Custom))
	}
	rule := v.Rules.Custom[0]
	if !strings.HasPrefix(rule.SeriesQuery, layers.PromStreamsOpen+"{") || rule.Resources.Overrides["pod"].Resource != "pod" || rule.Resources.Overrides["namespace"].Resource != "namespace" {
		t.Errorf("adapter rule %+v: want %s per pod", rule, layers.PromStreamsOpen)
	}
	return rule.Name.As
}
