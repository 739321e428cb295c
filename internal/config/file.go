package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileBytes bounds CONFIG_FILE: a route table is kilobytes; anything this
// large is a mistake (or an attack on a writable directory).
const MaxFileBytes = 4 << 20

// fileName is the name every CONFIG_FILE problem starts with.
const fileName = "CONFIG_FILE"

// tunables are the settings CONFIG_FILE may carry besides its routes: the
// ones that only shape how routes are built, so a reload can apply them by
// building a new route table. Their environment values are the defaults.
type tunables struct {
	ConnectionTimeout  time.Duration
	LoadBalancingAlgo  string
	MaxBodyBytes       int64
	CacheTTL           time.Duration
	CORSAllowedOrigins []string
}

// FileKeys are the top-level members CONFIG_FILE accepts: "routes" (route
// objects as in SERVICE_ROUTES) and the tunables, named like their variables
// in lower case. Anything else is an error.
var FileKeys = []string{"cache_ttl", "connection_timeout", "cors_allowed_origins", "load_balancing_algo", "max_body_bytes", "routes"}

func (c *Config) tunables() tunables {
	return tunables{c.ConnectionTimeout, c.LoadBalancingAlgo, c.MaxBodyBytes, c.CacheTTL, c.CORSAllowedOrigins}
}

func (c *Config) setTunables(t tunables) {
	c.ConnectionTimeout, c.LoadBalancingAlgo, c.MaxBodyBytes, c.CacheTTL, c.CORSAllowedOrigins =
		t.ConnectionTimeout, t.LoadBalancingAlgo, t.MaxBodyBytes, t.CacheTTL, t.CORSAllowedOrigins
}

// ReloadFile reads CONFIG_FILE again and returns a new Config: c with the
// file's routes and tunables in place of the previous file's (a tunable the
// file no longer sets falls back to its variable). c is not changed. On
// failure it returns nil and one single-line error per problem, each
// starting with CONFIG_FILE.
func (c *Config) ReloadFile() (*Config, error) {
	if c.ConfigFile == "" {
		return nil, errors.New("CONFIG_FILE: not set, there is no file to reload")
	}
	data, err := readFile(c.ConfigFile)
	if err != nil {
		return nil, errors.Join(err)
	}
	return c.WithFile(data)
}

// WithFile is ReloadFile with the file's content already read.
func (c *Config) WithFile(data []byte) (*Config, error) {
	next := *c
	next.setTunables(c.envTunables)
	next.Warnings = nil
	p := &parser{lookup: func(string) (string, bool) { return "", false }, production: c.Env == EnvProduction}
	next.applyFile(p, data)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	next.Warnings = p.warnings
	return &next, nil
}

// FileSum is the SHA-256 of the CONFIG_FILE content c was built from, the
// zero array when no file was read. A file watcher compares it with what
// it reads next: hashing the file again after Load could record a newer
// content than the one in force, and that change would never be applied.
func (c *Config) FileSum() [sha256.Size]byte { return c.fileSum }

// ReadFile reads CONFIG_FILE as ReloadFile does, for callers that want to
// compare contents before reloading (a file watcher sees many events that
// change nothing).
func ReadFile(path string) ([]byte, error) { return readFile(path) }

func readFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO put in the file's place must not wait for
	// a writer (a reload holds the reload lock); it is refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileName, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("%s: %w", fileName, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %s is not a regular file (%v)", fileName, path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", fileName, path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", fileName, path, MaxFileBytes)
	}
	return data, nil
}

// loadFile is Load's part: it reads CONFIG_FILE, which then is the only
// source of routes.
func (c *Config) loadFile(p *parser, others []string) {
	if len(others) > 0 {
		p.failf(fileName, "set together with %s: routes come from one place (move them into the file, or unset CONFIG_FILE)", strings.Join(others, " and "))
		return
	}
	data, err := readFile(c.ConfigFile)
	if err != nil {
		p.errs = append(p.errs, err)
		return
	}
	c.applyFile(p, data)
}

// rawFile is CONFIG_FILE's top level; the tunables stay raw JSON so the
// variables' own parsers check them.
type rawFile struct {
	Routes  *[]json.RawMessage
	Tunable map[string]json.RawMessage
}

var fileFields = func() map[string]field[rawFile] {
	m := map[string]field[rawFile]{
		"routes": into("an array of route objects (as in SERVICE_ROUTES)", func(f *rawFile) **[]json.RawMessage { return &f.Routes }),
	}
	for _, k := range FileKeys {
		if k == "routes" {
			continue
		}
		m[k] = into("a value", func(f *rawFile) *tunableSink {
			if f.Tunable == nil {
				f.Tunable = map[string]json.RawMessage{}
			}
			return &tunableSink{f: f, key: k}
		})
	}
	return m
}()

