package acme

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"
)

// validated is what New builds from Options once they are checked.
type validated struct {
	domains []string // lower-case, without a trailing dot, each once
	ca      string
	roots   *x509.CertPool // nil: the system roots
	storage string         // the directory; empty with Redis
}

// validate checks o and returns every problem at once, each naming the
// variable it comes from.
func validate(o Options) (validated, error) {
	var v validated
	var errs []error
	if len(o.Domains) == 0 {
		errs = append(errs, errors.New("ACME_DOMAINS: no domain names to obtain certificates for"))
	}
	for _, d := range o.Domains {
		name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if err := checkDomain(name); err != nil {
			errs = append(errs, fmt.Errorf("ACME_DOMAINS: %q %w", d, err))
			continue
		}
		if !slices.Contains(v.domains, name) {
			v.domains = append(v.domains, name)
		}
	}

	if o.Email != "" {
		if a, err := mail.ParseAddress(o.Email); err != nil || a.Address != o.Email {
			errs = append(errs, fmt.Errorf("ACME_EMAIL: %q is not a bare e-mail address", o.Email))
		}
	}

	v.ca = o.CA
	if v.ca == "" {
		v.ca = certmagic.LetsEncryptProductionCA
	}
	if u, err := url.Parse(v.ca); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("ACME_CA: %q is not an https:// directory URL", o.CA))
	}

	if o.CARoot != "" {
		pem, err := os.ReadFile(o.CARoot)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ACME_CA_ROOT: %w", err))
		default:
			v.roots = x509.NewCertPool()
			if !v.roots.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("ACME_CA_ROOT: %s holds no PEM certificate", o.CARoot))
			}
		}
	}

	if o.Redis == nil {
		v.storage = o.Storage
		if v.storage == "" {
			v.storage = DefaultStorage
		}
		if err := checkStorageDir(v.storage); err != nil {
			errs = append(errs, fmt.Errorf("ACME_STORAGE: %w", err))
		}
	}

	for _, p := range []struct {
		name string
		port int
	}{{"HTTP port", o.HTTPPort}, {"TLS port", o.TLSPort}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("acme: %s %d is out of range", p.name, p.port))
		}
	}
	if o.DisableHTTPChallenge && o.DisableTLSALPNChallenge {
		errs = append(errs, errors.New("acme: both HTTP-01 and TLS-ALPN-01 are disabled: no challenge is left to prove the names"))
	}
	return v, errors.Join(errs...)
}

// checkDomain accepts a DNS name a CA can validate with TLS-ALPN-01 or
// HTTP-01: ASCII letters, digits and hyphens in labels of 1 to 63 bytes
// (RFC 1035 §2.3.1, internationalised names in their xn-- form), at most
// 253 bytes in all. The error completes a sentence that starts with the name.
func checkDomain(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case strings.Contains(name, "*"):
		return errors.New("is a wildcard: wildcard certificates need the DNS-01 challenge, and the gateway answers only TLS-ALPN-01 and HTTP-01")
	case len(name) > 253:
		return errors.New("is longer than 253 bytes")
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return errors.New("is an IP address, not a DNS name")
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return errors.New("has an empty label or one longer than 63 bytes")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("has the label %q, which starts or ends with a hyphen", label)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("has the character %q, not allowed in a DNS name (write internationalised names in their xn-- form)", c)
			}
		}
	}
	return nil
}

// checkStorageDir creates dir if missing and proves it writable, so a
// wrong ACME_STORAGE fails the boot rather than the first order.
func checkStorageDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
