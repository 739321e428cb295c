package redisconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/testsvc"
)

// Each use keeps the client it had when it built its own: these are the
// option sets the cache, the API-key lookup and the cluster node wrote by
// hand before this package existed. The clients must come out configured
// identically, defaults go-redis fills in included.
func TestEachUseKeepsItsClientSettings(t *testing.T) {
	// A loopback port nothing listens on: the clients are only inspected,
	// but the cluster's keeps idle connections and dials at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server{Addr: ln.Addr().String(), Password: "pw", DB: 3}
	ln.Close()
	tests := []struct {
		name string
		got  Tuning
		want redis.Options
	}{
		{
			name: "cache",
			got:  ForCache(50 * time.Millisecond),
			want: redis.Options{
				MaxRetries:            -1,
				DialTimeout:           100 * time.Millisecond,
				ReadTimeout:           50 * time.Millisecond,
				WriteTimeout:          50 * time.Millisecond,
				PoolTimeout:           50 * time.Millisecond,
				ContextTimeoutEnabled: true,
				PoolSize:              64,
			},
		},
		{
			name: "api keys",
			got:  ForAPIKeys(),
			want: redis.Options{
				MaxRetries: 1, DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
			},
		},
		{
			name: "cluster, default timeouts",
			got:  ForCluster(50*time.Millisecond, time.Second),
			want: redis.Options{
				MaxRetries:            -1,
				DialTimeout:           250 * time.Millisecond,
				ReadTimeout:           time.Second,
				WriteTimeout:          time.Second,
				ContextTimeoutEnabled: true,
				PoolSize:              64,
				PoolTimeout:           50 * time.Millisecond,
				MinIdleConns:          2,
			},
		},
		{
			name: "cluster, long request-path timeout",
			got:  ForCluster(500*time.Millisecond, 2*time.Second),
			want: redis.Options{
				MaxRetries:            -1,
				DialTimeout:           500 * time.Millisecond,
				ReadTimeout:           2 * time.Second,
				WriteTimeout:          2 * time.Second,
				ContextTimeoutEnabled: true,
				PoolSize:              64,
				PoolTimeout:           500 * time.Millisecond,
				MinIdleConns:          2,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(srv, tc.got)
			defer c.Close()
			simple, ok := c.(*redis.Client)
			if !ok {
				t.Fatalf("one address gave a %T, want a plain *redis.Client", c)
			}
			tc.want.Addr, tc.want.Password, tc.want.DB = srv.Addr, srv.Password, srv.DB
			ref := redis.NewClient(&tc.want)
			defer ref.Close()
			if diff := plainFieldDiff(*simple.Options(), *ref.Options()); diff != "" {
				t.Fatalf("client settings differ from the use's own:\n%s", diff)
			}
		})
	}
}

// plainFieldDiff lists the numbers, strings and booleans that differ
// between two go-redis Options (functions and pointers cannot be compared).
func plainFieldDiff(a, b redis.Options) string {
	var out strings.Builder
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		switch fa.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.String:
			if !fa.Equal(fb) {
				fmt.Fprintf(&out, "%s: got %v, want %v\n", va.Type().Field(i).Name, fa.Interface(), fb.Interface())
			}
		}
	}
	return out.String()
}

func TestFromConfigTakesTheRedisSettings(t *testing.T) {
	got := FromConfig(&config.Static{RedisAddr: "redis.internal:6380", RedisPassword: "s3cret", RedisDB: 4})
	if want := (Server{Addr: "redis.internal:6380", Password: "s3cret", DB: 4}); got != want {
		t.Fatalf("FromConfig = %+v, want %+v", got, want)
	}
}

// A Server logged or printed by mistake shows where Redis is, never its
// password.
func TestServerIsLoggedWithoutItsPassword(t *testing.T) {
	s := Server{Addr: "127.0.0.1:6379", Password: "hunter2", DB: 1}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "redis", s)
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), `"redis":"127.0.0.1:6379"`) {
		t.Fatalf("log line %s", buf.String())
	}
	if s.String() != "127.0.0.1:6379" {
		t.Fatalf("String() = %q", s.String())
	}
}

// Against a real Redis: the password authenticates and the DB is the one
// selected, for every use's tuning.
func TestClientReachesTheConfiguredDatabase(t *testing.T) {
	addr, _ := testsvc.Redis(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	for name, tun := range map[string]Tuning{
		"cache":    ForCache(50 * time.Millisecond),
		"api keys": ForAPIKeys(),
		"cluster":  ForCluster(50*time.Millisecond, time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			c := New(Server{Addr: addr, Password: "s3cret", DB: 5}, tun)
			defer c.Close()
			// Generous: a race-instrumented test machine can be slow to dial.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.Set(cctx, "where:"+name, "db5", 0).Err(); err != nil {
				t.Fatal(err)
			}
			check := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret", DB: 5})
			defer check.Close()
			if v := check.Get(ctx, "where:"+name).Val(); v != "db5" {
				t.Fatalf("DB 5 holds %q", v)
			}
			other := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret"})
			defer other.Close()
			if err := other.Get(ctx, "where:"+name).Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("DB 0 answers %v, want nil: the key went to the wrong DB", err)
			}
		})
	}
	wrong := New(Server{Addr: addr, Password: "nope"}, ForAPIKeys())
	defer wrong.Close()
	if err := wrong.Ping(ctx).Err(); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}
