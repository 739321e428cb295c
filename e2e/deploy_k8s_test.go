package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// k8sObjects holds every object of deploy/k8s, decoded strictly.
type k8sObjects struct {
	namespaces   []*corev1.Namespace
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	ingresses    []*networkingv1.Ingress
	netpols      []*networkingv1.NetworkPolicy
	namespaced   map[string]string // kind/name -> namespace
}

// loadK8s decodes every manifest with sigs.k8s.io/yaml.UnmarshalStrict into
// its k8s.io/api type: an unknown or misspelt field fails, as
// `kubectl apply --validate=strict` would.
func loadK8s(t *testing.T) (*k8sObjects, []string) {
	t.Helper()
	dir := filepath.Join(deployRepoRoot(t), "deploy/k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	o := newK8sObjects()
	var names []string
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		names = append(names, base)
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split("\n"+string(raw), "\n---") {
			if strings.TrimSpace(strings.Join(nonComment(doc), "")) == "" {
				continue
			}
			if err := o.decode([]byte(doc)); err != nil {
				t.Errorf("%s doc %d: %v", base, i, err)
			}
		}
	}
	return o, names
}

func newK8sObjects() *k8sObjects {
	return &k8sObjects{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, namespaced: map[string]string{},
	}
}

// decode decodes one object (YAML or JSON) strictly, an unknown field
// failing as `kubectl apply --validate=strict` would, into its place in o.
func (o *k8sObjects) decode(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return err
	}
	name := head.Metadata.Name
	var obj any
	switch head.APIVersion + " " + head.Kind {
	case "v1 Namespace":
		v := &corev1.Namespace{}
		o.namespaces, obj = append(o.namespaces, v), v
	case "v1 ConfigMap":
		v := &corev1.ConfigMap{}
		o.configMaps[name], obj = v, v
	case "v1 Secret":
		v := &corev1.Secret{}
		o.secrets[name], obj = v, v
	case "v1 Service":
		v := &corev1.Service{}
		o.services[name], obj = v, v
	case "apps/v1 Deployment":
		v := &appsv1.Deployment{}
		o.deployments[name], obj = v, v
	case "apps/v1 StatefulSet":
		v := &appsv1.StatefulSet{}
		o.statefulSets[name], obj = v, v
	case "autoscaling/v2 HorizontalPodAutoscaler":
		v := &autoscalingv2.HorizontalPodAutoscaler{}
		o.hpas, obj = append(o.hpas, v), v
	case "policy/v1 PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		o.pdbs, obj = append(o.pdbs, v), v
	case "networking.k8s.io/v1 Ingress":
		v := &networkingv1.Ingress{}
		o.ingresses, obj = append(o.ingresses, v), v
	case "networking.k8s.io/v1 NetworkPolicy":
		v := &networkingv1.NetworkPolicy{}
		o.netpols, obj = append(o.netpols, v), v
	default:
		return fmt.Errorf("no decoder for %s %s (add it to the test)", head.APIVersion, head.Kind)
	}
	if head.Kind != "Namespace" {
		o.namespaced[head.Kind+"/"+name] = head.Metadata.Namespace
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s %s: %w", head.Kind, name, err)
	}
	return nil
}

func nonComment(doc string) []string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return out
}

