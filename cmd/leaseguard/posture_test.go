package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// digestSpec is an admin token table entry of a made-up token.
const digestSpec = "dash:sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:read"

// serverCert writes a self-signed certificate and its key, for settings
// that load them.
func serverCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaseguard"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"leaseguard"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// loadWith reads the configuration from env (over a clean LEASEGUARD_
// environment).
func loadWith(t *testing.T, envs ...map[string]string) (Config, error) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "LEASEGUARD_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for _, env := range envs {
		for k, v := range env {
			t.Setenv(k, v)
		}
	}
	return loadConfig()
}

type postureCase struct {
	name string
	// env is the insecure configuration.
	env map[string]string
	// setting is the variable the refusal names; want is a fragment of
	// its message.
	setting, want string
	// secure, added to env, makes it acceptable (nil: tested elsewhere).
	secure map[string]string
	// secret must appear in no message.
	secret string
}

func postureCases(t *testing.T) []postureCase {
	cert, key := serverCert(t)
	admin := func(addr string) map[string]string {
		return map[string]string{"LEASEGUARD_ADMIN_ADDR": addr, "LEASEGUARD_ADMIN_TOKENS": digestSpec}
	}
	withTLS := map[string]string{"LEASEGUARD_ADMIN_TLS_CERT_FILE": cert, "LEASEGUARD_ADMIN_TLS_KEY_FILE": key}
	kafka := map[string]string{"LEASEGUARD_KAFKA_BROKERS": "127.0.0.1:9092,kafka-2.example:9092", "LEASEGUARD_KAFKA_SASL_MECHANISM": "PLAIN",
		"LEASEGUARD_KAFKA_SASL_USERNAME": "lg", "LEASEGUARD_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka"}
	vault := func(addr string) map[string]string {
		return map[string]string{"LEASEGUARD_VAULT_ADDR": addr, "LEASEGUARD_VAULT_TOKEN": "hvs.s3cr3t-vault"}
	}
	nats := func(u string) map[string]string { return map[string]string{"LEASEGUARD_NATS_URL": u} }
	db := func(u string) map[string]string { return map[string]string{"LEASEGUARD_DATABASE_URL": u} }
	targets := func(s string) map[string]string {
		return map[string]string{"LEASEGUARD_TARGETS": s, "LEASEGUARD_ROUTES": "*=local"}
	}
	return []postureCase{
		{name: "admin API on every interface", env: admin(":8443"), setting: "LEASEGUARD_ADMIN_ADDR", want: "without TLS", secure: withTLS},
		{name: "admin API on 0.0.0.0", env: admin("0.0.0.0:8443"), setting: "LEASEGUARD_ADMIN_ADDR", want: "without TLS", secure: withTLS},
		{name: "admin API on [::]", env: admin("[::]:8443"), setting: "LEASEGUARD_ADMIN_ADDR", want: "without TLS", secure: withTLS},
		{name: "admin API on a host address", env: admin("10.1.2.3:8443"), setting: "LEASEGUARD_ADMIN_ADDR", want: "without TLS", secure: withTLS},
		{name: "admin API on a host name", env: admin("admin.example:8443"), setting: "LEASEGUARD_ADMIN_ADDR", want: "without TLS", secure: withTLS},
		{name: "Kafka SASL without TLS", env: kafka, setting: "LEASEGUARD_KAFKA_SASL_MECHANISM", want: "without TLS",
			secure: map[string]string{"LEASEGUARD_KAFKA_TLS": "true"}},
		{name: "Vault over http", env: vault("http://vault.example:8200"), setting: "LEASEGUARD_VAULT_ADDR", want: "http", secret: "s3cr3t-vault",
			secure: vault("https://vault.example:8200")},
		{name: "Vault over http on every interface", env: vault("http://0.0.0.0:8200"), setting: "LEASEGUARD_VAULT_ADDR", want: "http",
			secure: vault("https://0.0.0.0:8200")},
		{name: "NATS without TLS or credentials", env: nats("nats://nats.example:4222"), setting: "LEASEGUARD_NATS_URL", want: "neither TLS",
			secure: map[string]string{"LEASEGUARD_NATS_CREDS_FILE": "/run/secrets/nats.creds"}},
		{name: "NATS, one URL of several", env: nats("nats://127.0.0.1:4222, nats-2.example:4222"), setting: "LEASEGUARD_NATS_URL", want: "nats-2.example:4222",
			secure: map[string]string{"LEASEGUARD_NATS_NKEY_FILE": "/run/secrets/nats.nk"}},
		{name: "NATS without TLS, CA file secures", env: nats("nats://nats.example:4222"), setting: "LEASEGUARD_NATS_URL", want: "neither TLS",
			secure: map[string]string{"LEASEGUARD_NATS_TLS_CA_FILE": "/etc/nats/ca.pem"}},
		{name: "NATS without TLS, tls:// secures", env: nats("nats://nats.example:4222"), setting: "LEASEGUARD_NATS_URL", want: "neither TLS",
			secure: nats("tls://nats.example:4222")},
		{name: "NATS password in clear", env: nats("nats://lg:s3cr3t-nats@nats.example:4222"), setting: "LEASEGUARD_NATS_URL", want: "in clear", secret: "s3cr3t-nats",
			secure: map[string]string{"LEASEGUARD_NATS_TLS_CA_FILE": "/etc/nats/ca.pem"}},
		{name: "state store sslmode=disable", env: db("postgres://lg:s3cr3t-db@db.example:5432/state?sslmode=disable"), setting: "LEASEGUARD_DATABASE_URL",
			want: "db.example", secret: "s3cr3t-db", secure: db("postgres://lg:s3cr3t-db@db.example:5432/state?sslmode=require")},
		{name: "state store sslmode=allow", env: db("postgres://lg@10.0.0.5/state?sslmode=allow"), setting: "LEASEGUARD_DATABASE_URL",
			want: "10.0.0.5", secure: db("postgres://lg@10.0.0.5/state?sslmode=verify-full")},
		{name: "state store key=value", env: db("host=db.example user=lg password=s3cr3t-db dbname=state sslmode=disable"), setting: "LEASEGUARD_DATABASE_URL",
			want: "db.example", secret: "s3cr3t-db", secure: db("host=db.example user=lg password=s3cr3t-db dbname=state sslmode=require")},
		{name: "state store, one host of several", env: db("postgres://lg@127.0.0.1,db-2.example/state?sslmode=disable"), setting: "LEASEGUARD_DATABASE_URL",
			want: "db-2.example", secure: db("postgres://lg@127.0.0.1,db-2.example/state?sslmode=require")},
		{name: "target sslmode=disable", env: targets("orders=postgres://lg:s3cr3t-db@orders.example/orders?sslmode=disable,local=postgres://127.0.0.1/x?sslmode=disable"),
			setting: "LEASEGUARD_TARGETS", want: "orders", secret: "s3cr3t-db",
			secure: targets("orders=postgres://lg:s3cr3t-db@orders.example/orders?sslmode=require,local=postgres://127.0.0.1/x?sslmode=disable")},
		{name: "target key=value", env: targets("billing=host=billing.example dbname=billing sslmode=disable,local=postgres://127.0.0.1/x?sslmode=disable"), setting: "LEASEGUARD_TARGETS", want: "billing",
			secure: targets("billing=host=billing.example dbname=billing sslmode=verify-ca sslrootcert=system,local=postgres://127.0.0.1/x?sslmode=disable")},
		{name: "world-writable audit socket", env: map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "0666"},
			setting: "LEASEGUARD_AUDIT_SOCKET_MODE", want: "every local user",
			secure: map[string]string{"LEASEGUARD_AUDIT_SOCKET_MODE": "0660"}},
	}
}

