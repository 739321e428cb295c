package e2e

// The deploy/k8s-tls overlay: the gateway terminating TLS behind a
// LoadBalancer Service, its certificate from a kubernetes.io/tls Secret.
// The overlay is built here as kustomize builds it, decoded strictly into
// the k8s.io/api types, and run: the real gateway with the overlay's
// environment and the Secret volume laid out as the kubelet does.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization that the
// repository's kustomizations use, decoded strictly: a field outside it
// fails kustBuild rather than being ignored.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	Patches []struct {
		Path   string `json:"path"`
		Patch  string `json:"patch"`
		Target *struct {
			Group   string `json:"group"`
			Version string `json:"version"`
			Kind    string `json:"kind"`
			Name    string `json:"name"`
		} `json:"target"`
	} `json:"patches"`
}

// kustBuild returns the objects `kustomize build dir` makes, as generic
// JSON values, for the subset of kustomize in kustomization: resources
// (files and directories of other kustomizations), namespace, images, and
// patches that are JSON patches (RFC 6902) or a `$patch: delete`. A patch
// whose target matches nothing fails the build.
func kustBuild(t *testing.T, dir string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v (kustBuild knows only part of kustomize)", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: %s %s", dir, k.APIVersion, k.Kind)
	}
	var objs []map[string]any
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", dir, r, err)
		}
		if st.IsDir() {
			objs = append(objs, kustBuild(t, p)...)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range yamlDocs.Split(string(b), -1) {
			if strings.TrimSpace(strings.Join(nonComment(doc), "")) == "" {
				continue
			}
			var o map[string]any
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			objs = append(objs, o)
		}
	}
	for i, pt := range k.Patches {
		body := pt.Patch
		if pt.Path != "" {
			b, err := os.ReadFile(filepath.Join(dir, pt.Path))
			if err != nil {
				t.Fatal(err)
			}
			body = string(b)
		}
		if pt.Target == nil || pt.Target.Kind == "" || pt.Target.Name == "" {
			t.Fatalf("%s patch %d: want a target kind and name", dir, i)
		}
		var p any
		if err := yaml.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("%s patch %d: %v", dir, i, err)
		}
		matched := false
		kept := objs[:0:0]
		for _, o := range objs {
			gv, _ := o["apiVersion"].(string)
			group, version, ok := strings.Cut(gv, "/")
			if !ok {
				group, version = "", gv
			}
			tg := pt.Target
			if o["kind"] != tg.Kind || kustName(o) != tg.Name || group != tg.Group || (tg.Version != "" && version != tg.Version) {
				kept = append(kept, o)
				continue
			}
			matched = true
			switch p := p.(type) {
			case []any:
				patched, err := jsonPatch(o, p)
				if err != nil {
					t.Fatalf("%s patch %d on %s/%s: %v", dir, i, tg.Kind, tg.Name, err)
				}
				kept = append(kept, patched.(map[string]any))
			case map[string]any:
				if p["$patch"] != "delete" {
					t.Fatalf("%s patch %d: a strategic-merge patch other than $patch: delete (use a JSON patch)", dir, i)
				}
			default:
				t.Fatalf("%s patch %d: %T", dir, i, p)
			}
		}
		if !matched {
			t.Fatalf("%s patch %d: target %+v matches nothing", dir, i, *pt.Target)
		}
		objs = kept
	}
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]any)
		if k.Namespace != "" && o["kind"] != "Namespace" && md != nil {
			md["namespace"] = k.Namespace
		}
		for _, img := range k.Images {
			kustSetImage(o, img.Name, img.NewName, img.NewTag)
		}
	}
	return objs
}

// yamlDocs separates the documents of a YAML stream.
var yamlDocs = regexp.MustCompile(`(?m)^---[ \t]*$`)

func kustName(o map[string]any) string {
	md, _ := o["metadata"].(map[string]any)
	n, _ := md["name"].(string)
	return n
}

