package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// Entries below are shaped as Vault 1.15 to 1.21 writes them, modelled on the
// 1.21.0 fixture. They are written indented for reading and compacted to one
// line before decoding, as an audit device writes them.

// authAlice is the auth block of a userpass token (fixture, lines 19-28).
const authAlice = `"auth": {
	"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
	"client_token": "hmac-sha256:b056e18ae5848fec282b16b66a5ed14fa914658c929fc43c20200c5c13a4dbc6",
	"display_name": "userpass-alice",
	"entity_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
	"metadata": {"username": "alice"},
	"policies": ["default", "rep"],
	"policy_results": {"allowed": true, "granting_policies": [{"type": ""}, {"name": "rep", "namespace_id": "root", "type": "acl"}]},
	"token_policies": ["default", "rep"],
	"token_issue_time": "2026-11-25T19:23:33Z",
	"token_ttl": 2764800,
	"token_type": "service"
}`

// authRoot is the auth block of the root token (fixture, line 25).
const authRoot = `"auth": {
	"accessor": "hmac-sha256:268540f40e6435a27bdc3943103f9588e78b6ba50651cab8090ce305f73a8ad7",
	"client_token": "hmac-sha256:989b37e853916f7e066781547a49c121485edde5c9d9aa168a4a2db7fe5f484e",
	"display_name": "token",
	"policies": ["root"],
	"policy_results": {"allowed": true, "granting_policies": [{"type": ""}, {"name": "root", "namespace_id": "root", "type": "acl"}]},
	"token_policies": ["root"],
	"token_issue_time": "2026-11-25T19:23:27Z",
	"token_type": "service"
}`

// authAlice115 is alice's auth block as Vault 1.15 writes it (no
// policy_results).
const authAlice115 = `"auth": {
	"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
	"client_token": "hmac-sha256:b056e18ae5848fec282b16b66a5ed14fa914658c929fc43c20200c5c13a4dbc6",
	"display_name": "userpass-alice",
	"entity_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
	"metadata": {"username": "alice"},
	"policies": ["default", "rep"],
	"token_policies": ["default", "rep"],
	"token_ttl": 2764800,
	"token_type": "service"
}`