// TestProductionPosture: each setting that would put a secret or a
// command channel on the network in clear is refused with a message naming
// it; secured it is accepted; with LEASEGUARD_ALLOW_INSECURE=true it is
// accepted and listed for the warning at start.
func TestProductionPosture(t *testing.T) {
	for _, tc := range postureCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("refused", func(t *testing.T) {
				_, err := loadWith(t, tc.env)
				var ce configError
				if !errors.As(err, &ce) {
					t.Fatalf("accepted (error %v)", err)
				}
				msg := err.Error()
				if !problemAbout(msg, tc.setting) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "LEASEGUARD_ALLOW_INSECURE=true") {
					t.Errorf("message does not name %s, %q and the override: %s", tc.setting, tc.want, msg)
				}
				if tc.secret != "" && strings.Contains(msg, tc.secret) {
					t.Errorf("message leaks a secret: %s", msg)
				}
			})
			t.Run("secured", func(t *testing.T) {
				if _, err := loadWith(t, tc.env, tc.secure); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
			t.Run("override", func(t *testing.T) {
				cfg, err := loadWith(t, tc.env, map[string]string{"LEASEGUARD_ALLOW_INSECURE": "true"})
				if err != nil {
					t.Fatalf("refused despite the override: %v", err)
				}
				logs := &syncBuffer{}
				warnInsecure(slog.New(slog.NewJSONHandler(logs, nil)), cfg)
				out := logs.String()
				if !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, `"setting":"`+tc.setting+`"`) || !strings.Contains(out, tc.want) {
					t.Errorf("no warning naming %s: %s", tc.setting, out)
				}
				if tc.secret != "" && strings.Contains(out, tc.secret) {
					t.Errorf("warning leaks a secret: %s", out)
				}
			})
		})
	}
}