// kustSetImage is kustomize's images transformer on a workload's pod
// template: name[:tag] becomes newName (if set) with newTag (if set).
func kustSetImage(o map[string]any, name, newName, newTag string) {
	spec, _ := o["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	pod, _ := tmpl["spec"].(map[string]any)
	for _, list := range []string{"initContainers", "containers"} {
		cs, _ := pod[list].([]any)
		for _, c := range cs {
			c, _ := c.(map[string]any)
			img, _ := c["image"].(string)
			base, tag, _ := strings.Cut(img, ":")
			if base != name {
				continue
			}
			if newName != "" {
				base = newName
			}
			if newTag != "" {
				tag = newTag
			}
			if tag != "" {
				base += ":" + tag
			}
			c["image"] = base
		}
	}
}

// jsonPatch applies RFC 6902 operations (add, remove, replace, test) to doc.
func jsonPatch(doc any, ops []any) (any, error) {
	for i, raw := range ops {
		op, _ := raw.(map[string]any)
		path, _ := op["path"].(string)
		if path == "" || path[0] != '/' {
			return nil, fmt.Errorf("operation %d: path %q", i, path)
		}
		var toks []string
		for _, tok := range strings.Split(path[1:], "/") {
			toks = append(toks, strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~"))
		}
		var err error
		doc, err = jsonPatchAt(doc, toks, op)
		if err != nil {
			return nil, fmt.Errorf("operation %d (%v %s): %w", i, op["op"], path, err)
		}
	}
	return doc, nil
}

// jsonPatchAt applies op at toks below node and returns the new node.
func jsonPatchAt(node any, toks []string, op map[string]any) (any, error) {
	tok, last := toks[0], len(toks) == 1
	switch n := node.(type) {
	case map[string]any:
		v, ok := n[tok]
		if !last {
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			child, err := jsonPatchAt(v, toks[1:], op)
			n[tok] = child
			return n, err
		}
		switch op["op"] {
		case "add":
			n[tok] = op["value"]
		case "replace", "remove", "test":
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			switch op["op"] {
			case "replace":
				n[tok] = op["value"]
			case "remove":
				delete(n, tok)
			case "test":
				if !reflect.DeepEqual(v, op["value"]) {
					return nil, fmt.Errorf("test failed: %v, want %v", v, op["value"])
				}
			}
		default:
			return nil, fmt.Errorf("unsupported op %v", op["op"])
		}
		return n, nil
	case []any:
		if last && tok == "-" && op["op"] == "add" {
			return append(n, op["value"]), nil
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || i > len(n) || (i == len(n) && !(last && op["op"] == "add")) {
			return nil, fmt.Errorf("index %q out of range (%d items)", tok, len(n))
		}
		if !last {
			n[i], err = jsonPatchAt(n[i], toks[1:], op)
			return n, err
		}
		switch op["op"] {
		case "add":
			return slices.Insert(n, i, op["value"]), nil
		case "replace":
			n[i] = op["value"]
		case "remove":
			return slices.Delete(n, i, i+1), nil
		case "test":
			if !reflect.DeepEqual(n[i], op["value"]) {
				return nil, fmt.Errorf("test failed: %v, want %v", n[i], op["value"])
			}
		default:
			return nil, fmt.Errorf("unsupported op %v", op["op"])
		}
		return n, nil
	}
	return nil, fmt.Errorf("%q: not an object or array", tok)
}

// k8sTLS is the built overlay, decoded, and the gateway's environment.
type k8sTLS struct {
	built   []map[string]any
	objs    *k8sObjects
	env     map[string]string // ConfigMaps and Secrets by envFrom, then env
	sysctls map[string]string // the pod's
}

// k8sTLSOverlay builds deploy/k8s-tls and decodes every object strictly
// into its k8s.io/api type.
func k8sTLSOverlay(t *testing.T) *k8sTLS {
	t.Helper()
	built := kustBuild(t, filepath.Join(deployRepoRoot(t), "deploy/k8s-tls"))
	o := newK8sObjects()
	for _, obj := range built {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.decode(b); err != nil {
			t.Errorf("deploy/k8s-tls: %v", err)
		}
	}
	dep := o.deployments["portcullis"]
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("deploy/k8s-tls: want Deployment portcullis with one container")
	}
	ov := &k8sTLS{built: built, objs: o, env: map[string]string{}, sysctls: map[string]string{}}
	c := dep.Spec.Template.Spec.Containers[0]
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil && o.configMaps[ef.ConfigMapRef.Name] != nil:
			for k, v := range o.configMaps[ef.ConfigMapRef.Name].Data {
				ov.env[k] = v
			}
		case ef.SecretRef != nil && o.secrets[ef.SecretRef.Name] != nil:
			for k, v := range o.secrets[ef.SecretRef.Name].StringData {
				ov.env[k] = v
			}
		default:
			t.Fatalf("envFrom %+v names nothing in the overlay", ef)
		}
	}
	for _, e := range c.Env {
		ov.env[e.Name] = e.Value
	}
	if sc := dep.Spec.Template.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			ov.sysctls[s.Name] = s.Value
		}
	}
	return ov
}