// Well-formed entries.
const (
	// Fixture line 20 shape: tuned mount, plain username.
	entryIssuePlain = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "4212eee2-8290-1b2a-c91e-d7d62037a171",
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"remote_port": 35424
	},
	"response": {
		"data": {
			"password": "hmac-sha256:f975236207194dee6ecc77694f17226fbaf4664d2ae76803f003c2919f0cefdf",
			"username": "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"
		},
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"}
	},
	"time": "2026-11-25T19:23:33.507975384Z",
	"type": "response"
}`

	// Untuned mount: the username is an HMAC. Client behind a port.
	entryIssueHMAC = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "0b7a1c4e-51aa-2b1e-77d0-3e2f0a6c9d11",
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "10.0.0.1:5555",
		"remote_port": 5555
	},
	"response": {
		"data": {
			"password": "hmac-sha256:0d3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "hmac-sha256:7e2d0c1f4b3a5968d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4"
		},
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/Qm3xT9kLpZ2vN8rYc4HwEa7J"}
	},
	"time": "2026-11-25T19:30:00.000000001Z",
	"type": "response"
}`

	// Vault 1.15: the response repeats no mount fields; POST (update) read.
	entryIssue115 = `{
	` + authAlice115 + `,
	"request": {
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
		"mount_accessor": "database_0f55551a",
		"mount_point": "db/prod/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "db/prod/creds/app-rw",
		"remote_address": "192.168.10.4"
	},
	"response": {
		"data": {
			"password": "hmac-sha256:aa3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "v-userpass-app-rw-8vQmZ1xT0pLk3NcR7wYs-1795634700"
		},
		"secret": {"lease_id": "db/prod/creds/app-rw/Yt5UeR2wQ8iO1pA4sD7fG0hJ"}
	},
	"time": "2025-06-01T08:00:00.123456789Z",
	"type": "response"
}`

	// Vault Enterprise, namespace team-a: the path and the lease id are
	// relative to the namespace, the lease id has the namespace id suffix.
	// The client is IPv6 with a port.
	entryIssueNamespaced = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		"mount_accessor": "database_1a2b3c4d",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "[2001:db8::7]:5555",
		"remote_port": 5555
	},
	"response": {
		"data": {
			"password": "hmac-sha256:bb3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "v-userpass-reportin-Zz9Yy8Xx7Ww6Vv5Uu4Tt-1795634800"
		},
		"mount_accessor": "database_1a2b3c4d",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id"}
	},
	"time": "2026-11-25T21:00:00Z",
	"type": "response"
}`

	// Fixture line 19 shape.
	entryCredsRequest = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "4212eee2-8290-1b2a-c91e-d7d62037a171",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"remote_port": 35424
	},
	"time": "2026-11-25T19:23:33.495760787Z",
	"type": "request"
}`

	// Request entry inside a namespace, mount_point logged with the
	// namespace path, remote address IPv6 without port.
	entryCredsRequestNamespaced = `{
	` + authAlice + `,
	"request": {
		"id": "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		"mount_point": "team-a/postgres/",
		"mount_type": "database",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "2001:db8::7"
	},
	"time": "2026-11-25T20:59:59.9Z",
	"type": "request"
}`

	// Vault refused (policy): the request entry carries the top-level error
	// (fixture line 27).
	entryCredsRequestDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "d3d424fc-8bd9-eb02-2e3f-7ffc1fc65198",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/other",
		"remote_address": "127.0.0.1",
		"remote_port": 35462
	},
	"time": "2026-11-25T19:23:34.37325223Z",
	"type": "request"
}`

	// Fixture line 28: top-level error and response.data.error.
	entryCredsResponseDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "d3d424fc-8bd9-eb02-2e3f-7ffc1fc65198",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/other",
		"remote_address": "127.0.0.1",
		"remote_port": 35462
	},
	"response": {
		"data": {"error": "hmac-sha256:6130f1632366ec456c854652096d0c05996f357a6d7c89310bf7f367b534ad7e"},
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:23:34.373781392Z",
	"type": "response"
}`

	// A backend error (unknown role) with no top-level error.
	entryCredsResponseBackendError = `{
	` + authAlice + `,
	"request": {
		"id": "e1f2a3b4-c5d6-e7f8-091a-2b3c4d5e6f70",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/nosuchrole",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"error": "hmac-sha256:1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100ffee"},
		"mount_point": "postgres/",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:40:00Z",
	"type": "response"
}`

	// A wrapped creds response: no secret, no data.
	entryCredsResponseWrapped = `{
	` + authAlice + `,
	"request": {
		"id": "77aa88bb-99cc-aadd-bbee-ccff00112233",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"wrap_ttl": 60
	},
	"response": {
		"mount_point": "postgres/",
		"mount_type": "database",
		"wrap_info": {"accessor": "hmac-sha256:00aa", "creation_path": "postgres/creds/reporting", "creation_time": "2026-11-25T19:41:00Z", "token": "hmac-sha256:11bb", "ttl": 60}
	},
	"time": "2026-11-25T19:41:00Z",
	"type": "response"
}`

	// Fixture line 24 shape.
	entryRenew = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"data": {
			"increment": "hmac-sha256:bf9470c05a1662a40902ee65882d991a852f68b58ceb870875a8b85f8af262bc",
			"lease_id": "hmac-sha256:6103d880693b4a9744815e59658063faae02c97b4e70893060b0452cc5234fc9"
		},
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "6d8926cd-fe2c-4a94-5d68-f1fa1b1032f5",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1",
		"remote_port": 35444
	},
	"response": {
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"secret": {"lease_id": "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"}
	},
	"time": "2026-11-25T19:23:33.940547296Z",
	"type": "response"
}`

	// Renew request entry: no lease event until the response.
	entryRenewRequest = `{
	` + authAlice + `,
	"request": {
		"data": {"increment": "hmac-sha256:bf94", "lease_id": "hmac-sha256:6103"},
		"id": "6d8926cd-fe2c-4a94-5d68-f1fa1b1032f5",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"time": "2026-11-25T19:23:33.93584874Z",
	"type": "request"
}`

	// Legacy sys/renew/<lease id> in a namespace (Vault 1.15).
	entryRenewLegacyNamespaced = `{
	` + authAlice115 + `,
	"request": {
		"id": "aa11bb22-cc33-dd44-ee55-ff6600778899",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/renew/postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id",
		"remote_address": "10.1.2.3"
	},
	"response": {
		"secret": {"lease_id": "postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id"}
	},
	"time": "2025-06-01T09:00:00Z",
	"type": "response"
}`

	// Renewing a token lease answers with auth, no secret.
	entryRenewToken = `{
	` + authAlice + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:77ee"},
		"id": "b0b1b2b3-b4b5-b6b7-b8b9-babbbcbdbebf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"auth": {"accessor": "hmac-sha256:3238", "client_token": "hmac-sha256:b056", "display_name": "userpass-alice", "token_ttl": 2764800, "token_type": "service"},
		"mount_point": "sys/",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:50:00Z",
	"type": "response"
}`

	// Renew of an expired lease: backend error.
	entryRenewError = `{
	` + authAlice + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:6103"},
		"id": "c0c1c2c3-c4c5-c6c7-c8c9-cacbcccdcecf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"error": "hmac-sha256:2e3f"},
		"mount_point": "sys/",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:51:00Z",
	"type": "response"
}`

	// Fixture line 26: CLI revoke by path; 202 in response.data is success.
	entryRevokePath = `{
	` + authRoot + `,
	"request": {
		"client_id": "0DHqvq2D77kL2/JTPSZkTMJbkFVmUu0TzMi0jiXcFy8=",
		"client_token": "hmac-sha256:989b37e853916f7e066781547a49c121485edde5c9d9aa168a4a2db7fe5f484e",
		"client_token_accessor": "hmac-sha256:268540f40e6435a27bdc3943103f9588e78b6ba50651cab8090ce305f73a8ad7",
		"data": {"sync": false},
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "9673f3c2-c9c8-1197-abf2-b09312f412ce",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1",
		"remote_port": 35448
	},
	"response": {
		"data": {
			"http_content_type": "hmac-sha256:331fe9816ec3917e676d42ae29db661de43fa87da70bb4bb7a3fa841ff594787",
			"http_status_code": 202
		},
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:23:34.14197696Z",
	"type": "response"
}`

	// Legacy sys/revoke/<lease id>, namespaced lease, IPv6 client.
	entryRevokeLegacyNamespaced = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": true},
		"id": "d0d1d2d3-d4d5-d6d7-d8d9-dadbdcdddedf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/revoke/postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id",
		"remote_address": "::1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T21:10:00Z",
	"type": "response"
}`

	// API revoke with the lease id in the body: hashed (sys/ cannot be
	// tuned).
	entryRevokeBodyHashed = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9", "sync": true},
		"id": "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1",
		"remote_port": 35500
	},
	"response": {
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:45:00Z",
	"type": "response"
}`

	// The same from a device with log_raw: the body lease id is plain.
	entryRevokeBodyPlain = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "postgres/creds/reporting/Qm3xT9kLpZ2vN8rYc4HwEa7J", "sync": true},
		"id": "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:46:00Z",
	"type": "response"
}`

	// Revoke request entry: nothing until the response.
	entryRevokeRequest = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": false},
		"id": "9673f3c2-c9c8-1197-abf2-b09312f412ce",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1"
	},
	"time": "2026-11-25T19:23:34.139519948Z",
	"type": "request"
}`

	// Revoke refused by policy.
	entryRevokeDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "a9a8a7a6-a5a4-a3a2-a1a0-9f9e9d9c9b9a",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1"
	},
	"response": {"data": {"error": "hmac-sha256:5f5e"}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:47:00Z",
	"type": "response"
}`

	// Revoke answered with a backend error only.
	entryRevokeBackendError = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:9a8b"},
		"id": "b9b8b7b6-b5b4-b3b2-b1b0-afaeadacabaa",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1"
	},
	"response": {"data": {"error": "hmac-sha256:6a6b"}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:48:00Z",
	"type": "response"
}`

	entryRevokePrefix = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": true},
		"id": "c9c8c7c6-c5c4-c3c2-c1c0-bfbebdbcbbba",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke-prefix/postgres/creds/reporting/",
		"remote_address": "127.0.0.1:61000",
		"remote_port": 61000
	},
	"response": {"data": {"http_content_type": "hmac-sha256:331f", "http_status_code": 202}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T20:00:00Z",
	"type": "response"
}`

	entryRevokeForce = `{
	` + authRoot + `,
	"request": {
		"id": "d9d8d7d6-d5d4-d3d2-d1d0-cfcecdcccbca",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke-force/postgres/",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T20:01:00Z",
	"type": "response"
}`

	entryRevokePrefixLegacy = `{
	` + authRoot + `,
	"request": {
		"id": "e9e8e7e6-e5e4-e3e2-e1e0-dfdedddcdbda",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/revoke-prefix/postgres/creds/",
		"remote_address": "127.0.0.1"
	},
	"response": {},
	"time": "2025-06-01T10:00:00Z",
	"type": "response"
}`

	// Fixture line 1.
	entryAuditTest = `{"request":{"id":"5ab5759c-a302-0bb4-aa40-9526e73a66a3","namespace":{"id":"root"},"operation":"update","path":"sys/audit/test"},"time":"2026-11-25T19:23:31.271320831Z","type":"request"}`

	// Vault Enterprise KMIP entry.
	entryKMIP = `{
	"time": "2026-11-25T20:10:00Z",
	"type": "kmip-request",
	"auth": {"display_name": "kmip-client"},
	"request": {"id": "kmip-0001", "operation": "", "path": "kmip/scope/s1/role/r1", "data": {"operation": "Create"}}
}`

	// A non-lease response of about 1.5 KB: token lookup-self.
	entryTokenLookup = `{
	` + authAlice + `,
	"request": {
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"mount_accessor": "auth_token_5b7a9c21",
		"mount_class": "auth",
		"mount_point": "auth/token/",
		"mount_type": "token",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "auth/token/lookup-self",
		"remote_address": "127.0.0.1",
		"remote_port": 35600
	},
	"response": {
		"data": {
			"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
			"creation_time": 1795634613,
			"creation_ttl": 2764800,
			"id": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
			"num_uses": 0,
			"orphan": true,
			"policies": ["hmac-sha256:0a1b", "hmac-sha256:1b2c"],
			"renewable": true,
			"ttl": 2764000
		},
		"mount_type": "token"
	},
	"time": "2026-11-25T19:55:00Z",
	"type": "response"
}`

	// creds on a non-database mount (AWS): not ours.
	entryAWSCreds = `{
	` + authAlice + `,
	"request": {
		"id": "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "aws/",
		"mount_type": "aws",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "aws/creds/deploy",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"access_key": "hmac-sha256:0a0b", "secret_key": "hmac-sha256:0c0d"},
		"mount_point": "aws/",
		"mount_type": "aws",
		"secret": {"lease_id": "aws/creds/deploy/Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1"}
	},
	"time": "2026-11-25T19:56:00Z",
	"type": "response"
}`

	// static-creds are not leases.
	entryStaticCreds = `{
	` + authAlice + `,
	"request": {
		"id": "b0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/static-creds/app",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"username": "app", "password": "hmac-sha256:0c0d", "ttl": 3000},
		"mount_point": "postgres/",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:57:00Z",
	"type": "response"
}`

	// Role management on a database mount (fixture line 10 shape).
	entryDatabaseRole = `{
	` + authRoot + `,
	"request": {
		"data": {"creation_statements": ["hmac-sha256:aa"], "db_name": "hmac-sha256:bb", "default_ttl": "hmac-sha256:cc"},
		"id": "c0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "create",
		"path": "postgres/roles/reporting",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "postgres/", "mount_type": "database"},
	"time": "2026-11-25T19:23:32Z",
	"type": "response"
}`
)

