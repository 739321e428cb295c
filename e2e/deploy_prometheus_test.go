package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// contractMetrics are the metric names the gateway promises its operators;
// the dashboard must show each, and a running gateway must expose each.
var contractMetrics = []string{
	"http_requests_total", "http_request_duration_seconds", "active_connections",
	"backend_health_status", "circuit_breaker_trips_total", "blocked_ips_total",
	"cache_hits_total", "cache_misses_total", "cache_errors_total",
	"rate_limited_requests_total", "upstream_request_duration_seconds", "upstream_retries_total",
}

// TestPromtool runs promtool on the shipped Prometheus config and alert
// rules, and the rules' unit tests (alerts fire on the series they should).
func TestPromtool(t *testing.T) {
	promtool := deployLookPath(t, "promtool")
	dir := filepath.Join(deployRepoRoot(t), "deploy/prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// promQuery runs an instant query against a Prometheus API.
func promQuery(base, q string) (result []json.RawMessage, err error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

// grafanaDashboard is the part of the dashboard JSON the test reads.
type grafanaDashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?`)
	promOperators = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true}
)

// promMetricNames returns the metric names a PromQL expression selects.
func promMetricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, "")
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(e, -1) {
		if m[2] != "" || promOperators[m[1]] {
			continue // a function call or an operator
		}
		names = append(names, m[1])
	}
	return names
}

// grafanaSubst replaces the dashboard's Grafana variables with values
// Prometheus accepts.
var grafanaSubst = strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")

// TestPrometheusScrapesGateway runs the real Prometheus (Debian's package)
// with the shipped config pointed at a running gateway's ops listener (the
// shipped target's ops port moved to the test's), and checks through its
// API that the target is up, every contract metric arrives, the alert rules
// load, and every query of the Grafana dashboard is valid PromQL over
// metrics the gateway really exposes.
func TestPrometheusScrapesGateway(t *testing.T) {
	const promBin = "/usr/bin/prometheus"
	if _, err := os.Stat(promBin); err != nil {
		t.Fatalf("%s: %v (scripts/test-deps.sh installs Debian's prometheus package)", promBin, err)
	}
	up := echoUpstream(t)
	gw := deployStartGateway(t,
		fmt.Sprintf(`SERVICE_ROUTES=[{"prefix":"/echo","target_url":%q},{"prefix":"/dead","target_url":"http://127.0.0.1:%d"}]`,
			up.URL, deployFreePort(t)),
		"RETRY_MAX=2", "CIRCUIT_BREAKER_MAX=1", "MAX_REQUESTS_PER_SECOND=1", "MAX_BURST_SIZE=20")
	// Traffic that makes every labelled series appear: answers, an
	// upstream failure with a retry, and rate-limited requests.
	for _, p := range []string{"/echo/a", "/echo/b?x=1", "/nope", "/dead/x"} {
		deployGet(t, "http://"+gw.Addr+p)
	}
	for range 30 {
		deployGet(t, "http://"+gw.Addr+"/echo/c")
	}
	exposed := deployMetricNames(t, "http://"+gw.OpsAddr+"/metrics")

	dir := t.TempDir()
	promPort := deployFreePort(t)
	conf := deployRead(t, "deploy/prometheus/prometheus.yml")
	for _, e := range []nginxEdit{
		// The gateway service's ops port; the public one serves no /metrics.
		{"targets: ['gateway:9778']", fmt.Sprintf("targets: ['%s']", gw.OpsAddr), 1},
		{"targets: ['localhost:9090']", fmt.Sprintf("targets: ['127.0.0.1:%d']", promPort), 1},
		// Only the timing: a test cannot wait 15 s per scrape.
		{"scrape_interval: 15s", "scrape_interval: 1s", 1},
		{"evaluation_interval: 15s", "evaluation_interval: 1s", 1},
	} {
		if got := strings.Count(conf, e.old); got != e.n {
			t.Fatalf("deploy/prometheus/prometheus.yml: %q occurs %d times, the test expects %d", e.old, got, e.n)
		}
		conf = strings.ReplaceAll(conf, e.old, e.new)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(deployRead(t, "deploy/prometheus/alerts.yml")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort),
		"--log.level=warn")
	var out deploySyncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	deployWaitHTTP(t, base+"/-/ready", 30*time.Second)

	// Every contract metric, as stored by Prometheus from the scrape.
	missing := append([]string(nil), contractMetrics...)
	deadline := time.Now().Add(30 * time.Second)
	for len(missing) > 0 {
		var still []string
		for _, m := range missing {
			q := fmt.Sprintf(`{__name__=~"%s(_count)?",service="portcullis"}`, m)
			res, err := promQuery(base, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) == 0 {
				still = append(still, m)
			}
		}
		missing = still
		if len(missing) > 0 && time.Now().After(deadline) {
			t.Errorf("Prometheus has no series for %v after 30s (gateway exposes %v)", missing, deploySorted(exposed))
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	res, err := promQuery(base, `up{service="portcullis"} == 1`)
	if err != nil || len(res) != 1 {
		t.Errorf("up{service=portcullis}: %v %s", err, res)
	}
	// The target Prometheus scraped is the ops listener, and it is healthy.
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string            `json:"scrapeUrl"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
				Labels    map[string]string `json:"labels"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	_, body := deployGet(t, base+"/api/v1/targets?state=active")
	if err := json.Unmarshal([]byte(body), &targets); err != nil {
		t.Fatalf("targets: %v %.300s", err, body)
	}
	found := false
	for _, tg := range targets.Data.ActiveTargets {
		if tg.Labels["service"] != "portcullis" {
			continue
		}
		found = true
		if tg.ScrapeURL != "http://"+gw.OpsAddr+"/metrics" || tg.Health != "up" {
			t.Errorf("gateway target %s: health %q (%s), want http://%s/metrics up", tg.ScrapeURL, tg.Health, tg.LastError, gw.OpsAddr)
		}
	}
	if !found {
		t.Errorf("no target with service=portcullis: %.400s", body)
	}

	t.Run("alert rules loaded", func(t *testing.T) {
		_, body := deployGet(t, base+"/api/v1/rules")
		for _, a := range []string{"PortcullisDown", "PortcullisHighErrorRate", "PortcullisHighLatencyP99",
			"PortcullisCircuitBreakerOpen", "PortcullisBackendDown", "PortcullisBlockedIPsSpike"} {
			if !strings.Contains(body, `"name":"`+a+`"`) {
				t.Errorf("rule %s not loaded by Prometheus: %.300s", a, body)
			}
		}
	})

	t.Run("grafana dashboard", func(t *testing.T) {
		var d grafanaDashboard
		if err := json.Unmarshal([]byte(deployRead(t, "deploy/grafana/dashboards/portcullis.json")), &d); err != nil {
			t.Fatal(err)
		}
		ds := deployRead(t, "deploy/grafana/provisioning/datasources/prometheus.yml")
		var dsConf struct {
			Datasources []struct {
				UID  string `json:"uid"`
				Type string `json:"type"`
			} `json:"datasources"`
		}
		if err := yaml.Unmarshal([]byte(ds), &dsConf); err != nil {
			t.Fatal(err)
		}
		if len(dsConf.Datasources) != 1 || dsConf.Datasources[0].Type != "prometheus" {
			t.Fatalf("datasource provisioning: %+v", dsConf)
		}
		queried := map[string]bool{}
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != dsConf.Datasources[0].UID {
				t.Errorf("panel %q uses datasource %q, provisioned is %q", p.Title, p.Datasource.UID, dsConf.Datasources[0].UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				for _, name := range promMetricNames(tg.Expr) {
					family := name
					for _, suf := range []string{"_bucket", "_sum", "_count"} {
						if b, ok := strings.CutSuffix(name, suf); ok && exposed[b] {
							family = b
						}
					}
					queried[family] = true
					if !exposed[family] && family != "up" {
						t.Errorf("panel %q queries %s, which the gateway does not expose", p.Title, name)
					}
				}
				// Valid PromQL over real data: Prometheus evaluates it.
				if _, err := promQuery(base, grafanaSubst.Replace(tg.Expr)); err != nil {
					t.Errorf("panel %q: %v", p.Title, err)
				}
			}
		}
		var notShown []string
		for _, m := range contractMetrics {
			if !queried[m] {
				notShown = append(notShown, m)
			}
		}
		sort.Strings(notShown)
		if len(notShown) > 0 {
			t.Errorf("the dashboard shows no panel for contract metrics %v", notShown)
		}
	})
}

// TestPrometheusKubernetesScrape applies the relabelling of
// deploy/prometheus/prometheus-kubernetes.yml to the targets Kubernetes pod
// discovery would produce for the Deployment's pod template (one per
// container port), and checks that exactly the ops port is kept, carrying
// the service label every alert rule selects. (Debian's Prometheus is
// built without Kubernetes discovery, so promtool cannot load this file
// here; the relabel semantics below are Prometheus's: anchored RE2, source
// labels joined with ";", replace defaulting to "$1".)
func TestPrometheusKubernetesScrape(t *testing.T) {
	var conf struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName             string `json:"job_name"`
			KubernetesSDConfigs []struct {
				Role       string `json:"role"`
				Namespaces struct {
					Names []string `json:"names"`
				} `json:"namespaces"`
			} `json:"kubernetes_sd_configs"`
			RelabelConfigs []struct {
				SourceLabels []string `json:"source_labels"`
				Regex        *string  `json:"regex"`
				Action       string   `json:"action"`
				TargetLabel  string   `json:"target_label"`
				Replacement  *string  `json:"replacement"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
		Global map[string]any `json:"global"`
	}
	if err := yaml.UnmarshalStrict([]byte(deployRead(t, "deploy/prometheus/prometheus-kubernetes.yml")), &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.RuleFiles) != 1 || conf.RuleFiles[0] != "alerts.yml" {
		t.Errorf("rule_files %v, want the shipped alerts.yml", conf.RuleFiles)
	}
	if len(conf.ScrapeConfigs) != 1 || len(conf.ScrapeConfigs[0].KubernetesSDConfigs) != 1 {
		t.Fatalf("want one scrape job with one kubernetes_sd_config")
	}
	job := conf.ScrapeConfigs[0]
	sd := job.KubernetesSDConfigs[0]
	o, _ := loadK8s(t)
	dep := o.deployments["portcullis"]
	if sd.Role != "pod" || len(sd.Namespaces.Names) != 1 || sd.Namespaces.Names[0] != dep.Namespace {
		t.Errorf("discovery %+v, want role pod in namespace %s", sd, dep.Namespace)
	}

	// The targets pod discovery makes for one running gateway pod.
	meta := func(port corev1.ContainerPort) map[string]string {
		l := map[string]string{
			"__address__":                                 fmt.Sprintf("10.244.1.7:%d", port.ContainerPort),
			"__metrics_path__":                            "/metrics",
			"job":                                         job.JobName,
			"__meta_kubernetes_namespace":                 dep.Namespace,
			"__meta_kubernetes_pod_name":                  "portcullis-7d9f-abcde",
			"__meta_kubernetes_pod_phase":                 "Running",
			"__meta_kubernetes_pod_container_port_name":   port.Name,
			"__meta_kubernetes_pod_container_port_number": strconv.Itoa(int(port.ContainerPort)),
		}
		sanitize := strings.NewReplacer(".", "_", "/", "_", "-", "_")
		for k, v := range dep.Spec.Template.Labels {
			l["__meta_kubernetes_pod_label_"+sanitize.Replace(k)] = v
		}
		for k, v := range dep.Spec.Template.Annotations {
			l["__meta_kubernetes_pod_annotation_"+sanitize.Replace(k)] = v
		}
		return l
	}
	relabel := func(l map[string]string) map[string]string {
		for _, rc := range job.RelabelConfigs {
			var vals []string
			for _, s := range rc.SourceLabels {
				vals = append(vals, l[s])
			}
			src := strings.Join(vals, ";")
			re := "(.*)"
			if rc.Regex != nil {
				re = *rc.Regex
			}
			rx := regexp.MustCompile("^(?:" + re + ")$")
			switch rc.Action {
			case "keep":
				if !rx.MatchString(src) {
					return nil
				}
			case "drop":
				if rx.MatchString(src) {
					return nil
				}
			case "", "replace":
				m := rx.FindStringSubmatchIndex(src)
				if m == nil {
					continue
				}
				repl := "$1"
				if rc.Replacement != nil {
					repl = *rc.Replacement
				}
				if v := string(rx.ExpandString(nil, repl, src, m)); v != "" {
					l[rc.TargetLabel] = v
				} else {
					delete(l, rc.TargetLabel)
				}
			default:
				t.Fatalf("relabel action %q: extend the test", rc.Action)
			}
		}
		return l
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var kept []map[string]string
	for _, p := range c.Ports {
		if l := relabel(meta(p)); l != nil {
			kept = append(kept, l)
		}
	}
	wantAddr := "10.244.1.7:" + dep.Spec.Template.Annotations["prometheus.io/port"]
	if len(kept) != 1 || kept[0]["__address__"] != wantAddr {
		t.Fatalf("targets kept for one pod: %v, want one at %s (the annotated ops port)", kept, wantAddr)
	}
	if kept[0]["service"] != "portcullis" || kept[0]["__metrics_path__"] != dep.Spec.Template.Annotations["prometheus.io/path"] {
		t.Errorf("target labels %v: want service=portcullis (what the alerts select) and the annotated path", kept[0])
	}
	// A pod of another app in the namespace, or a pending pod, is not scraped.
	other := meta(c.Ports[1])
	other["__meta_kubernetes_pod_label_app_kubernetes_io_name"] = "redis"
	pending := meta(c.Ports[1])
	pending["__meta_kubernetes_pod_phase"] = "Pending"
	for name, l := range map[string]map[string]string{"another app's pod": other, "a pending pod": pending} {
		if relabel(l) != nil {
			t.Errorf("%s is scraped", name)
		}
	}

	// Every selector of every alert rule uses the label, none a job name.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal([]byte(deployRead(t, "deploy/prometheus/alerts.yml")), &rules); err != nil {
		t.Fatal(err)
	}
	absent := false
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			sels := promMatchers.FindAllString(r.Expr, -1)
			if len(sels) == 0 || strings.Contains(r.Expr, "job=") {
				t.Errorf("%s: %q selects by job or selects nothing", r.Alert, r.Expr)
			}
			for _, s := range sels {
				if !strings.Contains(s, `service="portcullis"`) {
					t.Errorf("%s: selector %s lacks service=\"portcullis\"", r.Alert, s)
				}
			}
			absent = absent || (r.Alert == "PortcullisDown" && strings.Contains(r.Expr, "absent("))
		}
	}
	if !absent {
		t.Error("no PortcullisDown rule fires when every target has disappeared (absent)")
	}
}