// k8sSecretVolume lays a Secret volume out in dir as the kubelet does: the
// files (items chosen and renamed, or every key) in a hidden timestamped
// directory, ..data a symlink to it, each visible name a symlink through
// ..data. On a dir laid out before, it is the kubelet's update: a new
// directory, ..data swapped to it by a rename, the old one removed.
func k8sSecretVolume(t testing.TB, dir string, data map[string][]byte, items []corev1.KeyToPath) {
	t.Helper()
	files := map[string][]byte{}
	for k, v := range data {
		if len(items) == 0 {
			files[k] = v
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			t.Fatalf("the Secret has no key %s", it.Key)
		}
		files[it.Path] = v
	}
	ts := filepath.Join(dir, ".."+time.Now().Format("2006_01_02_15_04_05.000000000"))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ts, name), b, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}

// TestKubernetesTLSOverlay checks deploy/k8s-tls: it builds (as kubectl's
// kustomize does) from the untouched base, every
// object decodes strictly, the LoadBalancer publishes 443 (TCP and UDP)
// and 80 on the pod's own port numbers, the pod's non-root user may bind
// them, the NetworkPolicy admits them from anywhere and the ops port still
// from Prometheus only, and the real gateway, run with the overlay's
// environment and its Secret volume laid out as the kubelet does, answers
// the probes, serves the Secret's certificate, and a Secret update.
func TestKubernetesTLSOverlay(t *testing.T) {
	ov := k8sTLSOverlay(t)
	o := ov.objs
	env := ov.env
	dep := o.deployments["portcullis"]
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	podLabels := dep.Spec.Template.Labels

	t.Run("the base is untouched but for the patched objects", func(t *testing.T) {
		base := map[string]map[string]any{}
		for _, m := range kustBuild(t, filepath.Join(deployRepoRoot(t), "deploy/k8s")) {
			base[fmt.Sprintf("%v/%v", m["kind"], kustName(m))] = m
		}
		patched := map[string]bool{"ConfigMap/portcullis-config": true, "Deployment/portcullis": true,
			"Service/portcullis": true, "NetworkPolicy/portcullis": true}
		for _, m := range ov.built {
			k := fmt.Sprintf("%v/%v", m["kind"], kustName(m))
			if b, ok := base[k]; !ok {
				t.Errorf("%s is not in the base", k)
			} else if !patched[k] && !reflect.DeepEqual(b, m) {
				t.Errorf("%s differs from the base's", k)
			}
			delete(base, k)
		}
		if !slices.Equal(deploySorted(base), []string{"Ingress/portcullis"}) {
			t.Errorf("left out of the base: %v, want only the Ingress (no ingress controller)", deploySorted(base))
		}
		// Every volume the base's pod has is still there (a JSON patch
		// `add` of /volumes would replace the list).
		for _, bv := range kustBuildPodVolumes(base, t) {
			if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == bv }) {
				t.Errorf("the base's volume %s is gone", bv)
			}
		}
	})

	t.Run("environment", func(t *testing.T) {
		vars, documented := deployConfigVars(t), tlsDocumentedVars(t)
		for _, k := range deploySorted(env) {
			if !deployKnownVar(vars, k) {
				t.Errorf("%s is not a configuration variable of the gateway", k)
			}
		}
		for _, k := range []string{"GATEWAY_PORT", "HTTP_REDIRECT_ADDR", "HTTP3", "TLS_CERTS_DIR", "TRUSTED_PROXIES"} {
			if !documented[k] {
				t.Errorf("%s is not in docs/configuration.md", k)
			}
		}
		if env["TLS_CERTS_DIR"] == "" || env["HTTP3"] != "true" || env["HTTP_REDIRECT_ADDR"] == "" {
			t.Errorf("TLS_CERTS_DIR %q HTTP3 %q HTTP_REDIRECT_ADDR %q", env["TLS_CERTS_DIR"], env["HTTP3"], env["HTTP_REDIRECT_ADDR"])
		}
		// Every pod of the cluster reaches the public port now: trusting
		// the pod CIDR would let any of them choose its client address.
		if tp := env["TRUSTED_PROXIES"]; tp != "" && !strings.EqualFold(tp, "none") {
			t.Errorf("TRUSTED_PROXIES %q with clients connecting straight to the pods, want none", tp)
		}
	})

	// Container ports by name, and the listeners' numbers.
	type portKey struct {
		num   int32
		proto corev1.Protocol
	}
	byName := map[string]portKey{}
	for _, p := range c.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		byName[p.Name] = portKey{p.ContainerPort, proto}
	}
	publicPort, redirectPort, opsPort := int32(portOf(t, env["GATEWAY_PORT"])), int32(portOf(t, env["HTTP_REDIRECT_ADDR"])), int32(portOf(t, env["OPS_ADDR"]))
	public := []portKey{{publicPort, corev1.ProtocolTCP}, {publicPort, corev1.ProtocolUDP}, {redirectPort, corev1.ProtocolTCP}}
	resolve := func(p intstr.IntOrString, proto corev1.Protocol) portKey {
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if p.Type == intstr.String {
			k, ok := byName[p.StrVal]
			if !ok {
				t.Errorf("port name %q is not a container port", p.StrVal)
			}
			if k.proto != proto {
				t.Errorf("port %q is %s in the pod, used as %s", p.StrVal, k.proto, proto)
			}
			return k
		}
		return portKey{p.IntVal, proto}
	}

	t.Run("ports: the Service publishes the pod's own numbers", func(t *testing.T) {
		have := map[portKey]bool{}
		for _, k := range byName {
			have[k] = true
		}
		for _, k := range append(public, portKey{opsPort, corev1.ProtocolTCP}) {
			if !have[k] {
				t.Errorf("no container port %d/%s (GATEWAY_PORT %s, HTTP3, HTTP_REDIRECT_ADDR %s, OPS_ADDR %s)", k.num, k.proto, env["GATEWAY_PORT"], env["HTTP_REDIRECT_ADDR"], env["OPS_ADDR"])
			}
		}
		if len(o.ingresses) != 0 {
			t.Errorf("%d Ingresses: the LoadBalancer reaches the pods without one", len(o.ingresses))
		}
		lb := o.services["portcullis"]
		if lb == nil || lb.Spec.Type != corev1.ServiceTypeLoadBalancer || !matches(lb.Spec.Selector, podLabels) {
			t.Fatal("Service portcullis: want a LoadBalancer selecting the gateway pods")
		}
		// The client's own address, not a node's, reaches the gateway.
		if lb.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			t.Errorf("externalTrafficPolicy %q, want Local (Cluster would SNAT every client to a node's address)", lb.Spec.ExternalTrafficPolicy)
		}
		var got []portKey
		for _, sp := range lb.Spec.Ports {
			k := resolve(sp.TargetPort, sp.Protocol)
			got = append(got, k)
			// The gateway names its own port in redirects and Alt-Svc.
			if sp.Port != k.num {
				t.Errorf("Service port %d/%s → pod port %d: the gateway would send clients to %d", sp.Port, k.proto, k.num, k.num)
			}
			if k.num == opsPort {
				t.Errorf("the LoadBalancer publishes the ops port %d", opsPort)
			}
		}
		for _, k := range public {
			if !slices.Contains(got, k) {
				t.Errorf("LoadBalancer ports %v: want %d/%s", got, k.num, k.proto)
			}
		}
		if publicPort != 443 || redirectPort != 80 {
			t.Errorf("GATEWAY_PORT %s HTTP_REDIRECT_ADDR %s: want 443 and 80, the ports browsers use", env["GATEWAY_PORT"], env["HTTP_REDIRECT_ADDR"])
		}
		// The ops port is in no Service beyond ClusterIP.
		for name, svc := range o.services {
			for _, sp := range svc.Spec.Ports {
				if matches(svc.Spec.Selector, podLabels) && resolve(sp.TargetPort, sp.Protocol).num == opsPort &&
					(svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP) {
					t.Errorf("Service %s (type %s) exposes the ops port", name, svc.Spec.Type)
				}
			}
		}
	})

	t.Run("the pod's non-root user may bind 443 and 80", func(t *testing.T) {
		psc, csc := pod.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Fatal("want the base's runAsNonRoot and non-zero runAsUser")
		}
		if csc == nil || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
			t.Error("want every capability dropped and none added, as in the base")
		}
		v, err := strconv.Atoi(ov.sysctls["net.ipv4.ip_unprivileged_port_start"])
		if err != nil || int32(v) > min(publicPort, redirectPort) {
			t.Errorf("pod sysctl net.ipv4.ip_unprivileged_port_start %q: want at most %d (%v)", ov.sysctls["net.ipv4.ip_unprivileged_port_start"], min(publicPort, redirectPort), err)
		}
	})

	// The Secret volume at TLS_CERTS_DIR.
	var vol *corev1.Volume
	for _, m := range c.VolumeMounts {
		if m.MountPath != env["TLS_CERTS_DIR"] {
			continue
		}
		if !m.ReadOnly || m.SubPath != "" {
			t.Errorf("mount at TLS_CERTS_DIR: readOnly %v subPath %q, want read-only and no subPath (never updated)", m.ReadOnly, m.SubPath)
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
	}
	if vol == nil || vol.Secret == nil {
		t.Fatalf("no Secret volume mounted at TLS_CERTS_DIR %s", env["TLS_CERTS_DIR"])
	}

	t.Run("the Secret volume holds one NAME.crt + NAME.key pair", func(t *testing.T) {
		sv := vol.Secret
		// The name the base's Ingress uses, so a cert-manager Certificate
		// (or a Secret) made for the base serves here too.
		base, _ := loadK8s(t)
		if len(base.ingresses) != 1 || len(base.ingresses[0].Spec.TLS) == 0 || sv.SecretName != base.ingresses[0].Spec.TLS[0].SecretName {
			t.Errorf("secretName %q, want the base Ingress's TLS Secret", sv.SecretName)
		}
		paths := map[string]string{}
		for _, it := range sv.Items {
			paths[it.Key] = it.Path
		}
		crt, key := paths["tls.crt"], paths["tls.key"]
		if len(sv.Items) != 2 || !strings.HasSuffix(crt, ".crt") || strings.TrimSuffix(crt, ".crt")+".key" != key || strings.Contains(crt, "/") {
			t.Errorf("items %+v: want exactly tls.crt → NAME.crt and tls.key → NAME.key (ca.crt would be refused)", sv.Items)
		}
		// Readable by the gateway: by everyone, or by the pod's fsGroup,
		// which the kubelet makes the files' group and the process's.
		mode := int32(0o644)
		if sv.DefaultMode != nil {
			mode = *sv.DefaultMode
		}
		fsGroup := pod.SecurityContext != nil && pod.SecurityContext.FSGroup != nil
		if mode&0o004 == 0 && !(mode&0o040 != 0 && fsGroup) {
			t.Errorf("defaultMode %#o, fsGroup set %v: the gateway's user could not read the key", mode, fsGroup)
		}
		if mode&0o004 != 0 {
			t.Errorf("defaultMode %#o: the private key readable by every user", mode)
		}
	})

	t.Run("network policy: public ports from anywhere, ops from Prometheus", func(t *testing.T) {
		open := map[portKey]bool{}
		opsPeers := 0
		guarded := false
		for _, np := range o.netpols {
			if !matches(np.Spec.PodSelector.MatchLabels, podLabels) {
				continue
			}
			guarded = guarded || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			for i, rule := range np.Spec.Ingress {
				if len(rule.Ports) == 0 {
					t.Errorf("NetworkPolicy %s rule %d opens every port", np.Name, i)
				}
				for _, p := range rule.Ports {
					if p.Port == nil {
						t.Errorf("NetworkPolicy %s rule %d opens every port", np.Name, i)
						continue
					}
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					k := resolve(*p.Port, proto)
					switch {
					case slices.Contains(public, k):
						if len(rule.From) != 0 {
							t.Errorf("NetworkPolicy %s admits %d/%s from %v only: clients come from anywhere", np.Name, k.num, k.proto, rule.From)
						}
						open[k] = true
					case k == portKey{opsPort, corev1.ProtocolTCP}:
						for _, peer := range rule.From {
							opsPeers++
							if peer.IPBlock != nil || peer.NamespaceSelector == nil || peer.PodSelector == nil ||
								peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" ||
								peer.PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
								t.Errorf("the ops port admits %+v, want only Prometheus's pods in monitoring", peer)
							}
						}
						if len(rule.From) == 0 {
							t.Errorf("NetworkPolicy %s opens the ops port to everyone", np.Name)
						}
					default:
						t.Errorf("NetworkPolicy %s admits %d/%s, which is no gateway listener", np.Name, k.num, k.proto)
					}
				}
			}
		}
		if !guarded {
			t.Fatal("no NetworkPolicy of type Ingress selects the gateway pods")
		}
		for _, k := range public {
			if !open[k] {
				t.Errorf("port %d/%s is not admitted: the load balancer's traffic would be dropped", k.num, k.proto)
			}
		}
		if opsPeers == 0 {
			t.Error("nobody may reach the ops port: Prometheus could not scrape")
		}
	})

	t.Run("the gateway serves the Secret, answers the probes, follows an update", func(t *testing.T) {
		first, second, ca := newTLSPair(t, 1), newTLSPair(t, 2), newTLSPair(t, 3)
		// A kubernetes.io/tls Secret as cert-manager writes it: ca.crt too.
		secret := func(p tlsPair) map[string][]byte {
			return map[string][]byte{"tls.crt": p.cert, "tls.key": p.key, "ca.crt": ca.cert}
		}
		certs := t.TempDir()
		k8sSecretVolume(t, certs, secret(first), vol.Secret.Items)
		g := deployStartGateway(t, tlsGatewayEnv(env, certs,
			"JWT_SECRET=k8s-test-secret-0123456789abcdefghijklmnop", "ADMIN_TOKEN=k8s-test-admin-0123456789abcdefghijklmn", "REDIS_PASSWORD=x")...)
		l := tlsCheckGateway(t, g, first, env["HTTP3"] == "true")
		redirect, _ := l["redirect_addr"].(string)

		// The probes as the kubelet sends them: its scheme, no
		// certificate verification, the pod IP (no SNI).
		loop := map[int32]string{publicPort: g.Addr, opsPort: g.OpsAddr, redirectPort: redirect}
		kubelet := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tlsConfigKubelet}}
		for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s probe: want an httpGet probe", name)
				continue
			}
			k := resolve(p.HTTPGet.Port, corev1.ProtocolTCP)
			scheme := strings.ToLower(string(p.HTTPGet.Scheme))
			if scheme == "" {
				scheme = "http"
			}
			if want := map[int32]string{publicPort: "https", opsPort: "http"}[k.num]; scheme != want {
				t.Errorf("%s probe on port %d: scheme %s, want %s", name, k.num, scheme, want)
			}
			resp, err := kubelet.Get(scheme + "://" + loop[k.num] + p.HTTPGet.Path)
			if err != nil {
				t.Errorf("%s probe %s://%s%s: %v", name, scheme, loop[k.num], p.HTTPGet.Path, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s probe %s: %d", name, p.HTTPGet.Path, resp.StatusCode)
			}
		}

		// A Secret update: the kubelet swaps ..data, the gateway serves
		// the new certificate without a restart.
		k8sSecretVolume(t, certs, secret(second), vol.Secret.Items)
		tlsWaitServed(t, g.Addr, second)

		// Why items: the whole Secret, ca.crt included, is refused.
		whole := t.TempDir()
		k8sSecretVolume(t, whole, secret(first), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, deployGatewayBin(t))
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "DASHBOARD=off"}, tlsGatewayEnv(env, whole,
			"JWT_SECRET=k8s-test-secret-0123456789abcdefghijklmnop", "ADMIN_TOKEN=k8s-test-admin-0123456789abcdefghijklmn", "REDIS_PASSWORD=x")...)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil || err == nil || !strings.Contains(string(out), "ca.crt") {
			t.Errorf("the whole Secret mounted (ca.crt without a key): %v, want a refusal naming ca.crt\n%s", err, out)
		}
	})
}

// tlsConfigKubelet is how the kubelet's HTTPS probes handshake: no
// verification, and no SNI when dialling the pod IP.
var tlsConfigKubelet = tls.Config{InsecureSkipVerify: true}

// kustBuildPodVolumes returns the names of the volumes of the base's
// gateway Deployment pod.
func kustBuildPodVolumes(base map[string]map[string]any, t *testing.T) []string {
	t.Helper()
	b, err := json.Marshal(base["Deployment/portcullis"])
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		names = append(names, v.Name)
	}
	return names
}