// Entries that are valid JSON but contradict how Vault writes its log.
const (
	entryIssueEmptyLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-1", "mount_point": "postgres/", "mount_type": "database", "namespace": {"id": "root"}, "operation": "read", "path": "postgres/creds/reporting"},
	"response": {"data": {"username": "v-x"}, "mount_type": "database", "secret": {}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryIssueHashedLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-2", "mount_point": "postgres/", "mount_type": "database", "namespace": {"id": "root"}, "operation": "read", "path": "postgres/creds/reporting"},
	"response": {"data": {"username": "v-x"}, "mount_type": "database", "secret": {"lease_id": "hmac-sha256:00ff"}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRenewHashedLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-3", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/renew"},
	"response": {"secret": {"lease_id": "hmac-sha256:00ff"}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRevokeBodyMissing = `{
	` + authRoot + `,
	"request": {"id": "dl-4", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/revoke", "data": {"sync": true}},
	"response": {},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRevokePrefixEmpty = `{
	` + authRoot + `,
	"request": {"id": "dl-5", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/revoke-force/"},
	"response": {},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
)

// compact turns an indented entry into the single line an audit device
// writes.
func compact(tb testing.TB, entry string) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(entry)); err != nil {
		tb.Fatalf("test entry is not JSON: %v\n%s", err, entry)
	}
	return b.Bytes()
}

// leaseWant is what a test checks of a LeaseEvent beyond what every event
// copies from its entry (checkLease).
type leaseWant struct {
	Kind          schemas.LeaseEventKind
	LeaseID       string
	LeaseIDHMAC   bool
	LeasePrefix   string
	RevokeBy      schemas.RevokeMethod
	Mount         string
	Role          string
	Namespace     string
	DBUser        string
	DBUserHMAC    bool
	RemoteAddress string
}

// credsWant is what a test checks of a CredsObservation beyond what every
// observation copies from its entry (checkCreds).
type credsWant struct {
	Mount         string
	Role          string
	Namespace     string
	RemoteAddress string
	Response      bool
	Error         bool
	LeaseID       string
}

var testSource = schemas.SourceRef{Transport: "file", Stream: "vault-audit.log", Offset: 42}

// checkLease compares ev with want, and checks the fields every event takes
// from its entry: type, times, request id, auth, source.
func checkLease(t *testing.T, e *schemas.AuditEntry, ev *schemas.LeaseEvent, want leaseWant) {
	t.Helper()
	if err := ev.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	got := leaseWant{
		Kind: ev.Kind, LeaseID: ev.LeaseID, LeaseIDHMAC: ev.LeaseIDHMAC, LeasePrefix: ev.LeasePrefix,
		RevokeBy: ev.RevokeBy, Mount: ev.Mount, Role: ev.Role, Namespace: ev.Namespace,
		DBUser: ev.DBUser, DBUserHMAC: ev.DBUserHMAC, RemoteAddress: ev.RemoteAddress,
	}
	if got != want {
		t.Errorf("lease event\n got %+v\nwant %+v", got, want)
	}
	if ev.Type != schemas.LeaseEventType {
		t.Errorf("Type = %q", ev.Type)
	}
	if !ev.EventTime.Equal(e.Time) {
		t.Errorf("EventTime = %v, want %v", ev.EventTime, e.Time)
	}
	if ev.Kind == schemas.LeaseIssued {
		if ev.IssueTime == nil || !ev.IssueTime.Equal(e.Time) {
			t.Errorf("IssueTime = %v, want %v", ev.IssueTime, e.Time)
		}
	} else if ev.IssueTime != nil {
		t.Errorf("IssueTime = %v on a %s event", ev.IssueTime, ev.Kind)
	}
	if ev.ExpireTime != nil || ev.ExpireSource != "" || ev.TTLSeconds != nil || ev.Database != "" {
		t.Errorf("the audit log knows no expiry or database, got %v %q %v %q", ev.ExpireTime, ev.ExpireSource, ev.TTLSeconds, ev.Database)
	}
	if ev.VaultRequestID != e.Request.ID {
		t.Errorf("VaultRequestID = %q, want %q", ev.VaultRequestID, e.Request.ID)
	}
	var entity, accessor, display string
	if e.Auth != nil {
		entity, accessor, display = e.Auth.EntityID, e.Auth.Accessor, e.Auth.DisplayName
	}
	if ev.EntityID != entity || ev.TokenAccessor != accessor || ev.DisplayName != display {
		t.Errorf("auth = %q %q %q, want %q %q %q", ev.EntityID, ev.TokenAccessor, ev.DisplayName, entity, accessor, display)
	}
	if ev.Source != testSource {
		t.Errorf("Source = %+v", ev.Source)
	}
}

// checkCreds compares c with want and checks the fields every observation
// takes from its entry.
func checkCreds(t *testing.T, e *schemas.AuditEntry, c *CredsObservation, want credsWant) {
	t.Helper()
	got := credsWant{
		Mount: c.Mount, Role: c.Role, Namespace: c.Namespace, RemoteAddress: c.RemoteAddress,
		Response: c.Response, Error: c.Error, LeaseID: c.LeaseID,
	}
	if got != want {
		t.Errorf("creds\n got %+v\nwant %+v", got, want)
	}
	if c.RequestID != e.Request.ID || c.Path != e.Request.Path || !c.Time.Equal(e.Time) {
		t.Errorf("creds request = %q %q %v", c.RequestID, c.Path, c.Time)
	}
	if e.Auth != nil && (c.EntityID != e.Auth.EntityID || c.TokenAccessor != e.Auth.Accessor || c.DisplayName != e.Auth.DisplayName) {
		t.Errorf("creds auth = %q %q %q", c.EntityID, c.TokenAccessor, c.DisplayName)
	}
}

const (
	aliceUser   = "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"
	leaseAlice1 = "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"
	leaseAlice2 = "postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw"
	leaseHMAC   = "postgres/creds/reporting/Qm3xT9kLpZ2vN8rYc4HwEa7J"
	leaseNS     = "postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id"
)

type normalizeCase struct {
	name  string
	entry string
	kind  Kind
	lease *leaseWant
	creds *credsWant
}

func normalizeCases() []normalizeCase {
	return []normalizeCase{
		{
			name: "issue, tuned mount, plain username", entry: entryIssuePlain, kind: KindIssue,
			lease: &leaseWant{Kind: schemas.LeaseIssued, LeaseID: leaseAlice1, Mount: "postgres", Role: "reporting", DBUser: aliceUser, RemoteAddress: "127.0.0.1"},
			creds: &credsWant{Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1", Response: true, LeaseID: leaseAlice1},
		},
		{
			name: "issue, hashed username, address with port", entry: entryIssueHMAC, kind: KindIssue,
			lease: &leaseWant{
				Kind: schemas.LeaseIssued, LeaseID: leaseHMAC, Mount: "postgres", Role: "reporting",
				DBUser: "hmac-sha256:7e2d0c1f4b3a5968d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4", DBUserHMAC: true, RemoteAddress: "10.0.0.1",
			},
			creds: &credsWant{Mount: "postgres", Role: "reporting", RemoteAddress: "10.0.0.1", Response: true, LeaseID: leaseHMAC},
		},
		{
			name: "issue, Vault 1.15 without mount fields on the response, nested mount, POST", entry: entryIssue115, kind: KindIssue,
			lease: &leaseWant{
				Kind: schemas.LeaseIssued, LeaseID: "db/prod/creds/app-rw/Yt5UeR2wQ8iO1pA4sD7fG0hJ", Mount: "db/prod", Role: "app-rw",
				DBUser: "v-userpass-app-rw-8vQmZ1xT0pLk3NcR7wYs-1795634700", RemoteAddress: "192.168.10.4",
			},
			creds: &credsWant{Mount: "db/prod", Role: "app-rw", RemoteAddress: "192.168.10.4", Response: true, LeaseID: "db/prod/creds/app-rw/Yt5UeR2wQ8iO1pA4sD7fG0hJ"},
		},
		{
			name: "issue in a namespace, IPv6 address with port", entry: entryIssueNamespaced, kind: KindIssue,
			lease: &leaseWant{
				Kind: schemas.LeaseIssued, LeaseID: leaseNS, Mount: "postgres", Role: "reporting", Namespace: "team-a/",
				DBUser: "v-userpass-reportin-Zz9Yy8Xx7Ww6Vv5Uu4Tt-1795634800", RemoteAddress: "2001:db8::7",
			},
			creds: &credsWant{Mount: "postgres", Role: "reporting", Namespace: "team-a/", RemoteAddress: "2001:db8::7", Response: true, LeaseID: leaseNS},
		},
		{
			name: "creds request", entry: entryCredsRequest, kind: KindCredsRequest,
			creds: &credsWant{Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1"},
		},
		{
			name: "creds request in a namespace, mount point with the namespace path", entry: entryCredsRequestNamespaced, kind: KindCredsRequest,
			creds: &credsWant{Mount: "postgres", Role: "reporting", Namespace: "team-a/", RemoteAddress: "2001:db8::7"},
		},
		{
			name: "creds request denied", entry: entryCredsRequestDenied, kind: KindError,
			creds: &credsWant{Mount: "postgres", Role: "other", RemoteAddress: "127.0.0.1", Error: true},
		},
		{
			name: "creds response denied, top-level and data error", entry: entryCredsResponseDenied, kind: KindError,
			creds: &credsWant{Mount: "postgres", Role: "other", RemoteAddress: "127.0.0.1", Response: true, Error: true},
		},
		{
			name: "creds response with response.data.error only", entry: entryCredsResponseBackendError, kind: KindError,
			creds: &credsWant{Mount: "postgres", Role: "nosuchrole", RemoteAddress: "127.0.0.1", Response: true, Error: true},
		},
		{
			name: "wrapped creds response", entry: entryCredsResponseWrapped, kind: KindOtherResponse,
			creds: &credsWant{Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1", Response: true},
		},
		{
			name: "renew", entry: entryRenew, kind: KindRenew,
			lease: &leaseWant{Kind: schemas.LeaseRenewed, LeaseID: leaseAlice1, Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1"},
		},
		{name: "renew request", entry: entryRenewRequest, kind: KindOtherRequest},
		{
			name: "legacy renew by path in a namespace", entry: entryRenewLegacyNamespaced, kind: KindRenew,
			lease: &leaseWant{Kind: schemas.LeaseRenewed, LeaseID: leaseNS, Mount: "postgres", Role: "reporting", Namespace: "team-a/", RemoteAddress: "10.1.2.3"},
		},
		{name: "renew of a token", entry: entryRenewToken, kind: KindOtherResponse},
		{name: "renew with an error", entry: entryRenewError, kind: KindError},
		{
			name: "revoke by path (CLI), 202", entry: entryRevokePath, kind: KindRevoke,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeaseID: leaseAlice2, RevokeBy: schemas.RevokeByPath, Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1"},
		},
		{
			name: "legacy revoke by path in a namespace, IPv6", entry: entryRevokeLegacyNamespaced, kind: KindRevoke,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeaseID: leaseNS, RevokeBy: schemas.RevokeByPath, Mount: "postgres", Role: "reporting", Namespace: "team-a/", RemoteAddress: "::1"},
		},
		{
			name: "revoke by body, hashed lease id", entry: entryRevokeBodyHashed, kind: KindRevokeHashed,
			lease: &leaseWant{
				Kind: schemas.LeaseRevoked, LeaseID: "hmac-sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9", LeaseIDHMAC: true,
				RevokeBy: schemas.RevokeByBody, RemoteAddress: "127.0.0.1",
			},
		},
		{
			name: "revoke by body, plain lease id", entry: entryRevokeBodyPlain, kind: KindRevoke,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeaseID: leaseHMAC, RevokeBy: schemas.RevokeByBody, Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1"},
		},
		{name: "revoke request", entry: entryRevokeRequest, kind: KindOtherRequest},
		{name: "revoke denied", entry: entryRevokeDenied, kind: KindError},
		{name: "revoke with response.data.error", entry: entryRevokeBackendError, kind: KindError},
		{
			name: "revoke-prefix", entry: entryRevokePrefix, kind: KindRevokePrefix,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeasePrefix: "postgres/creds/reporting/", RevokeBy: schemas.RevokeByPrefix, Mount: "postgres", Role: "reporting", RemoteAddress: "127.0.0.1"},
		},
		{
			name: "revoke-force", entry: entryRevokeForce, kind: KindRevokePrefix,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeasePrefix: "postgres/", RevokeBy: schemas.RevokeByForce, RemoteAddress: "127.0.0.1"},
		},
		{
			name: "legacy revoke-prefix in a namespace", entry: entryRevokePrefixLegacy, kind: KindRevokePrefix,
			lease: &leaseWant{Kind: schemas.LeaseRevoked, LeasePrefix: "postgres/creds/", RevokeBy: schemas.RevokeByPrefix, Mount: "postgres", Namespace: "team-a/", RemoteAddress: "127.0.0.1"},
		},
		{name: "audit test", entry: entryAuditTest, kind: KindAuditTest},
		{name: "kmip-request", entry: entryKMIP, kind: KindOtherType},
		{name: "token lookup", entry: entryTokenLookup, kind: KindOtherResponse},
		{name: "creds on an aws mount", entry: entryAWSCreds, kind: KindOtherResponse},
		{name: "static creds", entry: entryStaticCreds, kind: KindOtherResponse},
		{name: "database role write", entry: entryDatabaseRole, kind: KindOtherResponse},
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tt := range normalizeCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d Decoder
			e, err := d.Decode(compact(t, tt.entry))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			n, err := Normalize(&e, testSource)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if n.Kind != tt.kind {
				t.Errorf("Kind = %q, want %q", n.Kind, tt.kind)
			}
			switch {
			case tt.lease == nil && n.Lease != nil:
				t.Errorf("unexpected lease event %+v", *n.Lease)
			case tt.lease != nil && n.Lease == nil:
				t.Errorf("no lease event")
			case tt.lease != nil:
				checkLease(t, &e, n.Lease, *tt.lease)
			}
			switch {
			case tt.creds == nil && n.Creds != nil:
				t.Errorf("unexpected creds observation %+v", *n.Creds)
			case tt.creds != nil && n.Creds == nil:
				t.Errorf("no creds observation")
			case tt.creds != nil:
				checkCreds(t, &e, n.Creds, *tt.creds)
			}
		})
	}
}

// TestNormalizeIssueEvent checks every field of one issued event.
func TestNormalizeIssueEvent(t *testing.T) {
	t.Parallel()
	var d Decoder
	e, err := d.Decode(compact(t, entryIssueNamespaced))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Normalize(&e, testSource)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	want := &schemas.LeaseEvent{
		Type:           schemas.LeaseEventType,
		Kind:           schemas.LeaseIssued,
		LeaseID:        leaseNS,
		Mount:          "postgres",
		Role:           "reporting",
		Namespace:      "team-a/",
		DBUser:         "v-userpass-reportin-Zz9Yy8Xx7Ww6Vv5Uu4Tt-1795634800",
		IssueTime:      &at,
		EventTime:      at,
		EntityID:       "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		TokenAccessor:  "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		DisplayName:    "userpass-alice",
		RemoteAddress:  "2001:db8::7",
		VaultRequestID: "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		Source:         testSource,
	}
	if !reflect.DeepEqual(n.Lease, want) {
		got, _ := json.Marshal(n.Lease)
		exp, _ := json.Marshal(want)
		t.Errorf("lease event\n got %s\nwant %s", got, exp)
	}
	if err := n.Lease.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	wantCreds := &CredsObservation{
		RequestID:     "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		Path:          "postgres/creds/reporting",
		Mount:         "postgres",
		Role:          "reporting",
		Namespace:     "team-a/",
		EntityID:      "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		TokenAccessor: "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		DisplayName:   "userpass-alice",
		RemoteAddress: "2001:db8::7",
		Time:          at,
		Response:      true,
		LeaseID:       leaseNS,
	}
	if !reflect.DeepEqual(n.Creds, wantCreds) {
		t.Errorf("creds\n got %+v\nwant %+v", n.Creds, wantCreds)
	}
}

func TestNormalizeDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		entry  string
		reason string
	}{
		{"creds response with a secret but no lease id", entryIssueEmptyLeaseID, "creds response on a database mount has a secret without lease_id"},
		{"creds response with a hashed lease id", entryIssueHashedLeaseID, "creds response has a hashed response.secret.lease_id"},
		{"renew response with a hashed lease id", entryRenewHashedLeaseID, "renew response has a hashed response.secret.lease_id"},
		{"body revoke without lease id", entryRevokeBodyMissing, "revoke response without lease_id in request.data"},
		{"revoke-force with an empty prefix", entryRevokePrefixEmpty, "revoke-force response with an empty prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d Decoder
			e, err := d.Decode(compact(t, tt.entry))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			n, err := Normalize(&e, testSource)
			if err == nil {
				t.Fatalf("Normalize accepted it as %+v", n)
			}
			if de := requireDecodeError(t, err); de.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", de.Reason, tt.reason)
			}
		})
	}

	t.Run("entry without request", func(t *testing.T) {
		t.Parallel()
		_, err := Normalize(&schemas.AuditEntry{Type: "request", Time: time.Now()}, testSource)
		requireDecodeError(t, err)
		_, err = Normalize(nil, testSource)
		requireDecodeError(t, err)
	})
	t.Run("hand-built entry with no time", func(t *testing.T) {
		t.Parallel()
		e := schemas.AuditEntry{Type: "response", Request: &schemas.AuditRequest{ID: "x", Path: "sys/leases/revoke/a/creds/b/c"}}
		_, err := Normalize(&e, testSource)
		if de := requireDecodeError(t, err); !strings.Contains(de.Reason, "event_time is missing") {
			t.Errorf("reason = %q", de.Reason)
		}
	})
}