// TestProductionPostureAcceptsLoopback: loopback (127.0.0.0/8, ::1,
// localhost) and local sockets need no TLS, and the defaults pass.
func TestProductionPostureAcceptsLoopback(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"defaults":                       {},
		"admin API on 127.0.0.1":         {"LEASEGUARD_ADMIN_ADDR": "127.0.0.1:8443", "LEASEGUARD_ADMIN_TOKENS": digestSpec},
		"admin API on 127.0.0.2":         {"LEASEGUARD_ADMIN_ADDR": "127.0.0.2:8443", "LEASEGUARD_ADMIN_TOKENS": digestSpec},
		"admin API on ::1":               {"LEASEGUARD_ADMIN_ADDR": "[::1]:8443", "LEASEGUARD_ADMIN_TOKENS": digestSpec},
		"admin API on localhost":         {"LEASEGUARD_ADMIN_ADDR": "localhost:8443", "LEASEGUARD_ADMIN_TOKENS": digestSpec},
		"Kafka SASL to loopback brokers": {"LEASEGUARD_KAFKA_BROKERS": "127.0.0.1:9092,localhost:9093", "LEASEGUARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "LEASEGUARD_KAFKA_SASL_USERNAME": "lg", "LEASEGUARD_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka"},
		"Kafka without SASL":             {"LEASEGUARD_KAFKA_BROKERS": "kafka.example:9092"},
		"Vault over http on loopback":    {"LEASEGUARD_VAULT_ADDR": "http://127.0.0.1:8200", "LEASEGUARD_VAULT_TOKEN": "hvs.x"},
		"Vault over http on localhost":   {"LEASEGUARD_VAULT_ADDR": "http://localhost:8200", "LEASEGUARD_VAULT_TOKEN": "hvs.x"},
		"NATS on loopback":               {"LEASEGUARD_NATS_URL": "nats://127.0.0.1:4222,nats://[::1]:4223,localhost:4224"},
		"state store on a unix socket":   {"LEASEGUARD_DATABASE_URL": "postgres:///state?host=/var/run/postgresql&sslmode=disable"},
		"state store key=value socket":   {"LEASEGUARD_DATABASE_URL": "host=/tmp dbname=state sslmode=disable"},
		"state store on localhost":       {"LEASEGUARD_DATABASE_URL": "postgres://lg@localhost/state?sslmode=disable"},
		"state store with prefer":        {"LEASEGUARD_DATABASE_URL": "postgres://lg@db.example/state"},
		"targets on loopback":            {"LEASEGUARD_TARGETS": "a=postgres://127.0.0.1/a?sslmode=disable,b=host=::1 dbname=b sslmode=disable", "LEASEGUARD_ROUTES": "*=a"},
		"audit socket mode 0600":         {"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "0600"},
		"audit socket mode 0664":         {"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "664"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := loadWith(t, env); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// TestProductionPostureExitCode: a refused setting is exit 3, naming it.
func TestProductionPostureExitCode(t *testing.T) {
	_, _ = loadWith(t, map[string]string{"LEASEGUARD_VAULT_ADDR": "http://vault.example:8200", "LEASEGUARD_VAULT_TOKEN": "hvs.x"})
	code, _, stderr := runMain(t, "", "config")
	if code != exitConfig || !strings.Contains(stderr, "LEASEGUARD_VAULT_ADDR") {
		t.Errorf("exit %d, want %d naming LEASEGUARD_VAULT_ADDR: %s", code, exitConfig, stderr)
	}
}

// TestRunWarnsAboutAcceptedInsecureSettings: run starts with an insecure
// setting accepted by the override, and says so at start.
func TestRunWarnsAboutAcceptedInsecureSettings(t *testing.T) {
	cfg, err := loadWith(t, map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_posture"),
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_ROLES": "ingest", "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0",
		"LEASEGUARD_ADMIN_ADDR": "0.0.0.0:0", "LEASEGUARD_ADMIN_TOKENS": digestSpec, "LEASEGUARD_ALLOW_INSECURE": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs := &syncBuffer{}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if out := logs.String(); !strings.Contains(out, `"setting":"LEASEGUARD_ADMIN_ADDR"`) || !strings.Contains(out, "LEASEGUARD_ALLOW_INSECURE") {
		t.Errorf("no warning about the admin API at start: %s", out)
	}
}