// tunableSink captures a tunable's raw JSON under its key.
type tunableSink struct {
	f   *rawFile
	key string
}

func (s *tunableSink) UnmarshalJSON(b []byte) error {
	s.f.Tunable[s.key] = append(json.RawMessage(nil), b...)
	return nil
}

// applyFile parses the file's content (YAML, or JSON when the name ends in
// .json) into c: tunables first, as they are the routes' defaults, then the
// routes. Every problem is recorded in p, each starting with CONFIG_FILE.
func (c *Config) applyFile(p *parser, data []byte) {
	c.fileSum = sha256.Sum256(data)
	doc, err := toJSON(c.ConfigFile, data)
	if err != nil {
		p.failf(fileName, "%s: %v", c.ConfigFile, err)
		return
	}
	var raw rawFile
	if _, ok := decodeObject(p, fileName, doc, fileFields, &raw); !ok {
		return
	}
	// The tunables go through the variables' own parsers, with the file's
	// members in place of the environment.
	values := map[string]string{}
	for k, v := range raw.Tunable {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v) // a number, or an array (cors_allowed_origins)
		}
		if strings.TrimSpace(s) == "" {
			p.failf(fileName+"."+k, "empty value: expected a value, or leave the member out")
			continue
		}
		values[fileName+"."+k] = s
	}
	fp := &parser{lookup: func(k string) (string, bool) { v, ok := values[k]; return v, ok }, production: p.production}
	name := func(k string) string { return fileName + "." + k }
	c.ConnectionTimeout = fp.duration(name("connection_timeout"), c.ConnectionTimeout, false)
	c.LoadBalancingAlgo = fp.enum(name("load_balancing_algo"), c.LoadBalancingAlgo, algos...)
	c.MaxBodyBytes = fp.size(name("max_body_bytes"), c.MaxBodyBytes, 1)
	c.CacheTTL = fp.duration(name("cache_ttl"), c.CacheTTL, true)
	c.CORSAllowedOrigins = fp.origins(name("cors_allowed_origins"), c.CORSAllowedOrigins)
	p.errs = append(p.errs, fp.errs...)
	c.FileTunables = sortedKeys(raw.Tunable)

	b := &routeBuilder{c: c, p: p, seen: map[string]string{}}
	switch {
	case raw.Routes == nil:
		p.failf(fileName+".routes", "missing: expected an array of route objects (as in SERVICE_ROUTES; [] for none)")
	default:
		b.routeArray(fileName+".routes", *raw.Routes)
	}
	if raw.Routes != nil && len(*raw.Routes) == 0 {
		if c.Env == EnvProduction {
			p.failf(fileName+".routes", "empty: production refuses to run without routes")
		} else {
			p.warnf("CONFIG_FILE.routes: empty, every request to a route gets 404")
		}
	}
	slices.SortFunc(b.routes, func(x, y Route) int { return strings.Compare(x.Prefix, y.Prefix) })
	c.Routes = b.routes
	c.RoutesSource = fileName
}

// toJSON turns the file's content into one JSON document: as is for a .json
// file, converted from YAML otherwise (YAML 1.2 is a superset of JSON, so a
// JSON file with another name reads too). An empty file is refused: an
// editor that truncates before writing must not empty the route table.
func toJSON(path string, data []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the file is empty")
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %s", jsonProblem(err))
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("invalid JSON: trailing data after the document")
		}
		return v, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("invalid YAML: %s", strings.Join(te.Errors, "; "))
		}
		return nil, fmt.Errorf("invalid YAML: %s", strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " "))
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errors.New("invalid YAML: more than one document")
	}
	j, err := yamlToJSON(v, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// yamlToJSON converts a decoded YAML value to one encoding/json renders:
// mappings need string keys, and numbers must be finite.
func yamlToJSON(v any, at string) (any, error) {
	where := func() string {
		if at == "" {
			return "the top level"
		}
		return at
	}
	switch x := v.(type) {
	case nil, bool, string, int, int64, uint64:
		return x, nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("%s: %v is not a number JSON can hold", where(), x)
		}
		return x, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := yamlToJSON(e, strings.TrimPrefix(at+"."+k, "."))
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		for k := range x {
			if _, ok := k.(string); !ok {
				return nil, fmt.Errorf("%s: key %v is not a string", where(), k)
			}
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := yamlToJSON(e, strings.TrimPrefix(at+"."+k.(string), "."))
			if err != nil {
				return nil, err
			}
			out[k.(string)] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := yamlToJSON(e, at+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: %T values are not supported (quote it to make it a string)", where(), v)
}