// TestFixture runs the real Vault 1.21.0 log through Decode and Normalize.
func TestFixture(t *testing.T) {
	t.Parallel()
	lines := fixtureLines(t)
	var d Decoder
	kinds := map[Kind]int{}
	rejected := 0
	var issued, renewed, revoked []*schemas.LeaseEvent
	for i, line := range lines {
		src := schemas.SourceRef{Transport: "file", Stream: "vault-1.21-audit.log", Offset: int64(i + 1)}
		e, err := d.Decode(line)
		if err != nil {
			rejected++
			t.Errorf("line %d: Decode: %v", i+1, err)
			continue
		}
		n, err := Normalize(&e, src)
		if err != nil {
			rejected++
			t.Errorf("line %d: Normalize: %v", i+1, err)
			continue
		}
		kinds[n.Kind]++
		if n.Lease != nil {
			if err := n.Lease.Validate(); err != nil {
				t.Errorf("line %d: Validate: %v", i+1, err)
			}
			if n.Lease.Source != src {
				t.Errorf("line %d: Source = %+v", i+1, n.Lease.Source)
			}
			switch n.Lease.Kind {
			case schemas.LeaseIssued:
				issued = append(issued, n.Lease)
			case schemas.LeaseRenewed:
				renewed = append(renewed, n.Lease)
			case schemas.LeaseRevoked:
				revoked = append(revoked, n.Lease)
			}
		}
	}
	if len(lines) != 28 || rejected != 0 {
		t.Fatalf("%d entries, %d rejected; want 28, 0", len(lines), rejected)
	}
	wantKinds := map[Kind]int{
		KindAuditTest:     1,
		KindOtherRequest:  10,
		KindOtherResponse: 9,
		KindCredsRequest:  2,
		KindIssue:         2,
		KindRenew:         1,
		KindRevoke:        1,
		KindError:         2, // the denied read of postgres/creds/other: request and response
	}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Errorf("kinds = %v, want %v", kinds, wantKinds)
	}
	if len(issued) != 2 || len(renewed) != 1 || len(revoked) != 1 {
		t.Fatalf("%d issued, %d renewed, %d revoked; want 2, 1, 1", len(issued), len(renewed), len(revoked))
	}
	wantIssued := []struct{ lease, user string }{
		{leaseAlice1, "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"},
		{leaseAlice2, "v-userpass-reportin-WmklGx667t1xMMUVSWPt-1795634613"},
	}
	for i, w := range wantIssued {
		ev := issued[i]
		if ev.LeaseID != w.lease || ev.DBUser != w.user || ev.DBUserHMAC || ev.Mount != "postgres" || ev.Role != "reporting" ||
			ev.Namespace != "" || ev.EntityID != "ffe23c2c-69ab-e043-c810-bf24e5df3f4b" || ev.DisplayName != "userpass-alice" ||
			ev.RemoteAddress != "127.0.0.1" || ev.IssueTime == nil {
			t.Errorf("issued[%d] = %+v", i, ev)
		}
	}
	if r := renewed[0]; r.LeaseID != leaseAlice1 || r.Mount != "postgres" || r.Role != "reporting" {
		t.Errorf("renewed = %+v", r)
	}
	if r := revoked[0]; r.LeaseID != leaseAlice2 || r.RevokeBy != schemas.RevokeByPath || r.LeaseIDHMAC || r.DisplayName != "token" {
		t.Errorf("revoked = %+v", r)
	}
}