// matches reports whether selector selects labels.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	o, files := loadK8s(t)
	vars := deployConfigVars(t)

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Namespace  string   `json:"namespace"`
			Resources  []string `json:"resources"`
			Images     []struct {
				Name    string `json:"name"`
				NewTag  string `json:"newTag"`
				NewName string `json:"newName"`
			} `json:"images"`
		}
		if err := yaml.UnmarshalStrict([]byte(deployRead(t, "deploy/k8s/kustomization.yaml")), &k); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(slices.Values(k.Resources))
		if !slices.Equal(got, files) {
			t.Errorf("kustomization resources %v, manifests on disk %v", got, files)
		}
		if len(o.namespaces) != 1 || k.Namespace != o.namespaces[0].Name {
			t.Fatalf("want one Namespace matching the kustomization's (%q)", k.Namespace)
		}
		for obj, ns := range o.namespaced {
			if ns != k.Namespace {
				t.Errorf("%s is in namespace %q, want %q", obj, ns, k.Namespace)
			}
		}
	})

	dep := o.deployments["portcullis"]
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("want Deployment portcullis with one container")
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	podLabels := dep.Spec.Template.Labels

	// The gateway's environment: ConfigMaps and Secrets named by envFrom.
	env := map[string]string{}
	var secretKeys []string
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := o.configMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				t.Fatalf("envFrom ConfigMap %q does not exist", ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[k] = v
			}
		case ef.SecretRef != nil:
			s := o.secrets[ef.SecretRef.Name]
			if s == nil {
				t.Fatalf("envFrom Secret %q does not exist", ef.SecretRef.Name)
			}
			for k, v := range s.StringData {
				env[k] = v
				secretKeys = append(secretKeys, k)
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}

	t.Run("every env name is a gateway variable", func(t *testing.T) {
		for _, k := range deploySorted(env) {
			if !deployKnownVar(vars, k) {
				t.Errorf("%s is not a configuration variable of the gateway", k)
			}
		}
	})

	t.Run("deployment promises", func(t *testing.T) {
		// The HPA owns the replica count: a spec.replicas here would reset a
		// scaled-up Deployment on every `kubectl apply -k` (Kubernetes's
		// guidance for a Deployment under an HPA is to omit the field).
		if dep.Spec.Replicas != nil {
			t.Errorf("replicas %d set: the HPA manages the count, and every apply would reset it", *dep.Spec.Replicas)
		}
		if dep.Spec.Selector == nil || !matches(dep.Spec.Selector.MatchLabels, podLabels) {
			t.Error("the Deployment's selector does not select its pods")
		}
		for _, want := range []string{"OPS_ADDR", "TRUSTED_PROXIES", "SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT"} {
			if env[want] == "" {
				t.Errorf("%s not set", want)
			}
		}
		if env["GATEWAY_ENV"] != "production" || env["CLUSTER_MODE"] != "redis" {
			t.Errorf("GATEWAY_ENV %q CLUSTER_MODE %q, want production and redis", env["GATEWAY_ENV"], env["CLUSTER_MODE"])
		}
		// The gateway trusts nobody by default, and would take the ingress
		// controller for every client: the controller's network must be
		// named, and it is a private pod network, not a public range.
		tp := env["TRUSTED_PROXIES"]
		if tp == "" || strings.EqualFold(tp, "none") {
			t.Errorf("TRUSTED_PROXIES %q: want the ingress controller's pod network", tp)
		}
		for _, item := range strings.Split(tp, ",") {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(item))
			if err != nil || pfx.Bits() == 0 || !pfx.Addr().IsPrivate() || pfx.Addr().IsLoopback() {
				t.Errorf("TRUSTED_PROXIES entry %q: want a private pod CIDR (%v)", item, err)
			}
		}
		delay, err1 := time.ParseDuration(env["SHUTDOWN_DELAY"])
		timeout, err2 := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if delay <= 0 {
			t.Error("SHUTDOWN_DELAY must be > 0 so endpoints update before the listener closes")
		}
		grace := pod.TerminationGracePeriodSeconds
		if grace == nil {
			t.Error("terminationGracePeriodSeconds not set")
		} else if time.Duration(*grace)*time.Second <= delay+timeout {
			t.Errorf("terminationGracePeriodSeconds %d must exceed SHUTDOWN_DELAY+SHUTDOWN_TIMEOUT (%v)", *grace, delay+timeout)
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			t.Error("preStop exec hook: the distroless image has no shell or sleep")
		}

		// Security context: pod and container.
		psc, csc := pod.SecurityContext, c.SecurityContext
		if psc == nil || csc == nil {
			t.Fatal("pod and container securityContext required")
		}
		nonRoot := (psc.RunAsNonRoot != nil && *psc.RunAsNonRoot) || (csc.RunAsNonRoot != nil && *csc.RunAsNonRoot)
		uid := psc.RunAsUser
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if !nonRoot || uid == nil || *uid == 0 {
			t.Errorf("want runAsNonRoot and a non-zero runAsUser (got %v, %v)", nonRoot, uid)
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem not set")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation not false")
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Error("capabilities: drop ALL missing")
		}
		if csc.Privileged != nil && *csc.Privileged {
			t.Error("privileged container")
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
			if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
				t.Errorf("%s: request %v limit %v, want both with request <= limit", res, req.String(), lim.String())
			}
		}
	})

	// Container ports by name and number, and which listener each is.
	portNum := map[string]int32{}
	for _, p := range c.Ports {
		portNum[p.Name] = p.ContainerPort
	}
	listenPort := func(addr string) int32 {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		n, _ := strconv.Atoi(p)
		return int32(n)
	}
	publicPort, opsPort := listenPort(env["GATEWAY_PORT"]), listenPort(env["OPS_ADDR"])
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			n, ok := portNum[p.StrVal]
			if !ok {
				t.Errorf("port name %q is not a container port", p.StrVal)
			}
			return n
		}
		return p.IntVal
	}

	t.Run("probes, ports and services point at real endpoints", func(t *testing.T) {
		if portNum["http"] != publicPort || portNum["ops"] != opsPort {
			t.Errorf("container ports %v, but GATEWAY_PORT=%s and OPS_ADDR=%s", portNum, env["GATEWAY_PORT"], env["OPS_ADDR"])
		}
		// Run the gateway with this exact environment (listeners on
		// loopback, test secrets for the placeholders) and probe it the
		// way the kubelet would.
		run := []string{}
		for k, v := range env {
			run = append(run, k+"="+v)
		}
		run = append(run,
			"GATEWAY_PORT=127.0.0.1:0", "OPS_ADDR=127.0.0.1:0",
			"REDIS_ADDR=127.0.0.1:1", // no Redis: replicas fall back to local state
			"JWT_SECRET=k8s-test-secret-0123456789abcdefghijklmnop", "ADMIN_TOKEN=k8s-test-admin-0123456789abcdefghijklmn",
			"REDIS_PASSWORD=x")
		gw := deployStartGateway(t, run...)
		loop := map[int32]string{publicPort: gw.Addr, opsPort: gw.OpsAddr}
		for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				if name != "startup" {
					t.Errorf("%s probe: want an httpGet probe", name)
				}
				continue
			}
			want := map[string]string{"liveness": "/livez", "readiness": "/readyz", "startup": "/livez"}[name]
			if p.HTTPGet.Path != want {
				t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, want)
			}
			addr := loop[resolve(p.HTTPGet.Port)]
			if addr == "" {
				t.Errorf("%s probe port %v is neither GATEWAY_PORT nor OPS_ADDR", name, p.HTTPGet.Port.String())
				continue
			}
			if code, body := deployGet(t, "http://"+addr+p.HTTPGet.Path); code != 200 {
				t.Errorf("%s probe %s on %s: %d %s", name, p.HTTPGet.Path, addr, code, body)
			}
		}
		// What Prometheus and the Ingress's clients each find there.
		deployCheckOpsSplit(t, gw)
		if a := dep.Spec.Template.Annotations; a["prometheus.io/port"] != strconv.Itoa(int(opsPort)) {
			t.Errorf("prometheus.io/port annotation %q, want the ops port %d", a["prometheus.io/port"], opsPort)
		}

		for name, svc := range o.services {
			for _, sp := range svc.Spec.Ports {
				if matches(svc.Spec.Selector, podLabels) {
					if n := resolve(sp.TargetPort); n != publicPort && n != opsPort {
						t.Errorf("Service %s targets port %v, not a gateway listener", name, sp.TargetPort.String())
					}
				}
			}
		}
		gwSvc := o.services["portcullis"]
		if gwSvc == nil || !matches(gwSvc.Spec.Selector, podLabels) || resolve(gwSvc.Spec.Ports[0].TargetPort) != publicPort {
			t.Error("Service portcullis must select the gateway pods' public port")
		}
	})

	t.Run("ops port: on the pod IP for Prometheus, in no public Service", func(t *testing.T) {
		// OPS_ADDR on every interface: the pod IP for Prometheus and the
		// kubelet, loopback for port-forward. The image's loopback
		// default would leave Prometheus nothing to scrape.
		host, _, _ := net.SplitHostPort(env["OPS_ADDR"])
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("OPS_ADDR %q: want every interface of the pod (:%d)", env["OPS_ADDR"], opsPort)
		}
		if opsPort == publicPort {
			t.Fatalf("OPS_ADDR and GATEWAY_PORT share port %d", opsPort)
		}
		// The Services the Ingress routes to carry the public port only.
		ingressSvc := map[string]bool{}
		for _, in := range o.ingresses {
			for _, r := range in.Spec.Rules {
				for _, p := range r.HTTP.Paths {
					ingressSvc[p.Backend.Service.Name] = true
				}
			}
		}
		if len(ingressSvc) == 0 {
			t.Fatal("no Ingress backend Service")
		}
		for name, svc := range o.services {
			if !matches(svc.Spec.Selector, podLabels) {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				if resolve(sp.TargetPort) != opsPort {
					continue
				}
				if ingressSvc[name] {
					t.Errorf("Service %s (an Ingress backend) exposes the ops port as %d", name, sp.Port)
				}
				if (svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP) || len(svc.Spec.ExternalIPs) > 0 {
					t.Errorf("Service %s exposes the ops port outside the cluster (type %s, externalIPs %v)", name, svc.Spec.Type, svc.Spec.ExternalIPs)
				}
			}
		}
		for name := range ingressSvc {
			svc := o.services[name]
			if svc == nil {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				if n := resolve(sp.TargetPort); n != publicPort {
					t.Errorf("Ingress backend Service %s has port %d → %d, want only the public port %d", name, sp.Port, n, publicPort)
				}
			}
		}
	})

	t.Run("placeholder secrets are refused in production", func(t *testing.T) {
		run := []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range env {
			run = append(run, k+"="+v)
		}
		cmd := exec.Command(deployGatewayBin(t), "validate")
		cmd.Dir, cmd.Env = t.TempDir(), run
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "JWT_SECRET") {
			t.Errorf("validate with secret.yaml's placeholders: %v\n%s\nwant exit 2 naming JWT_SECRET", err, out)
		}
		// With real secrets the same configuration is valid.
		cmd = exec.Command(deployGatewayBin(t), "validate")
		cmd.Dir = t.TempDir()
		cmd.Env = append(run, "JWT_SECRET=k8s-test-secret-0123456789abcdefghijklmnop", "ADMIN_TOKEN=k8s-test-admin-0123456789abcdefghijklmn")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("validate with real secrets: %v\n%s", err, out)
		}
		slices.Sort(secretKeys)
		if !slices.Equal(secretKeys, []string{"ADMIN_TOKEN", "JWT_SECRET", "REDIS_PASSWORD"}) {
			t.Errorf("secret keys %v", secretKeys)
		}
	})

	t.Run("HPA and PDB", func(t *testing.T) {
		if len(o.hpas) != 1 {
			t.Fatalf("%d HPAs, want 1", len(o.hpas))
		}
		h := o.hpas[0]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != dep.Name {
			t.Errorf("HPA targets %s/%s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 10 {
			t.Errorf("HPA bounds %v-%d, want 3-10", h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		// The floor of 3 is the HPA's, and it must leave room for the PDB
		// (minAvailable 2) to allow a voluntary eviction.
		if len(o.pdbs) == 1 && h.Spec.MinReplicas != nil && o.pdbs[0].Spec.MinAvailable != nil &&
			int(*h.Spec.MinReplicas) <= o.pdbs[0].Spec.MinAvailable.IntValue() {
			t.Errorf("HPA minReplicas %d <= PDB minAvailable %v: no node could ever be drained", *h.Spec.MinReplicas, o.pdbs[0].Spec.MinAvailable)
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			cpu = cpu || (m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil)
		}
		if !cpu {
			t.Error("HPA does not scale on CPU utilisation")
		}
		if len(o.pdbs) != 1 {
			t.Fatalf("%d PDBs, want 1", len(o.pdbs))
		}
		p := o.pdbs[0]
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 2 {
			t.Errorf("PDB minAvailable %v, want 2", p.Spec.MinAvailable)
		}
		if p.Spec.Selector == nil || !matches(p.Spec.Selector.MatchLabels, podLabels) {
			t.Error("PDB does not select the gateway pods")
		}
	})

	t.Run("redis", func(t *testing.T) {
		ss := o.statefulSets["redis"]
		if ss == nil {
			t.Fatal("no StatefulSet redis")
		}
		if len(ss.Spec.VolumeClaimTemplates) == 0 {
			t.Fatal("redis has no PersistentVolumeClaim template")
		}
		rc := ss.Spec.Template.Spec.Containers[0]
		pvc := ss.Spec.VolumeClaimTemplates[0].Name
		if !slices.ContainsFunc(rc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == pvc && m.MountPath == "/data" }) {
			t.Error("the PVC is not mounted at /data")
		}
		if o.services[ss.Spec.ServiceName] == nil {
			t.Errorf("serviceName %q has no Service", ss.Spec.ServiceName)
		}
		// The probes' password comes from the gateway's own Secret and key.
		pw := false
		for _, e := range rc.Env {
			if e.Name == "REDISCLI_AUTH" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				o.secrets[e.ValueFrom.SecretKeyRef.Name] != nil && e.ValueFrom.SecretKeyRef.Key == "REDIS_PASSWORD" {
				pw = true
			}
		}
		if !pw {
			t.Error("redis REDISCLI_AUTH does not come from the gateway's Secret")
		}
		// Run the container's own command with its mounted volumes, and
		// check that redis requires the Secret's password while no command
		// line carries it.
		k8sRunRedis(t, o, ss)
		host, port, _ := net.SplitHostPort(env["REDIS_ADDR"])
		svc := o.services[host]
		if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
			t.Errorf("REDIS_ADDR %q is not a Service port", env["REDIS_ADDR"])
		}
	})

	t.Run("no secret on a command line", func(t *testing.T) {
		type ctr struct {
			owner string
			c     corev1.Container
		}
		var all []ctr
		for n, d := range o.deployments {
			for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
				all = append(all, ctr{"Deployment/" + n, c})
			}
		}
		for n, s := range o.statefulSets {
			for _, c := range append(s.Spec.Template.Spec.InitContainers, s.Spec.Template.Spec.Containers...) {
				all = append(all, ctr{"StatefulSet/" + n, c})
			}
		}
		var values []string
		for _, s := range o.secrets {
			for _, v := range s.StringData {
				values = append(values, v)
			}
		}
		for _, x := range all {
			// Variables a $(VAR) in command/args would expand to a secret.
			secretVars := map[string]bool{}
			for _, e := range x.c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					secretVars[e.Name] = true
				}
			}
			for _, ef := range x.c.EnvFrom {
				if ef.SecretRef != nil {
					for k := range o.secrets[ef.SecretRef.Name].StringData {
						secretVars[ef.Prefix+k] = true
					}
				}
			}
			var lines []string
			lines = append(lines, x.c.Command...)
			lines = append(lines, x.c.Args...)
			for _, p := range []*corev1.Probe{x.c.LivenessProbe, x.c.ReadinessProbe, x.c.StartupProbe} {
				if p != nil && p.Exec != nil {
					lines = append(lines, p.Exec.Command...)
				}
			}
			for _, l := range lines {
				for v := range secretVars {
					// $(VAR) is the kubelet's expansion; $VAR/${VAR} a shell's.
					if strings.Contains(l, "$("+v+")") || strings.Contains(l, "${"+v+"}") ||
						regexp.MustCompile(`\$`+v+`\b`).MatchString(l) {
						t.Errorf("%s container %s: %q expands the secret %s on a command line", x.owner, x.c.Name, l, v)
					}
				}
				for _, v := range values {
					if strings.Contains(l, v) {
						t.Errorf("%s container %s: %q holds a secret value", x.owner, x.c.Name, l)
					}
				}
				if strings.Contains(l, "--requirepass") || strings.Contains(l, "-a ") {
					t.Errorf("%s container %s: %q passes a password as an argument", x.owner, x.c.Name, l)
				}
			}
		}
	})

	t.Run("ingress with TLS", func(t *testing.T) {
		if len(o.ingresses) != 1 {
			t.Fatalf("%d Ingresses, want 1", len(o.ingresses))
		}
		in := o.ingresses[0]
		if len(in.Spec.TLS) == 0 || in.Spec.TLS[0].SecretName == "" {
			t.Error("Ingress without TLS")
		}
		for _, r := range in.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				svc := o.services[b.Name]
				if svc == nil {
					t.Errorf("Ingress backend Service %q does not exist", b.Name)
					continue
				}
				ok := slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				})
				if !ok || resolve(svc.Spec.Ports[0].TargetPort) != publicPort {
					t.Errorf("Ingress backend %s:%v is not the gateway's public port", b.Name, b.Port)
				}
			}
		}
	})

	t.Run("network policy: public port from the ingress controller, ops port from Prometheus", func(t *testing.T) {
		// Who may reach each gateway port, over every policy selecting
		// the gateway pods. A rule without ports opens every port to its
		// peers, one without peers opens its ports to everyone.
		peers := map[int32][]networkingv1.NetworkPolicyPeer{}
		guarded := false
		for _, np := range o.netpols {
			if !matches(np.Spec.PodSelector.MatchLabels, podLabels) {
				continue
			}
			guarded = guarded || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			for i, rule := range np.Spec.Ingress {
				if len(rule.Ports) == 0 || len(rule.From) == 0 {
					t.Errorf("NetworkPolicy %s rule %d: ports %v from %v, want both named", np.Name, i, rule.Ports, rule.From)
				}
				for _, p := range rule.Ports {
					if p.Port == nil {
						t.Errorf("NetworkPolicy %s rule %d opens every port", np.Name, i)
						continue
					}
					n := int32(p.Port.IntValue())
					if p.Port.Type == intstr.String {
						n = portNum[p.Port.StrVal]
					}
					peers[n] = append(peers[n], rule.From...)
				}
			}
		}
		if !guarded {
			t.Fatal("no NetworkPolicy of type Ingress selects the gateway pods: every pod reaches both ports")
		}
		only := func(port int32, what, namespace, podName string) {
			t.Helper()
			if len(peers[port]) == 0 {
				t.Errorf("port %d (%s): no rule admits anyone", port, what)
			}
			for _, peer := range peers[port] {
				ns := ""
				if peer.NamespaceSelector != nil {
					ns = peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]
				}
				pod := ""
				if peer.PodSelector != nil {
					pod = peer.PodSelector.MatchLabels["app.kubernetes.io/name"]
				}
				if peer.IPBlock != nil || ns != namespace || pod != podName {
					t.Errorf("port %d (%s) admits %+v, want only %s pods in namespace %s", port, what, peer, podName, namespace)
				}
			}
		}
		// TRUSTED_PROXIES is a pod CIDR: safe only if nothing but the
		// ingress controller reaches the public port.
		only(publicPort, "public, TRUSTED_PROXIES", "ingress-nginx", "ingress-nginx")
		// Metrics and the admin API: Prometheus, in the namespace that
		// prometheus-kubernetes.yml says to run it in.
		only(opsPort, "ops", "monitoring", "prometheus")
		for port := range peers {
			if port != publicPort && port != opsPort {
				t.Errorf("a NetworkPolicy admits port %d, which is no gateway listener", port)
			}
		}
	})
}