func TestKindsAreDistinct(t *testing.T) {
	t.Parallel()
	want := []string{
		"issue", "renew", "revoke", "revoke_prefix", "revoke_hashed", "creds_request", "error",
		"audit_test", "other_request", "other_response", "other_type",
	}
	got := AllKinds()
	if len(got) != len(want) {
		t.Fatalf("AllKinds() = %v", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("AllKinds()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestStripPort(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                   "",
		"127.0.0.1":          "127.0.0.1",
		"10.0.0.1:5555":      "10.0.0.1",
		"[::1]:5555":         "::1",
		"[2001:db8::7]:8200": "2001:db8::7",
		"[::1]":              "::1",
		"::1":                "::1",
		"2001:db8::7":        "2001:db8::7",
		"fe80::1%eth0":       "fe80::1%eth0",
		"vault.example:8200": "vault.example",
		"host:notaport":      "host:notaport",
		"[":                  "[",
	}
	for in, want := range tests {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLeaseID(t *testing.T) {
	t.Parallel()
	tests := []struct{ id, mount, role string }{
		{leaseAlice1, "postgres", "reporting"},
		{leaseNS, "postgres", "reporting"},
		{"db/prod/creds/app-rw/Yt5UeR2wQ8iO1pA4sD7fG0hJ", "db/prod", "app-rw"},
		{"auth/token/create/h1f7c", "", ""},
		{"postgres/creds/reporting/", "", ""},
		{"creds/reporting/abc", "", ""},
		{"/creds/reporting/abc", "", ""},
		{"postgres/creds//abc", "", ""},
		{"hmac-sha256:00ff", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if m, r := parseLeaseID(tt.id); m != tt.mount || r != tt.role {
			t.Errorf("parseLeaseID(%q) = %q, %q; want %q, %q", tt.id, m, r, tt.mount, tt.role)
		}
	}
}