// k8sRunRedis runs the Redis StatefulSet's own command and probes: its
// volumes materialised in directories (ConfigMap and Secret files as the
// kubelet writes them, the claim empty), mount paths and the port moved to
// the test's, a test password in place of the Secret's placeholder.
func k8sRunRedis(t *testing.T, o *k8sObjects, ss *appsv1.StatefulSet) {
	t.Helper()
	const password = "k8s-test-Redis+pw/0123456789=="
	spec := ss.Spec.Template.Spec
	rc := spec.Containers[0]
	port := deployFreePort(t)
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	claims := map[string]bool{}
	for _, c := range ss.Spec.VolumeClaimTemplates {
		claims[c.Name] = true
	}
	secretValue := func(s *corev1.Secret, key string) string {
		if key == "REDIS_PASSWORD" {
			return password
		}
		return s.StringData[key]
	}
	root := t.TempDir()
	var pairs []string
	for i, m := range rc.VolumeMounts {
		pairs = append(pairs, m.MountPath, filepath.Join(root, fmt.Sprintf("mount%d", i)))
	}
	moved := strings.NewReplacer(pairs...)
	for i, m := range rc.VolumeMounts {
		dir := filepath.Join(root, fmt.Sprintf("mount%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		v, ok := volumes[m.Name]
		switch {
		case claims[m.Name]:
		case ok && v.ConfigMap != nil:
			cm := o.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: ConfigMap %q does not exist", m.Name, v.ConfigMap.Name)
			}
			for k, d := range cm.Data {
				// Only the port moves: redis must not take 6379 on the
				// test machine.
				files[k] = moved.Replace(d) + fmt.Sprintf("\nport %d\nbind 127.0.0.1\n", port)
			}
		case ok && v.Secret != nil:
			s := o.secrets[v.Secret.SecretName]
			if s == nil {
				t.Fatalf("volume %s: Secret %q does not exist", m.Name, v.Secret.SecretName)
			}
			if len(v.Secret.Items) == 0 {
				for k := range s.StringData {
					files[k] = secretValue(s, k)
				}
			}
			for _, it := range v.Secret.Items {
				if _, ok := s.StringData[it.Key]; !ok {
					t.Fatalf("volume %s: Secret %s has no key %s", m.Name, s.Name, it.Key)
				}
				files[it.Path] = secretValue(s, it.Key)
			}
		default:
			t.Fatalf("mount %s: no such volume or claim", m.Name)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o440); err != nil {
				t.Fatal(err)
			}
		}
	}
	var env []string
	for _, e := range rc.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"="+secretValue(o.secrets[e.ValueFrom.SecretKeyRef.Name], e.ValueFrom.SecretKeyRef.Key))
		default:
			env = append(env, e.Name+"="+e.Value)
		}
	}
	var argv []string
	for _, a := range append(append([]string(nil), rc.Command...), rc.Args...) {
		argv = append(argv, moved.Replace(a))
	}
	if len(argv) == 0 {
		t.Fatal("the redis container has no command: the image's default would run without a password")
	}
	c, pid := startRedisCommand(t, argv, env, port)
	checkRedisPassword(t, c, pid, password)

	// The probes, as the kubelet runs them in the container (its
	// environment, no shell unless the probe names one), against this port.
	probe := func(p *corev1.Probe, env []string) error {
		var cmd []string
		for _, a := range p.Exec.Command {
			if a == "redis-cli" {
				cmd = append(cmd, a, "-p", strconv.Itoa(port))
				continue
			}
			cmd = append(cmd, strings.ReplaceAll(a, "redis-cli ", fmt.Sprintf("redis-cli -p %d ", port)))
		}
		x := exec.Command(cmd[0], cmd[1:]...)
		x.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := x.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %v %s", cmd, err, out)
		}
		return nil
	}
	for name, p := range map[string]*corev1.Probe{"readiness": rc.ReadinessProbe, "liveness": rc.LivenessProbe} {
		if p == nil || p.Exec == nil {
			t.Errorf("redis %s probe: want an exec probe", name)
			continue
		}
		if err := probe(p, env); err != nil {
			t.Errorf("redis %s probe with the Secret's password fails: %v", name, err)
		}
	}
	// Readiness means an authenticated PONG: without the password it fails.
	if rc.ReadinessProbe != nil && rc.ReadinessProbe.Exec != nil {
		if err := probe(rc.ReadinessProbe, []string{"REDISCLI_AUTH=wrong"}); err == nil {
			t.Error("redis readiness probe passes with a wrong password: it does not check the PONG")
		}
	}
}
